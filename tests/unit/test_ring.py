"""Ring routing: identifiers, the table, greedy routing, learning, failures.

Most tests run the production RingRouter on the simulated network
(``SimNetwork`` over a small ``PlaneTopology``) with hand-made ring
identifiers, so that hypothesis can choose any arrangement of nodes and
keys, including keys that sit exactly on a node or at 0 and 2**64 - 1.
"""

import hashlib
import math
import random
import re
import types

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest

from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import RoutingFailed
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.ring import ACK
from discovery_nova.overlay.ring import FAIL
from discovery_nova.overlay.ring import REPLY
from discovery_nova.overlay.ring import RING_SIZE
from discovery_nova.overlay.ring import ROUTE
from discovery_nova.overlay.ring import MemberRing
from discovery_nova.overlay.ring import RingParams
from discovery_nova.overlay.ring import RingRouter
from discovery_nova.overlay.ring import RouteResult
from discovery_nova.overlay.ring import bucket_index
from discovery_nova.overlay.ring import clockwise
from discovery_nova.overlay.ring import ring_id
from discovery_nova.overlay.ring import validate_message
from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.network import SimNetwork
from discovery_nova.sim.topology import PlaneTopology

ids_strategy = st.lists(st.integers(0, RING_SIZE - 1), min_size=1,
                        max_size=24, unique=True)
key_strategy = st.integers(0, RING_SIZE - 1)


def key_name(key_id: int) -> str:
    return '#%d' % key_id


class SimRing:
    """Routers on a simulated network with chosen ring identifiers."""

    def __init__(self, ids, params=None, learning=True, seed=0,
                 join_peers=None):
        # A topology has two nodes at least; a lone router uses one.
        self.topology = PlaneTopology(max(2, len(ids)), seed=seed)
        self.names = list(self.topology.names[:len(ids)])
        self.ids = dict(zip(self.names, ids, strict=True))

        def id_of(name: str) -> int:
            if name.startswith('#'):
                return int(name[1:])
            return self.ids[name]
        self.id_of = id_of
        params = params or RingParams(request_timeout=30.0)
        if join_peers is not None:
            params = RingParams(**{**params_dict(params),
                                   'join_peers': join_peers})
        self.clock = VirtualClock()
        self.network = SimNetwork(self.clock, self.topology)
        self.members = MemberRing([PeerRef(n) for n in self.names], id_of)
        self.routers = {}
        for i, name in enumerate(self.names):
            router = RingRouter(self.network.endpoint(name), PeerRef(name),
                                params, rng=random.Random(seed * 31 + i),
                                id_of=id_of)
            router.learning = learning
            self.routers[name] = router
            self.network.register(name, router.handle)
        for router in self.routers.values():
            router.set_members(self.members)

    def truth(self, key_id: int, dead=()) -> str:
        """The first live member at or after ``key_id``."""
        order = sorted(self.names, key=lambda n: clockwise(key_id,
                                                           self.ids[n]))
        return next(n for n in order if n not in dead)

    def route(self, source: str, key_id: int, payload=None):
        outcomes = []

        def done(outcome):
            self.answered_at = self.clock.now()
            outcomes.append(outcome)
        self.routers[source].route(key_name(key_id), payload, done)
        assert outcomes == [], 'route must not call back before returning'
        self.clock.run_until()
        assert len(outcomes) == 1
        return outcomes[0]


def unique_ids(rnd: random.Random, count: int) -> list[int]:
    ids: set[int] = set()
    while len(ids) < count:
        ids.add(rnd.getrandbits(64))
    return sorted(ids)


def params_dict(params: RingParams) -> dict:
    return {f: getattr(params, f) for f in params.__dataclass_fields__}


# -- identifiers and buckets --------------------------------------------------


def test_ring_id_is_the_first_64_bits_of_sha256():
    for name in ('pl001', 'vm-1234', 'é'):
        digest = hashlib.sha256(name.encode('utf-8')).hexdigest()
        assert ring_id(name) == int(digest[:16], 16)
    assert ring_id('a') != ring_id('b')


