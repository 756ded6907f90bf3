"""Co-simulation of Vivaldi coordinates and the spiral nearest-peer search.

Every simulated node runs the production ``VivaldiNode`` and
``SpiralService`` classes over a ``SimNetwork`` on a ``VirtualClock``; the
only simulation shortcut is that a round's Vivaldi probes are answered at
once from the topology (the agent gets the same numbers one round trip
later), which keeps 10,000 nodes x 100 rounds within a minute.

Round ``r`` lasts ``round_seconds`` of virtual time. In it, every node
probes one peer, as the agent does: half the time a member of its near set
(``representative=False``: it sharpens the coordinates where locality
matters without skewing the error estimate), otherwise a peer drawn from
the whole membership (``representative=True``). Every ``search_every``
rounds, every node starts a spiral search for its own ``k`` nearest peers at
a random moment of the round; the searches travel over the simulated network
(half an RTT per message) and end with probes by the ``MatrixProber``.

To show what the learning rule is worth, the spiral search runs twice over
the same coordinates: one population of ``SpiralService`` with learning on
(the one the Vivaldi probes follow, as in the agent) and one with learning
off, on two separate simulated networks. Both see the same coordinates,
joins and search schedule, so the difference in recall is the rule's alone.

Figures (``LocalityReport``):

* Vivaldi median and 90th-percentile relative error over all pairs
  (a sample of ``error_pairs`` pairs on large topologies), per round;
  the median of the nodes' own error estimates next to the median of their
  real per-node errors, per round.
* Spiral recall@k of each search wave against the true ``k`` nearest by
  RTT (``topology.rtts_from``), learning on and off, and messages, hops and
  probes per search.
"""

from collections.abc import Callable
import dataclasses
import gc
import math
import random
import statistics
import time

import numpy as np

from discovery_nova.overlay.coordinates import VivaldiNode
from discovery_nova.overlay.coordinates import VivaldiParams
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.spiral import SpiralParams
from discovery_nova.overlay.spiral import SpiralResult
from discovery_nova.overlay.spiral import SpiralService
from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.matrix_prober import MatrixProber
from discovery_nova.sim.network import SimNetwork
from discovery_nova.sim.topology import Topology

Progress = Callable[[int, int], None]
FinishHook = Callable[[Topology, list, list], None]

#: Peers each sampled source is paired with on large topologies.
_ERROR_PEERS = 1000


