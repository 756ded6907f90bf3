"""Spiral search: protocol behaviour over the simulated network, and the
strict checking of every field a peer can send."""

import copy
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
from discovery_nova.overlay.probe import Prober
from discovery_nova.overlay.probe import RttSample
from discovery_nova.overlay.spiral import SpiralParams
from discovery_nova.overlay.spiral import SpiralService
from discovery_nova.overlay.spiral import validate_message
from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.matrix_prober import MatrixProber
from discovery_nova.sim.network import SimNetwork
from discovery_nova.sim.topology import MatrixTopology


class Line:
    """Nodes on a line whose coordinates are exact: RTT = |x_i - x_j|.

    With perfect coordinates the spiral's answers can be checked exactly
    against the matrix.
    """

    def __init__(self, n=40, params=None, seed=0, validate=True):
        rng = np.random.default_rng(seed)
        self.xs = np.sort(rng.uniform(0, 400, size=n))
        matrix = np.abs(self.xs[:, None] - self.xs[None, :])
        self.topology = MatrixTopology(matrix)
        self.names = self.topology.names
        self.clock = VirtualClock()
        self.net = SimNetwork(self.clock, self.topology)
        self.vivaldi = {}
        for name, x in zip(self.names, self.xs, strict=True):
            node = VivaldiNode(VivaldiParams(dimensions=1))
            node.coordinate = Coordinate((float(x),), 0.0)
            node.error = 0.1
            self.vivaldi[name] = node
        self.params = params or SpiralParams(near_set_size=4, long_links=2,
                                             spiral_k=5, hop_timeout=2.0)
        self.sent = []
        self.services = {}
        pyrng = random.Random(seed)
        for name in self.names:
            svc = SpiralService(
                self.net.endpoint(name), PeerRef(name),
                self._coord(name),
                MatrixProber(self.net, name, self.vivaldi.get),
                self.params, random.Random(pyrng.random()))
            self.services[name] = svc
            self.net.register(name, self._handler(svc, validate))

    def _coord(self, name):
        return lambda: self.vivaldi[name].coordinate

    def _handler(self, svc, validate):
        def handler(sender, message):
            self.sent.append(copy.deepcopy(message))
            if validate:
                svc.validate_message(message)
            svc.handle(sender, message)
        return handler

    def know_neighbours(self, links=2):
        """Each node knows its two line neighbours and a few random peers,
        so a search can walk anywhere but starts far from optimal."""
        rng = random.Random(1)
        n = len(self.names)
        for i, name in enumerate(self.names):
            peers = {j for j in (i - 1, i + 1) if 0 <= j < n}
            peers |= set(rng.sample(range(n), links))
            peers.discard(i)
            for j in sorted(peers):
                other = self.names[j]
                self.services[name].add_known(
                    PeerRef(other), self.vivaldi[other].coordinate)

    def true_nearest(self, name, k):
        i = self.topology.index_of(name)
        order = np.argsort(np.abs(self.xs - self.xs[i]), kind='stable')
        return [self.names[j] for j in order if j != i][:k]

    def search(self, name, k=None, origin_coord=None):
        results = []
        self.services[name].search(k, results.append, origin_coord)
        self.clock.run_until()
        assert len(results) == 1, 'on_done must be called exactly once'
        return results[0]


def test_search_finds_the_true_nearest_with_exact_coordinates():
    line = Line()
    line.know_neighbours()
    for name in line.names[::7]:
        result = line.search(name)
        got = [p.peer.name for p in result.peers[:5]]
        assert sorted(got) == sorted(line.true_nearest(name, 5))
        rtts = [p.rtt_ms for p in result.peers]
        assert rtts == sorted(rtts)
        assert name not in got
        assert not result.timed_out


@pytest.mark.parametrize('k', [1, 3, 6, 10])
def test_messages_per_search_are_linear_in_k(k):
    line = Line(n=60, params=SpiralParams(near_set_size=6, long_links=2,
                                          spiral_k=k, view_size=32))
    line.know_neighbours()
    result = line.search(line.names[30], k)
    assert result.hops == k
    # one forward and one acknowledgement per hop, one reply
    assert result.messages == 2 * k + 1
    assert result.probes <= 2 * k
    kinds = [m['type'] for m in line.sent]
    assert kinds.count(spiral.REQUEST) == k
    assert kinds.count(spiral.ACK) == k
    assert kinds.count(spiral.REPLY) == 1
    assert len(result.visited) == k + 1