@given(st.integers(1, RING_SIZE - 1))
def test_bucket_index_is_floor_log2_of_the_distance(distance):
    i = bucket_index(distance)
    assert 2 ** i <= distance < 2 ** (i + 1)


@pytest.mark.parametrize('distance', [0, -1, RING_SIZE, RING_SIZE + 5])
def test_bucket_index_refuses_distances_off_the_ring(distance):
    with pytest.raises(ValueError, match='clockwise distance'):
        bucket_index(distance)


@given(ids_strategy, st.integers(1, 4), st.randoms(use_true_random=False))
@settings(max_examples=60, deadline=None)
def test_learned_shortcuts_sit_in_their_bucket_and_buckets_are_bounded(
        ids, size, rnd):
    ring = SimRing(ids, RingParams(ring_bucket_size=size, join_peers=0))
    router = ring.routers[ring.names[0]]
    others = ring.names[1:]
    for name in rnd.sample(others, len(others)):
        router.learn(name)
    table = router.known_peers()
    seen = set()
    for index, names in table.items():
        assert len(names) <= size
        for name in names:
            distance = clockwise(router.ident, ring.ids[name])
            assert 2 ** index <= distance < 2 ** (index + 1)
            seen.add(name)
    # A bucket is only short of members when no more members fall in it.
    for name in others:
        if name not in seen:
            index = bucket_index(clockwise(router.ident, ring.ids[name]))
            assert len(table[index]) == size
    assert router.learned_count() == len(seen)


def test_a_node_never_learns_itself_or_a_non_member():
    ring = SimRing([10, 20, 30], RingParams(join_peers=0))
    router = ring.routers[ring.names[0]]
    assert not router.learn(ring.names[0])
    assert not router.learn('stranger')
    assert router.learned_count() == 0


# -- membership, responsibility and neighbours --------------------------------


@given(ids_strategy, key_strategy)
@settings(max_examples=100, deadline=None)
def test_exactly_one_member_is_responsible_for_any_key(ids, key_id):
    ring = SimRing(ids)
    owners = [name for name, router in ring.routers.items()
              if router.is_responsible(key_id)]
    assert owners == [ring.truth(key_id)]
    assert ring.members.responsible(key_id).name == owners[0]


@given(ids_strategy, st.integers(1, 6))
@settings(max_examples=60, deadline=None)
def test_successors_and_predecessor_follow_the_ring(ids, count):
    ring = SimRing(ids, RingParams(ring_successors=count))
    order = sorted(ring.names, key=lambda n: ring.ids[n])
    n = len(order)
    for i, name in enumerate(order):
        router = ring.routers[name]
        expected = [order[(i + j) % n] for j in range(1, min(count, n - 1)
                                                      + 1)]
        assert [p.name for p in router.successors] == expected
        pred = router.predecessor
        assert (pred is None) if n == 1 else pred.name == order[i - 1]


def test_neighbour_callback_fires_only_when_the_successor_list_changes():
    ring = SimRing([100, 200, 300, 400, 500, 600],
                   RingParams(ring_successors=2))
    router = ring.routers[ring.names[0]]      # id 100
    changes = []
    router.on_neighbours_changed = lambda old, new: changes.append(
        ([p.name for p in old], [p.name for p in new]))
    ring.ids['late'] = 150
    router.add_member(PeerRef('late'))
    assert changes == [(['n1', 'n2'], ['late', 'n1'])]
    ring.ids['far'] = 550
    router.add_member(PeerRef('far'))
    assert len(changes) == 1
    router.remove_member('late')
    assert changes[-1] == (['late', 'n1'], ['n1', 'n2'])
    router.remove_member('nobody')
    router.remove_member(router.me.name)
    assert len(changes) == 2


