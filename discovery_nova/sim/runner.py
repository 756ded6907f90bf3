"""The main simulation job: run the experiments, print figures, draw plots.

Used by ``discovery-nova simulate`` and by ``benchmarks/overlay_figures.py``.
Everything is written to a temporary directory first and moved into place
at the end, so a run that fails leaves no half-written output behind.
"""

from collections.abc import Callable
import dataclasses
import json
import math
import os
import shutil
import tempfile

import numpy as np

from discovery_nova.sim import plots
from discovery_nova.sim.locality_experiment import LocalityReport
from discovery_nova.sim.locality_experiment import run_locality_experiment
from discovery_nova.sim.topology import Topology

ProgressFactory = Callable[[str, int], Callable[[int, int], None]]


@dataclasses.dataclass
class Target:
    """One figure the issue asks for, and whether this run reached it."""

    name: str
    value: float | None
    bound: str
    met: bool | None

    def row(self) -> tuple[str, str, str, str]:
        value = '-' if self.value is None else '%.4g' % self.value
        state = {True: 'met', False: 'NOT met', None: 'n/a'}[self.met]
        return self.name, value, self.bound, state


def _fmt_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header])
              for i in range(len(header))]
    def line(cells) -> str:
        return '  '.join('%-*s' % (w, c)
                         for w, c in zip(widths, cells, strict=True))

    return '\n'.join([line(header), line('-' * w for w in widths)] +
                     [line(row) for row in rows])


def locality_targets(report: LocalityReport) -> list[Target]:
    s = report.summary()
    targets = [
        Target('vivaldi median relative error', s['error_median'],
               '<= 0.10 (planetlab-490)',
               s['error_median'] <= 0.10
               if report.topology.startswith('planetlab') else None),
        Target('vivaldi p90 relative error', s['error_p90'], 'reported',
               None),
        Target('error estimate / real error (median nodes)',
               s['estimate_ratio'], 'tracks: within 0.5x..2x',
               None if s['estimate_ratio'] is None
               else 0.5 <= s['estimate_ratio'] <= 2.0),
    ]
    if s['recall_learning'] is not None:
        targets.append(Target('spiral recall@%d after learning' % s['k'],
                              s['recall_learning'], '>= 0.9',
                              s['recall_learning'] >= 0.9))
    if s['recall_no_learning'] is not None:
        targets.append(Target('spiral recall@%d without learning' % s['k'],
                              s['recall_no_learning'], 'baseline', None))
    if s['messages_per_search'] is not None:
        ratio = s['messages_per_search'] / s['k']
        targets.append(Target('messages per search / k', ratio,
                              'O(k): bounded constant', ratio <= 10))
    return targets


def write_locality_outputs(report: LocalityReport, outdir: str,
                           final_coords: np.ndarray | None = None,
                           heights: np.ndarray | None = None,
                           links: list | None = None,
                           labels: list | None = None) -> list[str]:
    title = report.topology.split(' (')[0] + ', %d nodes' % report.nodes
    files = [plots.vivaldi_error_curves(
        report.error_rounds, report.error_median, report.error_p90,
        report.estimate_median, report.real_node_error_median,
        'Vivaldi relative error: ' + title,
        os.path.join(outdir, 'vivaldi-error.png'))]
    s = report.summary()
    if s['recall_learning'] is not None:
        labels_bar, recall, messages = [], [], []
        if s['recall_no_learning'] is not None:
            labels_bar.append('no\nlearning')
            recall.append(s['recall_no_learning'])
            messages.append(_mean(report.messages_no_learning))
        labels_bar.append('learning,\n1st wave')
        recall.append(s['first_wave_recall'])
        messages.append(report.messages_learning[0])
        labels_bar.append('learning,\nlast wave')
        recall.append(s['recall_learning'])
        messages.append(report.messages_learning[-1])
        files.append(plots.spiral_recall(
            labels_bar, recall, messages, report.k,
            'Spiral search: ' + title,
            os.path.join(outdir, 'spiral-recall.png')))
    if final_coords is not None:
        files.append(plots.overlay_map(
            final_coords, heights, links or [], labels or [], 0,
            'Overlay map (near-set links): ' + title,
            os.path.join(outdir, 'overlay-map.png')))
    return files


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


