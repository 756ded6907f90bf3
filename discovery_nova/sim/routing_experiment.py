"""Simulation of ring routing: hops against N, before and after learning.

Every simulated node runs the production ``RingRouter`` (and, for the
location test, ``Locator``) over a ``SimNetwork`` on a ``VirtualClock``:
messages take half the topology's RTT, every hop is acknowledged, timeouts
run on virtual time. Nothing is shortcut: a hop in these figures is a
message the agent would send.

For each size N:

1. *Before learning*: nodes know their ``ring_successors`` successors,
   their predecessor and the ``join_peers`` random members a join gives;
   learning is off. ``measure_lookups`` lookups of random keys from random
   nodes give the mean and 90th percentile of hops.
2. *Warm-up*: learning on, every node starts ``warmup_lookups_per_node``
   lookups of random keys (in a random order over all nodes, one every
   ``spacing`` virtual seconds, so many are in flight at once). The mean
   hops of every ``window`` completed lookups form the series that shows
   hops falling from linear towards logarithmic.
3. *After learning*: ``measure_lookups`` more lookups (learning still on,
   as it always is in the agent), measured as in 1.

Every answer is checked against the true successor of the key on the
whole ring; a wrong answer is counted, not hidden.

The location test (``run_locate_experiment``) stores records from random
nodes, then kills a share of the nodes twice: first without telling
membership (requests must time out around the dead and still find a copy),
then again after membership dropped the first dead (records were handed
over to the new replica sets). Every record is looked up after each kill;
the figures say how many were found, next to how many still had a live copy
anywhere (the most any lookup could find).
"""

from collections.abc import Callable
import dataclasses
import math
import random
import statistics
import time
from typing import Any

from discovery_nova.overlay.errors import RoutingFailed
from discovery_nova.overlay.locator import Located
from discovery_nova.overlay.locator import Locator
from discovery_nova.overlay.locator import LocatorParams
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.ring import MemberRing
from discovery_nova.overlay.ring import RingParams
from discovery_nova.overlay.ring import RingRouter
from discovery_nova.overlay.ring import ring_id
from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.network import SimNetwork
from discovery_nova.sim.topology import TOPOLOGIES
from discovery_nova.sim.topology import BackboneTopology
from discovery_nova.sim.topology import PlanetLabTopology
from discovery_nova.sim.topology import Topology

#: ``progress(done, total)``: lookups finished so far over the whole run.
Progress = Callable[[int, int], None]

#: The size of the shipped PlanetLab matrix; ``topology='auto'`` uses it
#: for this N and a generated backbone for every other.
PLANETLAB_SIZE = 490

#: Defaults of the simulated routers: the option defaults, with timeouts
#: sized for WAN RTTs of up to a few hundred ms.
SIM_PARAMS = RingParams(request_timeout=30.0, hop_timeout=1.0)


def target_hops(n: int) -> float:
    """The figure to reach: ``0.5 * log2(N) + 1`` mean hops."""
    return 0.5 * math.log2(n) + 1.0


@dataclasses.dataclass
class SizeRun:
    """Routing figures of one ring size."""

    nodes: int
    topology: str
    warmup_lookups_per_node: int
    target: float
    before_mean: float = 0.0
    before_p90: float = 0.0
    after_mean: float = 0.0
    after_p90: float = 0.0
    #: Mean lookup latency (ms of virtual time), before and after.
    before_latency_ms: float = 0.0
    after_latency_ms: float = 0.0
    #: Warm-up series: lookups completed at the end of each window, and
    #: the mean hops of that window.
    warmup_lookups: list[int] = dataclasses.field(default_factory=list)
    warmup_mean_hops: list[float] = dataclasses.field(default_factory=list)
    lookups: int = 0
    #: Lookups that ended in RoutingFailed.
    failed: int = 0
    #: Lookups answered by a node that is not the key's true successor.
    wrong: int = 0
    #: Mean learned shortcuts per node at the end.
    shortcuts_per_node: float = 0.0
    messages: int = 0
    hop_timeouts: int = 0
    virtual_seconds: float = 0.0
    wall_seconds: float = 0.0
    #: Processor time of this process for the run (wall time also counts
    #: whatever else the machine was doing).
    cpu_seconds: float = 0.0

    @property
    def meets_target(self) -> bool:
        return self.after_mean <= self.target

    def summary(self) -> dict[str, Any]:
        return {
            'nodes': self.nodes,
            'topology': self.topology,
            'before_mean': self.before_mean,
            'before_p90': self.before_p90,
            'after_mean': self.after_mean,
            'after_p90': self.after_p90,
            'target': self.target,
            'meets_target': self.meets_target,
            'after_latency_ms': self.after_latency_ms,
            'failed': self.failed,
            'wrong': self.wrong,
            'wall_seconds': self.wall_seconds,
            'cpu_seconds': self.cpu_seconds,
        }