def test_a_failing_neighbour_callback_does_not_stop_membership():
    ring = SimRing([100, 200, 300])
    router = ring.routers[ring.names[0]]
    heard = []

    def broken(old, new):
        raise RuntimeError('listener bug')
    router.on_neighbours_changed = broken
    router.ring_listeners.append(lambda old, new: heard.append(len(new)))
    router.remove_member(ring.names[1])
    assert [p.name for p in router.successors] == [ring.names[2]]
    assert heard == [2]


def test_removed_members_leave_the_table():
    ring = SimRing([1 << 60, 2 << 60, 3 << 60, 9 << 60],
                   RingParams(join_peers=0))
    router = ring.routers[ring.names[0]]
    assert router.learn(ring.names[3])
    router.remove_member(ring.names[3])
    assert router.learned_count() == 0


def test_join_gives_a_few_random_shortcuts():
    ids = unique_ids(random.Random(5), 50)
    ring = SimRing(ids, RingParams(join_peers=4))
    counts = [r.learned_count() for r in ring.routers.values()]
    # Four are offered; a bucket already full (two of them half a ring
    # away, in the top bucket) keeps what it has.
    assert all(1 <= c <= 4 for c in counts)
    assert sum(counts) / len(counts) > 3
    ring = SimRing(ids, RingParams(join_peers=0))
    assert all(r.learned_count() == 0 for r in ring.routers.values())


def test_member_ring_keeps_the_smaller_name_on_an_identifier_clash():
    ring = MemberRing([PeerRef('b'), PeerRef('a')], id_of=lambda n: 7)
    assert [p.name for p in ring] == ['a']
    assert [p.name for p in ring.with_peer(PeerRef('c'))] == ['a']
    assert ring.with_peer(PeerRef('a', 'h:1')).peer('a').address == 'h:1'


def test_a_node_whose_identifier_is_taken_still_routes_correctly():
    ring = SimRing([500, 500, 100, 900], RingParams(join_peers=0))
    shadowed = ring.routers['n1']             # n0 keeps id 500
    assert 'n1' not in shadowed.ring
    assert not any(shadowed.is_responsible(k) for k in (0, 300, 500, 700))
    for key_id, owner in ((300, 'n0'), (500, 'n0'), (700, 'n3'),
                          (950, 'n2'), (50, 'n2')):
        assert ring.route('n1', key_id).node.name == owner
        assert ring.route('n2', key_id).node.name == owner


def test_member_ring_refuses_identifiers_off_the_ring():
    with pytest.raises(ValueError, match='ring identifier'):
        MemberRing([PeerRef('a')], id_of=lambda n: RING_SIZE)


# -- routing ------------------------------------------------------------------


@st.composite
def ring_states(draw):
    ids = draw(ids_strategy)
    key_id = draw(key_strategy)
    source = draw(st.integers(0, len(ids) - 1))
    successors = draw(st.integers(1, 5))
    bucket = draw(st.integers(1, 3))
    known = draw(st.lists(st.lists(st.integers(0, len(ids) - 1),
                                   max_size=len(ids)),
                          min_size=len(ids), max_size=len(ids)))
    return ids, key_id, source, successors, bucket, known


@given(ring_states())
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_routing_always_ends_at_the_true_successor(state):
    ids, key_id, source, successors, bucket, known = state
    ring = SimRing(ids, RingParams(ring_successors=successors,
                                   ring_bucket_size=bucket, join_peers=0,
                                   request_timeout=30.0), learning=False)
    for name, picks in zip(ring.names, known, strict=True):
        for j in picks:
            ring.routers[name].learn(ring.names[j])
    outcome = ring.route(ring.names[source], key_id)
    assert isinstance(outcome, RouteResult), outcome
    assert outcome.node.name == ring.truth(key_id)
    assert outcome.path[0] == ring.names[source]
    assert outcome.path[-1] == outcome.node.name
    assert outcome.hops == len(outcome.path) - 1
    # Greedy forwarding never passes the key: no node twice, at most
    # every node once.
    assert len(set(outcome.path)) == len(outcome.path) <= len(ids)