class OutputDir:
    """A directory filled in a temporary sibling and moved in at the end."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.tmp: str | None = None

    def __enter__(self) -> str:
        parent = os.path.dirname(self.path)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix='.%s.' % os.path.basename(
            self.path), dir=parent)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        if os.path.isdir(self.path):
            old = self.path + '.old'
            shutil.rmtree(old, ignore_errors=True)
            os.rename(self.path, old)
            os.rename(self.tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.tmp, self.path)


def dump_json(data: dict, path: str) -> None:
    with open(path, 'w') as out:
        json.dump(data, out, indent=1, sort_keys=True, default=float)



def routing_targets(report) -> list[Target]:
    targets = []
    for size in report.sizes:
        targets.append(Target(
            'ring mean hops, N=%d (before %.1f)' % (size.nodes,
                                                    size.before_mean),
            size.after_mean, '<= %.2f (0.5 log2 N + 1)' % size.target,
            size.meets_target))
    if report.locate is not None:
        s = report.summary().get('locate', {})
        found = s.get('all_findable_found')
        targets.append(Target(
            'locate: records with a live copy found after kills',
            None, 'all', found))
    return targets


def write_routing_outputs(report, outdir: str) -> list[str]:
    sizes = [s.nodes for s in report.sizes]
    files = [plots.routing_hops(
        sizes, [s.before_mean for s in report.sizes],
        [s.after_mean for s in report.sizes],
        'Ring routing: hops against N, before and after learning',
        os.path.join(outdir, 'routing-hops.png'))]
    largest = max(report.sizes, key=lambda s: s.nodes)
    if largest.warmup_lookups:
        files.append(plots.routing_warmup(
            largest.warmup_lookups, largest.warmup_mean_hops, largest.nodes,
            'Ring routing at N=%d: hops fall as lookups teach shortcuts'
            % largest.nodes, os.path.join(outdir, 'routing-warmup.png')))
    return files


class FinalState:
    """What the map and ``--show-node`` need from the nodes after a run:
    coordinates, heights and each node's near set (nearest first)."""

    def __init__(self):
        self.coordinates: np.ndarray | None = None
        self.heights: np.ndarray | None = None
        self.links: list[tuple[int, int]] = []
        self.near: dict[str, list[str]] = {}

    def capture(self, topology: Topology, vivaldi: list,
                spiral: list) -> None:
        self.coordinates = np.array([v.coordinate.vec for v in vivaldi])
        self.heights = np.array([v.coordinate.height for v in vivaldi])
        index = topology.index
        for i, service in enumerate(spiral):
            near = [p.peer.name for p in service.near_peers()]
            self.near[topology.names[i]] = near
            self.links.extend((i, index[name]) for name in near[:3])


@dataclasses.dataclass
class SimulationResult:
    text: str
    files: list[str]
    report: dict
    targets: list[Target]


def simulate(topology: Topology, rounds: int, seed: int, search_every: int,
             routing_sizes: list[int] | None, warmup_lookups: int,
             show_node: str | None, outdir: str,
             progress: ProgressFactory) -> SimulationResult:
    """Run the locality co-simulation (and routing), write everything."""
    from discovery_nova.sim.routing_experiment import run_routing_experiment

    final = FinalState()
    locality = run_locality_experiment(
        topology, rounds=rounds, seed=seed, search_every=search_every,
        progress=progress('coordinates + spiral', rounds),
        on_finish=final.capture)
    targets = locality_targets(locality)
    files = write_locality_outputs(
        locality, outdir, final.coordinates, final.heights, final.links,
        topology.names)
    data = {'locality': locality.as_dict()}
    lines = []
    if show_node is not None:
        lines.extend(_show_node(topology, locality, final, show_node))
    if routing_sizes:
        total = sum(routing_sizes) * (warmup_lookups + 1)
        routing = run_routing_experiment(
            sizes=tuple(routing_sizes),
            warmup_lookups_per_node=warmup_lookups, seed=seed,
            progress=progress('ring routing', total))
        targets.extend(routing_targets(routing))
        files.extend(write_routing_outputs(routing, outdir))
        data['routing'] = routing.as_dict()
    data['targets'] = [dataclasses.asdict(t) for t in targets]
    dump_json(data, os.path.join(outdir, 'report.json'))
    files.append(os.path.join(outdir, 'report.json'))
    table = _fmt_table([t.row() for t in targets],
                       ('figure', 'value', 'target', 'state'))
    summary = locality.summary()
    lines.insert(0, 'coordinates + spiral: %s, %d rounds, %d Vivaldi '
                 'samples (%d rejected), %d searches, %.1f s'
                 % (summary['topology'], summary['rounds'],
                    summary['vivaldi_samples'], summary['samples_rejected'],
                    summary['searches'], summary['wall_seconds']))
    text = '\n'.join(lines + ['', table])
    return SimulationResult(text, [os.path.basename(f) for f in files],
                            data, targets)


def _show_node(topology: Topology, locality: LocalityReport,
               final: 'FinalState', name: str) -> list[str]:
    i = topology.index_of(name)
    k = locality.k
    truth = np.argsort(topology.rtts_from(i))
    truth = [int(j) for j in truth if j != i][:k]
    found = [topology.index_of(peer) for peer in final.near[name]][:k]
    rows = []
    for rank in range(k):
        t = truth[rank]
        f = found[rank] if rank < len(found) else None
        rows.append((str(rank + 1),
                     '%s (%.1f ms)' % (topology.names[t],
                                       topology.rtt(i, t)),
                     '-' if f is None else '%s (%.1f ms)'
                     % (topology.names[f], topology.rtt(i, f))))
    hit = len(set(truth) & set(found))
    return ['nearest peers of %s: %d of the true %d found' % (name, hit, k),
            _fmt_table(rows, ('rank', 'true nearest by RTT',
                              'near set after the run')), '']
