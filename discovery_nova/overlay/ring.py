"""Ring routing that learns its long links from the requests it carries.

Every node and every key gets a 64-bit identifier on a ring: the first
eight bytes of the SHA-256 of its name (``ring_id``). The node responsible
for a key is the key's successor, the first node at or after it clockwise,
so responsibility partitions the ring between the members.

What a node knows:

* from membership (every agent hears every join and leave), its
  predecessor and a list of ``ring_successors`` successors; with them alone
  a request can always make progress, one successor at a time;
* a few random members picked when it joins (``join_peers``);
* *learned shortcuts*: peers kept in buckets by ``floor(log2(d))`` of their
  clockwise distance ``d``, at most ``ring_bucket_size`` per bucket, so the
  table covers every scale of distance the way Chord's fingers do, but
  filled without any maintenance traffic.

A routed request travels greedily: each node forwards it to the known node
that most closely precedes the key, until a node whose successor list shows
the key's successor hands it to that node, the responsible one. The request
carries its path; every node on it keeps the nodes before it, the source
keeps every node of the path and the responsible node from the reply, and
each per-hop acknowledgement names where the acknowledging node sent the
request next, so each node on the path also learns the node two hops
ahead. The last rule matters most on large rings: a node near the end of
many paths learns nodes close to it, the short range that its own lookups,
landing anywhere on the ring, teach slowest. Hops fall from linear
(successors only) towards ``0.5 * log2(N)`` as traffic flows. A lookup
costs two messages per hop (the request and its acknowledgement) and one
answer.

Buckets keep the peers they hold (a peer that answered stays until it stops
answering, as in Kademlia); a forward that is not acknowledged within
``hop_timeout`` evicts the peer, marks it suspect for ``suspect_time`` and
sends the request on by the next best route, skipping a dead successor to
the next live one, which holds the dead node's keys once membership drops
it. The source bounds every attempt by ``request_timeout`` and retries
``attempts`` times, so a dead peer never makes a lookup hang. A node
answering for a key on behalf of a dead successor (``final`` requests) is
what lets a crashed node's keys be served before membership notices.

The class is sans-IO: it sends through an ``Endpoint`` and keeps time with
its clock, so the agent and the simulator run the very same code.
"""

import bisect
import collections
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
import dataclasses
import functools
import hashlib
import itertools
import random
from typing import Any

from oslo_log import log as logging

from discovery_nova.overlay.bounds import check_integers
from discovery_nova.overlay.bounds import check_seconds
from discovery_nova.overlay.endpoint import Endpoint
from discovery_nova.overlay.endpoint import TimerHandle
from discovery_nova.overlay.envelope import check_envelope
from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import RoutingFailed
from discovery_nova.overlay.peer import PeerRef

LOG = logging.getLogger(__name__)

RING_BITS = 64
RING_SIZE = 1 << RING_BITS
_MASK = RING_SIZE - 1

ROUTE = 'ring.route'
ACK = 'ring.ack'
REPLY = 'ring.reply'
FAIL = 'ring.fail'
MESSAGE_TYPES = (ROUTE, ACK, REPLY, FAIL)

#: Protocol bounds that hold whatever the local options say, so that a
#: peer cannot make us store or walk an unbounded list.
MAX_NAME = 255
MAX_KEY = 1024
MAX_REQUEST_ID = 300
MAX_HOPS = 65536
MAX_PATH = MAX_HOPS + 1
MAX_REASON = 512
MAX_HOP_ID = (1 << 63) - 1

_FIELDS = {
    ROUTE: ('type', 'rid', 'key', 'src', 'path', 'final', 'hop',
            'payload'),
    ACK: ('type', 'hop', 'next'),
    REPLY: ('type', 'rid', 'key', 'path', 'result'),
    FAIL: ('type', 'rid', 'key', 'path', 'reason'),
}

IdFunction = Callable[[str], int]


@functools.lru_cache(maxsize=1 << 16)
def ring_id(name: str) -> int:
    """The 64-bit ring identifier of a node name or an object key.

    Cached: every node on a request's path needs the key's identifier, and
    a simulated ring asks for the same few thousand names all the time.
    """
    digest = hashlib.sha256(name.encode('utf-8')).digest()
    return int.from_bytes(digest[:8], 'big')


def clockwise(start: int, end: int) -> int:
    """Distance from ``start`` to ``end`` going clockwise on the ring."""
    return (end - start) & _MASK