@given(st.lists(st.integers(0, RING_SIZE - 1), min_size=6, max_size=20,
                unique=True), st.data())
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
def test_routing_around_dead_nodes_ends_at_the_first_live_successor(
        ids, data):
    params = RingParams(ring_successors=3, join_peers=3,
                        request_timeout=30.0, hop_timeout=1.0)
    ring = SimRing(ids, params)
    source = data.draw(st.sampled_from(ring.names))
    candidates = [n for n in ring.names if n != source]
    dead = data.draw(st.lists(st.sampled_from(candidates), max_size=2,
                              unique=True))
    for name in dead:
        ring.network.kill(name)
    for _ in range(3):
        key_id = data.draw(key_strategy)
        started = ring.clock.now()
        outcome = ring.route(source, key_id)
        assert isinstance(outcome, RouteResult), outcome
        assert outcome.node.name == ring.truth(key_id, dead)
        assert not set(outcome.path) & set(dead)
        assert ring.answered_at - started < params.request_timeout


def test_routing_learns_from_path_reply_and_acknowledgements():
    ids = [i << 60 for i in range(16)]     # 16 evenly spaced nodes
    ring = SimRing(ids, RingParams(ring_successors=1, join_peers=0,
                                   request_timeout=30.0))
    source = ring.names[0]
    key_id = (15 << 60) - 1                 # held by the last node
    outcome = ring.route(source, key_id)
    path = list(outcome.path)
    # With one successor each and nothing learned yet: all the way round.
    assert path == ring.names
    assert outcome.hops == 15

    def known(name):
        return {n for names in ring.routers[name].known_peers().values()
                for n in names}
    # The source keeps what the reply showed: every bucket the path
    # crosses is filled up to its size (2).
    table = ring.routers[source].known_peers()
    crossed: dict[int, int] = {}
    for name in path[1:]:
        index = bucket_index(clockwise(0, ring.ids[name]))
        crossed[index] = crossed.get(index, 0) + 1
    assert {i: len(names) for i, names in table.items()} == {
        i: min(2, count) for i, count in crossed.items()}
    # Every node on the path kept the source, which the request carried
    # first.
    for name in path[1:]:
        assert source in known(name)
    # The acknowledgement taught each forwarder the node two hops ahead.
    for a, c in zip(path, path[2:], strict=False):
        assert c in known(a)
    # And a second lookup of the same key is now much shorter.
    again = ring.route(source, key_id)
    assert again.node.name == outcome.node.name
    assert again.hops <= outcome.hops // 2


def test_hops_fall_as_requests_teach_shortcuts():
    rnd = random.Random(3)
    ids = unique_ids(rnd, 300)
    ring = SimRing(ids, RingParams(join_peers=2, request_timeout=30.0),
                   learning=False)

    def mean_hops(count):
        total = 0
        for _ in range(count):
            out = ring.route(rnd.choice(ring.names), rnd.randrange(
                RING_SIZE))
            total += out.hops
        return total / count
    before = mean_hops(100)
    for router in ring.routers.values():
        router.learning = True
    for _ in range(900):
        ring.route(rnd.choice(ring.names), rnd.randrange(RING_SIZE))
    after = mean_hops(100)
    assert after < 0.6 * before
    assert after <= 0.5 * math.log2(300) + 1


def test_lookup_answered_by_the_source_itself_calls_back_later():
    ring = SimRing([50, 100, 200])
    outcome = ring.route(ring.names[1], 75)
    assert outcome.hops == 0
    assert outcome.path == (ring.names[1],)
    assert outcome.node.name == ring.names[1]


def test_a_lone_node_answers_every_key():
    ring = SimRing([12345])
    for key_id in (0, 12345, RING_SIZE - 1):
        assert ring.route(ring.names[0], key_id).hops == 0


