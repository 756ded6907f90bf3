"""Object location over the ring: small records such as "VM id -> PoP".

A record lives at the node responsible for its key and at the next
``replicas`` members after it on the ring (its *replica set*), so the crash
of any one node, or of up to ``replicas`` of them at once, loses nothing.
``put`` and ``get`` are routed requests (``RingRouter.route`` with the
``locate`` service); only the copies to the other members of the replica
set go straight to them, as ``locate.store`` messages.

The responsible node numbers the versions of a key; a copy replaces
another only when its version is higher, so late or repeated copies are
harmless. When a node dies before membership notices, requests skip it
(the router suspects it and hands the request to the next live successor,
which holds a copy). When membership changes, every holder of a record
sends it to the members that just entered its replica set and drops its own
copy when it has left the set: responsibility moves with the records.
"""

from collections.abc import Callable
import dataclasses
import json
from typing import Any

from oslo_log import log as logging

from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import RoutingFailed
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.ring import MAX_KEY
from discovery_nova.overlay.ring import MemberRing
from discovery_nova.overlay.ring import RingRouter
from discovery_nova.overlay.ring import RouteResult

LOG = logging.getLogger(__name__)

SERVICE = 'locate'
STORE = 'locate.store'
MESSAGE_TYPES = (STORE,)
MAX_VERSION = (1 << 63) - 1
#: Largest record value accepted from the network, whatever the options.
MAX_VALUE_BYTES = 65536

_STORE_FIELDS = ('type', 'key', 'value', 'version')
_PAYLOAD_FIELDS = {'put': ('service', 'op', 'value'),
                   'get': ('service', 'op')}


@dataclasses.dataclass(frozen=True, slots=True)
class LocatorParams:
    """How many copies a record has, and how big it may be."""

    #: Copies beyond the one at the responsible node.
    replicas: int = 2
    #: Largest value, in bytes of compact JSON.
    max_value_bytes: int = 4096

    def __post_init__(self):
        if (not isinstance(self.replicas, int) or
                isinstance(self.replicas, bool) or
                not 0 <= self.replicas <= 63):
            raise ValueError('replicas must be an integer from 0 to 63, got '
                             '%r' % (self.replicas,))
        if (not isinstance(self.max_value_bytes, int) or
                not 1 <= self.max_value_bytes <= MAX_VALUE_BYTES):
            raise ValueError('max_value_bytes must be an integer from 1 to '
                             '%d, got %r' % (MAX_VALUE_BYTES,
                                             self.max_value_bytes))


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """The answer of ``get``: the record, or that there is none."""

    key: str
    found: bool
    value: Any
    #: Version the responsible node gave the record (0: not found).
    version: int
    #: The node that answered: the one responsible for the key.
    node: PeerRef
    hops: int
    path: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Stored:
    """The answer of ``put``: where the record went and its version."""

    key: str
    version: int
    node: PeerRef
    hops: int


@dataclasses.dataclass
class LocatorStats:
    """Counters of one node's records."""

    puts_served: int = 0
    gets_served: int = 0
    copies_sent: int = 0
    copies_kept: int = 0
    copies_stale: int = 0
    copies_refused: int = 0
    handed_over: int = 0


def _encoded_size(value: Any) -> int:
    return len(json.dumps(value, separators=(',', ':'),
                          allow_nan=False).encode('utf-8'))