def test_learning_rule_improves_near_sets_along_the_path():
    def run(learning):
        line = Line(n=40, params=SpiralParams(
            near_set_size=4, long_links=2, spiral_k=6, learning=learning))
        line.know_neighbours(links=3)
        before = {n: set(s.near_names()) for n, s in line.services.items()}
        result = line.search(line.names[20])
        passed = [n for n in result.visited[1:]]
        after = {n: set(line.services[n].near_names()) for n in passed}
        return line, passed, before, after

    line, passed, before, after = run(learning=True)
    changed = [n for n in passed if after[n] != before[n]]
    assert changed, 'some node on the path must have learned'
    for name in changed:
        # what it learned is nearer to it than what it dropped
        me = line.vivaldi[name].coordinate
        dist = {n: me.distance(line.vivaldi[n].coordinate)
                for n in before[name] | after[name]}
        assert (max(dist[n] for n in after[name]) <=
                max(dist[n] for n in before[name]))

    _, passed, before, after = run(learning=False)
    assert all(after[n] == before[n] for n in passed)


def test_dead_next_hop_is_skipped_after_hop_timeout():
    line = Line()
    line.know_neighbours()
    origin = line.names[10]
    svc = line.services[origin]
    first = min(svc.near_peers(), key=lambda p: p.distance).peer.name
    line.net.kill(first)
    result = line.search(origin)
    assert svc.stats.hop_timeouts == 1
    assert first in result.visited
    assert first not in [p.peer.name for p in result.peers]
    assert not result.timed_out
    assert result.hops == line.params.spiral_k
    assert line.clock.now() >= line.params.hop_timeout


def test_search_with_every_peer_dead_ends_with_what_it_has():
    line = Line(n=30, params=SpiralParams(near_set_size=8, long_links=2,
                                          spiral_k=3, hop_timeout=1.0))
    line.know_neighbours(links=6)
    origin = line.names[0]
    for name in line.names[1:]:
        line.net.kill(name)
    result = line.search(origin)
    assert result.timed_out
    assert result.peers == []
    assert result.visited == [origin]
    svc = line.services[origin]
    assert svc.stats.searches_timed_out == 1
    # the deadline is hop_timeout per possible hop plus two
    assert line.clock.now() <= 1.0 * (3 + 2) + 1.0 + 1e-9


def test_search_with_no_known_peer_answers_empty():
    line = Line(n=12)
    result = line.search(line.names[3])
    assert result.peers == [] and result.hops == 0 and result.messages == 0


def test_on_done_is_never_called_inside_search():
    line = Line(n=12)
    line.know_neighbours()
    calls = []
    line.services[line.names[0]].search(None, calls.append)
    assert calls == []
    line.clock.run_until()
    assert len(calls) == 1


def test_point_search_ranks_by_coordinates_and_may_include_itself():
    line = Line()
    line.know_neighbours()
    # k hops go a short way: a point search starts near its point
    start = line.names[22]
    target = float(line.xs[25]) + 0.01
    result = line.search(start, 3, Coordinate((target,), 0.0))
    assert result.probes == 0
    got = [p.peer.name for p in result.peers]
    order = np.argsort(np.abs(line.xs - target))[:3]
    assert got == [line.names[j] for j in order]
    assert all(not p.measured for p in result.peers)


class SynchronousProber(Prober):
    """Answers inside ``probe`` itself, as a cache-backed prober might."""

    def __init__(self, line):
        self.line = line
        self.calls = 0

    def probe(self, peer, on_result):
        self.calls += 1
        node = self.line.vivaldi[peer.name]
        on_result(RttSample(peer.name, 1.0 + self.calls, node.coordinate,
                            node.error))


