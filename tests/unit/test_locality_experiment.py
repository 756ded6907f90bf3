"""The Vivaldi + spiral co-simulation, on small fast topologies."""

import json
import math

import pytest

from discovery_nova.overlay.spiral import SpiralParams
from discovery_nova.sim.locality_experiment import LocalityReport
from discovery_nova.sim.locality_experiment import run_locality_experiment
from discovery_nova.sim.topology import BackboneTopology
from discovery_nova.sim.topology import PlaneTopology

SMALL = SpiralParams(near_set_size=8, long_links=3, spiral_k=5)


@pytest.fixture(scope='module')
def plane_run() -> LocalityReport:
    ticks = []
    report = run_locality_experiment(
        PlaneTopology(80, seed=2), rounds=60, seed=4, search_every=6,
        progress=lambda done, total: ticks.append((done, total)),
        spiral_params=SMALL)
    report.ticks = ticks
    return report


def test_series_have_one_value_per_round_and_wave(plane_run):
    r = plane_run
    assert r.error_rounds == list(range(60))
    for series in (r.error_median, r.error_p90, r.estimate_median,
                   r.real_node_error_median):
        assert len(series) == 60
        assert all(math.isfinite(x) and x >= 0 for x in series)
    assert r.search_rounds == list(range(5, 60, 6))
    for series in (r.recall_learning, r.recall_no_learning,
                   r.messages_learning, r.hops_learning, r.probes_learning):
        assert len(series) == 10
    assert r.ticks == [(i, 60) for i in range(1, 61)]


def test_coordinates_converge_and_the_estimate_follows(plane_run):
    r = plane_run
    assert r.error_median[-1] < 0.5 * r.error_median[0]
    assert r.error_p90[-1] >= r.error_median[-1]
    assert r.estimate_median[-1] < r.estimate_median[0]
    assert 0.3 < r.estimate_median[-1] / r.real_node_error_median[-1] < 5
    assert r.vivaldi_samples == 80 * 60
    assert r.samples_rejected == 0


def test_searches_gather_the_nearest_at_linear_cost(plane_run):
    r = plane_run
    assert all(0.0 <= x <= 1.0 for x in r.recall_learning)
    assert r.recall_learning[-1] > r.recall_learning[0]
    assert r.recall_learning[-1] >= 0.8
    # every search of both populations completed, none timed out
    assert r.searches == 2 * 80 * 10
    assert r.searches_timed_out == 0
    # k hops, each a forward and an acknowledgement, plus the reply
    assert all(h == SMALL.spiral_k for h in r.hops_learning)
    assert all(m == 2 * SMALL.spiral_k + 1 for m in r.messages_learning)
    assert all(p <= 2 * SMALL.spiral_k for p in r.probes_learning)


def test_summary_and_dict_are_plain_data(plane_run):
    summary = plane_run.summary()
    assert summary['error_median'] == plane_run.error_median[-1]
    assert summary['recall_learning'] == plane_run.recall_learning[-1]
    assert summary['messages_per_search'] == 2 * SMALL.spiral_k + 1
    data = plane_run.as_dict()
    json.dumps(data)
    assert data['summary'] == summary


def test_a_run_is_reproducible_from_its_seed():
    def run():
        return run_locality_experiment(
            BackboneTopology(50, seed=1), rounds=12, seed=9, search_every=4,
            spiral_params=SMALL).summary()
    first, second = run(), run()
    for summary in (first, second):
        summary.pop('wall_seconds')
        summary.pop('cpu_seconds')
    assert first == second


def test_without_comparison_or_searches():
    r = run_locality_experiment(PlaneTopology(30, seed=1), rounds=5,
                                search_every=0, compare_learning=False,
                                spiral_params=SMALL, metrics_every=2)
    assert r.search_rounds == [] and r.recall_no_learning == []
    assert r.error_rounds == [1, 3, 4]
    assert r.summary()['recall_learning'] is None


def test_large_topologies_are_measured_on_sampled_pairs():
    r = run_locality_experiment(PlaneTopology(300, seed=1), rounds=3,
                                search_every=3, compare_learning=False,
                                spiral_params=SMALL, error_pairs=40 * 299,
                                recall_sample=25)
    assert r.error_sources == 40 and r.recall_sources == 25
    assert r.searches == 300


@pytest.mark.parametrize('kwargs, message', [
    ({'rounds': 0}, 'rounds'),
    ({'search_every': -1}, 'search_every'),
    ({'metrics_every': 0}, 'metrics_every'),
    ({'near_probe_share': 1.5}, 'near_probe_share'),
    ({'round_seconds': 0}, 'round_seconds'),
    ({'error_pairs': 0}, 'error_pairs'),
    ({'spiral_params': SpiralParams(spiral_k=30)}, 'spiral_k=30'),
])
def test_bad_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_locality_experiment(PlaneTopology(20, seed=1), **kwargs)
