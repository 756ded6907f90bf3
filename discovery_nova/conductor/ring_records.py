"""The records the conductors keep on the overlay's ring, and their format.

Every record is stored by the PoP's overlay agent at the ring node
responsible for its key and that node's ``replicas`` successors
(``overlay.locator``), so it outlives the PoP that wrote it:

``server:<uuid>``
    Where the server runs (``pop``), which PoP keeps this record
    (``holder``: the server's origin, where it was asked or, after a
    failover, where it was rebuilt), the PoP the user asked (``origin``),
    its state and host, and a pointer (``spec``: part count and digest)
    to what rebuilding it needs. ``deleted`` marks a deleted server.
``server:<uuid>:spec:<n>``
    Part ``n`` of the rebuild spec: the portable instance, its request
    spec, image and networks (what ``shadow_sync`` reads from its own
    database to rebuild a forwarded server), as compressed JSON split
    into parts a record can hold.
``pop:<name>`` and ``pop:<name>:servers:<n>``
    The servers running at a PoP that it keeps the records of, in pages:
    what a PoP taking over a dead one reads, since the ring cannot be
    listed.

Values stay below the locator's default ``max_value_bytes`` (4096).
"""

import base64
import dataclasses
import hashlib
import json
from typing import Any
import zlib

from discovery_nova.overlay.client import AgentClient

SERVER_PREFIX = 'server:'
#: System metadata of a server rebuilt after its PoP died: that PoP.
SYSMETA_REBUILT_FROM = 'discovery_rebuilt_from'
#: Characters of encoded spec per part (a record holds 4096 bytes of JSON).
PART_CHARS = 3000
#: Server UUIDs per page of a PoP's index (37 bytes of JSON each).
PAGE_SIZE = 64
#: Most parts or pages read back: a bound on what a bad record can cost.
MAX_PARTS = 64


class RecordError(ValueError):
    """A record read from the ring is missing, stale or malformed."""


def server_key(uuid: str) -> str:
    return SERVER_PREFIX + uuid


def spec_key(uuid: str, part: int) -> str:
    return '%s%s:spec:%d' % (SERVER_PREFIX, uuid, part)


def pop_key(pop: str) -> str:
    return 'pop:%s' % pop


def page_key(pop: str, page: int) -> str:
    return 'pop:%s:servers:%d' % (pop, page)


def encode_spec(spec: dict[str, Any]) -> tuple[list[str], str]:
    """``spec`` (JSON) as record parts, and the digest of the whole."""
    text = base64.b64encode(zlib.compress(json.dumps(
        spec, sort_keys=True, separators=(',', ':')).encode('utf-8'), 9)
    ).decode('ascii')
    parts = [text[i:i + PART_CHARS]
             for i in range(0, len(text), PART_CHARS)] or ['']
    if len(parts) > MAX_PARTS:
        raise RecordError('a rebuild spec of %d bytes encoded is larger than '
                          'the %d parts a record may span'
                          % (len(text), MAX_PARTS))
    return parts, hashlib.sha256(text.encode('ascii')).hexdigest()[:32]


def decode_spec(parts: list[str], digest: str) -> dict[str, Any]:
    """The spec of ``parts``; RecordError when they do not make up the
    spec of ``digest`` (a part of another version, or damaged)."""
    text = ''.join(parts)
    if hashlib.sha256(text.encode('ascii')).hexdigest()[:32] != digest:
        raise RecordError('the parts of a rebuild spec do not match its '
                          'digest %s (a newer version is being written, or '
                          'a part was lost)' % digest)
    return json.loads(zlib.decompress(base64.b64decode(text)))


@dataclasses.dataclass(frozen=True)
class Located:
    """A record as the ring answered it, and the route that found it."""

    key: str
    found: bool
    value: Any
    node: str
    hops: int
    path: tuple[str, ...]


class RingRecords:
    """Read and write the conductors' records through one agent."""

    def __init__(self, client: AgentClient):
        self.client = client

    def get(self, key: str) -> Located:
        answer = self.client.locate(key)
        return Located(key, bool(answer.get('found')), answer.get('value'),
                       str(answer.get('node')), int(answer.get('hops', 0)),
                       tuple(answer.get('path') or ()))

    def put(self, key: str, value: Any) -> None:
        self.client.put(key, value)

    # -- servers ---------------------------------------------------------

    def server(self, uuid: str) -> Located:
        """``server:<uuid>``; RecordError when it is not an object."""
        found = self.get(server_key(uuid))
        if found.found and not isinstance(found.value, dict):
            raise RecordError('record %s is %s, expected a JSON object'
                              % (found.key, type(found.value).__name__))
        return found

    def put_server(self, uuid: str, record: dict[str, Any]) -> None:
        self.put(server_key(uuid), record)

    def put_spec(self, uuid: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Store the parts of ``spec``; the pointer for the server record.
        """
        parts, digest = encode_spec(spec)
        for number, part in enumerate(parts):
            self.put(spec_key(uuid, number), part)
        return {'parts': len(parts), 'sha': digest}

    def spec(self, uuid: str, pointer: Any) -> dict[str, Any]:
        """The rebuild spec a server record points to."""
        if (not isinstance(pointer, dict) or
                not isinstance(pointer.get('parts'), int) or
                not 1 <= pointer['parts'] <= MAX_PARTS or
                not isinstance(pointer.get('sha'), str)):
            raise RecordError('server %s: its record has no usable rebuild '
                              'spec pointer (got %r)' % (uuid, pointer))
        parts = []
        for number in range(pointer['parts']):
            found = self.get(spec_key(uuid, number))
            if not found.found or not isinstance(found.value, str):
                raise RecordError('server %s: part %d of its rebuild spec '
                                  'is missing' % (uuid, number))
            parts.append(found.value)
        return decode_spec(parts, pointer['sha'])

    # -- a PoP's index ---------------------------------------------------

    def put_pop_index(self, pop: str, uuids: list[str],
                      previous_pages: int = 0) -> int:
        """Publish the servers ``pop`` keeps records of; the page count.

        Pages beyond the new count that an earlier index had are emptied,
        so a reader of a stale head never sees servers twice.
        """
        ordered = sorted(uuids)
        pages = [ordered[i:i + PAGE_SIZE]
                 for i in range(0, len(ordered), PAGE_SIZE)]
        if len(pages) > MAX_PARTS:
            raise RecordError('%d servers are more than the index of one PoP '
                              'holds (%d)' % (len(ordered),
                                              MAX_PARTS * PAGE_SIZE))
        for number, page in enumerate(pages):
            self.put(page_key(pop, number), page)
        for number in range(len(pages), previous_pages):
            self.put(page_key(pop, number), [])
        self.put(pop_key(pop), {'pop': pop, 'pages': len(pages),
                                'servers': len(ordered)})
        return len(pages)

    def pop_index(self, pop: str) -> list[str] | None:
        """The servers ``pop`` keeps records of; None when it never
        published an index."""
        head = self.get(pop_key(pop))
        if not head.found:
            return None
        pages = head.value.get('pages') if isinstance(head.value,
                                                      dict) else None
        if not isinstance(pages, int) or not 0 <= pages <= MAX_PARTS:
            raise RecordError('record %s has no page count (got %r)'
                              % (head.key, head.value))
        uuids: list[str] = []
        for number in range(pages):
            found = self.get(page_key(pop, number))
            if not found.found or not isinstance(found.value, list):
                raise RecordError('page %d of the index of %s is missing'
                                  % (number, pop))
            uuids.extend(u for u in found.value if isinstance(u, str))
        return uuids