def test_synchronous_prober_answers_are_collected_once():
    line = Line(n=20)
    line.know_neighbours()
    svc = line.services[line.names[5]]
    svc.prober = SynchronousProber(line)
    result = line.search(line.names[5])
    assert len(result.peers) == svc.prober.calls
    assert [p.rtt_ms for p in result.peers] == sorted(
        p.rtt_ms for p in result.peers)


def test_lost_probes_leave_peers_out_of_the_answer():
    class Lossy(Prober):
        def probe(self, peer, on_result):
            on_result(None)

    line = Line(n=20)
    line.know_neighbours()
    svc = line.services[line.names[5]]
    svc.prober = Lossy()
    result = line.search(line.names[5])
    assert result.probes > 0
    assert all(p.rtt_ms is not None for p in result.peers)
    assert len(result.peers) <= line.params.near_set_size


def test_near_set_keeps_the_nearest_and_reports_changes():
    line = Line(n=30, params=SpiralParams(near_set_size=3, long_links=2))
    svc = line.services[line.names[15]]
    changes = []
    svc.on_near_changed = lambda old, new: changes.append((old, new))
    for name in line.names:
        svc.add_known(PeerRef(name), line.vivaldi[name].coordinate)
    want = set(line.true_nearest(line.names[15], 3))
    assert set(svc.near_names()) == want
    assert changes and changes[-1][1] == frozenset(want)
    assert line.names[15] not in svc.near_names()
    assert len(svc.long_links()) == 2
    gone = sorted(want)[0]
    svc.remove(gone)
    assert gone not in svc.near_names()
    assert changes[-1] == (frozenset(want), frozenset(want - {gone}))
    assert [p.peer.name for p in svc.near_peers()] == sorted(
        want - {gone}, key=lambda n: abs(
            line.xs[line.topology.index_of(n)] - line.xs[15]))


def test_measured_rtt_outranks_the_prediction():
    line = Line(n=10, params=SpiralParams(near_set_size=2, long_links=0))
    svc = line.services[line.names[0]]
    for name in line.names[1:4]:
        svc.add_known(PeerRef(name), line.vivaldi[name].coordinate)
    nearest = line.names[1]
    assert nearest in svc.near_names()
    # a measurement says it is in fact far: the next candidate displaces it
    svc.update_coordinate(nearest, line.vivaldi[nearest].coordinate, 1e6)
    svc.add_known(PeerRef(line.names[4]),
                  line.vivaldi[line.names[4]].coordinate)
    assert nearest not in svc.near_names()


def test_update_coordinate_never_adds_a_peer():
    line = Line(n=10)
    svc = line.services[line.names[0]]
    assert not svc.update_coordinate(line.names[3], Coordinate((1.0,), 0))
    assert svc.near_names() == []


def test_a_failing_near_change_listener_is_isolated():
    line = Line(n=10)
    svc = line.services[line.names[0]]

    def boom(old, new):
        raise RuntimeError('listener bug')

    svc.on_near_changed = boom
    svc.add_known(PeerRef(line.names[1]), line.vivaldi[line.names[1]]
                  .coordinate)
    assert line.names[1] in svc.near_names()
    assert svc.stats.near_changes == 1


def test_late_and_duplicate_messages_are_counted_not_fatal():
    line = Line(n=10)
    svc = line.services[line.names[0]]
    svc.handle(line.names[1], {'type': spiral.ACK, 'search': 'x/1'})
    svc.handle(line.names[1], {'type': spiral.REPLY, 'search': 'x/1',
                               'hops': 1, 'messages': 3, 'view': [],
                               'visited': ['x']})
    assert svc.stats.late_messages == 2


def test_handle_refuses_an_unknown_type():
    line = Line(n=10)
    with pytest.raises(InvalidMessage, match='spiral.bogus'):
        line.services[line.names[0]].handle('x', {'type': 'spiral.bogus'})


