"""RTT estimates with uncertainty, and ranking."""

import math

from hypothesis import given
from hypothesis import strategies as st

from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.ranking import proximity_score
from discovery_nova.locality.ranking import rank_pops
from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import RttEstimate
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.locality.rtt import within
from discovery_nova.overlay.coordinates import Coordinate
from tests.unit.scheduler.fakes import pop

coords = st.tuples(st.floats(-500, 500), st.floats(-500, 500))
errors = st.floats(0, 3)


def test_estimate_combines_both_errors():
    a, b = pop('a', 0, error=0.3), pop('b', 40, error=0.4)
    estimate = estimate_rtt(Reference.of_pop(a), b)
    assert estimate.rtt_ms == 40
    assert math.isclose(estimate.error, 0.5)
    assert math.isclose(estimate.upper(1.0), 60)
    assert math.isclose(estimate.upper(0.0), 40)


def test_same_pop_and_unknown():
    a = pop('a', 0, error=0.9)
    assert estimate_rtt(Reference.of_pop(a), a).rtt_ms == 0
    blind = PopDescriptor('b')
    assert math.isinf(estimate_rtt(Reference.of_pop(a), blind).rtt_ms)
    three_d = PopDescriptor('c', Coordinate((1, 2, 3)), 0.1)
    assert math.isinf(estimate_rtt(Reference.of_pop(a), three_d).rtt_ms)


@given(rtt=st.floats(0, 1e4), error=errors, weight=st.floats(0, 10))
def test_bounds_bracket_the_estimate(rtt, error, weight):
    estimate = RttEstimate(rtt, error)
    assert estimate.lower(weight) <= rtt <= estimate.upper(weight)


@given(rtt=st.floats(0, 500), e1=errors, e2=errors, bound=st.floats(1, 500))
def test_more_uncertainty_never_admits_more(rtt, e1, e2, bound):
    low, high = sorted((e1, e2))
    if within(RttEstimate(rtt, high), bound, 1.0, math.inf):
        assert within(RttEstimate(rtt, low), bound, 1.0, math.inf)


def test_untrusted_estimates_never_pass():
    assert within(RttEstimate(1.0, 0.5), 100, 1.0, 1.0)
    assert not within(RttEstimate(1.0, 1.5), 100, 1.0, 1.0)


@given(st.lists(st.tuples(coords, errors), min_size=1, max_size=12),
       coords, st.floats(1, 800))
def test_ranking_is_sorted_and_filtered(points, origin, bound):
    pops = [PopDescriptor('p%d' % i, Coordinate(xy), e)
            for i, (xy, e) in enumerate(points)]
    reference = Reference(Coordinate(origin), 0.1)
    ranked = rank_pops(reference, pops, max_rtt_ms=bound)
    rtts = [estimate.rtt_ms for _, estimate in ranked]
    assert rtts == sorted(rtts)
    kept = {p.name for p, _ in ranked}
    for p in pops:
        estimate = estimate_rtt(reference, p)
        assert (p.name in kept) == within(estimate, bound, 1.0, math.inf)


@given(st.floats(0, 1e4), st.floats(0, 1e4))
def test_proximity_score_orders_like_rtt(a, b):
    near, far = proximity_score(RttEstimate(a, 0)), proximity_score(
        RttEstimate(b, 0))
    if a <= b:
        assert near >= far
    if a + 1e-6 < b:
        assert near > far
    assert proximity_score(RttEstimate(math.inf, 0)) == -math.inf


def test_measured_rtt_beats_coordinates_from_either_end():
    a = PopDescriptor('a', Coordinate((0.0, 0.0)), 0.4,
                      measured_rtt={'b': 3.0})
    b = PopDescriptor('b', Coordinate((10.0, 0.0)), 0.4)
    assert estimate_rtt(Reference.of_pop(a), b) == RttEstimate(3.0, 0.05)
    assert estimate_rtt(Reference.of_pop(b), a) == RttEstimate(3.0, 0.05)


def test_unlisted_pops_are_farther_than_the_listed_ones():
    # a lists its nearest PoPs, up to 6 ms: c (coordinates say 2 ms) is
    # not among them, so it is at least 6 ms away.
    a = PopDescriptor('a', Coordinate((0.0, 0.0)), 0.1,
                      measured_rtt={'b': 3.0, 'd': 6.0})
    c = PopDescriptor('c', Coordinate((2.0, 0.0)), 0.1)
    far = PopDescriptor('far', Coordinate((50.0, 0.0)), 0.1)
    reference = Reference.of_pop(a)
    assert estimate_rtt(reference, c).rtt_ms == 6.0
    assert estimate_rtt(reference, far).rtt_ms == 50.0
    ranked = [p.name for p, _ in rank_pops(reference, [far, c, a])]
    assert ranked == ['a', 'c', 'far']