class Locator:
    """One node's share of the record store, and its put/get client."""

    def __init__(self, router: RingRouter,
                 params: LocatorParams | None = None):
        self.router = router
        self.params = params or LocatorParams()
        self.stats = LocatorStats()
        #: key -> (version, value) of every copy this node holds.
        self._records: dict[str, tuple[int, Any]] = {}
        router.register_service(SERVICE, self._serve, self._check_payload)
        router.ring_listeners.append(self._ring_changed)

    # -- client side ---------------------------------------------------------

    def put(self, key: str, value: Any,
            on_done: Callable[[Stored | RoutingFailed], None] | None = None
            ) -> None:
        """Store ``value`` (JSON, at most ``max_value_bytes``) under
        ``key`` at its responsible node and replica set."""
        self._check_value(value, ValueError)

        def done(outcome: RouteResult | RoutingFailed) -> None:
            if on_done is None:
                if isinstance(outcome, RoutingFailed):
                    LOG.warning('Storing a record failed: %(err)s',
                                {'err': outcome})
                return
            on_done(self._stored(outcome))
        self.router.route(key, {'service': SERVICE, 'op': 'put',
                                'value': value}, done)

    def get(self, key: str,
            on_done: Callable[[Located | RoutingFailed], None]) -> None:
        """Look ``key`` up at its responsible node, from any node."""
        self.router.route(key, {'service': SERVICE, 'op': 'get'},
                          lambda outcome: on_done(self._located(outcome)))

    def _stored(self, outcome: RouteResult | RoutingFailed
                ) -> Stored | RoutingFailed:
        if isinstance(outcome, RoutingFailed):
            return outcome
        result = outcome.result
        version = result.get('version')
        if 'error' in result or not _is_version(version) or version < 1:
            return RoutingFailed('storing key %r at %s failed: %s'
                                 % (outcome.key, outcome.node.name,
                                    result.get('error', 'bad answer')))
        return Stored(outcome.key, version, outcome.node, outcome.hops)

    def _located(self, outcome: RouteResult | RoutingFailed
                 ) -> Located | RoutingFailed:
        if isinstance(outcome, RoutingFailed):
            return outcome
        result = outcome.result
        found = result.get('found')
        version = result.get('version', 0)
        if ('error' in result or not isinstance(found, bool) or
                not _is_version(version) or (found and 'value' not in result)):
            return RoutingFailed('looking key %r up at %s failed: %s'
                                 % (outcome.key, outcome.node.name,
                                    result.get('error', 'bad answer')))
        return Located(outcome.key, found, result.get('value'), version,
                       outcome.node, outcome.hops, outcome.path)

    # -- the responsible node's side ------------------------------------------

    def records(self) -> dict[str, tuple[int, Any]]:
        """A copy of ``key -> (version, value)`` held here."""
        return dict(self._records)

    def keys(self) -> list[str]:
        """Keys of the records held here."""
        return list(self._records)

    def _serve(self, key: str, payload: dict[str, Any],
               source: str) -> dict[str, Any]:
        if payload['op'] == 'get':
            self.stats.gets_served += 1
            record = self._records.get(key)
            if record is None:
                return {'found': False, 'version': 0}
            return {'found': True, 'version': record[0],
                    'value': record[1]}
        self.stats.puts_served += 1
        old = self._records.get(key)
        version = (old[0] if old else 0) + 1
        value = payload['value']
        self._records[key] = (version, value)
        me = self.router.me.name
        key_id = self.router.id_of(key)
        for peer in self.router.ring.replica_set(
                key_id, self.params.replicas + 1):
            if peer.name != me:
                self._send_copy(peer.name, key, version, value)
        return {'version': version}

    def _send_copy(self, dest: str, key: str, version: int,
                   value: Any) -> None:
        self.stats.copies_sent += 1
        self.router.endpoint.send(dest, {'type': STORE, 'key': key,
                                         'value': value,
                                         'version': version})

    def _ring_changed(self, old: MemberRing, new: MemberRing) -> None:
        """Move records with responsibility after a membership change."""
        me = self.router.me.name
        count = self.params.replicas + 1
        id_of = self.router.id_of
        for key, (version, value) in list(self._records.items()):
            key_id = id_of(key)
            before = {p.name for p in old.replica_set(key_id, count)}
            after = new.replica_set(key_id, count)
            staying = any(p.name == me for p in after)
            for peer in after:
                if peer.name != me and (not staying or
                                        peer.name not in before):
                    self._send_copy(peer.name, key, version, value)
            if not staying:
                del self._records[key]
                self.stats.handed_over += 1

    def leave(self) -> None:
        """Hand every record to its replica set without us, before a
        graceful leave."""
        ring = self.router.ring.without(self.router.me.name)
        count = self.params.replicas + 1
        for key, (version, value) in self._records.items():
            for peer in ring.replica_set(self.router.id_of(key), count):
                self._send_copy(peer.name, key, version, value)
        self.stats.handed_over += len(self._records)
        self._records.clear()

    # -- network input --------------------------------------------------------

    def handle(self, sender: str, message: dict[str, Any]) -> None:
        """Keep a copy sent by another member (``locate.store``, already
        checked by ``validate_message``)."""
        if message['type'] != STORE:
            raise InvalidMessage('unknown locate message type %r, expected '
                                 '%s' % (str(message['type'])[:40], STORE))
        if sender not in self.router.ring:
            self.stats.copies_refused += 1
            LOG.warning('Refused a record copy from %(peer)s, which is not '
                        'a member', {'peer': sender})
            return
        key, version = message['key'], message['version']
        old = self._records.get(key)
        if old is not None and old[0] >= version:
            self.stats.copies_stale += 1
            return
        self._records[key] = (version, message['value'])
        self.stats.copies_kept += 1

    def validate_message(self, message: Any) -> None:
        """Check every field of a ``locate.*`` message from the network;
        raises InvalidMessage naming the first bad one."""
        if not isinstance(message, dict):
            raise InvalidMessage('a locate message must be a JSON object, '
                                 'got %s' % type(message).__name__)
        if message.get('type') != STORE:
            raise InvalidMessage('field %r must be %s, got %r'
                                 % ('type', STORE,
                                    str(message.get('type'))[:40]))
        _exact_fields(STORE, message, _STORE_FIELDS)
        key = message['key']
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
            raise InvalidMessage('%s: field %r must be a non-empty string of '
                                 'at most %d characters' % (STORE, 'key',
                                                            MAX_KEY))
        version = message['version']
        if not _is_version(version) or version < 1:
            raise InvalidMessage('%s: field %r must be an integer from 1 to '
                                 '%d, got %r' % (STORE, 'version',
                                                 MAX_VERSION, version))
        self._check_value(message['value'], InvalidMessage,
                          '%s: field %r' % (STORE, 'value'))

    def _check_payload(self, payload: dict[str, Any]) -> None:
        op = payload.get('op')
        if op not in _PAYLOAD_FIELDS:
            raise InvalidMessage('ring.route: field %r must be one of %s, '
                                 'got %r' % ('payload.op', ', '.join(
                                     sorted(_PAYLOAD_FIELDS)),
                                     str(op)[:40]))
        _exact_fields('ring.route payload', payload, _PAYLOAD_FIELDS[op])
        if op == 'put':
            self._check_value(payload['value'], InvalidMessage,
                              'ring.route: field %r' % 'payload.value')

    def _check_value(self, value: Any, error: type[Exception],
                     what: str = 'a record value') -> None:
        limit = self.params.max_value_bytes
        try:
            size = _encoded_size(value)
        except (TypeError, ValueError) as exc:
            raise error('%s must be JSON (strings, numbers, lists, objects)'
                        ': %s' % (what, exc)) from None
        if size > limit:
            raise error('%s must be at most %d bytes of JSON, got %d'
                        % (what, limit, size))


def _is_version(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and
            0 <= value <= MAX_VERSION)


def _exact_fields(kind: str, message: dict[str, Any],
                  expected: tuple[str, ...]) -> None:
    for field in expected:
        if field not in message:
            raise InvalidMessage('%s: field %r is missing (it carries %s)'
                                 % (kind, field, ', '.join(expected)))
    extra = sorted(set(message) - set(expected), key=str)
    if extra:
        raise InvalidMessage('%s: unexpected field %r (it carries only %s)'
                             % (kind, str(extra[0])[:40],
                                ', '.join(expected)))