def test_params_check_their_ranges_and_mirror_the_options():
    from oslo_config import cfg

    from discovery_nova.conf import overlay

    with pytest.raises(ValueError, match='near_set_size'):
        SpiralParams(near_set_size=0)
    with pytest.raises(ValueError, match='hop_timeout'):
        SpiralParams(hop_timeout=math.nan)
    with pytest.raises(ValueError, match='probe_factor'):
        SpiralParams(probe_factor=0.5)
    conf = cfg.ConfigOpts()
    overlay.register_opts(conf)
    conf([], project='test')
    conf.set_override('near_set_size', 7, 'discovery_overlay')
    conf.set_override('spiral_k', 5, 'discovery_overlay')
    params = SpiralParams.from_options(conf.discovery_overlay,
                                       learning=False)
    assert params.near_set_size == 7 and params.spiral_k == 5
    assert params.long_links == conf.discovery_overlay.long_links
    assert params.spiral_max_hops == conf.discovery_overlay.spiral_max_hops
    assert params.hop_timeout == conf.discovery_overlay.request_timeout
    assert params.learning is False


# -- validation ---------------------------------------------------------------

def _request():
    return {
        'type': spiral.REQUEST, 'search': 'a/1', 'origin': ['a', ''],
        'origin_coord': [[1.0, 2.0], 0.5], 'k': 4, 'max_hops': 4,
        'hops': 0, 'messages': 1,
        'view': [['b', '10.0.0.2:7390', [[0.0, 1.0], 0.1], 0.5]],
        'visited': ['a'],
    }


def test_messages_the_service_sends_pass_validation():
    line = Line(validate=True)  # the handler validates every message
    line.know_neighbours()
    line.search(line.names[3])
    assert {m['type'] for m in line.sent} == set(spiral.MESSAGE_TYPES)


@pytest.mark.parametrize('mutate, field', [
    (lambda m: m.pop('view'), "'view' is missing"),
    (lambda m: m.update(extra=1), "unexpected field 'extra'"),
    (lambda m: m.update(k=True), "'k'"),
    (lambda m: m.update(k='4'), "'k'"),
    (lambda m: m.update(k=0), "'k'"),
    (lambda m: m.update(k=10 ** 6), "'k'"),
    (lambda m: m.update(hops=4), "'hops'"),
    (lambda m: m.update(hops=-1), "'hops'"),
    (lambda m: m.update(max_hops=0), "'max_hops'"),
    (lambda m: m.update(messages=-3), "'messages'"),
    (lambda m: m.update(search=''), "'search'"),
    (lambda m: m.update(search='x' * 200), "'search'"),
    (lambda m: m.update(search=5), "'search'"),
    (lambda m: m.update(origin=['', '']), "'origin'"),
    (lambda m: m.update(origin='a'), "'origin'"),
    (lambda m: m.update(origin_coord=[[1.0, float('nan')], 0.5]),
     "'origin_coord'"),
    (lambda m: m.update(origin_coord=[[1.0, 2.0], -1.0]), "'origin_coord'"),
    (lambda m: m.update(origin_coord=[[1.0], 0.5]), "'origin_coord'"),
    (lambda m: m.update(origin_coord=[['1', 2.0], 0.5]), "'origin_coord'"),
    (lambda m: m.update(origin_coord=[[10 ** 400, 2.0], 0.5]),
     "'origin_coord'"),
    (lambda m: m.update(origin_coord='[[1,2],0]'), "'origin_coord'"),
    (lambda m: m.update(view={}), "'view'"),
    (lambda m: m.update(view=[['b']] * 2), "'view[0]'"),
    (lambda m: m.update(view=[['b', '', [[0.0, 1.0], 0.1], -1]]),
     "'view[0].age'"),
    (lambda m: m.update(view=[['b', '', [[0.0, 1.0], 0.1], math.inf]]),
     "'view[0].age'"),
    (lambda m: m.update(view=[['', '', [[0.0, 1.0], 0.1], 0]]),
     "'view[0].name'"),
    (lambda m: m.update(view=[['b', 7, [[0.0, 1.0], 0.1], 0]]),
     "'view[0].address'"),
    (lambda m: m.update(view=[['b', '', [[0.0], 0.1], 0]]),
     "'view[0].coordinate'"),
    (lambda m: m.update(view=[['b', '', [[0.0, 1.0], 0.1], 0]] * 1025),
     "'view'"),
    (lambda m: m.update(visited=[]), "'visited'"),
    (lambda m: m.update(visited=['a', None]), "'visited[1]'"),
    (lambda m: m.update(type='spiral.nope'), "'type'"),
])
def test_validation_names_the_bad_field(mutate, field):
    message = _request()
    validate_message(message, 2)
    mutate(message)
    with pytest.raises(InvalidMessage) as exc:
        validate_message(message, 2)
    assert field in str(exc.value)


