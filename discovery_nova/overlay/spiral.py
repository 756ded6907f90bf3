"""Spiral search for the nearest peers, with the learning rule (DISCOVERY).

Each node keeps a *near set* (the peers closest to itself) and a few *long
links* (random peers, mostly far away). A search for the peers nearest to a
point (by default the searching node itself) carries a *spiral view*: peers
with their coordinates, sorted by distance to that point. Every node the
search reaches merges its near set and long links into the view and passes
the search on to the closest peer of the view not yet visited, so the
search winds inwards towards the point like a spiral; the long links keep
it from being stuck in a region whose near sets all point at each other.
After ``k`` visits the last node sends the view back to the origin, which
probes up to ``2k`` candidates and ranks them by measured round-trip time,
so the answer does not inherit the coordinates' errors.

Coordinates blur short distances: with a median error of 10 %, a 100 ms
path is known to +-10 ms, about the RTT from a PlanetLab node to its tenth
nearest neighbour (median 11.6 ms). So a node ranks its near set by the
RTT it measured itself (its Vivaldi probes, its searches' probes) wherever
it has one and by the coordinates otherwise, remembers the RTTs of the
last ``rtt_memory`` peers it measured, and spends a search's probes on the
most promising peers it has never measured. Each search thus pushes the
near set closer to the truly nearest peers instead of re-measuring the same
near-looking ones.

The learning rule costs no message: a node the search passes through keeps,
in its own near set, the peers of the view closest to itself. Searches by
others therefore improve everyone's near set along their way, and later
searches start from better near sets.

Every hop is acknowledged; a node whose next hop does not acknowledge within
``hop_timeout`` skips it and tries the next candidate, and the origin gives
up on a search that has not come back within ``hop_timeout`` per possible
hop, ending with what it had. A search costs ``2 * hops + 1`` messages
(forward, acknowledgement, one reply) plus the probes of the origin: O(k).

The class is sans-IO: it sends through an ``Endpoint`` and measures through
a ``Prober``, so the agent and the simulator run the very same code.
"""

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses
import itertools
import math
import operator
import random
from typing import Any

from oslo_log import log as logging

from discovery_nova.overlay.bounds import check_integers
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.endpoint import Endpoint
from discovery_nova.overlay.envelope import check_envelope
from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.probe import Prober
from discovery_nova.overlay.probe import RttSample

LOG = logging.getLogger(__name__)

REQUEST = 'spiral.request'
ACK = 'spiral.ack'
REPLY = 'spiral.reply'
MESSAGE_TYPES = (REQUEST, ACK, REPLY)

#: Protocol bounds that hold whatever the local options say, so that a
#: peer cannot make us walk or store an unbounded list.
MAX_K = 1024
MAX_HOPS = 4096
MAX_VIEW = 1024
MAX_VISITED = 2 * MAX_HOPS + 1
MAX_NAME = 255
MAX_ADDRESS = 255
MAX_SEARCH_ID = 128
MAX_MESSAGES = 1 << 20
MAX_DIMENSIONS = 64
#: Age in seconds beyond which a coordinate is refused as nonsense.
MAX_AGE = 10.0 * 365 * 86400

_FIELDS = {
    REQUEST: ('type', 'search', 'origin', 'origin_coord', 'k', 'max_hops',
              'hops', 'messages', 'view', 'visited'),
    ACK: ('type', 'search'),
    REPLY: ('type', 'search', 'hops', 'messages', 'view', 'visited'),
}


@dataclasses.dataclass(frozen=True, slots=True)
class SpiralParams:
    """Tuning of the spiral search; the first four mirror the options
    ``near_set_size``, ``long_links``, ``spiral_k`` and ``spiral_max_hops``
    of ``[discovery_overlay]``."""

    near_set_size: int = 16
    long_links: int = 4
    spiral_k: int = 10
    spiral_max_hops: int = 64
    #: Seconds a node waits for the next hop's acknowledgement (and the
    #: origin for each of its probes) before moving on.
    hop_timeout: float = 5.0
    #: Whether the nodes a search passes through learn from its view.
    learning: bool = True
    #: Most entries a view carries; the farthest from the point are cut.
    view_size: int = 32
    #: The origin probes ``round(probe_factor * k)`` candidates.
    probe_factor: float = 2.0
    #: RTTs measured to this many recent peers are remembered, so that a
    #: search spends its probes on peers never measured rather than on
    #: the same near-looking but far peers again.
    rtt_memory: int = 256

    def __post_init__(self):
        bounds = (('near_set_size', 1, MAX_VIEW), ('long_links', 0, 256),
                  ('spiral_k', 1, MAX_K), ('spiral_max_hops', 1, MAX_HOPS),
                  ('view_size', 1, MAX_VIEW), ('rtt_memory', 0, 1 << 20))
        check_integers(self, bounds)
        if not (math.isfinite(self.hop_timeout) and self.hop_timeout > 0):
            raise ValueError('hop_timeout must be a positive number of '
                             'seconds, got %r' % (self.hop_timeout,))
        if not (math.isfinite(self.probe_factor) and
                self.probe_factor >= 1.0):
            raise ValueError('probe_factor must be at least 1, got %r'
                             % (self.probe_factor,))

    def probe_count(self, k: int) -> int:
        return max(k, int(round(self.probe_factor * k)))

    @classmethod
    def from_options(cls, options: Any, **overrides) -> 'SpiralParams':
        """Parameters from an option group such as
        ``conf.discovery_overlay`` (``request_timeout`` gives
        ``hop_timeout``); keyword arguments override."""
        values = {
            'near_set_size': options.near_set_size,
            'long_links': options.long_links,
            'spiral_k': options.spiral_k,
            'spiral_max_hops': options.spiral_max_hops,
            'hop_timeout': options.request_timeout,
        }
        values.update(overrides)
        return cls(**values)


