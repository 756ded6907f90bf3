"""The topic directory: which peers serve which exchange, topic and server.

There is no registry server. Every peer holds a replica of the directory:
one record per peer, naming its address and its subscriptions, numbered by
its owner (``ver``). A record travels only when it changes: a peer that
subscribes, unsubscribes, joins or leaves advances its own record, and the
mesh floods the new version over its connections (each peer forwards a
record the first time it stores it). Nothing is refreshed periodically, so
a quiet deployment exchanges no records at all, whatever its size.

Liveness is not proven by refreshing either. The peers are placed on a
hash ring of their names, and each peer watches its ``watch`` successors on
it (``watch_targets``): the mesh keeps links to them and hears a keepalive
on each link every heartbeat. A watcher that hears nothing from a target
for ``registration_ttl`` declares it dead: it marks the target's record
*gone* at the target's own version (``declare_dead``), and that tombstone
floods like any change. A tombstone beats a live record of the same
version; a live peer that hears its own death (a false suspicion) refutes
it with a higher version (the scheme of SWIM's incarnation numbers), which
floods in turn. So a crashed peer's registrations vanish everywhere about
``registration_ttl`` after its crash, each peer's steady cost is a
keepalive per connection, and the crash of any one peer loses nobody
else's registration, since nobody else's record lives only there.

Missed floods (a link that was down, a frame lost with its connection) are
repaired by anti-entropy: keepalives carry a ``digest`` of the live
records, and two neighbours whose digests keep differing exchange their
whole directories once. Tombstones are kept for ``tombstone_hold`` seconds
so that such an exchange cannot bring a dead peer back; should one still
come back (a tombstone dropped before a late copy arrived), its watchers
declare it dead again.

The class is pure state, no I/O, driven by the mesh in the asyncio thread.
"""

import bisect
import dataclasses
import hashlib
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


