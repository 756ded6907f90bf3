"""The shortcuts the simulator's hot paths take compute exactly what the
plain code would: the Vivaldi update, the in-process wire forms of the
spiral search, and the clock's event budget."""

import json
import math
import random

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest

from discovery_nova.overlay import spiral
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.coordinates import VivaldiNode
from discovery_nova.overlay.coordinates import VivaldiParams
from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.spiral import SpiralParams
from discovery_nova.overlay.spiral import SpiralService
from discovery_nova.overlay.spiral import validate_message
from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.matrix_prober import MatrixProber
from discovery_nova.sim.network import SimNetwork
from discovery_nova.sim.topology import MatrixTopology


def _textbook_observe(coord, error, rtt_ms, remote, remote_error,
                      representative, params, rng):
    """The Vivaldi update of Dabek et al. written out plainly: the
    coordinate and error estimate after one sample."""
    rtt = max(float(rtt_ms), 1e-3)
    w = error / (error + max(remote_error, 1e-6))
    diff = [a - b for a, b in zip(coord.vec, remote.vec, strict=True)]
    euclid = math.hypot(*diff)
    hsum = coord.height + remote.height
    dist = euclid + hsum
    if representative:
        sample = abs(dist - rtt) / rtt
        error = min(sample * params.ce * w + error * (1.0 - params.ce * w),
                    params.max_error)
    step = params.cc * w * (rtt - dist)
    if euclid < 1e-9:
        diff = [rng.gauss(0.0, 1.0) for _ in diff]
        norm = math.hypot(*diff) or 1.0
        diff = [d / norm for d in diff]
        dist = 1.0 + hsum
    scale = step / dist
    vec = tuple(a + scale * d for a, d in zip(coord.vec, diff, strict=True))
    height = max(coord.height + scale * hsum, params.min_height)
    return Coordinate(vec, height), error


_number = st.floats(-500.0, 500.0, allow_nan=False)
_coord = st.builds(Coordinate, st.tuples(_number, _number, _number),
                   st.floats(0.01, 50.0))


@settings(max_examples=300, deadline=None)
@given(local=_coord, remote=_coord, error=st.floats(0.0, 10.0),
       remote_error=st.floats(0.0, 10.0), rtt=st.floats(0.0, 5000.0),
       representative=st.booleans(), seed=st.integers(0, 1000),
       same_place=st.booleans())
def test_observe_is_the_textbook_update_to_the_last_bit(
        local, remote, error, remote_error, rtt, representative, seed,
        same_place):
    if same_place:
        remote = Coordinate(local.vec, remote.height)
    params = VivaldiParams()
    node = VivaldiNode(params, random.Random(seed))
    node.coordinate = local
    node.error = error
    want = _textbook_observe(local, error, rtt, remote, remote_error,
                             representative, params, random.Random(seed))
    assert node.observe(rtt, remote, remote_error, representative)
    assert (node.coordinate, node.error) == want


def _line(n=12, seed=0):
    """Services on a line with exact coordinates, every message kept."""
    rng = np.random.default_rng(seed)
    xs = np.sort(rng.uniform(0, 300, size=n))
    topology = MatrixTopology(np.abs(xs[:, None] - xs[None, :]))
    clock = VirtualClock()
    net = SimNetwork(clock, topology)
    nodes = {}
    for name, x in zip(topology.names, xs, strict=True):
        nodes[name] = VivaldiNode(VivaldiParams(dimensions=1))
        nodes[name].coordinate = Coordinate((float(x),), 0.5)
    sent = []
    services = {}
    for name in topology.names:
        svc = SpiralService(
            net.endpoint(name), PeerRef(name, '10.0.0.1:7390'),
            lambda name=name: nodes[name].coordinate,
            MatrixProber(net, name, nodes.get),
            SpiralParams(near_set_size=3, long_links=1, spiral_k=4))
        services[name] = svc

        def handler(sender, message, svc=svc):
            sent.append(message)
            svc.handle(sender, message)
        net.register(name, handler)
    for i, name in enumerate(topology.names):
        for j in (i - 1, i + 1, (i + 5) % n):
            if 0 <= j < n and j != i:
                other = topology.names[j]
                services[name].add_known(PeerRef(other, '10.0.0.1:7390'),
                                         nodes[other].coordinate)
    return clock, services, sent


def test_views_built_in_process_are_valid_and_encode_as_lists():
    clock, services, sent = _line()
    results = []
    services['n03'].search(None, results.append)
    clock.run_until()
    assert len(results) == 1
    views = [m for m in sent if m['type'] != spiral.ACK]
    assert views
    for message in views:
        # tuples in process, JSON arrays on the wire: both pass
        assert all(type(w) is tuple for w in message['view'])
        validate_message(message, 1)
        decoded = json.loads(json.dumps(message))
        validate_message(decoded, 1)
        assert decoded['view'] == [
            [w[0], w[1], [list(w[2][0]), w[2][1]], w[3]]
            for w in message['view']]


@pytest.mark.parametrize('entry', [
    ('b', '', ((0.0,), 0.1)),
    ('b', '', ((0.0,), 0.1), 0.5, 'extra'),
    ('b', '', ((0.0,),), 0.5),
    ('b', '', (('x',), 0.1), 0.5),
])
def test_a_tuple_entry_of_the_wrong_shape_is_refused_like_a_list(entry):
    message = {
        'type': spiral.REPLY, 'search': 'a/1', 'hops': 1, 'messages': 3,
        'view': [entry], 'visited': ['a', 'b'],
    }
    with pytest.raises(InvalidMessage, match=r"'view\[0\]"):
        validate_message(message, 1)
    message['view'] = [json.loads(json.dumps(entry))]
    with pytest.raises(InvalidMessage, match=r"'view\[0\]"):
        validate_message(message, 1)


def test_clock_event_budget_stops_in_order_and_resumes():
    clock = VirtualClock()
    ran = []
    for i, delay in enumerate([0.5, 0.1, 0.3, 2.0, 0.3]):
        clock.call_later(delay, ran.append, i)
    assert clock.run_until(max_events=2) == 2
    assert ran == [1, 2] and clock.now() == 0.3
    assert clock.run_until(1.0, max_events=0) == 0
    assert ran == [1, 2] and clock.now() == 0.3
    assert clock.run_until(1.0, max_events=5) == 2
    assert ran == [1, 2, 4, 0] and clock.now() == 1.0
    # the budget is spent when the next event is beyond the bound
    assert clock.run_until(1.5, max_events=0) == 0
    assert clock.now() == 1.5
    assert clock.run_until() == 1
    assert ran == [1, 2, 4, 0, 3] and clock.now() == 2.0