@dataclasses.dataclass
class LocalityReport:
    """Series and summary figures of one co-simulation run.

    Per-round series are indexed like ``error_rounds`` (round numbers,
    measured after that round's Vivaldi probes); per-wave series like
    ``search_rounds`` (the round in which the wave of searches started).
    ``*_no_learning`` series are empty when the comparison was not run.
    """

    topology: str
    nodes: int
    rounds: int
    seed: int
    search_every: int
    k: int
    dimensions: int
    #: Nodes whose pairs the error figures are over (all of them when
    #: the topology has no more than ``error_pairs`` pairs).
    error_sources: int
    #: Nodes whose searches are scored for recall.
    recall_sources: int

    error_rounds: list[int] = dataclasses.field(default_factory=list)
    error_median: list[float] = dataclasses.field(default_factory=list)
    error_p90: list[float] = dataclasses.field(default_factory=list)
    #: Median over nodes of the error each node estimates for itself.
    estimate_median: list[float] = dataclasses.field(default_factory=list)
    #: Median over nodes of each node's real median relative error.
    real_node_error_median: list[float] = dataclasses.field(
        default_factory=list)

    search_rounds: list[int] = dataclasses.field(default_factory=list)
    recall_learning: list[float] = dataclasses.field(default_factory=list)
    recall_no_learning: list[float] = dataclasses.field(
        default_factory=list)
    messages_learning: list[float] = dataclasses.field(default_factory=list)
    messages_no_learning: list[float] = dataclasses.field(
        default_factory=list)
    hops_learning: list[float] = dataclasses.field(default_factory=list)
    probes_learning: list[float] = dataclasses.field(default_factory=list)

    vivaldi_samples: int = 0
    samples_rejected: int = 0
    searches: int = 0
    searches_timed_out: int = 0
    sim_messages: int = 0
    wall_seconds: float = 0.0
    #: CPU time of this process during the run: on a shared machine the
    #: wall time also counts other programs' turns.
    cpu_seconds: float = 0.0

    def summary(self) -> dict:
        """The headline figures: last measured round, last search wave."""
        def last(series):
            return series[-1] if series else None

        est, real = last(self.estimate_median), last(
            self.real_node_error_median)
        return {
            'topology': self.topology,
            'nodes': self.nodes,
            'rounds': self.rounds,
            'k': self.k,
            'error_median': last(self.error_median),
            'error_p90': last(self.error_p90),
            'estimate_median': est,
            'real_node_error_median': real,
            'estimate_ratio': (est / real if est is not None and real
                               else None),
            'recall_learning': last(self.recall_learning),
            'recall_no_learning': last(self.recall_no_learning),
            'first_wave_recall': (self.recall_learning[0]
                                  if self.recall_learning else None),
            'messages_per_search': (statistics.fmean(self.messages_learning)
                                    if self.messages_learning else None),
            'probes_per_search': (statistics.fmean(self.probes_learning)
                                  if self.probes_learning else None),
            'hops_per_search': (statistics.fmean(self.hops_learning)
                                if self.hops_learning else None),
            'searches': self.searches,
            'searches_timed_out': self.searches_timed_out,
            'vivaldi_samples': self.vivaldi_samples,
            'samples_rejected': self.samples_rejected,
            'wall_seconds': self.wall_seconds,
            'cpu_seconds': self.cpu_seconds,
        }

    def as_dict(self) -> dict:
        """Everything, series included, as plain JSON-compatible data."""
        out = dataclasses.asdict(self)
        out['summary'] = self.summary()
        return out


class _Arm:
    """One population of spiral services on its own simulated network."""

    def __init__(self, clock, topology, vivaldi, params, rng):
        self.network = SimNetwork(clock, topology)
        self.services: list[SpiralService] = []
        names = topology.names
        for i, name in enumerate(names):
            node = vivaldi[i]
            service = SpiralService(
                self.network.endpoint(name), PeerRef(name),
                _coordinate_of(node),
                MatrixProber(self.network, name, _vivaldi_lookup(
                    vivaldi, topology.index)),
                params, rng)
            self.network.register(name, service.handle)
            self.services.append(service)
        self.recall: dict[int, list[float]] = {}
        self.messages: dict[int, list[int]] = {}
        self.hops: dict[int, list[int]] = {}
        self.probes: dict[int, list[int]] = {}

    def open_wave(self, wave: int) -> None:
        self.recall[wave] = []
        self.messages[wave] = []
        self.hops[wave] = []
        self.probes[wave] = []


def _coordinate_of(node: VivaldiNode):
    return lambda: node.coordinate


def _vivaldi_lookup(vivaldi, index):
    def lookup(name):
        i = index.get(name)
        return None if i is None else vivaldi[i]
    return lookup


def _true_nearest(topology: Topology, i: int, k: int) -> frozenset:
    rtts = np.array(topology.rtts_from(i), dtype=float, copy=True)
    rtts[i] = np.inf
    idx = np.argpartition(rtts, k)[:k]
    return frozenset(topology.names[j] for j in idx)


def _sources(n: int, limit: int, rng: random.Random) -> list[int]:
    if n <= limit:
        return list(range(n))
    return sorted(rng.sample(range(n), limit))