def bucket_index(distance: int) -> int:
    """Bucket of a peer at clockwise ``distance``: ``floor(log2(d))``.

    Bucket ``i`` holds distances in ``[2**i, 2**(i + 1))``; a distance of
    zero (the node itself) has no bucket.
    """
    if not 0 < distance < RING_SIZE:
        raise ValueError('a clockwise distance is from 1 to 2**%d - 1, got '
                         '%r' % (RING_BITS, distance))
    return distance.bit_length() - 1


class MemberRing:
    """An immutable snapshot of the members, sorted by ring identifier.

    Immutable so that one snapshot can be shared: the simulator hands the
    same one to ten thousand routers; an agent builds a new one per
    membership change. Two names with the same identifier (a 2**-64
    accident, or a test's hand-made identifiers) cannot both be on the
    ring: the smaller name stays, on every node alike.
    """

    __slots__ = ('id_of', '_ids', '_peers', '_index', 'id_by_name')

    def __init__(self, peers: Iterable[PeerRef] = (),
                 id_of: IdFunction = ring_id):
        self.id_of = id_of
        by_id: dict[int, PeerRef] = {}
        for peer in peers:
            ident = id_of(peer.name)
            if not 0 <= ident < RING_SIZE:
                raise ValueError('ring identifier of %r is %r, expected an '
                                 'integer from 0 to 2**%d - 1'
                                 % (peer.name, ident, RING_BITS))
            other = by_id.get(ident)
            if other is not None and other.name != peer.name:
                LOG.warning('Members %(a)s and %(b)s share ring identifier '
                            '%(id)x; only %(keep)s is placed on the ring',
                            {'a': other.name, 'b': peer.name, 'id': ident,
                             'keep': min(other.name, peer.name)})
                if other.name < peer.name:
                    continue
            by_id[ident] = peer
        ids = sorted(by_id)
        self._set(ids, [by_id[i] for i in ids])

    def _set(self, ids: list[int], peers: list[PeerRef]) -> None:
        self._ids = ids
        self._peers = peers
        self._index = {peer.name: i for i, peer in enumerate(peers)}
        #: Ring identifier of each member, by name.
        self.id_by_name = {peer.name: ident
                           for ident, peer in zip(ids, peers, strict=True)}

    @classmethod
    def _from_sorted(cls, ids: list[int], peers: list[PeerRef],
                     id_of: IdFunction) -> 'MemberRing':
        ring = cls.__new__(cls)
        ring.id_of = id_of
        ring._set(ids, peers)
        return ring

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[PeerRef]:
        return iter(self._peers)

    def peer(self, name: str) -> PeerRef | None:
        i = self._index.get(name)
        return None if i is None else self._peers[i]

    def ident(self, name: str) -> int | None:
        """Ring identifier of member ``name``, None when not a member."""
        return self.id_by_name.get(name)

    def responsible(self, key_id: int) -> PeerRef:
        """The member responsible for ``key_id``: its successor."""
        if not self._ids:
            raise LookupError('the ring has no members')
        i = bisect.bisect_left(self._ids, key_id)
        return self._peers[i % len(self._ids)]

    def replica_set(self, key_id: int, count: int) -> list[PeerRef]:
        """The responsible member of ``key_id`` and its successors,
        ``count`` distinct members at most."""
        n = len(self._ids)
        if not n:
            return []
        start = bisect.bisect_left(self._ids, key_id)
        return [self._peers[(start + j) % n] for j in range(min(count, n))]

    def successors_of(self, name: str, count: int) -> list[PeerRef]:
        """The ``count`` members after member ``name``, nearest first."""
        i = self._index[name]
        n = len(self._ids)
        return [self._peers[(i + j) % n]
                for j in range(1, min(count, n - 1) + 1)]

    def predecessor_of(self, name: str) -> PeerRef | None:
        """The member before ``name``; None when ``name`` is alone."""
        i = self._index[name]
        if len(self._ids) < 2:
            return None
        return self._peers[i - 1]

    def sample(self, rng: random.Random, count: int,
               exclude: str) -> list[PeerRef]:
        """Up to ``count`` distinct random members other than ``exclude``."""
        others = len(self._peers) - (1 if exclude in self._index else 0)
        count = min(count, others)
        if count <= 0:
            return []
        chosen: list[PeerRef] = []
        for i in rng.sample(range(len(self._peers)),
                            min(count + 1, len(self._peers))):
            if self._peers[i].name != exclude:
                chosen.append(self._peers[i])
            if len(chosen) == count:
                break
        return chosen

    def with_peer(self, peer: PeerRef) -> 'MemberRing':
        """A snapshot with ``peer`` added (or its address updated)."""
        ident = self.id_of(peer.name)
        if not 0 <= ident < RING_SIZE:
            raise ValueError('ring identifier of %r is %r, expected an '
                             'integer from 0 to 2**%d - 1'
                             % (peer.name, ident, RING_BITS))
        ids, peers = list(self._ids), list(self._peers)
        i = bisect.bisect_left(ids, ident)
        if i < len(ids) and ids[i] == ident:
            if peers[i].name != peer.name and peers[i].name < peer.name:
                LOG.warning('Member %(b)s shares ring identifier %(id)x '
                            'with %(a)s and is left off the ring',
                            {'a': peers[i].name, 'b': peer.name,
                             'id': ident})
                return self
            peers[i] = peer
        else:
            ids.insert(i, ident)
            peers.insert(i, peer)
        return MemberRing._from_sorted(ids, peers, self.id_of)

    def without(self, name: str) -> 'MemberRing':
        """A snapshot with member ``name`` removed."""
        i = self._index.get(name)
        if i is None:
            return self
        return MemberRing._from_sorted(self._ids[:i] + self._ids[i + 1:],
                                       self._peers[:i] + self._peers[i + 1:],
                                       self.id_of)