def ring_point(name: str) -> int:
    """Where peer ``name`` sits on the ring (64 bits of its SHA-1)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], 'big')


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


def _supersedes(ver: int, gone: bool, entry: _Entry) -> bool:
    """Whether (ver, gone) is newer than ``entry``: a higher version, or
    the same version declared dead."""
    return ver > entry.ver or (ver == entry.ver and gone and not entry.gone)


class TopicDirectory:
    """A peer's replica of the deployment's directory."""

    def __init__(self, me: str, address: str, tombstone_hold: float,
                 clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.me = me
        self._hold = tombstone_hold
        self._clock = clock
        self._seq = 0
        #: When a record was last stored or changed here (clock time).
        self.changed_at = clock()
        self._entries: dict[str, _Entry] = {}
        self._index: dict[Key, set[str]] = {}
        self._qualifiers: dict[tuple[str, str, str], set[str]] = {}
        self._ring: list[tuple[int, str]] | None = None
        #: How often this peer refuted a tombstone of its own record.
        self.refutations = 0
        self._digest: tuple[int, str] | None = None
        self._entries[me] = _Entry(me, address, 0, frozenset(), False,
                                   clock(), self._next_seq())
        self._rebuild()

    def _next_seq(self) -> int:
        self._seq += 1
        self._digest = None
        self.changed_at = self._clock()
        return self._seq

    @property
    def seq(self) -> int:
        """Local number of the last change: records stored after a mark
        are ``changes_since(mark)``."""
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
        self._ring = None

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

    def merge(self, records: typing.Iterable[typing.Any]) -> bool:
        """Take newer records; return whether any subscription changed.

        Records stored advance ``seq`` (the mesh forwards them from
        there). A tombstone of this peer's own record at its current
        version is refuted by a higher version. Raises ``InvalidMessage``
        on the first malformed record; records before it are kept, which is
        harmless since each stands alone.
        """
        changed = False
        now = self._clock()
        for value in records:
            node, address, ver, subs, gone = parse_record(value)
            if node == self.me:
                mine = self._entries[node]
                if gone and ver >= mine.ver and not mine.gone:
                    # Somebody took us for dead: outnumber the tombstone.
                    mine.ver = ver + 1
                    mine.seq = self._next_seq()
                    self.refutations += 1
                continue
            entry = self._entries.get(node)
            if entry is None:
                entry = _Entry(node, address, ver, subs, gone, now,
                               self._next_seq())
                self._entries[node] = entry
                changed = changed or bool(subs) and not gone
                self._ring = None
            elif _supersedes(ver, gone, entry):
                if entry.subs != subs or entry.gone != gone:
                    changed = True
                if entry.gone != gone:
                    self._ring = None
                if entry.gone and not gone:
                    # Back from the dead under a newer version.
                    entry.seen = now
                entry.address = address
                entry.ver = ver
                entry.subs = subs
                entry.gone = gone
                entry.seq = self._next_seq()
                if gone:
                    entry.seen = now
        if changed:
            self._rebuild()
        return changed

    def declare_dead(self, node: str) -> bool:
        """Mark ``node``'s record gone at its version: a watcher heard
        nothing from it for the TTL. Returns whether it was live."""
        entry = self._entries.get(node)
        if node == self.me or entry is None or entry.gone:
            return False
        entry.gone = True
        entry.seen = self._clock()
        entry.seq = self._next_seq()
        self._rebuild()
        return True

    def expire(self) -> list[str]:
        """Drop tombstones older than the hold; return their nodes."""
        limit = self._clock() - self._hold
        dead = [name for name, entry in self._entries.items()
                if name != self.me and entry.gone and entry.seen < limit]
        for name in dead:
            del self._entries[name]
        return dead

    def changes_since(self, seq: int) -> list[dict]:
        """Records stored or changed after local sequence ``seq``."""
        return [self._to_wire(e) for e in self._entries.values()
                if e.seq > seq]

    def all_records(self) -> list[dict]:
        """Every record held, tombstones included (anti-entropy)."""
        return [self._to_wire(e) for e in self._entries.values()]

    @staticmethod
    def _to_wire(entry: _Entry) -> dict:
        return {'node': entry.node, 'addr': entry.address, 'ver': entry.ver,
                'subs': [list(k) for k in sorted(entry.subs)],
                'gone': entry.gone}

    def digest(self) -> tuple[int, str]:
        """(count, hash) of the live records' (node, version) pairs.

        Two replicas with the same live records have the same digest;
        tombstones are left out, since replicas drop them at different
        times.
        """
        if self._digest is None:
            acc = 0
            count = 0
            for entry in self._entries.values():
                if entry.gone:
                    continue
                count += 1
                acc ^= int.from_bytes(hashlib.blake2b(
                    b'%s|%d' % (entry.node.encode(), entry.ver),
                    digest_size=8).digest(), 'big')
            self._digest = (count, '%016x' % acc)
        return self._digest

    def _live_ring(self) -> list[tuple[int, str]]:
        if self._ring is None:
            self._ring = sorted((ring_point(e.node), e.node)
                                for e in self._entries.values()
                                if not e.gone)
        return self._ring

    def watch_targets(self, count: int) -> list[str]:
        """The ``count`` live successors of this peer on the ring."""
        return self._around(count, 1)

    def watchers(self, count: int) -> list[str]:
        """The ``count`` live predecessors: the peers watching this one."""
        return self._around(count, -1)

    def _around(self, count: int, step: int) -> list[str]:
        ring = self._live_ring()
        if len(ring) <= 1:
            return []
        mine = bisect.bisect_left(ring, (ring_point(self.me), self.me))
        found = []
        for i in range(1, min(count, len(ring) - 1) + 1):
            found.append(ring[(mine + step * i) % len(ring)][1])
        return found

    def nodes_for(self, key: Key) -> list[str]:
        """Live peers subscribed to ``key``, most recently joined first.

        A restarted server briefly has two records (the dead incarnation's
        until its watchers declare it dead); newest first puts the live one
        ahead.
        """
        nodes = self._index.get(key, ())
        return sorted(nodes, key=lambda n: -self._entries[n].seen)

    def qualifiers(self, kind: str, exchange: str, topic: str) -> set[str]:
        """Servers (``rpc``) or pools (``notify``) seen on one topic."""
        return self._qualifiers.get((kind, exchange, topic), set())

    def address_of(self, node: str) -> str | None:
        entry = self._entries.get(node)
        return entry.address if entry is not None else None

    def is_live(self, node: str) -> bool:
        entry = self._entries.get(node)
        return entry is not None and not entry.gone

    def live_nodes(self) -> list[str]:
        return [n for n, e in self._entries.items()
                if not e.gone and n != self.me]

    def __len__(self) -> int:
        return len(self._entries)