def run_locality_experiment(
        topology: Topology, rounds: int = 100, seed: int = 0,
        search_every: int = 10, progress: Progress | None = None, *,
        vivaldi_params: VivaldiParams | None = None,
        spiral_params: SpiralParams | None = None,
        compare_learning: bool = True,
        bootstrap_peers: int | None = None,
        near_probe_share: float = 0.5,
        round_seconds: float = 1.0,
        error_pairs: int = 250_000,
        recall_sample: int = 500,
        metrics_every: int = 1,
        on_finish: FinishHook | None = None) -> LocalityReport:
    """Run Vivaldi and spiral search together and measure them.

    :param topology: where the nodes sit (``discovery_nova.sim.topology``).
    :param rounds: Vivaldi rounds; each node probes one peer per round.
    :param seed: seeds every random choice; a run is reproducible.
    :param search_every: every node searches once every this many rounds
        (first in round ``search_every - 1``); 0 disables searches.
    :param progress: called as ``progress(rounds_done, rounds)`` after
        every round (a progress bar's update).
    :param vivaldi_params: defaults to ``VivaldiParams()`` (3 dimensions
        plus height, cc = ce = 0.25).
    :param spiral_params: defaults to ``SpiralParams()``; its ``learning``
        is set per population.
    :param compare_learning: also run the population without learning.
    :param bootstrap_peers: peers each node learns at the start, as
        membership would hand them; default ``long_links + 4``.
    :param near_probe_share: share of Vivaldi probes aimed at the near set.
    :param round_seconds: virtual seconds per round.
    :param error_pairs: the Vivaldi error figures are over all pairs when
        there are no more than this many, else over this many: a sample of
        source nodes each paired with 1,000 others drawn at random.
    :param recall_sample: at most this many nodes' searches are scored.
    :param metrics_every: measure the Vivaldi errors every this many rounds
        (and always after the last).
    :param on_finish: called once at the end as
        ``on_finish(topology, vivaldi_nodes, spiral_services)`` (the
        learning population), for pictures of the final state such as the
        overlay map; the report itself keeps only figures.
    :raises ValueError: on a parameter out of range.
    """
    if rounds < 1:
        raise ValueError('rounds must be at least 1, got %r' % rounds)
    if search_every < 0:
        raise ValueError('search_every must be >= 0, got %r' % search_every)
    if metrics_every < 1:
        raise ValueError('metrics_every must be >= 1, got %r'
                         % metrics_every)
    if not 0.0 <= near_probe_share <= 1.0:
        raise ValueError('near_probe_share must be in [0, 1], got %r'
                         % near_probe_share)
    if error_pairs < 1 or recall_sample < 1:
        raise ValueError('error_pairs and recall_sample must be >= 1, got '
                         '%r and %r' % (error_pairs, recall_sample))
    if not round_seconds > 0:
        raise ValueError('round_seconds must be positive, got %r'
                         % round_seconds)
    sparams = spiral_params or SpiralParams()
    if sparams.spiral_k >= topology.size:
        raise ValueError('spiral_k=%d needs a topology of more than %d '
                         'nodes, this one has %d'
                         % (sparams.spiral_k, sparams.spiral_k,
                            topology.size))
    started = time.perf_counter()
    cpu_started = time.process_time()
    # The cyclic garbage collector is off for the run, set-up included.
    # What is built lives for the whole run, and what a round creates
    # (messages, views, timers) is freed by reference counting: the
    # protocol and the clock leave no cycles behind (a cancelled timer
    # drops its callback). Each collection would walk the young objects and
    # touch everything they point at, all over a heap of hundreds of
    # megabytes: a sixth of a 10,000-node run's time even with collections
    # made rare. Whatever cycle there is waits for the collector to be
    # back on.
    enabled = gc.isenabled()
    gc.disable()
    try:
        experiment = _Experiment(
            topology, seed, search_every, vivaldi_params or VivaldiParams(),
            sparams, compare_learning, bootstrap_peers, near_probe_share,
            round_seconds, error_pairs, recall_sample, rounds)
        for r in range(rounds):
            experiment.run_round(r)
            if r % metrics_every == metrics_every - 1 or r == rounds - 1:
                experiment.measure(r)
            if progress is not None:
                progress(r + 1, rounds)
        experiment.clock.run_until()
    finally:
        if enabled:
            gc.enable()
    report = experiment.finish()
    if on_finish is not None:
        on_finish(topology, experiment.vivaldi, experiment.arms[0].services)
    report.wall_seconds = time.perf_counter() - started
    report.cpu_seconds = time.process_time() - cpu_started
    return report