@dataclasses.dataclass(frozen=True, slots=True)
class RingParams:
    """Tuning of ring routing; the first four mirror ``ring_successors``,
    ``ring_bucket_size``, ``ring_max_hops`` and ``request_timeout`` of
    ``[discovery_overlay]``."""

    ring_successors: int = 4
    ring_bucket_size: int = 2
    ring_max_hops: int = 256
    #: Seconds the source waits for the answer of one attempt.
    request_timeout: float = 5.0
    #: Seconds a node waits for the next hop's acknowledgement before it
    #: evicts that peer and forwards by another route.
    hop_timeout: float = 1.0
    #: Attempts the source makes before reporting RoutingFailed.
    attempts: int = 2
    #: Unacknowledged forwards one node tolerates per request.
    hop_retries: int = 4
    #: Random members a node offers its table when it joins (a bucket
    #: that is already full keeps what it has).
    join_peers: int = 4
    #: Seconds a peer that missed an acknowledgement is not used.
    suspect_time: float = 60.0
    #: Whether nodes learn shortcuts from the requests they carry.
    learning: bool = True

    def __post_init__(self):
        bounds = (('ring_successors', 1, 64), ('ring_bucket_size', 1, 64),
                  ('ring_max_hops', 1, MAX_HOPS), ('attempts', 1, 100),
                  ('hop_retries', 0, 1000), ('join_peers', 0, 1024))
        check_integers(self, bounds)
        check_seconds(self, ('request_timeout', 'hop_timeout',
                             'suspect_time'))

    @classmethod
    def from_options(cls, options: Any, **overrides) -> 'RingParams':
        """Parameters from an option group such as
        ``conf.discovery_overlay``; ``hop_timeout`` is a quarter of
        ``request_timeout``. Keyword arguments override."""
        values = {
            'ring_successors': options.ring_successors,
            'ring_bucket_size': options.ring_bucket_size,
            'ring_max_hops': options.ring_max_hops,
            'request_timeout': options.request_timeout,
            'hop_timeout': options.request_timeout / 4.0,
        }
        values.update(overrides)
        return cls(**values)


@dataclasses.dataclass(frozen=True, slots=True)
class RouteResult:
    """Where a routed request arrived and how."""

    key: str
    #: The node responsible for the key, which answered.
    node: PeerRef
    #: Forwards from the source to ``node`` (0: the source itself).
    hops: int
    #: Names of the nodes the request visited, source first, ``node`` last.
    path: tuple[str, ...]
    #: What the service named in the payload answered (empty without one).
    result: dict[str, Any]
    #: Seconds from ``route`` to the answer, on the source's clock.
    latency: float
    #: Attempts the source made (1 unless one timed out).
    attempts: int


RouteCallback = Callable[[RouteResult | RoutingFailed], None]
#: ``handler(key, payload, source_name) -> result dict``, run by the node
#: responsible for the key.
ServiceHandler = Callable[[str, dict[str, Any], str], dict[str, Any]]
#: Raises InvalidMessage when a service's payload from the network is bad.
PayloadValidator = Callable[[dict[str, Any]], None]
NeighboursCallback = Callable[[tuple[PeerRef, ...], tuple[PeerRef, ...]],
                              None]
RingListener = Callable[[MemberRing, MemberRing], None]