@dataclasses.dataclass
class LocatePhase:
    """Lookups of every stored record after one round of kills."""

    label: str
    #: Nodes dead so far, and whether membership has dropped them.
    dead: int
    membership_updated: bool
    records: int
    #: Records with at least one copy on a live node (the most findable).
    with_live_copy: int
    found: int
    #: Lookups that ended in RoutingFailed.
    failed: int
    mean_hops: float
    mean_latency_ms: float
    hop_timeouts: int


@dataclasses.dataclass
class LocateRun:
    """The location test: records stored, nodes killed, records found."""

    nodes: int
    topology: str
    records: int
    replicas: int
    kill_fraction: float
    stored: int = 0
    phases: list[LocatePhase] = dataclasses.field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def all_found(self) -> bool:
        """Every record was found after every round of kills."""
        return all(p.found == p.records for p in self.phases)

    @property
    def all_findable_found(self) -> bool:
        """Every record that still had a live copy was found: the most
        routing can do (a record whose every holder died is gone)."""
        return all(p.found == p.with_live_copy for p in self.phases)


@dataclasses.dataclass
class RoutingReport:
    """Everything one routing experiment measured."""

    seed: int
    warmup_lookups_per_node: int
    measure_lookups: int
    window: int
    params: dict[str, Any]
    sizes: list[SizeRun] = dataclasses.field(default_factory=list)
    locate: LocateRun | None = None
    wall_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The headline figures: hops per size, the target at the largest
        N, and the location test."""
        largest = max(self.sizes, key=lambda s: s.nodes, default=None)
        out: dict[str, Any] = {
            'sizes': [s.summary() for s in self.sizes],
            'largest_n': largest.nodes if largest else None,
            'largest_after_mean': largest.after_mean if largest else None,
            'largest_target': largest.target if largest else None,
            'largest_meets_target': (largest.meets_target if largest
                                     else None),
            'wall_seconds': self.wall_seconds,
        }
        if self.locate is not None:
            out['locate'] = {
                'nodes': self.locate.nodes,
                'records': self.locate.records,
                'stored': self.locate.stored,
                'all_found': self.locate.all_found,
                'all_findable_found': self.locate.all_findable_found,
                'phases': [dataclasses.asdict(p)
                           for p in self.locate.phases],
            }
        return out

    def as_dict(self) -> dict[str, Any]:
        """Everything, series included, as plain JSON-compatible data."""
        out = dataclasses.asdict(self)
        out['summary'] = self.summary()
        return out


def make_topology(kind: str, n: int, seed: int) -> Topology:
    """``auto``: the PlanetLab matrix for 490 nodes, else a backbone."""
    if kind == 'auto':
        if n == PLANETLAB_SIZE:
            return PlanetLabTopology()
        return BackboneTopology(n, seed=seed)
    try:
        cls = TOPOLOGIES[kind]
    except KeyError:
        raise ValueError('unknown topology %r, expected auto or one of %s'
                         % (kind, ', '.join(sorted(TOPOLOGIES)))) from None
    return cls(size=n, seed=seed)


class _Ring:
    """N simulated nodes, each with a production RingRouter."""

    def __init__(self, topology: Topology, params: RingParams, seed: int,
                 learning: bool,
                 locator_params: LocatorParams | None = None):
        self.topology = topology
        self.clock = VirtualClock()
        self.network = SimNetwork(self.clock, topology)
        self.members = MemberRing(PeerRef(name) for name in topology.names)
        self.routers: dict[str, RingRouter] = {}
        self.locators: dict[str, Locator] = {}
        handlers: dict[str, Callable] = {}
        for i, name in enumerate(topology.names):
            router = RingRouter(self.network.endpoint(name), PeerRef(name),
                                params, rng=random.Random(seed * 7919 + i))
            router.learning = learning
            self.routers[name] = router
            if locator_params is not None:
                locator = Locator(router, locator_params)
                self.locators[name] = locator
                handlers[name] = self._dispatcher(router, locator)
            else:
                handlers[name] = router.handle
        for name, router in self.routers.items():
            router.set_members(self.members)
            self.network.register(name, handlers[name])

    @staticmethod
    def _dispatcher(router: RingRouter, locator: Locator) -> Callable:
        def dispatch(sender: str, message: dict[str, Any]) -> None:
            if message['type'].startswith('locate.'):
                locator.handle(sender, message)
            else:
                router.handle(sender, message)
        return dispatch

    def set_learning(self, on: bool) -> None:
        for router in self.routers.values():
            router.learning = on

    def hop_timeouts(self) -> int:
        return sum(r.stats.hop_timeouts for r in self.routers.values())


class _Batch:
    """Lookups started one every ``spacing`` s, answers collected."""

    def __init__(self, ring: _Ring, jobs: list[tuple[str, str]],
                 spacing: float, on_result: Callable[[str, Any], None]):
        self.ring = ring
        self.jobs = jobs
        self.spacing = spacing
        self.on_result = on_result
        self.next = 0

    def run(self, start: Callable[[str, str, Callable], None]) -> None:
        clock = self.ring.clock

        def launch() -> None:
            source, key = self.jobs[self.next]
            self.next += 1
            start(source, key, lambda outcome, k=key: self.on_result(
                k, outcome))
            if self.next < len(self.jobs):
                clock.call_later(self.spacing, launch)
        if self.jobs:
            clock.call_later(0.0, launch)
        clock.run_until()


def _p90(values: list[int]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1,
                             int(math.ceil(0.9 * len(ordered))) - 1)])


def _random_key(rng: random.Random) -> str:
    return 'vm-%016x' % rng.getrandbits(64)


def run_size(n: int, warmup_lookups_per_node: int, seed: int, *,
             topology: str = 'auto', params: RingParams = SIM_PARAMS,
             measure_lookups: int = 1000, window: int = 1000,
             spacing: float = 0.001,
             progress: Callable[[int], None] | None = None) -> SizeRun:
    """Measure one ring of ``n`` nodes; ``progress(k)`` after every
    ``k`` lookups finished."""
    started = time.perf_counter()
    cpu_started = time.process_time()
    topo = make_topology(topology, n, seed)
    rng = random.Random(seed * 1000003 + n)
    ring = _Ring(topo, params, seed, learning=False)
    names = topo.names
    run = SizeRun(n, topo.describe(), warmup_lookups_per_node,
                  target_hops(n))

    counter = [0]

    def measured(hops: list[int], latency: list[float]):
        def on_result(key: str, outcome: Any) -> None:
            counter[0] += 1
            if progress is not None and counter[0] % 500 == 0:
                progress(500)
            run.lookups += 1
            if isinstance(outcome, RoutingFailed):
                run.failed += 1
                return
            truth = ring.members.responsible(ring_id(key)).name
            if outcome.node.name != truth:
                run.wrong += 1
            hops.append(outcome.hops)
            latency.append(outcome.latency)
        return on_result

    def start(source: str, key: str, done: Callable) -> None:
        ring.routers[source].route(key, None, done)

    def measure() -> tuple[float, float, float]:
        hops: list[int] = []
        latency: list[float] = []
        jobs = [(rng.choice(names), _random_key(rng))
                for _ in range(measure_lookups)]
        _Batch(ring, jobs, spacing, measured(hops, latency)).run(start)
        return (statistics.fmean(hops) if hops else 0.0, _p90(hops),
                1000.0 * statistics.fmean(latency) if latency else 0.0)

    run.before_mean, run.before_p90, run.before_latency_ms = measure()

    ring.set_learning(True)
    order = [name for name in names for _ in range(warmup_lookups_per_node)]
    rng.shuffle(order)
    jobs = [(name, _random_key(rng)) for name in order]
    window_hops: list[int] = []
    window_latency: list[float] = []
    collect = measured(window_hops, window_latency)
    done = [0]

    def warm(key: str, outcome: Any) -> None:
        collect(key, outcome)
        done[0] += 1
        if window_hops and (len(window_hops) >= window or
                            done[0] == len(jobs)):
            run.warmup_lookups.append(done[0])
            run.warmup_mean_hops.append(statistics.fmean(window_hops))
            window_hops.clear()
    _Batch(ring, jobs, spacing, warm).run(start)

    run.after_mean, run.after_p90, run.after_latency_ms = measure()
    if progress is not None and counter[0] % 500:
        progress(counter[0] % 500)
    run.shortcuts_per_node = statistics.fmean(
        r.learned_count() for r in ring.routers.values())
    run.messages = ring.network.sent
    run.hop_timeouts = ring.hop_timeouts()
    run.virtual_seconds = ring.clock.now()
    run.wall_seconds = time.perf_counter() - started
    run.cpu_seconds = time.process_time() - cpu_started
    return run


def run_locate_experiment(n: int = 1000, records: int = 2000,
                          seed: int = 0, *, topology: str = 'auto',
                          params: RingParams = SIM_PARAMS,
                          locator_params: LocatorParams | None = None,
                          kill_fraction: float = 0.05,
                          warmup_lookups_per_node: int = 2,
                          spacing: float = 0.001,
                          progress: Callable[[int], None] | None = None
                          ) -> LocateRun:
    """Store ``records`` records, kill nodes twice, look every record up.

    Phase ``crash``: ``kill_fraction`` of the nodes die and membership is
    not told; phase ``after-membership``: membership drops them (records
    move to the new replica sets), then another ``kill_fraction`` die
    unannounced.
    """
    if not 0.0 <= kill_fraction < 0.5:
        raise ValueError('kill_fraction must be in [0, 0.5), got %r'
                         % kill_fraction)
    started = time.perf_counter()
    locator_params = locator_params or LocatorParams()
    topo = make_topology(topology, n, seed)
    rng = random.Random(seed * 1000003 + n + 1)
    ring = _Ring(topo, params, seed, learning=True,
                 locator_params=locator_params)
    names = topo.names
    run = LocateRun(n, topo.describe(), records, locator_params.replicas,
                    kill_fraction)

    def tick() -> None:
        if progress is not None:
            progress(1)

    # A short warm-up, so the test runs on learned tables as a real ring.
    warm_jobs = [(name, _random_key(rng)) for name in names
                 for _ in range(warmup_lookups_per_node)]
    rng.shuffle(warm_jobs)
    _Batch(ring, warm_jobs, spacing, lambda k, o: tick()).run(
        lambda s, k, d: ring.routers[s].route(k, None, d))

    values = {'vm-%08d' % i: rng.choice(names) for i in range(records)}
    stored = [0]

    def on_stored(key: str, outcome: Any) -> None:
        tick()
        if not isinstance(outcome, RoutingFailed):
            stored[0] += 1
    _Batch(ring, [(rng.choice(names), key) for key in values], spacing,
           on_stored).run(lambda s, k, d: ring.locators[s].put(
               k, values[k], d))
    run.stored = stored[0]

    alive = list(names)
    dead: list[str] = []

    def kill(count: int) -> None:
        rng.shuffle(alive)
        for name in alive[:count]:
            ring.network.kill(name)
            dead.append(name)
        del alive[:count]

    def lookup_all(label: str, updated: bool) -> None:
        held: set[str] = set()
        for name in alive:
            held.update(ring.locators[name].keys())
        live_copy = sum(1 for key in values if key in held)
        hops: list[int] = []
        latency: list[float] = []
        found = [0]
        failed = [0]
        timeouts = ring.hop_timeouts()

        def on_found(key: str, outcome: Any) -> None:
            tick()
            if isinstance(outcome, RoutingFailed):
                failed[0] += 1
                return
            hops.append(outcome.hops)
            if outcome.found and outcome.value == values[key]:
                found[0] += 1

        def start(source: str, key: str, done: Callable) -> None:
            started_at = ring.clock.now()

            def finished(outcome: Located | RoutingFailed) -> None:
                if not isinstance(outcome, RoutingFailed):
                    latency.append(ring.clock.now() - started_at)
                done(outcome)
            ring.locators[source].get(key, finished)

        jobs = [(rng.choice(alive), key) for key in values]
        _Batch(ring, jobs, spacing, on_found).run(start)
        run.phases.append(LocatePhase(
            label, len(dead), updated, len(values), live_copy, found[0],
            failed[0], statistics.fmean(hops) if hops else 0.0,
            1000.0 * statistics.fmean(latency) if latency else 0.0,
            ring.hop_timeouts() - timeouts))

    per_round = int(round(kill_fraction * n))
    kill(per_round)
    lookup_all('crash, membership not told', False)
    survivors = ring.members
    for name in dead:
        survivors = survivors.without(name)
    for name in alive:
        ring.routers[name].set_members(survivors)
    ring.clock.run_until()
    kill(per_round)
    lookup_all('membership updated, second crash', True)
    run.wall_seconds = time.perf_counter() - started
    return run


def run_routing_experiment(
        sizes: tuple[int, ...] | list[int] = (100, 300, 490, 1000, 3000,
                                              10000),
        warmup_lookups_per_node: int = 3, seed: int = 0,
        progress: Progress | None = None, *,
        topology: str = 'auto',
        params: RingParams | None = None,
        measure_lookups: int = 1000,
        window: int = 1000,
        locate: bool = True,
        locate_nodes: int = 1000,
        locate_records: int = 2000,
        kill_fraction: float = 0.05,
        locator_params: LocatorParams | None = None) -> RoutingReport:
    """Run the routing experiment over every size, then the location test.

    :param sizes: ring sizes N; with ``topology='auto'`` N = 490 runs on
        the shipped PlanetLab matrix, every other N on a generated
        ``BackboneTopology(N)``.
    :param warmup_lookups_per_node: lookups each node starts during the
        learning warm-up (W).
    :param seed: seeds every random choice; a run is reproducible.
    :param progress: called as ``progress(done, total)`` with lookups
        finished over the whole run (a progress bar's update).
    :param topology: ``auto``, or a name of ``TOPOLOGIES`` for every size.
    :param params: the routers' parameters; default ``SIM_PARAMS`` (the
        option defaults with WAN-sized timeouts).
    :param measure_lookups: lookups measured before and after learning.
    :param window: warm-up lookups per point of the hops-over-time series.
    :param locate: also run the location test.
    :param locate_nodes: ring size of the location test.
    :param locate_records: records stored in the location test.
    :param kill_fraction: share of nodes killed in each of its two rounds.
    :param locator_params: default ``LocatorParams()`` (2 extra copies).
    """
    sizes = list(sizes)
    if not sizes and not locate:
        raise ValueError('nothing to run: no sizes and no location test')
    for n in sizes:
        if not isinstance(n, int) or n < 2:
            raise ValueError('a ring size is an integer of at least 2, got '
                             '%r' % (n,))
    if warmup_lookups_per_node < 0 or measure_lookups < 1 or window < 1:
        raise ValueError('warmup_lookups_per_node must be >= 0, '
                         'measure_lookups and window >= 1')
    if locate and (locate_nodes < 2 or locate_records < 1 or
                   not 0.0 <= kill_fraction < 0.5):
        raise ValueError('the location test needs locate_nodes >= 2, '
                         'locate_records >= 1 and kill_fraction in '
                         '[0, 0.5), got %r, %r, %r'
                         % (locate_nodes, locate_records, kill_fraction))
    params = params or SIM_PARAMS
    started = time.perf_counter()
    report = RoutingReport(seed, warmup_lookups_per_node, measure_lookups,
                           window, dataclasses.asdict(params))
    total = sum(2 * measure_lookups + n * warmup_lookups_per_node
                for n in sizes)
    if locate:
        locate_warmup = 2
        total += locate_nodes * locate_warmup + 3 * locate_records
    done = [0]

    def advance(count: int) -> None:
        done[0] += count
        if progress is not None:
            progress(min(done[0], total), total)

    for n in sizes:
        report.sizes.append(run_size(
            n, warmup_lookups_per_node, seed, topology=topology,
            params=params, measure_lookups=measure_lookups, window=window,
            progress=advance))
    if locate:
        report.locate = run_locate_experiment(
            locate_nodes, locate_records, seed, topology=topology,
            params=params, locator_params=locator_params,
            kill_fraction=kill_fraction,
            warmup_lookups_per_node=locate_warmup, progress=advance)
    report.wall_seconds = time.perf_counter() - started
    return report

