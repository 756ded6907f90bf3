"""Vivaldi coordinates: sample checks, convergence, distance properties,
strict parsing of coordinates from the network."""

import math
import random
import statistics

from hypothesis import given
from hypothesis import strategies as st
import pytest

from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.coordinates import VivaldiNode
from discovery_nova.overlay.coordinates import VivaldiParams
from discovery_nova.overlay.coordinates import nearest
from discovery_nova.overlay.coordinates import relative_error


def _node(**kwargs) -> VivaldiNode:
    return VivaldiNode(VivaldiParams(**kwargs), random.Random(0))


@pytest.mark.parametrize('rtt, counter', [
    (float('nan'), 'rejected_nan'),
    ('12', 'rejected_nan'),
    (None, 'rejected_nan'),
    (-0.5, 'rejected_negative'),
    (float('-inf'), 'rejected_negative'),
    (float('inf'), 'rejected_absurd'),
    (10000.5, 'rejected_absurd'),
])
def test_unusable_samples_are_refused_and_counted(rtt, counter):
    node = _node()
    before = (node.coordinate, node.error)
    assert node.observe(rtt, Coordinate((1.0, 2.0, 3.0), 1.0), 0.5) is False
    assert (node.coordinate, node.error) == before
    assert getattr(node.counters, counter) == 1
    assert node.counters.rejected == 1
    assert node.counters.accepted == 0


@pytest.mark.parametrize('remote, error', [
    (Coordinate((1.0, 2.0), 1.0), 0.5),          # wrong dimensions
    (Coordinate((1.0, 2.0, 3.0), 1.0), math.nan),
    (Coordinate((1.0, 2.0, 3.0), 1.0), -0.1),
    (Coordinate((1.0, 2.0, 3.0), 1.0), math.inf),
])
def test_a_peer_reporting_nonsense_is_refused(remote, error):
    node = _node()
    assert node.observe(50.0, remote, error) is False
    assert node.counters.rejected_bad_peer == 1
    assert node.coordinate == Coordinate.origin(3)


def test_max_rtt_is_configurable():
    node = _node(max_rtt_ms=100.0)
    assert node.observe(100.0, Coordinate((1.0, 0, 0), 0), 1.0)
    assert not node.observe(100.1, Coordinate((1.0, 0, 0), 0), 1.0)
    assert node.counters.rejected_absurd == 1


def test_params_refuse_out_of_range_values():
    for kwargs in ({'dimensions': 0}, {'cc': 0}, {'ce': 1.5},
                   {'max_rtt_ms': 0}):
        with pytest.raises(ValueError):
            VivaldiParams(**kwargs)


def _euclidean_world(n=25, seed=3):
    rng = random.Random(seed)
    points = [(rng.uniform(0, 100), rng.uniform(0, 100)) for _ in range(n)]
    access = [rng.uniform(0.5, 3.0) for _ in range(n)]

    def rtt(i, j):
        return math.dist(points[i], points[j]) + access[i] + access[j]
    return rtt


def _median_error(nodes, rtt):
    n = len(nodes)
    return statistics.median(
        relative_error(nodes[i].estimate_rtt(nodes[j].coordinate), rtt(i, j))
        for i in range(n) for j in range(n) if i != j)


def test_converges_on_a_euclidean_world_and_knows_it():
    rtt = _euclidean_world()
    n = 25
    rng = random.Random(7)
    nodes = [VivaldiNode(VivaldiParams(dimensions=2), random.Random(i))
             for i in range(n)]
    start = _median_error(nodes, rtt)
    for _ in range(300):
        for i in range(n):
            j = rng.randrange(n - 1)
            j += j >= i
            nodes[i].observe(rtt(i, j), nodes[j].coordinate, nodes[j].error)
    final = _median_error(nodes, rtt)
    assert start > 0.9
    assert final < 0.05
    # the nodes' own estimates fell with the real error and stay in its
    # order of magnitude
    estimate = statistics.median(node.error for node in nodes)
    assert estimate < 0.15
    assert all(node.counters.accepted == 300 for node in nodes)


def test_non_representative_samples_move_but_keep_the_error_estimate():
    node = _node()
    node.observe(40.0, Coordinate((10.0, 0.0, 0.0), 1.0), 0.2,
                 representative=False)
    assert node.error == node.params.initial_error
    assert node.coordinate != Coordinate.origin(3)
    node.observe(40.0, Coordinate((10.0, 0.0, 0.0), 1.0), 0.2)
    assert node.error != node.params.initial_error


def test_coincident_nodes_are_pushed_apart():
    node = _node()
    node.observe(30.0, Coordinate.origin(3), 1.0)
    assert math.dist(node.coordinate.vec, (0.0, 0.0, 0.0)) > 0
    assert node.coordinate.height >= node.params.min_height


def test_heights_never_fall_below_the_minimum():
    node = _node()
    for _ in range(50):
        node.observe(0.001, Coordinate((0.5, 0.0, 0.0), 5.0), 0.01)
    assert node.coordinate.height >= node.params.min_height


_num = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
_coord = st.builds(lambda v, h: Coordinate(tuple(v), h),
                   st.lists(_num, min_size=3, max_size=3),
                   st.floats(min_value=0, max_value=1e4))


@given(_coord, _coord)
def test_distance_is_symmetric_and_at_least_both_heights(a, b):
    assert a.distance(b) == pytest.approx(b.distance(a))
    assert a.distance(b) >= a.height + b.height


@given(_coord)
def test_distance_to_itself_is_twice_the_height(a):
    assert a.distance(a) == pytest.approx(2 * a.height)


@given(_coord, _coord, _coord)
def test_distance_obeys_the_triangle_inequality(a, b, c):
    assert a.distance(c) <= a.distance(b) + b.distance(c) + 1e-6 * (
        1 + a.distance(b) + b.distance(c))


@given(_coord)
def test_wire_round_trip(a):
    assert Coordinate.from_wire(a.to_wire(), 3) == a


@pytest.mark.parametrize('value', [
    None, 5, 'x', [], [[1.0, 2.0, 3.0]], [[1.0, 2.0, 3.0], 1.0, 2.0],
    ['123', 1.0],                      # a string is no vector
    [[1.0, '2', 3.0], 1.0],            # nor a number
    [[1.0, True, 3.0], 1.0],           # booleans are not numbers
    [[1.0, 2.0, 3.0], None],
    [[1.0, 2.0, math.nan], 1.0],
    [[1.0, 2.0, math.inf], 1.0],
    [[1.0, 2.0, 3.0], -0.5],
    [[10 ** 400, 2.0, 3.0], 1.0],      # a JSON integer too big for a float
    [[1.0, 2.0], 1.0],                 # wrong dimensions
])
def test_from_wire_refuses_anything_but_a_clean_coordinate(value):
    with pytest.raises(ValueError):
        Coordinate.from_wire(value, 3)


def test_from_wire_accepts_integers_and_any_dimension_when_unchecked():
    assert Coordinate.from_wire([[1, 2], 0]) == Coordinate((1.0, 2.0), 0.0)


def test_nearest_orders_by_predicted_rtt():
    origin = Coordinate((0.0, 0.0), 0.0)
    peers = [('far', Coordinate((10.0, 0.0), 0.0)),
             ('near', Coordinate((1.0, 0.0), 0.0)),
             ('tall', Coordinate((2.0, 0.0), 50.0))]
    assert [p[0] for p in nearest(origin, peers, 2)] == ['near', 'far']