class _Entry:
    """A peer as one node knows it: where it is, since when, how far.

    ``vec``/``height`` are the peer's coordinate as learned at ``learned``
    (this node's clock); ``rtt`` is the round trip this node last measured
    to it, None when it never did. ``name`` is ``peer.name``, kept here
    too: a search reads the names of many nodes' entries, and each read
    through the peer was one more object to fetch from memory. The
    coordinate's ``Coordinate`` object and wire form ``(vec, height)`` are
    built once per coordinate and shared: every hop of every search puts
    the entry into a view, and rebuilding them each time was a large share
    of a hop's cost. Nothing mutates a wire coordinate once built, so
    sharing it between messages (which the simulator hands over by
    reference) is safe.
    """

    __slots__ = ('peer', 'name', 'vec', 'height', 'learned', 'rtt',
                 '_coord', '_wire')

    def __init__(self, peer: PeerRef, vec: tuple, height: float,
                 learned: float, rtt: float | None = None,
                 wire: list | tuple | None = None):
        self.peer = peer
        self.name = peer.name
        self.vec = vec
        self.height = height
        self.learned = learned
        self.rtt = rtt
        self._coord = None
        #: The wire coordinate when known, else built on first use.
        self._wire = wire

    @property
    def coord(self) -> Coordinate:
        coord = self._coord
        if coord is None:
            coord = self._coord = Coordinate(self.vec, self.height)
        return coord

    def wire_coord(self) -> tuple:
        """The coordinate as ``((x1, ..., xn), height)`` (JSON encodes
        it as ``[[x1, ..., xn], height]``)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = (self.vec, self.height)
        return wire

    def set_coord(self, coord: Coordinate, learned: float) -> None:
        self.vec = coord.vec
        self.height = coord.height
        self.learned = learned
        self._coord = coord
        self._wire = None

    def set_position(self, vec: tuple, height: float, learned: float,
                     wire: list | tuple | None = None) -> None:
        """Take a coordinate given as parts (``wire`` is its wire form
        when the caller has it)."""
        self.vec = vec
        self.height = height
        self.learned = learned
        self._coord = None
        self._wire = wire

    def take_coord(self, other: '_Entry') -> None:
        """Take ``other``'s coordinate and its age."""
        self.vec = other.vec
        self.height = other.height
        self.learned = other.learned
        self._coord = other._coord
        self._wire = other._wire


@dataclasses.dataclass(frozen=True, slots=True)
class NearPeer:
    """A member of a node's near set."""

    peer: PeerRef
    coordinate: Coordinate
    #: Predicted RTT (ms) from the node's current coordinate.
    distance: float
    #: Last RTT (ms) this node measured to the peer, None if never.
    rtt_ms: float | None
    #: Endpoint clock time at which this coordinate was learned.
    learned: float


@dataclasses.dataclass(frozen=True, slots=True)
class RankedPeer:
    """A search answer: a peer and how far it is."""

    peer: PeerRef
    #: Measured RTT from the searching node (``measured``), or the RTT the
    #: coordinates predict to the searched point (a point search).
    rtt_ms: float
    coordinate: Coordinate
    measured: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class SpiralResult:
    """What a search found, nearest first, and what it cost."""

    peers: list[RankedPeer]
    #: Nodes that handled the search beyond the origin.
    hops: int
    #: Overlay messages: forwards, acknowledgements and the reply.
    messages: int
    #: Probes the origin sent to rank the candidates.
    probes: int
    visited: list[str]
    #: The search did not come back in time; the answer is from the
    #: origin's own tables only.
    timed_out: bool = False


@dataclasses.dataclass
class SpiralStats:
    """Counters of one node's spiral activity."""

    searches_started: int = 0
    searches_done: int = 0
    searches_timed_out: int = 0
    requests_handled: int = 0
    hop_timeouts: int = 0
    late_messages: int = 0
    near_changes: int = 0


class _Search:
    """A search in flight, kept by the node that is passing it on."""

    __slots__ = ('search_id', 'origin', 'point', 'k', 'max_hops', 'hops',
                 'messages', 'view', 'visited')

    def __init__(self, search_id: str, origin: list, point: list, k: int,
                 max_hops: int, hops: int, messages: int,
                 view: list[list], visited: list[str]):
        self.search_id = search_id
        #: Origin peer and searched point, in wire form.
        self.origin = origin
        self.point = point
        self.k = k
        self.max_hops = max_hops
        self.hops = hops
        self.messages = messages
        #: The spiral view in wire form: in transit, entries are never
        #: turned into objects, only sorted and passed on.
        self.view = view
        self.visited = visited