@dataclasses.dataclass
class RingStats:
    """Counters of one node's routing activity."""

    lookups_started: int = 0
    lookups_done: int = 0
    lookups_failed: int = 0
    attempts_retried: int = 0
    requests_handled: int = 0
    delivered: int = 0
    forwarded: int = 0
    hop_timeouts: int = 0
    failures_reported: int = 0
    late_messages: int = 0
    inconsistent_messages: int = 0
    learned: int = 0
    evicted: int = 0


class _Lookup:
    """A lookup this node started, waiting for its answer."""

    __slots__ = ('key', 'payload', 'on_done', 'started', 'attempts', 'rid',
                 'timer')

    def __init__(self, key: str, payload: dict[str, Any],
                 on_done: RouteCallback, started: float):
        self.key = key
        self.payload = payload
        self.on_done = on_done
        self.started = started
        self.attempts = 0
        self.rid = ''
        self.timer: TimerHandle | None = None


class _Hop:
    """A forward waiting for the next hop's acknowledgement."""

    __slots__ = ('message', 'target', 'key_id', 'retries')

    def __init__(self, message: dict[str, Any], target: str, key_id: int,
                 retries: int):
        self.message = message
        self.target = target
        self.key_id = key_id
        self.retries = retries


class RingRouter:
    """One node's ring routing: its table, its requests, its answers.

    ``handle`` takes ``ring.*`` messages that ``validate_message`` passed
    (the agent checks every frame; the simulator's messages come from this
    very class). ``set_members``, ``add_member`` and ``remove_member`` are
    fed by membership.
    """

    def __init__(self, endpoint: Endpoint, me: PeerRef,
                 params: RingParams | None = None, *,
                 rng: random.Random | None = None,
                 id_of: IdFunction = ring_id):
        self.endpoint = endpoint
        self.me = me
        self.params = params or RingParams()
        self.id_of = id_of
        self.ident = id_of(me.name)
        self.learning = self.params.learning
        self.stats = RingStats()
        #: Called as ``(old, new)`` successor lists when the list changes.
        self.on_neighbours_changed: NeighboursCallback | None = None
        #: Called as ``(old, new)`` member snapshots on every change.
        self.ring_listeners: list[RingListener] = []
        self._rng = rng or random.Random()
        self._ring = MemberRing([me], id_of)
        self._successors: tuple[PeerRef, ...] = ()
        #: (clockwise distance, name) of each successor, nearest first.
        self._succ: list[tuple[int, str]] = []
        self._predecessor: PeerRef | None = None
        #: Clockwise distance from the predecessor to us: the span of keys
        #: we answer for. The whole ring when we are alone.
        self._span = RING_SIZE
        #: bucket index -> [(clockwise distance, name)] learned shortcuts.
        self._buckets: dict[int, list[tuple[int, str]]] = {}
        self._where: dict[str, int] = {}
        self._suspects: dict[str, float] = {}
        self._services: dict[str, tuple[ServiceHandler,
                                        PayloadValidator | None]] = {}
        self._lookups: dict[str, _Lookup] = {}
        self._hops: dict[int, _Hop] = {}
        #: (deadline, hop id) of forwards in the order they were sent, so
        #: in deadline order: one timer at a time watches them all.
        self._hop_deadlines: collections.deque[tuple[float, int]] = (
            collections.deque())
        self._hop_timer: TimerHandle | None = None
        self._seq = itertools.count(1)
        self._joined = False
        self._handlers = {ROUTE: self._on_route, ACK: self._on_ack,
                          REPLY: self._on_reply, FAIL: self._on_fail}

    # -- membership ----------------------------------------------------------

    @property
    def ring(self) -> MemberRing:
        return self._ring

    @property
    def successors(self) -> tuple[PeerRef, ...]:
        return self._successors

    @property
    def predecessor(self) -> PeerRef | None:
        return self._predecessor

    def set_members(self, members: Iterable[PeerRef] | MemberRing) -> None:
        """Take the whole member list (we are added if missing).

        The first call is the join: ``join_peers`` random members are kept
        as the first shortcuts, as a newcomer gets a few contacts.
        """
        if isinstance(members, MemberRing):
            ring = members
            if ring.id_of is not self.id_of:
                raise ValueError('the member ring uses another identifier '
                                 'function than this router')
        else:
            ring = MemberRing(members, self.id_of)
        if ring.peer(self.me.name) != self.me:
            ring = ring.with_peer(self.me)
        self._install(ring)
        if not self._joined:
            self._joined = True
            for peer in ring.sample(self._rng, self.params.join_peers,
                                    self.me.name):
                self._learn(peer.name, force=True)

    def add_member(self, peer: PeerRef) -> None:
        """A member joined (or changed its address)."""
        if self._ring.peer(peer.name) == peer:
            return
        self._install(self._ring.with_peer(peer))

    def remove_member(self, name: str) -> None:
        """A member left or was declared dead by membership."""
        if name == self.me.name or name not in self._ring:
            return
        self._install(self._ring.without(name))

    def _install(self, ring: MemberRing) -> None:
        old = self._ring
        if ring is old:
            return
        self._ring = ring
        name = self.me.name
        me = self.ident
        if name in ring:
            successors = tuple(ring.successors_of(
                name, self.params.ring_successors))
            pred = ring.predecessor_of(name)
            self._span = (RING_SIZE if pred is None else
                          (me - ring.ident(pred.name)) & _MASK)
        else:
            # Another member holds our identifier and stays on the ring
            # in our place: we answer for no key and pass every request
            # on to the members from our identifier onwards.
            LOG.error('Ring identifier %(id)x of %(me)s is held by another '
                      'member; this node is left off the ring',
                      {'id': me, 'me': name})
            successors = tuple(ring.replica_set(
                me, self.params.ring_successors))
            pred = None
            self._span = 0
        self._succ = [((ring.ident(p.name) - me) & _MASK, p.name)
                      for p in successors]
        self._predecessor = pred
        for gone in [n for n in self._where if n not in ring]:
            self._evict(gone)
        for gone in [n for n in self._suspects if n not in ring]:
            del self._suspects[gone]
        old_successors = self._successors
        self._successors = successors
        if successors != old_successors and self.on_neighbours_changed:
            try:
                self.on_neighbours_changed(old_successors, successors)
            except Exception:
                LOG.exception('Ring neighbour-change callback of %(me)s '
                              'failed', {'me': name})
        for listener in list(self.ring_listeners):
            try:
                listener(old, ring)
            except Exception:
                LOG.exception('Ring listener %(l)r of %(me)s failed',
                              {'l': listener, 'me': name})

    # -- the table ------------------------------------------------------------

    def is_responsible(self, key_id: int) -> bool:
        """Whether ``key_id`` falls between our predecessor and us."""
        span = self._span
        if span == RING_SIZE:
            return True
        return 0 < (key_id - self.ident + span) & _MASK <= span

    def known_peers(self) -> dict[int, list[str]]:
        """Learned shortcuts per bucket index, for status and tests."""
        return {i: [name for _, name in bucket]
                for i, bucket in sorted(self._buckets.items()) if bucket}

    def learned_count(self) -> int:
        return len(self._where)

    def learn(self, name: str) -> bool:
        """Consider member ``name`` as a shortcut; True when it was kept."""
        return self._learn(name, force=True)

    def _learn(self, name: str, force: bool = False) -> bool:
        if not (self.learning or force) or name in self._where:
            return False
        ident = self._ring.id_by_name.get(name)
        if ident is None:
            return False
        distance = (ident - self.ident) & _MASK
        if not distance:
            return False
        suspects = self._suspects
        if suspects and name in suspects:
            if suspects[name] > self.endpoint.now():
                return False
            del suspects[name]
        index = distance.bit_length() - 1
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = []
        elif len(bucket) >= self.params.ring_bucket_size:
            return False
        bucket.append((distance, name))
        self._where[name] = index
        self.stats.learned += 1
        return True

    def _evict(self, name: str) -> None:
        index = self._where.pop(name, None)
        if index is None:
            return
        bucket = self._buckets[index]
        bucket[:] = [entry for entry in bucket if entry[1] != name]
        self.stats.evicted += 1

    def _suspect(self, name: str) -> None:
        self._suspects[name] = (self.endpoint.now() +
                                self.params.suspect_time)
        self._evict(name)

    def _next_hop(self, key_id: int) -> tuple[str | None, bool]:
        """The node to forward to and whether it is responsible.

        The first live successor at or past the key is responsible (the
        keys of dead successors before it are its own once membership
        drops them). Otherwise the live node of the table that most
        closely precedes the key.
        """
        d = (key_id - self.ident) & _MASK
        suspects = self._suspects
        now = self.endpoint.now() if suspects else 0.0
        best: str | None = None
        best_d = 0
        for sd, name in self._succ:
            if suspects and name in suspects:
                if suspects[name] > now:
                    continue
                del suspects[name]
            if sd >= d:
                return name, True
            best, best_d = name, sd
        buckets = self._buckets
        index = d.bit_length() - 1
        while index >= 0 and best_d < (2 << index) - 1:
            bucket = buckets.get(index)
            if bucket:
                for ed, name in bucket:
                    if best_d < ed <= d:
                        if suspects and name in suspects:
                            if suspects[name] > now:
                                continue
                            del suspects[name]
                        best, best_d = name, ed
            index -= 1
        return best, best_d == d and best is not None

    # -- services -------------------------------------------------------------

    def register_service(self, name: str, handler: ServiceHandler,
                         validator: PayloadValidator | None = None) -> None:
        """Serve requests whose payload names ``service: name``.

        ``handler(key, payload, source)`` runs at the node responsible for
        the key and returns the result dict sent back to the source;
        ``validator(payload)`` checks such payloads from the network.
        """
        self._services[name] = (handler, validator)

    def _serve(self, key: str, payload: dict[str, Any],
               source: str) -> dict[str, Any]:
        service = payload.get('service')
        if service is None:
            return {}
        entry = self._services.get(service)
        if entry is None:
            return {'error': 'no service %r at %s' % (str(service)[:40],
                                                      self.me.name)}
        try:
            result = entry[0](key, payload, source)
        except Exception as exc:
            LOG.exception('Service %(s)s failed on key %(k)r',
                          {'s': service, 'k': key})
            return {'error': 'service %s failed at %s: %s'
                    % (service, self.me.name, type(exc).__name__)}
        if not isinstance(result, dict):
            LOG.error('Service %(s)s answered %(t)s instead of a dict',
                      {'s': service, 't': type(result).__name__})
            return {'error': 'service %s gave no answer' % service}
        return result

    # -- lookups started here -------------------------------------------------

    def route(self, key: str, payload: dict[str, Any] | None,
              on_done: RouteCallback) -> None:
        """Send ``payload`` to the node responsible for ``key``.

        ``on_done`` is called exactly once, later, with a RouteResult or a
        RoutingFailed naming the key.
        """
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY:
            raise ValueError('a key is a non-empty string of at most %d '
                             'characters, got %r' % (MAX_KEY, key))
        payload = {} if payload is None else payload
        if not isinstance(payload, dict):
            raise ValueError('a payload is a dict, got %s'
                             % type(payload).__name__)
        lookup = _Lookup(key, payload, on_done, self.endpoint.now())
        self.stats.lookups_started += 1
        self._start_attempt(lookup)

    def _start_attempt(self, lookup: _Lookup) -> None:
        lookup.attempts += 1
        rid = '%s/%d' % (self.me.name, next(self._seq))
        lookup.rid = rid
        self._lookups[rid] = lookup
        lookup.timer = self.endpoint.call_later(
            self.params.request_timeout,
            lambda: self._lookup_timed_out(rid))
        self._process({'type': ROUTE, 'rid': rid, 'key': lookup.key,
                       'src': self.me.name, 'path': [], 'final': False,
                       'hop': 0, 'payload': lookup.payload})

    def _lookup_timed_out(self, rid: str) -> None:
        lookup = self._lookups.pop(rid, None)
        if lookup is None:
            return
        if lookup.attempts < self.params.attempts:
            self.stats.attempts_retried += 1
            self._start_attempt(lookup)
            return
        self._finish(lookup, RoutingFailed(
            'routing key %r: no answer within %g s in %d attempts'
            % (lookup.key, self.params.request_timeout, lookup.attempts)))

    def _finish(self, lookup: _Lookup,
                outcome: RouteResult | RoutingFailed) -> None:
        if lookup.timer is not None:
            lookup.timer.cancel()
        if isinstance(outcome, RoutingFailed):
            self.stats.lookups_failed += 1
        else:
            self.stats.lookups_done += 1
        try:
            lookup.on_done(outcome)
        except Exception:
            LOG.exception('Routing callback for key %(k)r failed',
                          {'k': lookup.key})

    # -- carrying a request ---------------------------------------------------

    def _process(self, msg: dict[str, Any]) -> str | None:
        """Answer or forward a request; returns where it was forwarded."""
        path = msg['path'] + [self.me.name]
        key_id = self.id_of(msg['key'])
        if msg['final'] or self.is_responsible(key_id):
            self._deliver(msg, path)
            return None
        if len(path) > self.params.ring_max_hops:
            self._report_failure(msg, path, 'over ring_max_hops=%d hops'
                                 % self.params.ring_max_hops)
            return None
        return self._forward(msg, key_id, path, self.params.hop_retries)

    def _forward(self, msg: dict[str, Any], key_id: int, path: list[str],
                 retries: int) -> str | None:
        target, final = self._next_hop(key_id)
        if target is None:
            self._report_failure(msg, path, 'no live peer to forward to')
            return None
        hop_id = next(self._seq)
        out = {'type': ROUTE, 'rid': msg['rid'], 'key': msg['key'],
               'src': msg['src'], 'path': path, 'final': final,
               'hop': hop_id, 'payload': msg['payload']}
        self.endpoint.send(target, out)
        self._hops[hop_id] = _Hop(out, target, key_id, retries)
        timeout = self.params.hop_timeout
        self._hop_deadlines.append((self.endpoint.now() + timeout, hop_id))
        if self._hop_timer is None:
            self._hop_timer = self.endpoint.call_later(timeout,
                                                       self._check_hops)
        self.stats.forwarded += 1
        return target

    def _check_hops(self) -> None:
        """Time out the forwards whose acknowledgement is overdue.

        Forwards share one timeout, so their deadlines come in the order
        they were sent: one timer, set for the oldest unacknowledged
        forward, replaces a timer per forward (most are acknowledged long
        before it would fire).
        """
        now = self.endpoint.now()
        deadlines = self._hop_deadlines
        hops = self._hops
        overdue = []
        while deadlines:
            deadline, hop_id = deadlines[0]
            if hop_id not in hops:
                deadlines.popleft()
            elif deadline <= now:
                overdue.append(deadlines.popleft()[1])
            else:
                break
        # Set the next check before retrying: retries go to the back of
        # the queue, after the oldest forward still waiting.
        self._hop_timer = (self.endpoint.call_later(
            deadlines[0][0] - now, self._check_hops) if deadlines else None)
        for hop_id in overdue:
            self._hop_timed_out(hop_id)

    def _hop_timed_out(self, hop_id: int) -> None:
        hop = self._hops.pop(hop_id, None)
        if hop is None:
            return
        self.stats.hop_timeouts += 1
        LOG.debug('%(me)s: %(peer)s did not acknowledge a request for '
                  '%(key)r; trying another route',
                  {'me': self.me.name, 'peer': hop.target,
                   'key': hop.message['key']})
        self._suspect(hop.target)
        if hop.retries <= 0:
            self._report_failure(hop.message, hop.message['path'],
                                 '%d next hops did not acknowledge'
                                 % (self.params.hop_retries + 1))
            return
        self._forward(hop.message, hop.key_id, hop.message['path'],
                      hop.retries - 1)

    def _deliver(self, msg: dict[str, Any], path: list[str]) -> None:
        self.stats.delivered += 1
        reply = {'type': REPLY, 'rid': msg['rid'], 'key': msg['key'],
                 'path': path,
                 'result': self._serve(msg['key'], msg['payload'],
                                       msg['src'])}
        self._answer(msg['src'], reply)

    def _report_failure(self, msg: dict[str, Any], path: list[str],
                        reason: str) -> None:
        self.stats.failures_reported += 1
        self._answer(msg['src'], {'type': FAIL, 'rid': msg['rid'],
                                  'key': msg['key'], 'path': path,
                                  'reason': reason})

    def _answer(self, source: str, message: dict[str, Any]) -> None:
        if source == self.me.name:
            # Answer our own lookup on a later turn, as a remote one is:
            # ``route`` never calls back before it returns.
            self.endpoint.call_later(0.0, lambda: self.handle(source,
                                                              message))
        else:
            self.endpoint.send(source, message)

    # -- incoming messages ----------------------------------------------------

    def handle(self, sender: str, message: dict[str, Any]) -> None:
        """Act on a ``ring.*`` message already checked by
        ``validate_message``."""
        if self._suspects and sender in self._suspects:
            del self._suspects[sender]
        handler = self._handlers.get(message['type'])
        if handler is None:
            raise InvalidMessage('unknown ring message type %r, expected '
                                 'one of %s' % (str(message['type'])[:40],
                                                ', '.join(MESSAGE_TYPES)))
        handler(sender, message)

    def validate_message(self, message: Any) -> None:
        """``validate_message``, plus the payload checks of the services
        registered here."""
        validate_message(message)
        if message['type'] == ROUTE:
            entry = self._services.get(message['payload'].get('service'))
            if entry is not None and entry[1] is not None:
                entry[1](message['payload'])

    def _on_route(self, sender: str, msg: dict[str, Any]) -> None:
        path = msg['path']
        if not path or path[-1] != sender:
            self.stats.inconsistent_messages += 1
            LOG.warning('%(me)s: dropped a request from %(peer)s whose '
                        'path does not end with the sender',
                        {'me': self.me.name, 'peer': sender})
            return
        self.stats.requests_handled += 1
        if self.learning:
            where = self._where
            for name in path:
                if name not in where:
                    self._learn(name)
        target = self._process(msg)
        self.endpoint.send(sender, {'type': ACK, 'hop': msg['hop'],
                                    'next': target or ''})

    def _on_ack(self, sender: str, msg: dict[str, Any]) -> None:
        hop = self._hops.get(msg['hop'])
        if hop is None or hop.target != sender:
            self.stats.late_messages += 1
            return
        del self._hops[msg['hop']]
        if msg['next']:
            self._learn(msg['next'])

    def _answered(self, sender: str, msg: dict[str, Any]) -> _Lookup | None:
        lookup = self._lookups.get(msg['rid'])
        if lookup is None:
            self.stats.late_messages += 1
            return None
        path = msg['path']
        if (msg['key'] != lookup.key or path[0] != self.me.name or
                path[-1] != sender):
            self.stats.inconsistent_messages += 1
            LOG.warning('%(me)s: dropped an answer from %(peer)s that does '
                        'not match request %(rid)s',
                        {'me': self.me.name, 'peer': sender,
                         'rid': msg['rid']})
            return None
        del self._lookups[msg['rid']]
        return lookup

    def _on_reply(self, sender: str, msg: dict[str, Any]) -> None:
        lookup = self._answered(sender, msg)
        if lookup is None:
            return
        path = msg['path']
        if self.learning:
            learn = self._learn
            for name in path:
                learn(name)
        node = self._ring.peer(sender) or PeerRef(sender)
        self._finish(lookup, RouteResult(
            lookup.key, node, len(path) - 1, tuple(path), msg['result'],
            self.endpoint.now() - lookup.started, lookup.attempts))

    def _on_fail(self, sender: str, msg: dict[str, Any]) -> None:
        lookup = self._answered(sender, msg)
        if lookup is None:
            return
        self._finish(lookup, RoutingFailed(
            'routing key %r failed at %s after %d hops: %s'
            % (lookup.key, sender, len(msg['path']) - 1, msg['reason'])))