def test_requests_over_max_hops_fail_naming_the_key():
    ids = [i << 58 for i in range(40)]
    ring = SimRing(ids, RingParams(ring_successors=1, ring_max_hops=3,
                                   join_peers=0), learning=False)
    outcome = ring.route(ring.names[0], 30 << 58)
    assert isinstance(outcome, RoutingFailed)
    assert "'#%d'" % (30 << 58) in str(outcome)
    assert 'ring_max_hops=3' in str(outcome)


def test_a_lookup_among_dead_peers_fails_in_bounded_time():
    ids = [i << 59 for i in range(8)]
    params = RingParams(ring_successors=2, request_timeout=4.0,
                        hop_timeout=0.5, attempts=2, join_peers=0)
    ring = SimRing(ids, params)
    for name in ring.names[1:]:
        ring.network.kill(name)
    outcome = ring.route(ring.names[0], 5 << 59)
    assert isinstance(outcome, RoutingFailed)
    assert "'#%d'" % (5 << 59) in str(outcome)
    assert ring.answered_at <= params.attempts * params.request_timeout


def test_each_unacknowledged_forward_times_out_on_its_own_deadline():
    ring = SimRing([0, 100, 200, 300], RingParams(
        ring_successors=3, join_peers=0, hop_timeout=1.0,
        request_timeout=30.0))
    source = ring.routers['n0']
    ring.network.kill('n1')
    ring.network.kill('n3')
    answers = {}

    def lookup(key_id):
        source.route(key_name(key_id), None, lambda outcome: answers.update(
            {key_id: (ring.clock.now(), outcome)}))
    lookup(50)                                  # n1's key, sent at 0.0
    ring.clock.call_later(0.4, lookup, 250)     # n3's key, sent at 0.4
    for until, expected in ((0.99, 0), (1.01, 1), (1.39, 1), (1.41, 2)):
        ring.clock.run_until(until)
        assert source.stats.hop_timeouts == expected, until
    ring.clock.run_until()
    # Each went on to the next live successor of its key.
    assert answers[50][1].node.name == 'n2'
    assert answers[250][1].node.name == 'n0'
    assert 1.0 < answers[50][0] < 1.5


def test_a_suspect_is_not_learned_until_its_suspicion_expires():
    ring = SimRing([0, 100, 200, 300, 1 << 62, 1 << 63], RingParams(
        ring_successors=2, join_peers=0, hop_timeout=1.0,
        suspect_time=10.0, request_timeout=30.0))
    source = ring.routers['n0']
    assert source.learn('n4')
    ring.network.kill('n4')
    outcome = ring.route('n0', (1 << 62) + 5)     # via n4, which is dead
    assert isinstance(outcome, RouteResult)
    assert outcome.node.name == 'n5' and 'n4' not in outcome.path
    assert source.stats.hop_timeouts >= 1
    assert not source.learn('n4')                 # suspect
    ring.network.revive('n4')
    ring.clock.run_until(ring.clock.now() + 10.0)
    assert source.learn('n4')                     # suspicion over


def test_an_unanswered_lookup_is_retried_then_reported():
    ids = [i << 59 for i in range(8)]
    params = RingParams(ring_successors=2, request_timeout=3.0,
                        hop_timeout=5.0, attempts=3, join_peers=0)
    ring = SimRing(ids, params)
    source = ring.routers[ring.names[0]]
    # Every hop is acknowledged but the answers are lost on the way back:
    # only the source's own timeout can notice.
    lost = []

    def lossy(sender, message):
        if message['type'] == REPLY:
            lost.append(message['rid'])
            return
        source.handle(sender, message)
    ring.network.register(ring.names[0], lossy)
    outcome = ring.route(ring.names[0], 5 << 59)
    assert isinstance(outcome, RoutingFailed)
    assert "'#%d'" % (5 << 59) in str(outcome)
    assert 'in 3 attempts' in str(outcome)
    assert len(set(lost)) == 3
    assert source.stats.attempts_retried == 2
    assert source.stats.hop_timeouts == 0
    assert ring.answered_at == pytest.approx(9.0, abs=0.01)