class _Pending:
    """The origin's record of one of its own searches."""

    __slots__ = ('on_done', 'point', 'own', 'k', 'initial_view',
                 'started', 'timer',
                 'samples', 'outstanding', 'launching', 'finished', 'hops',
                 'messages', 'visited', 'timed_out', 'candidates', 'view',
                 'known')

    def __init__(self, on_done, point: Coordinate, own: bool, k: int,
                 initial_view: list[list], started: float):
        self.on_done = on_done
        self.point = point
        self.own = own
        self.k = k
        #: The view the search set out with, in wire form, and when: the
        #: answer should the search not come back (rarely, so it is
        #: turned into entries only then).
        self.initial_view = initial_view
        self.started = started
        self.timer = None
        self.samples: list = []
        self.outstanding = 0
        self.launching = False
        self.finished = False
        self.hops = 0
        self.messages = 0
        self.visited: list[str] = []
        self.timed_out = False
        self.candidates: list[_Entry] | None = None
        self.view: list[_Entry] = []
        self.known: list[_Entry] = []


class _View(list):
    """A spiral view built by this class: a plain wire list that also
    remembers each entry's name, age and distance to the searched point
    ``pvec`` (``names``, ``ages``, ``keys``: tuples in the view's order).

    The simulator hands messages over by reference, so the next hop finds
    the distances computed by the previous one and need not touch every
    entry's coordinate again; a view that came from the network is a plain
    list and gets its distances computed. JSON encodes it as the list it
    is, so nothing of this reaches the wire. The entries this class builds
    are tuples ``(name, address, (vec, height), age)``: one object each
    instead of three lists (a hop reads every entry, and each object is
    one more fetch from memory), which JSON encodes alike.
    """

    __slots__ = ('pvec', 'keys', 'names', 'ages')


def _picker(order: list[int]) -> Callable[[list], tuple]:
    """A function returning the items of a list at the indices ``order``
    (not empty), as a tuple."""
    if len(order) == 1:
        only = order[0]
        return lambda seq: (seq[only],)
    return operator.itemgetter(*order)


NearChanged = Callable[[frozenset, frozenset], None]

_RTT_MS = operator.attrgetter('rtt_ms')

#: PeerRef objects shared by every service of the process: a view names the
#: same few thousand peers over and over.
_PEER_REFS: dict[str, PeerRef] = {}
_PEER_REFS_MAX = 65536


def _peer_ref(name: str, address: str) -> PeerRef:
    peer = _PEER_REFS.get(name)
    if peer is None or peer.address != address:
        if len(_PEER_REFS) >= _PEER_REFS_MAX:
            _PEER_REFS.clear()
        peer = _PEER_REFS[name] = PeerRef(name, address)
    return peer