# -- validation of network input ----------------------------------------------


def _fail(kind: str, field: str, expected: str, got: Any) -> None:
    text = repr(got)
    if len(text) > 80:
        text = text[:77] + '...'
    raise InvalidMessage('%s: field %r must be %s, got %s'
                         % (kind, field, expected, text))


def _check_text(kind: str, field: str, value: Any, limit: int,
                empty: bool = False) -> None:
    if not isinstance(value, str) or len(value) > limit or (
            not value and not empty):
        _fail(kind, field, 'a %sstring of at most %d characters'
              % ('' if empty else 'non-empty ', limit), value)


def _check_path(kind: str, value: Any) -> None:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_PATH:
        _fail(kind, 'path', 'a non-empty list of at most %d node names'
              % MAX_PATH, value)
    for i, name in enumerate(value):
        _check_text(kind, 'path[%d]' % i, name, MAX_NAME)


def _check_object(kind: str, field: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) for k in value):
        _fail(kind, field, 'a JSON object with string keys', value)


def validate_message(message: Any) -> None:
    """Check every field of a ``ring.*`` message from the network.

    Raises InvalidMessage naming the first bad field and the form it must
    have. Unknown fields are refused too, so that what ``handle`` reads is
    exactly what was checked. The content of a payload is its service's
    to check (``RingRouter.validate_message`` runs those checks).
    """
    kind = check_envelope(message, 'ring', _FIELDS)
    if kind == ACK:
        hop = message['hop']
        if (not isinstance(hop, int) or isinstance(hop, bool) or
                not 1 <= hop <= MAX_HOP_ID):
            _fail(kind, 'hop', 'an integer from 1 to %d' % MAX_HOP_ID, hop)
        _check_text(kind, 'next', message['next'], MAX_NAME, empty=True)
        return
    _check_text(kind, 'rid', message['rid'], MAX_REQUEST_ID)
    _check_text(kind, 'key', message['key'], MAX_KEY)
    _check_path(kind, message['path'])
    if kind == REPLY:
        _check_object(kind, 'result', message['result'])
        return
    if kind == FAIL:
        _check_text(kind, 'reason', message['reason'], MAX_REASON)
        return
    _check_text(kind, 'src', message['src'], MAX_NAME)
    if not isinstance(message['final'], bool):
        _fail(kind, 'final', 'true or false', message['final'])
    hop = message['hop']
    if (not isinstance(hop, int) or isinstance(hop, bool) or
            not 1 <= hop <= MAX_HOP_ID):
        _fail(kind, 'hop', 'an integer from 1 to %d' % MAX_HOP_ID, hop)
    payload = message['payload']
    _check_object(kind, 'payload', payload)
    if 'service' in payload:
        _check_text(kind, 'payload.service', payload['service'], MAX_NAME)
