"""The common shape check of every overlay protocol message.

Each protocol (spiral search, ring routing) validates messages from the
network before ``handle`` reads them: a JSON object whose ``type`` is one
of the protocol's, carrying exactly the fields that type carries. That part
is the same for every protocol and lives here; each protocol then checks
the values of its own fields.
"""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from discovery_nova.overlay.errors import InvalidMessage


def check_envelope(message: Any, protocol: str,
                   fields: Mapping[str, Sequence[str]]) -> str:
    """Check ``message`` is a ``protocol`` message with exactly its fields.

    :param protocol: the protocol's name, for the error ("spiral", "ring").
    :param fields: for each message type, the fields it carries (``type``
        included).
    :returns: the message type.
    :raises InvalidMessage: naming the field and what was expected.
    """
    if not isinstance(message, dict):
        raise InvalidMessage('a %s message must be a JSON object, got %s'
                             % (protocol, type(message).__name__))
    kind = message.get('type')
    if not isinstance(kind, str) or kind not in fields:
        raise InvalidMessage('field %r must be one of %s, got %r'
                             % ('type', ', '.join(fields), str(kind)[:40]))
    expected = fields[kind]
    for field in expected:
        if field not in message:
            raise InvalidMessage('%s: field %r is missing (a %s carries %s)'
                                 % (kind, field, kind, ', '.join(expected)))
    extra = sorted(set(message) - set(expected), key=str)
    if extra:
        raise InvalidMessage('%s: unexpected field %r (a %s carries only '
                             '%s)' % (kind, str(extra[0])[:40], kind,
                                      ', '.join(expected)))
    return kind
