"""The routing experiment on small rings: its figures are real and sane."""

import json
import math

import pytest

from discovery_nova.sim.routing_experiment import make_topology
from discovery_nova.sim.routing_experiment import run_locate_experiment
from discovery_nova.sim.routing_experiment import run_routing_experiment
from discovery_nova.sim.routing_experiment import run_size
from discovery_nova.sim.routing_experiment import target_hops


def test_target_is_half_log2_n_plus_one():
    assert target_hops(10000) == pytest.approx(0.5 * math.log2(10000) + 1)
    assert target_hops(1024) == 6.0


def test_learning_lowers_hops_and_every_answer_is_right():
    run = run_size(300, 4, seed=1, measure_lookups=300, window=200)
    assert run.lookups == 300 + 300 * 4 + 300
    assert run.failed == 0 and run.wrong == 0
    assert run.after_mean < 0.7 * run.before_mean
    assert run.after_mean <= run.target
    assert run.after_p90 >= run.after_mean
    assert run.before_p90 >= run.before_mean
    # The hops-over-time series covers the whole warm-up.
    assert run.warmup_lookups[-1] == 1200
    assert all(b > a for a, b in zip(
        run.warmup_lookups, run.warmup_lookups[1:], strict=False))
    assert run.warmup_mean_hops[-1] < run.warmup_mean_hops[0]
    assert run.shortcuts_per_node > 4
    assert run.after_latency_ms > 0 and run.virtual_seconds > 0


def test_a_run_is_reproducible():
    a = run_size(120, 2, seed=7, measure_lookups=100)
    b = run_size(120, 2, seed=7, measure_lookups=100)
    assert (a.before_mean, a.after_mean, a.warmup_mean_hops, a.messages) == (
        b.before_mean, b.after_mean, b.warmup_mean_hops, b.messages)


def test_auto_topology_uses_planetlab_for_490_nodes():
    assert make_topology('auto', 490, 0).kind == 'planetlab'
    assert make_topology('auto', 491, 0).kind == 'backbone'
    assert make_topology('plane', 50, 0).kind == 'plane'
    with pytest.raises(ValueError, match='unknown topology'):
        make_topology('moon', 50, 0)


def test_locate_finds_every_record_that_still_has_a_live_copy():
    run = run_locate_experiment(150, 150, seed=3, kill_fraction=0.1,
                                warmup_lookups_per_node=1)
    assert run.stored == 150
    assert len(run.phases) == 2
    crash, second = run.phases
    assert not crash.membership_updated and second.membership_updated
    assert crash.dead == 15 and second.dead == 30
    for phase in run.phases:
        assert phase.failed == 0
        assert phase.found == phase.with_live_copy
    # Without membership the dead must have been timed out around.
    assert crash.hop_timeouts > 0


def test_report_progress_and_summary():
    calls = []
    report = run_routing_experiment(
        [60, 90], warmup_lookups_per_node=2, seed=2,
        progress=lambda done, total: calls.append((done, total)),
        measure_lookups=100, window=50, locate_nodes=80, locate_records=40,
        kill_fraction=0.05)
    assert [s.nodes for s in report.sizes] == [60, 90]
    totals = {total for _, total in calls}
    assert len(totals) == 1
    total = totals.pop()
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == total
    summary = report.summary()
    assert summary['largest_n'] == 90
    assert summary['locate']['records'] == 40
    json.dumps(report.as_dict())


@pytest.mark.parametrize('kwargs,match', [
    ({'sizes': [1]}, 'ring size'),
    ({'sizes': [], 'locate': False}, 'nothing to run'),
    ({'sizes': [10], 'measure_lookups': 0}, 'measure_lookups'),
    ({'sizes': [10], 'kill_fraction': 0.7}, 'kill_fraction'),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_routing_experiment(**kwargs)