class _Experiment:
    """The state of one run: nodes, populations, schedule, figures."""

    def __init__(self, topology, seed, search_every, vparams, sparams,
                 compare_learning, bootstrap_peers, near_probe_share,
                 round_seconds, error_pairs, recall_sample, rounds):
        n = topology.size
        self.topology = topology
        self.search_every = search_every
        self.near_probe_share = near_probe_share
        self.round_seconds = round_seconds
        self.k = k = sparams.spiral_k
        self.rng = rng = random.Random(seed)
        self.clock = VirtualClock()
        self.vivaldi = [VivaldiNode(vparams, random.Random(rng.random()))
                        for _ in range(n)]
        self.arms = [_Arm(self.clock, topology, self.vivaldi,
                          dataclasses.replace(sparams, learning=True),
                          random.Random(rng.random()))]
        if compare_learning:
            self.arms.append(_Arm(
                self.clock, topology, self.vivaldi,
                dataclasses.replace(sparams, learning=False),
                random.Random(rng.random())))
        boot = (sparams.long_links + 4 if bootstrap_peers is None
                else bootstrap_peers)
        boot = min(boot, n - 1)
        names = topology.names
        for i in range(n):
            for j in rng.sample(range(n - 1), boot):
                j += j >= i
                for arm in self.arms:
                    arm.services[i].add_known(PeerRef(names[j]),
                                              self.vivaldi[j].coordinate)
        error_peers = min(n - 1, _ERROR_PEERS)
        error_src = _sources(n, max(1, error_pairs // error_peers), rng)
        recall_src = _sources(n, recall_sample, rng)
        self.truth = {i: _true_nearest(topology, i, k) for i in recall_src}
        self.errors = _ErrorMeter(topology, error_src, error_peers, rng)
        self.report = LocalityReport(
            topology=topology.describe(), nodes=n, rounds=rounds, seed=seed,
            search_every=search_every, k=k, dimensions=vparams.dimensions,
            error_sources=len(error_src), recall_sources=len(recall_src))

    def run_round(self, r: int) -> None:
        clock = self.clock
        clock.run_until(r * self.round_seconds)
        self._vivaldi_round()
        every = self.search_every
        if every and r % every == every - 1:
            report = self.report
            wave = len(report.search_rounds)
            report.search_rounds.append(r)
            base = r * self.round_seconds
            rnd = self.rng.random
            for arm in self.arms:
                arm.open_wave(wave)
                for i in range(self.topology.size):
                    clock.call_at(base + rnd() * self.round_seconds,
                                  self._start_search, arm, i, wave)

    def _vivaldi_round(self) -> None:
        """Every node probes one peer; answered at once from the topology.
        """
        topology = self.topology
        index = topology.index
        names = topology.names
        rtt_of = topology.rtt
        vivaldi = self.vivaldi
        learning = self.arms[0].services
        all_services = [arm.services for arm in self.arms]
        share = self.near_probe_share
        rnd = self.rng.random
        n = topology.size
        for i in range(n):
            near = learning[i].near_names() if rnd() < share else None
            if near:
                peer = near[int(rnd() * len(near))]
                j = index[peer]
                representative = False
            else:
                j = int(rnd() * (n - 1))
                j += j >= i
                peer = names[j]
                representative = True
            remote = vivaldi[j]
            coord = remote.coordinate
            rtt = rtt_of(i, j)
            vivaldi[i].observe(rtt, coord, remote.error, representative)
            for services in all_services:
                services[i].update_coordinate(peer, coord, rtt)

    def _start_search(self, arm: '_Arm', i: int, wave: int) -> None:
        want = self.truth.get(i)
        k = self.k

        def on_done(result: SpiralResult) -> None:
            arm.messages[wave].append(result.messages)
            arm.hops[wave].append(result.hops)
            arm.probes[wave].append(result.probes)
            if want is not None:
                got = {p.peer.name for p in result.peers[:k]}
                arm.recall[wave].append(len(got & want) / k)
        arm.services[i].search(k, on_done)

    def measure(self, r: int) -> None:
        median, p90, est, real = self.errors.measure(self.vivaldi)
        report = self.report
        report.error_rounds.append(r)
        report.error_median.append(median)
        report.error_p90.append(p90)
        report.estimate_median.append(est)
        report.real_node_error_median.append(real)

    def finish(self) -> LocalityReport:
        report = self.report
        arms = self.arms
        waves = range(len(report.search_rounds))
        learn = arms[0]
        report.recall_learning = [_mean(learn.recall[w]) for w in waves]
        report.messages_learning = [_mean(learn.messages[w]) for w in waves]
        report.hops_learning = [_mean(learn.hops[w]) for w in waves]
        report.probes_learning = [_mean(learn.probes[w]) for w in waves]
        if len(arms) > 1:
            report.recall_no_learning = [_mean(arms[1].recall[w])
                                         for w in waves]
            report.messages_no_learning = [_mean(arms[1].messages[w])
                                           for w in waves]
        report.vivaldi_samples = sum(v.counters.accepted
                                     for v in self.vivaldi)
        report.samples_rejected = sum(v.counters.rejected
                                      for v in self.vivaldi)
        services = [s for arm in arms for s in arm.services]
        report.searches = sum(s.stats.searches_done for s in services)
        report.searches_timed_out = sum(s.stats.searches_timed_out
                                        for s in services)
        report.sim_messages = sum(arm.network.sent for arm in arms)
        return report


def _mean(values) -> float:
    return statistics.fmean(values) if values else math.nan


class _ErrorMeter:
    """Relative errors of the coordinates over a fixed set of pairs.

    Each source node is paired with every other node, or with
    ``peers_per_source`` of them drawn at random on large topologies: the
    per-node median over a thousand peers is as good as over ten thousand,
    and a round's measure stays a few milliseconds.
    """

    def __init__(self, topology: Topology, sources: list[int],
                 peers_per_source: int, rng: random.Random):
        n = topology.size
        self.sources = np.array(sources, dtype=np.intp)
        cols = []
        for i in sources:
            if n - 1 <= peers_per_source:
                row = [j for j in range(n) if j != i]
            else:
                row = [j + (j >= i) for j in
                       rng.sample(range(n - 1), peers_per_source)]
            cols.append(row)
        self.cols = np.array(cols, dtype=np.intp)
        rtt = np.array([np.asarray(topology.rtts_from(i), dtype=float)[c]
                        for i, c in zip(sources, cols, strict=True)])
        self.mask = rtt > 0
        self.all_valid = bool(self.mask.all())
        self.rtt = np.where(self.mask, rtt, 1.0)

    def measure(self, vivaldi: list[VivaldiNode]):
        """(median, p90 over pairs, median estimate, median real per node)
        """
        coords = [v.coordinate for v in vivaldi]
        vec = np.array([c.vec for c in coords], dtype=float)
        height = np.array([c.height for c in coords], dtype=float)
        src = self.sources
        diff = vec[self.cols] - vec[src][:, None, :]
        pred = np.sqrt((diff * diff).sum(axis=2))
        pred += height[self.cols]
        pred += height[src][:, None]
        rel = np.abs(pred - self.rtt) / self.rtt
        if self.all_valid:
            per_node = np.median(rel, axis=1)
            median, p90 = np.percentile(rel, [50, 90])
        else:
            median, p90 = np.percentile(rel[self.mask], [50, 90])
            rel[~self.mask] = np.nan
            per_node = np.nanmedian(rel, axis=1)
        estimate = np.median([vivaldi[i].error for i in src])
        return (float(median), float(p90), float(estimate),
                float(np.median(per_node)))