class SpiralService:
    """One node's near set, long links and spiral search protocol.

    The near set is ranked by the best distance the node knows: the RTT it
    measured itself (its Vivaldi probes and its searches' probes) where it
    has one, the coordinates' prediction otherwise. Measured distances make
    the near set converge on the truly nearest peers even where the
    coordinates blur short distances; predictions let peers it has never
    probed in.
    """

    def __init__(self, endpoint: Endpoint, me: PeerRef,
                 coordinate: Callable[[], Coordinate], prober: Prober,
                 params: SpiralParams | None = None,
                 rng: random.Random | None = None):
        self.endpoint = endpoint
        self.me = me
        self.coordinate = coordinate
        self.prober = prober
        self.params = params or SpiralParams()
        self.rng = rng or random.Random()
        self.stats = SpiralStats()
        #: Called with (old names, new names) whenever the membership of
        #: the near set changes; the agent turns it into neighbour-change
        #: notifications. A callback that raises is logged and ignored.
        self.on_near_changed: NearChanged | None = None
        self._near: dict[str, _Entry] = {}
        self._long: list[_Entry] = []
        #: Names in ``_long``: every Vivaldi probe refreshes what we know
        #: of its peer, and most peers are no long link.
        self._long_names: frozenset[str] = frozenset()
        self._seen = 0
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._forwards: dict[tuple[str, str], tuple[_Search, Any]] = {}
        self._rtts: dict[str, float] = {}
        self._here: tuple[Coordinate, tuple] | None = None

    # -- membership and tables -------------------------------------------

    def add_known(self, peer: PeerRef, coord: Coordinate) -> None:
        """Learn of a peer (a join, or a fresh coordinate of a known one).

        The peer enters the near set if it is closer than its farthest
        member, and the long links by reservoir sampling, so that they stay
        a uniform random choice among all peers ever learned this way.
        """
        if peer.name == self.me.name:
            return
        now = self.endpoint.now()
        if self._refresh(peer.name, coord, now, None):
            # a peer that came back may have moved to a new address
            for entry in itertools.chain(self._near.values(), self._long):
                if entry.name == peer.name:
                    entry.peer = peer
            return
        entry = _Entry(peer, coord.vec, coord.height, now)
        self._seen += 1
        links = self.params.long_links
        if links:
            if len(self._long) < links:
                self._long.append(entry)
            else:
                slot = self.rng.randrange(self._seen)
                if slot < links:
                    self._long[slot] = entry
            self._long_names = frozenset(e.name for e in self._long)
        self._merge_near((entry,))

    def update_coordinate(self, name: str, coord: Coordinate,
                          rtt_ms: float | None = None) -> bool:
        """Refresh what we know of a peer (from a probe answer: its
        coordinate and, when given, the RTT just measured to it).

        Returns whether the peer is in our tables; an unknown peer is not
        added (its RTT is remembered, though).
        """
        if rtt_ms is not None:
            # _remember, inlined: the simulator calls this a million times.
            rtts = self._rtts
            rtts.pop(name, None)
            rtts[name] = rtt_ms
            if len(rtts) > self.params.rtt_memory:
                del rtts[next(iter(rtts))]
        if name not in self._near and name not in self._long_names:
            return False  # most probes: no clock reading needed
        return self._refresh(name, coord, self.endpoint.now(), rtt_ms)

    def _remember(self, name: str, rtt_ms: float) -> None:
        rtts = self._rtts
        rtts.pop(name, None)
        rtts[name] = rtt_ms
        if len(rtts) > self.params.rtt_memory:
            del rtts[next(iter(rtts))]

    def _refresh(self, name: str, coord: Coordinate, now: float,
                 rtt_ms: float | None) -> bool:
        kept = False
        entry = self._near.get(name)
        if entry is not None:
            entry.set_coord(coord, now)
            if rtt_ms is not None:
                entry.rtt = rtt_ms
            kept = True
        if name in self._long_names:
            for entry in self._long:
                if entry.name == name:
                    entry.set_coord(coord, now)
                    if rtt_ms is not None:
                        entry.rtt = rtt_ms
                    kept = True
        return kept

    def remove(self, name: str) -> None:
        """Forget a peer that left (membership) in every table."""
        self._rtts.pop(name, None)
        self._long = [e for e in self._long if e.name != name]
        self._long_names = frozenset(e.name for e in self._long)
        if name in self._near:
            old = frozenset(self._near)
            del self._near[name]
            self._changed(old)

    def near_peers(self) -> list[NearPeer]:
        """The near set, nearest first by the best distance known."""
        me = self.coordinate()
        key = self._near_key()
        return [NearPeer(e.peer, e.coord, me.distance(e.coord), e.rtt,
                         e.learned)
                for e in sorted(self._near.values(), key=key)]

    def near_names(self) -> list[str]:
        """Names in the near set, in no particular order (cheap)."""
        return list(self._near)

    def long_links(self) -> list[PeerRef]:
        return [e.peer for e in self._long]

    def _near_key(self) -> Callable[[_Entry], float]:
        """Sort key of the near set: measured RTT, else predicted."""
        here = self.coordinate()
        mvec = here.vec
        mh = here.height
        dist = math.dist

        def key(e: _Entry) -> float:
            rtt = e.rtt
            if rtt is not None:
                return rtt
            return dist(e.vec, mvec) + e.height + mh
        return key

    def _near_keys(self, entries: list[_Entry],
                   here: Coordinate | None = None) -> list[float]:
        """``_near_key`` of each entry, in one comprehension: a search
        ranks near sets at every hop, and a key function call per entry
        cost more than the arithmetic. ``here`` is this node's coordinate
        when the caller has it at hand."""
        if here is None:
            here = self.coordinate()
        mvec = here.vec
        mh = here.height
        dist = math.dist
        return [e.rtt if e.rtt is not None
                else dist(e.vec, mvec) + e.height + mh for e in entries]

    def _merge_near(self, entries: Iterable[_Entry]) -> None:
        """Keep, of the near set and ``entries``, the nearest to us.

        For a peer present in both, the fresher coordinate and any newly
        measured RTT are kept.
        """
        near = self._near
        myname = self.me.name
        rtts = self._rtts
        fresh: dict[str, _Entry] = {}
        for e in entries:
            name = e.name
            have = near.get(name)
            if have is None:
                if name != myname:
                    if e.rtt is None:
                        e.rtt = rtts.get(name)
                    fresh[name] = e
                continue
            if have is e:
                continue
            if e.learned > have.learned:
                have.take_coord(e)
            if e.rtt is not None:
                have.rtt = e.rtt
        if not fresh:
            return
        size = self.params.near_set_size
        if len(near) + len(fresh) <= size:
            new = dict(near)
            new.update(fresh)
        else:
            pool = list(near.values())
            keys = self._near_keys(pool)
            candidates = list(fresh.values())
            ckeys = self._near_keys(candidates)
            if len(near) >= size:
                worst = max(keys)
                kept = [i for i, key in enumerate(ckeys) if key < worst]
                if not kept:
                    return
                candidates = [candidates[i] for i in kept]
                ckeys = [ckeys[i] for i in kept]
            pool.extend(candidates)
            keys.extend(ckeys)
            # A stable sort of the indices by key: the order (ties
            # included) of sorting the pool with ``_near_key``.
            new = {}
            for i in sorted(range(len(pool)), key=keys.__getitem__)[:size]:
                e = pool[i]
                new[e.name] = e
            if new.keys() == near.keys():
                return
        self._near = new
        self._changed(near)

    def _learn(self, view: list[list], now: float,
               here: Coordinate) -> None:
        """The learning rule on a view in wire form.

        Only the entries that enter the near set become objects: in a
        settled overlay most of a view is farther than our farthest near
        peer, or in the near set already (then its coordinate is refreshed
        when the view's is younger). Once the near set is full this is
        ``_merge_near`` done in place, each candidate's distance computed
        once: it runs at every hop of every search.
        """
        near = self._near
        size = self.params.near_set_size
        if len(near) < size:
            self._learn_into_partial(view, now)
            return
        myname = self.me.name
        rtts = self._rtts
        mvec = here.vec
        mh = here.height
        dist = math.dist
        pool = list(near.values())
        keys = self._near_keys(pool, here)
        worst = max(keys)
        refreshed = False
        # name -> (wire entry, learned, measured RTT, distance); a name
        # given twice keeps its first place and its last entry, as the
        # dict of fresh entries in ``_merge_near`` does.
        found: dict[str, tuple] = {}
        for w in view:
            name = w[0]
            have = near.get(name)
            if have is not None:
                learned = now - w[3]
                if learned > have.learned:
                    coord = w[2]
                    have.set_position(tuple(coord[0]), coord[1], learned,
                                      coord)
                    refreshed = True
                continue
            rtt = rtts.get(name)
            if rtt is None:
                key = dist(w[2][0], mvec) + w[2][1] + mh
                if key >= worst:
                    continue
            elif rtt >= worst:
                continue
            else:
                key = rtt
            # This node (in most views it gets) is left out here rather
            # than first: one distance costs less than comparing every
            # name with ours.
            if name != myname:
                found[name] = (w, now - w[3], rtt, key)
        if not found:
            return
        if refreshed:
            # Refreshed coordinates move the near set's own distances.
            keys = self._near_keys(pool, here)
            worst = max(keys)
        count = len(pool)
        for item in found.values():
            if item[3] < worst:
                pool.append(item)
                keys.append(item[3])
        if len(pool) == count:
            return
        order = sorted(range(len(pool)), key=keys.__getitem__)
        del order[size:]
        if max(order) < count and len(order) == len(near):
            return  # the same members: nothing of the view was nearer
        new = {}
        for i in order:
            e = pool[i]
            if i >= count:
                w, learned, rtt, _ = e
                coord = w[2]
                e = _Entry(_peer_ref(w[0], w[1]), tuple(coord[0]),
                           coord[1], learned, rtt, coord)
            new[e.name] = e
        self._near = new
        self._changed(near)

    def _learn_into_partial(self, view: list[list], now: float) -> None:
        """The learning rule while the near set still has room: every
        peer of the view is a candidate."""
        near = self._near
        myname = self.me.name
        rtts = self._rtts
        fresh = []
        for w in view:
            name = w[0]
            learned = now - w[3]
            have = near.get(name)
            if have is not None:
                if learned > have.learned:
                    coord = w[2]
                    have.set_position(tuple(coord[0]), coord[1], learned,
                                      coord)
                continue
            if name == myname:
                continue
            coord = w[2]
            fresh.append(_Entry(_peer_ref(name, w[1]), tuple(coord[0]),
                                coord[1], learned, rtts.get(name), coord))
        if fresh:
            self._merge_near(fresh)

    def _changed(self, old: Iterable[str]) -> None:
        """Count a change of the near set and tell the listener; ``old``
        holds the names before it (the replaced dict: the frozenset is
        built only when someone listens)."""
        self.stats.near_changes += 1
        callback = self.on_near_changed
        if callback is None:
            return
        try:
            callback(frozenset(old), frozenset(self._near))
        except Exception:
            LOG.exception('near-set change listener of %(me)s failed',
                          {'me': self.me.name})

    # -- searching ----------------------------------------------------------

    def search(self, k: int | None, on_done: Callable[[SpiralResult], None],
               origin_coord: Coordinate | None = None) -> str:
        """Start a search for the ``k`` peers nearest to a point.

        Without ``origin_coord`` the point is this node: the search looks
        for its own neighbourhood, probes the best ``probe_factor * k``
        candidates, answers them ranked by measured RTT (this node left
        out) and refreshes the near set with what it learned. With
        ``origin_coord`` it looks for the peers nearest to that point
        (this node included) and ranks them by the coordinates alone, since
        RTTs measured from here say nothing about distances to there.
        ``on_done`` is called exactly once, never from inside this call.
        Returns the search id.
        """
        params = self.params
        k = params.spiral_k if k is None else k
        if not 1 <= k <= MAX_K:
            raise ValueError('k must be from 1 to %d, got %r' % (MAX_K, k))
        own = origin_coord is None
        here = self.coordinate()
        point = here if own else origin_coord
        search_id = '%s/%d' % (self.me.name, next(self._ids))
        now = self.endpoint.now()
        view = self._view_with_mine([], point.vec, here, now)
        pending = _Pending(on_done, point, own, k, view, now)
        self._pending[search_id] = pending
        self.stats.searches_started += 1
        max_hops = min(k, params.spiral_max_hops)
        pending.timer = self.endpoint.call_later(
            params.hop_timeout * (max_hops + 2),
            lambda: self._search_timed_out(search_id))
        state = _Search(search_id, self.me.to_wire(), point.to_wire(), k,
                        max_hops, 0, 0, view, [self.me.name])
        # Deferred so that on_done never runs inside search() itself.
        self.endpoint.call_later(0.0, lambda: self._advance(state))
        return search_id

    def _view_with_mine(self, view: list[list], pvec: tuple,
                        here: Coordinate, now: float) -> '_View':
        """The wire view ``view`` merged with this node and its tables,
        nearest to the point ``pvec`` first, cut to ``view_size``.

        For a peer named twice the younger coordinate wins; entries passed
        on keep the age they arrived with (a hop takes milliseconds).
        This runs at every hop of every search, so each distance is
        computed once (no key function), a view built by this class
        brings its distances along (see ``_View``), and the entries' wire
        coordinates are reused instead of rebuilt.
        """
        dist = math.dist
        # Parallel lists in first-seen order, as a dict by name would
        # keep them: the sort below breaks ties in this order. An entry of
        # our tables stays an _Entry until it makes the cut.
        if type(view) is _View and view.pvec == pvec:
            # Built by _view_with_mine: names unique, distances known.
            entries = list(view)
            names = list(view.names)
            dists = list(view.keys)
            ages = list(view.ages)
            slot = {name: i for i, name in enumerate(names)}
        else:
            slot = {}
            entries = []
            names = []
            dists = []
            ages = []
            for w in view:
                name = w[0]
                i = slot.get(name)
                if i is None:
                    slot[name] = len(entries)
                    entries.append(w)
                    names.append(name)
                    dists.append(dist(w[2][0], pvec) + w[2][1])
                    ages.append(w[3])
                elif w[3] < ages[i]:
                    entries[i] = w
                    dists[i] = dist(w[2][0], pvec) + w[2][1]
                    ages[i] = w[3]
        me = self.me
        w = (me.name, me.address, self._here_wire(here), 0.0)
        key = dist(here.vec, pvec) + here.height
        i = slot.get(me.name)
        if i is None:
            slot[me.name] = len(entries)
            entries.append(w)
            names.append(me.name)
            dists.append(key)
            ages.append(0.0)
        else:
            entries[i] = w
            dists[i] = key
            ages[i] = 0.0
        for e in itertools.chain(self._near.values(), self._long):
            name = e.name
            age = now - e.learned
            i = slot.get(name)
            if i is None or age < ages[i]:
                if not age > 0:
                    age = 0.0
                key = dist(e.vec, pvec) + e.height
                if i is None:
                    slot[name] = len(entries)
                    entries.append(e)
                    names.append(name)
                    dists.append(key)
                    ages.append(age)
                else:
                    entries[i] = e
                    dists[i] = key
                    ages[i] = age
        # Indices sorted stably by distance: ties stay in merge order.
        order = sorted(range(len(entries)), key=dists.__getitem__)
        del order[self.params.view_size:]
        pick = _picker(order)
        merged = _View(pick(entries))
        merged.ages = ages = pick(ages)
        for n, e in enumerate(merged):
            if type(e) is _Entry:
                merged[n] = (e.name, e.peer.address,
                             e._wire or e.wire_coord(), ages[n])
        merged.pvec = pvec
        merged.keys = pick(dists)
        merged.names = pick(names)
        return merged

    def _here_wire(self, here: Coordinate) -> tuple:
        """This node's coordinate in wire form, rebuilt only when it moved
        (Vivaldi moves it once per probe; searches pass many times)."""
        cached = self._here
        if cached is None or cached[0] is not here:
            cached = self._here = (here, (here.vec, here.height))
        return cached[1]

    def _advance(self, state: _Search) -> None:
        """Send the search to its closest unvisited peer, or end it here."""
        target = None
        if (state.hops < state.k and state.hops < state.max_hops and
                len(state.visited) < MAX_VISITED):
            visited = set(state.visited)
            for w in state.view:
                if w[0] not in visited:
                    target = w[0]
                    break
        if target is None:
            self._reply(state)
            return
        state.messages += 1
        self.endpoint.send(target, {
            'type': REQUEST,
            'search': state.search_id,
            'origin': state.origin,
            'origin_coord': state.point,
            'k': state.k,
            'max_hops': state.max_hops,
            'hops': state.hops,
            'messages': state.messages,
            'view': state.view,
            'visited': state.visited,
        })
        key = (state.search_id, target)
        timer = self.endpoint.call_later(
            self.params.hop_timeout, lambda: self._hop_timed_out(key))
        self._forwards[key] = (state, timer)

    def _hop_timed_out(self, key: tuple[str, str]) -> None:
        item = self._forwards.pop(key, None)
        if item is None:
            return
        state = item[0]
        self.stats.hop_timeouts += 1
        if (state.origin[0] == self.me.name and
                state.search_id not in self._pending):
            return  # our own search already ended (deadline): let it go
        LOG.debug('spiral search %(id)s: %(peer)s did not acknowledge, '
                  'skipping it', {'id': key[0], 'peer': key[1]})
        # A fresh list: the one already sent must not change under the
        # receiver (the simulator hands messages over by reference).
        state.visited = state.visited + [key[1]]
        self._advance(state)

    def _reply(self, state: _Search) -> None:
        if state.origin[0] == self.me.name:
            self._collect(state.search_id,
                          self._view_from_wire(state.view,
                                               self.endpoint.now()),
                          state.visited, state.hops, state.messages)
            return
        state.messages += 1
        self.endpoint.send(state.origin[0], {
            'type': REPLY,
            'search': state.search_id,
            'hops': state.hops,
            'messages': state.messages,
            'view': state.view,
            'visited': state.visited,
        })

    def _view_from_wire(self, wire: list, now: float) -> list[_Entry]:
        refs = _PEER_REFS
        out = []
        for w in wire:
            name, address, coord, age = w
            peer = refs.get(name)
            if peer is None or peer.address != address:
                peer = _peer_ref(name, address)
            out.append(_Entry(peer, tuple(coord[0]), coord[1], now - age,
                              None, coord))
        return out

    # -- incoming messages --------------------------------------------------

    def handle(self, sender: str, message: dict[str, Any]) -> None:
        """Act on a ``spiral.*`` message already checked by
        ``validate_message`` (the agent checks every frame; the simulator's
        messages come from this very class)."""
        kind = message['type']
        if kind == REQUEST:
            self._on_request(sender, message)
        elif kind == ACK:
            self._on_ack(sender, message)
        elif kind == REPLY:
            self._on_reply(sender, message)
        else:
            raise InvalidMessage('unknown spiral message type %r, expected '
                                 'one of %s' % (kind, ', '.join(
                                     MESSAGE_TYPES)))

    def validate_message(self, message: Any) -> None:
        """``validate_message`` with this node's coordinate dimensions."""
        validate_message(message, len(self.coordinate().vec))

    def _on_request(self, sender: str, msg: dict[str, Any]) -> None:
        search_id = msg['search']
        endpoint = self.endpoint
        endpoint.send(sender, {'type': ACK, 'search': search_id})
        self.stats.requests_handled += 1
        now = endpoint.now()
        incoming = msg['view']
        point = msg['origin_coord']
        # Our tables go into the view before the learning rule may evict
        # some of them: they can be near the origin though not near us.
        here = self.coordinate()
        view = self._view_with_mine(incoming, tuple(point[0]), here, now)
        if self.params.learning:
            self._learn(incoming, now, here)
        visited = msg['visited']
        if self.me.name not in visited:
            visited = visited + [self.me.name]
        state = _Search(search_id, msg['origin'], point, msg['k'],
                        msg['max_hops'], msg['hops'] + 1,
                        msg['messages'] + 1, view, visited)
        self._advance(state)

    def _on_ack(self, sender: str, msg: dict[str, Any]) -> None:
        item = self._forwards.pop((msg['search'], sender), None)
        if item is None:
            self.stats.late_messages += 1
            return
        item[1].cancel()

    def _on_reply(self, sender: str, msg: dict[str, Any]) -> None:
        self._collect(msg['search'],
                      self._view_from_wire(msg['view'], self.endpoint.now()),
                      msg['visited'], msg['hops'], msg['messages'])

    # -- the origin's end of a search ------------------------------------

    def _collect(self, search_id: str, view: list[_Entry],
                 visited: list[str], hops: int, messages: int) -> None:
        pending = self._pending.get(search_id)
        if pending is None or pending.candidates is not None:
            self.stats.late_messages += 1
            return
        pending.timer.cancel()
        pending.hops = hops
        pending.messages = messages
        pending.visited = list(visited)
        self._rank(search_id, pending, view)

    def _search_timed_out(self, search_id: str) -> None:
        pending = self._pending.get(search_id)
        if pending is None or pending.candidates is not None:
            return
        self.stats.searches_timed_out += 1
        LOG.debug('spiral search %(id)s did not come back within its '
                  'deadline; answering from our own tables',
                  {'id': search_id})
        pending.timed_out = True
        pending.visited = [self.me.name]
        self._rank(search_id, pending,
                   self._view_from_wire(pending.initial_view,
                                        pending.started))

    def _rank(self, search_id: str, pending: _Pending,
              view: list[_Entry]) -> None:
        pending.view = view
        if not pending.own:
            # A point search: rank by the coordinates, nothing to probe.
            pending.candidates = []
            self._finish(search_id, pending)
            return
        # Near-set members stand for themselves: they carry the RTTs we
        # measured (Vivaldi probes, earlier searches), which outrank any
        # prediction and need no new probe. The probes go to the most
        # promising peers we have never measured.
        myname = self.me.name
        pool = {e.name: e for e in view if e.name != myname}
        for name, e in self._near.items():
            seen = pool.get(name)
            if seen is not None and seen.learned > e.learned:
                e.take_coord(seen)
            pool[name] = e
        here = self.coordinate()
        mvec = here.vec
        dist = math.dist
        rtts = self._rtts
        unmeasured = []
        known = []
        for name, e in pool.items():
            if e.rtt is None:
                e.rtt = rtts.get(name)
            (unmeasured if e.rtt is None else known).append(e)
        # Sorted stably by predicted distance, each computed once.
        keys = [dist(e.vec, mvec) + e.height for e in unmeasured]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        del order[self.params.probe_count(pending.k):]
        pending.known = known
        pending.candidates = [unmeasured[i] for i in order]
        if not pending.candidates:
            self._finish(search_id, pending)
            return
        pending.outstanding = len(pending.candidates)
        pending.launching = True
        pending.timer = self.endpoint.call_later(
            self.params.hop_timeout,
            lambda: self._finish(search_id, pending))
        for entry in pending.candidates:
            self.prober.probe(entry.peer,
                              self._on_sample_cb(search_id, pending, entry))
        pending.launching = False
        if pending.outstanding == 0:
            self._finish(search_id, pending)

    def _on_sample_cb(self, search_id: str, pending: _Pending,
                      entry: _Entry) -> Callable[[RttSample | None], None]:
        def on_sample(sample: RttSample | None) -> None:
            if pending.finished:
                return
            if sample is not None:
                pending.samples.append((sample.rtt_ms, entry, sample))
            pending.outstanding -= 1
            if pending.outstanding == 0 and not pending.launching:
                self._finish(search_id, pending)
        return on_sample

    def _finish(self, search_id: str, pending: _Pending) -> None:
        if pending.finished:
            return
        pending.finished = True
        if pending.timer is not None:
            pending.timer.cancel()
        self._pending.pop(search_id, None)
        if pending.own:
            now = self.endpoint.now()
            peers = [RankedPeer(e.peer, e.rtt, e.coord)
                     for e in pending.known]
            for rtt, entry, sample in pending.samples:
                entry.set_coord(sample.coordinate, now)
                entry.rtt = rtt
                self._remember(entry.name, rtt)
                peers.append(RankedPeer(entry.peer, rtt, sample.coordinate))
            peers.sort(key=_RTT_MS)
            # A peer that did not answer its probe may be gone: it does not
            # enter the near set on a prediction.
            answered = {s[1].name for s in pending.samples}
            lost = {e.name for e in pending.candidates} - answered
            self._merge_near(e for e in pending.view
                             if e.name not in lost)
            probes = len(pending.candidates)
        else:
            point = pending.point
            peers = sorted((RankedPeer(e.peer, point.distance(e.coord),
                                       e.coord, False)
                            for e in pending.view),
                           key=lambda p: p.rtt_ms)[:pending.k]
            probes = 0
        self.stats.searches_done += 1
        result = SpiralResult(peers, pending.hops, pending.messages, probes,
                              pending.visited, pending.timed_out)
        try:
            pending.on_done(result)
        except Exception:
            LOG.exception('spiral search %(id)s: result callback failed',
                          {'id': search_id})