def test_services_answer_at_the_responsible_node():
    ring = SimRing([100, 200, 300, 400])
    seen = []
    for name, router in ring.routers.items():
        router.register_service(
            'echo', lambda key, payload, src, me=name: seen.append(me) or
            {'at': me, 'echo': payload['x'], 'from': src})
    out = ring.route(ring.names[0], 250, {'service': 'echo', 'x': 7})
    assert out.result == {'at': ring.names[2], 'echo': 7,
                          'from': ring.names[0]}
    assert seen == [ring.names[2]]


def test_unknown_and_failing_services_answer_an_error():
    ring = SimRing([100, 200, 300])

    def broken(key, payload, src):
        raise KeyError('bug')
    ring.routers[ring.names[1]].register_service('broken', broken)
    out = ring.route(ring.names[0], 150, {'service': 'missing'})
    assert "no service 'missing'" in out.result['error']
    out = ring.route(ring.names[0], 150, {'service': 'broken'})
    assert 'service broken failed' in out.result['error']


def test_an_answer_that_does_not_match_its_request_is_dropped():
    ring = SimRing([100, 200, 300])
    router = ring.routers[ring.names[0]]
    outcomes = []
    router.route('#250', None, outcomes.append)
    rid = next(iter(router._lookups))
    router.handle(ring.names[1], {'type': REPLY, 'rid': rid, 'key': '#250',
                                  'path': [ring.names[0], ring.names[2]],
                                  'result': {}})
    assert router.stats.inconsistent_messages == 1
    router.handle(ring.names[1], {'type': REPLY, 'rid': 'other/1',
                                  'key': '#250', 'path': [ring.names[0]],
                                  'result': {}})
    assert router.stats.late_messages == 1
    ring.clock.run_until()
    assert len(outcomes) == 1 and isinstance(outcomes[0], RouteResult)


def test_a_request_whose_path_does_not_end_with_the_sender_is_dropped():
    ring = SimRing([100, 200, 300])
    router = ring.routers[ring.names[1]]
    router.handle(ring.names[0], {
        'type': ROUTE, 'rid': 'x/1', 'key': '#250', 'src': ring.names[0],
        'path': [ring.names[2]], 'final': False, 'hop': 1, 'payload': {}})
    assert router.stats.inconsistent_messages == 1
    assert router.stats.requests_handled == 0


def test_an_acknowledgement_from_the_wrong_peer_is_ignored():
    ring = SimRing([100, 200, 300])
    router = ring.routers[ring.names[0]]
    router.route('#250', None, lambda outcome: None)
    hop_id, hop = next(iter(router._hops.items()))
    assert hop.target == ring.names[2]
    router.handle(ring.names[1], {'type': ACK, 'hop': hop_id, 'next': ''})
    assert hop_id in router._hops
    assert router.stats.late_messages == 1
    router.handle(ring.names[2], {'type': ACK, 'hop': hop_id, 'next': ''})
    assert hop_id not in router._hops


# -- parameters ---------------------------------------------------------------


@pytest.mark.parametrize('field,value', [
    ('ring_successors', 0), ('ring_bucket_size', 65), ('ring_max_hops', 0),
    ('attempts', 0), ('hop_retries', -1), ('join_peers', True),
    ('request_timeout', 0), ('hop_timeout', float('nan')),
    ('suspect_time', -1.0)])
def test_params_refuse_out_of_range_values(field, value):
    with pytest.raises(ValueError, match=field):
        RingParams(**{field: value})


def test_params_from_options():
    options = types.SimpleNamespace(ring_successors=6, ring_bucket_size=3,
                                    ring_max_hops=99, request_timeout=8.0)
    params = RingParams.from_options(options, join_peers=1)
    assert (params.ring_successors, params.ring_bucket_size,
            params.ring_max_hops, params.request_timeout,
            params.hop_timeout, params.join_peers) == (6, 3, 99, 8.0, 2.0, 1)