@pytest.mark.parametrize('message', [
    None, [], 'spiral.request', {'type': None}, {},
    {'type': spiral.ACK}, {'type': spiral.ACK, 'search': ['a']},
    {'type': spiral.REPLY, 'search': 'a/1', 'hops': 1, 'messages': 1,
     'view': [], 'visited': 'a'},
])
def test_validation_refuses_malformed_messages(message):
    with pytest.raises(InvalidMessage):
        validate_message(message)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() |
    st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) |
    st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(_request())), value=_json)
def test_any_field_value_is_either_accepted_or_refused_cleanly(field,
                                                              value):
    message = _request()
    message[field] = value
    try:
        validate_message(message, 2)
    except InvalidMessage as exc:
        # the error names the field (or the element of it) that was wrong
        assert "'%s" % field in str(exc)
    else:
        # whatever passes can be handled without an error
        line = Line(n=6, params=SpiralParams(near_set_size=2,
                                             long_links=1, spiral_k=2))
        for node in line.vivaldi.values():
            node.coordinate = Coordinate((1.0, 1.0), 0.1)
        line.services[line.names[0]].handle(line.names[1], message)
        line.clock.run_until()


def test_a_peer_that_comes_back_elsewhere_is_reached_there():
    line = Line(n=10)
    svc = line.services[line.names[0]]
    coord = line.vivaldi[line.names[1]].coordinate
    svc.add_known(PeerRef(line.names[1], '10.0.0.1:7390'), coord)
    svc.add_known(PeerRef(line.names[1], '10.0.0.9:7390'), coord)
    assert [p.peer.address for p in svc.near_peers()] == ['10.0.0.9:7390']
    assert svc.long_links() == [PeerRef(line.names[1], '10.0.0.9:7390')]


def test_rtt_memory_is_bounded_and_forgotten_on_leave():
    line = Line(n=10, params=SpiralParams(rtt_memory=3))
    svc = line.services[line.names[0]]
    for name in line.names[1:]:
        svc.update_coordinate(name, line.vivaldi[name].coordinate, 5.0)
    assert list(svc._rtts) == line.names[-3:]
    svc.remove(line.names[-1])
    assert line.names[-1] not in svc._rtts


class WireLine(Line):
    """A Line whose messages arrive as the agent's do: decoded JSON, plain
    lists and nothing else."""

    def _handler(self, svc, validate):
        def handler(sender, message):
            decoded = json.loads(json.dumps(message))
            svc.validate_message(decoded)
            svc.handle(sender, decoded)
        return handler


def _near_state(line):
    return {name: [(p.peer.name, p.distance, p.rtt_ms)
                   for p in svc.near_peers()]
            for name, svc in line.services.items()}


def test_views_handed_over_by_reference_search_as_decoded_json_does():
    # The simulator passes views by reference and a hop reuses the
    # distances the previous one computed; the agent's peers get JSON.
    # Both must give the very same searches, learning and near sets.
    params = SpiralParams(near_set_size=4, long_links=2, spiral_k=5,
                          hop_timeout=2.0, view_size=8)
    lines = [cls(n=50, params=params, seed=3) for cls in (Line, WireLine)]
    for line in lines:
        line.know_neighbours()
    for name in lines[0].names[::3]:
        by_ref, by_json = (line.search(name) for line in lines)
        assert ([(p.peer.name, p.rtt_ms) for p in by_ref.peers] ==
                [(p.peer.name, p.rtt_ms) for p in by_json.peers])
        assert (by_ref.hops, by_ref.messages, by_ref.visited) == (
            by_json.hops, by_json.messages, by_json.visited)
    assert _near_state(lines[0]) == _near_state(lines[1])