# -- validation of network input ----------------------------------------------

#: What a JSON array may be: a list as decoded, or a tuple in a message
#: this class built (JSON encodes both alike).
_ARRAY = (list, tuple)


def _fail(kind: str, field: str, expected: str, got: Any) -> None:
    try:
        text = repr(got)
    except ValueError:  # an integer too long to print
        text = '<%s too large to show>' % type(got).__name__
    if len(text) > 80:
        text = text[:77] + '...'
    raise InvalidMessage('%s: field %r must be %s, got %s'
                         % (kind, field, expected, text))


def _check_int(kind, msg, field, low, high) -> int:
    value = msg[field]
    if (not isinstance(value, int) or isinstance(value, bool) or
            not low <= value <= high):
        _fail(kind, field, 'an integer from %d to %d' % (low, high), value)
    return value


def _check_name(kind, field, value, limit=MAX_NAME) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        _fail(kind, field, 'a non-empty string of at most %d characters'
              % limit, value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_coord(kind, field, value, dimensions) -> None:
    expected = ('a coordinate [[x1, ..., xn], height] of at most %d finite '
                'JSON numbers and a height >= 0' % MAX_DIMENSIONS)
    if (not isinstance(value, _ARRAY) or len(value) != 2 or
            not isinstance(value[0], _ARRAY) or
            len(value[0]) > MAX_DIMENSIONS or
            not all(_is_number(x) for x in value[0]) or
            not _is_number(value[1])):
        _fail(kind, field, expected, value)
    try:
        Coordinate.from_wire(value, dimensions)
    except (ValueError, OverflowError) as exc:
        _fail(kind, field, '%s (%s)' % (expected, exc), value)


def _check_view(kind, msg, dimensions) -> None:
    view = msg['view']
    if not isinstance(view, list) or len(view) > MAX_VIEW:
        _fail(kind, 'view', 'a list of at most %d [name, address, '
              'coordinate, age] entries' % MAX_VIEW, view)
    for i, entry in enumerate(view):
        field = 'view[%d]' % i
        if not isinstance(entry, _ARRAY) or len(entry) != 4:
            _fail(kind, field, 'a list [name, address, coordinate, age]',
                  entry)
        name, address, coord, age = entry
        _check_name(kind, field + '.name', name)
        if not isinstance(address, str) or len(address) > MAX_ADDRESS:
            _fail(kind, field + '.address', 'a "host:port" string of at '
                  'most %d characters' % MAX_ADDRESS, address)
        _check_coord(kind, field + '.coordinate', coord, dimensions)
        if not _is_number(age) or not 0 <= age <= MAX_AGE:
            _fail(kind, field + '.age', 'a number of seconds from 0 to %g'
                  % MAX_AGE, age)


def _check_visited(kind, msg) -> None:
    visited = msg['visited']
    if not isinstance(visited, list) or not 0 < len(visited) <= MAX_VISITED:
        _fail(kind, 'visited', 'a non-empty list of at most %d peer names'
              % MAX_VISITED, visited)
    for i, name in enumerate(visited):
        _check_name(kind, 'visited[%d]' % i, name)


def validate_message(message: Any, dimensions: int | None = None) -> None:
    """Check every field of a ``spiral.*`` message from the network.

    Raises InvalidMessage naming the first bad field and the form it must
    have. Unknown fields are refused too, so that what ``handle`` reads is
    exactly what was checked. ``dimensions``, when given, is the number of
    coordinate dimensions every coordinate must have.
    """
    kind = check_envelope(message, 'spiral', _FIELDS)
    _check_name(kind, 'search', message['search'], MAX_SEARCH_ID)
    if kind == ACK:
        return
    _check_int(kind, message, 'messages', 0, MAX_MESSAGES)
    _check_view(kind, message, dimensions)
    _check_visited(kind, message)
    if kind == REPLY:
        _check_int(kind, message, 'hops', 0, MAX_HOPS)
        return
    max_hops = _check_int(kind, message, 'max_hops', 1, MAX_HOPS)
    _check_int(kind, message, 'hops', 0, max_hops - 1)
    _check_int(kind, message, 'k', 1, MAX_K)
    try:
        PeerRef.from_wire(message['origin'])
    except ValueError:
        _fail(kind, 'origin', 'a peer [name, "host:port"]',
              message['origin'])
    _check_name(kind, 'origin[0]', message['origin'][0])
    _check_coord(kind, 'origin_coord', message['origin_coord'], dimensions)
