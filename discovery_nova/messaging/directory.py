"""The topic directory: which peers serve which exchange, topic and server.

There is no registry server. Every peer holds a full replica of the
directory: one record per live peer, naming its address and its
subscriptions. A peer refreshes its own record (a higher ``ver``) every
heartbeat and sends its neighbours the records that changed since it last
wrote to them, so records flood the connection graph; a record that stops
advancing for ``ttl`` seconds expires, which is how a crashed peer's
registrations disappear. The crash of any one peer loses nobody else's
registration because nobody else's record lives only there.

Full replication costs O(peers) memory and gossip per peer; that is fine
for the hundreds of service processes of one PoP's deployment and is the
honest limit of this first version (placing entries on the overlay's ring
is the way past it).

The class is pure state, no I/O, driven by the mesh in the asyncio thread.
"""

import dataclasses
import time
import typing

from discovery_nova.overlay import errors

# A subscription key: (kind, exchange, topic, qualifier). ``kind`` is
# ``rpc`` (qualifier: server name or '' for the shared topic) or ``notify``
# (qualifier: pool name or '' for the default pool).
Key = tuple[str, str, str, str]
KINDS = ('rpc', 'notify')
MAX_SUBSCRIPTIONS = 100000
MAX_FIELD = 1024


@dataclasses.dataclass
class _Entry:
    node: str
    address: str
    ver: int
    subs: frozenset
    gone: bool
    seen: float
    seq: int


def parse_key(value: typing.Any) -> Key:
    if (not isinstance(value, list) or len(value) != 4 or
            not all(isinstance(v, str) and len(v) <= MAX_FIELD
                    for v in value) or value[0] not in KINDS):
        raise errors.InvalidMessage(
            'a subscription is [kind, exchange, topic, qualifier] with kind '
            'in %s and strings of at most %d characters, got %.200r'
            % (KINDS, MAX_FIELD, value))
    return (value[0], value[1], value[2], value[3])


def parse_record(value: typing.Any) -> tuple[str, str, int, frozenset, bool]:
    """Validate one record from the network; raise ``InvalidMessage``."""
    if not isinstance(value, dict):
        raise errors.InvalidMessage(
            'a directory record is an object, got %.200r' % (value,))
    node = value.get('node')
    address = value.get('addr')
    ver = value.get('ver')
    subs = value.get('subs')
    gone = value.get('gone', False)
    if not isinstance(node, str) or not node or len(node) > MAX_FIELD:
        raise errors.InvalidMessage(
            'a directory record needs a non-empty "node" string, got %.200r'
            % (node,))
    if not isinstance(address, str) or len(address) > MAX_FIELD:
        raise errors.InvalidMessage(
            'directory record of %s: "addr" must be "host:port", got %.200r'
            % (node, address))
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 0:
        raise errors.InvalidMessage(
            'directory record of %s: "ver" must be a non-negative integer, '
            'got %.200r' % (node, ver))
    if not isinstance(subs, list) or len(subs) > MAX_SUBSCRIPTIONS:
        raise errors.InvalidMessage(
            'directory record of %s: "subs" must be a list of at most %d '
            'subscriptions' % (node, MAX_SUBSCRIPTIONS))
    if not isinstance(gone, bool):
        raise errors.InvalidMessage(
            'directory record of %s: "gone" must be a boolean' % node)
    return node, address, ver, frozenset(parse_key(s) for s in subs), gone


class TopicDirectory:
    """A peer's replica of the deployment's directory."""

    def __init__(self, me: str, address: str, ttl: float,
                 clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.me = me
        self._ttl = ttl
        self._clock = clock
        self._seq = 0
        self._entries: dict[str, _Entry] = {}
        self._index: dict[Key, set[str]] = {}
        self._qualifiers: dict[tuple[str, str, str], set[str]] = {}
        self._entries[me] = _Entry(me, address, 0, frozenset(), False,
                                   clock(), self._next_seq())
        self._rebuild()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def seq(self) -> int:
        return self._seq

    def _rebuild(self) -> None:
        index: dict[Key, set[str]] = {}
        for entry in self._entries.values():
            if entry.gone:
                continue
            for key in entry.subs:
                index.setdefault(key, set()).add(entry.node)
        self._index = index
        qualifiers: dict[tuple[str, str, str], set[str]] = {}
        for key in index:
            qualifiers.setdefault(key[:3], set()).add(key[3])
        self._qualifiers = qualifiers

    def refresh_self(self, subs: typing.Iterable[Key] | None = None,
                     gone: bool = False) -> None:
        """Advance this peer's own record; change its subscriptions."""
        entry = self._entries[self.me]
        entry.ver += 1
        entry.seen = self._clock()
        entry.seq = self._next_seq()
        entry.gone = gone
        if subs is not None:
            new = frozenset(subs)
            if new != entry.subs:
                entry.subs = new
                self._rebuild()
        if gone:
            self._rebuild()

    def merge(self, records: typing.Iterable[typing.Any]) -> bool:
        """Take newer records; return whether any subscription changed.

        Raises ``InvalidMessage`` on the first malformed record; records
        before it are kept, which is harmless since each stands alone.
        """
        changed = False
        now = self._clock()
        for value in records:
            node, address, ver, subs, gone = parse_record(value)
            if node == self.me:
                continue
            entry = self._entries.get(node)
            if entry is not None and entry.ver >= ver:
                continue
            if entry is None:
                entry = _Entry(node, address, ver, subs, gone, now,
                               self._next_seq())
                self._entries[node] = entry
                changed = changed or bool(subs) and not gone
            else:
                if entry.subs != subs or entry.gone != gone:
                    changed = True
                entry.address = address
                entry.ver = ver
                entry.subs = subs
                entry.gone = gone
                entry.seen = now
                entry.seq = self._next_seq()
        if changed:
            self._rebuild()
        return changed

    def expire(self) -> list[str]:
        """Drop records not refreshed within the TTL; return their nodes."""
        limit = self._clock() - self._ttl
        dead = [name for name, entry in self._entries.items()
                if name != self.me and entry.seen < limit]
        for name in dead:
            del self._entries[name]
        if dead:
            self._rebuild()
        return dead

    def changes_since(self, seq: int) -> list[dict]:
        """Records stored or refreshed after local sequence ``seq``."""
        return [self._to_wire(e) for e in self._entries.values()
                if e.seq > seq]

    @staticmethod
    def _to_wire(entry: _Entry) -> dict:
        return {'node': entry.node, 'addr': entry.address, 'ver': entry.ver,
                'subs': [list(k) for k in sorted(entry.subs)],
                'gone': entry.gone}

    def nodes_for(self, key: Key) -> list[str]:
        """Live peers subscribed to ``key``, most recently refreshed first.

        A restarted server briefly has two records (the dead incarnation's
        until it expires); freshest first puts the live one ahead.
        """
        nodes = self._index.get(key, ())
        return sorted(nodes, key=lambda n: -self._entries[n].seen)

    def qualifiers(self, kind: str, exchange: str, topic: str) -> set[str]:
        """Servers (``rpc``) or pools (``notify``) seen on one topic."""
        return self._qualifiers.get((kind, exchange, topic), set())

    def address_of(self, node: str) -> str | None:
        entry = self._entries.get(node)
        return entry.address if entry is not None else None

    def live_nodes(self) -> list[str]:
        return [n for n, e in self._entries.items()
                if not e.gone and n != self.me]

    def __len__(self) -> int:
        return len(self._entries)