def test_route_refuses_a_bad_key_or_payload():
    ring = SimRing([1, 2])
    router = ring.routers[ring.names[0]]
    with pytest.raises(ValueError, match='key'):
        router.route('', None, lambda o: None)
    with pytest.raises(ValueError, match='payload'):
        router.route('k', ['not', 'a', 'dict'], lambda o: None)


# -- validation of network input ----------------------------------------------

VALID = {
    ROUTE: {'type': ROUTE, 'rid': 'n0/1', 'key': 'vm-1', 'src': 'n0',
            'path': ['n0', 'n3'], 'final': False, 'hop': 12,
            'payload': {'service': 'locate', 'op': 'get'}},
    ACK: {'type': ACK, 'hop': 12, 'next': 'n7'},
    REPLY: {'type': REPLY, 'rid': 'n0/1', 'key': 'vm-1',
            'path': ['n0', 'n3'], 'result': {'found': False}},
    FAIL: {'type': FAIL, 'rid': 'n0/1', 'key': 'vm-1', 'path': ['n0'],
           'reason': 'no live peer'},
}

#: Per type and field, values that must be refused.
BAD = {
    'rid': ['', 5, None, 'x' * 301],
    'key': ['', 3.5, ['vm'], 'k' * 1025],
    'src': ['', 1, None, 's' * 256],
    'path': [[], 'n0', [''], [1], ['n' * 256], None],
    'final': [0, 'no', None],
    'hop': [0, -1, True, 1.5, '3', 1 << 63],
    'payload': [[], 'x', {'service': 3}, {1: 2}, None],
    'next': [None, 4, 'n' * 256],
    'result': [[], 'ok', None, {2: 'x'}],
    'reason': ['', 7, 'r' * 513],
}


@pytest.mark.parametrize('kind', sorted(VALID))
def test_valid_messages_pass(kind):
    validate_message(VALID[kind])


@pytest.mark.parametrize('kind,field,value', [
    (kind, field, value) for kind, message in sorted(VALID.items())
    for field in message if field != 'type' for value in BAD[field]])
def test_each_bad_field_is_refused_by_name(kind, field, value):
    message = dict(VALID[kind], **{field: value})
    with pytest.raises(InvalidMessage) as info:
        validate_message(message)
    # The error names the field, or the element of it that is wrong.
    assert re.search(r"field '%s(\[\d+\]|\.\w+)?' " % field,
                     str(info.value)), str(info.value)


@pytest.mark.parametrize('kind', sorted(VALID))
def test_missing_and_unexpected_fields_are_refused(kind):
    for field in VALID[kind]:
        if field == 'type':
            continue
        message = {k: v for k, v in VALID[kind].items() if k != field}
        with pytest.raises(InvalidMessage, match='%r is missing' % field):
            validate_message(message)
    with pytest.raises(InvalidMessage, match="unexpected field 'extra'"):
        validate_message(dict(VALID[kind], extra=1))


@pytest.mark.parametrize('message', [None, [], 'ring.route', {},
                                     {'type': 'ring.nope'},
                                     {'type': 3}])
def test_non_messages_and_unknown_types_are_refused(message):
    with pytest.raises(InvalidMessage):
        validate_message(message)


@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3), max_leaves=5), max_size=6))
@settings(max_examples=200)
def test_arbitrary_objects_are_refused_or_well_formed(message):
    try:
        validate_message(message)
    except InvalidMessage:
        return
    assert message['type'] in VALID


def test_router_runs_the_service_payload_check():
    ring = SimRing([1, 2])
    router = ring.routers[ring.names[0]]

    def check(payload):
        if payload.get('op') != 'get':
            raise InvalidMessage('payload.op must be get')
    router.register_service('locate', lambda k, p, s: {}, check)
    router.validate_message(VALID[ROUTE])
    with pytest.raises(InvalidMessage, match='payload.op'):
        router.validate_message(dict(VALID[ROUTE], payload={
            'service': 'locate', 'op': 'put'}))
