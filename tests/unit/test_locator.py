"""Object location: records at the responsible node and its successors,
found from any node, kept through crashes, moved as members come and go.

The production RingRouter and Locator run on the simulated network.
"""

import random

import pytest

from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import RoutingFailed
from discovery_nova.overlay.locator import STORE
from discovery_nova.overlay.locator import Located
from discovery_nova.overlay.locator import Locator
from discovery_nova.overlay.locator import LocatorParams
from discovery_nova.overlay.locator import Stored
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.ring import MemberRing
from discovery_nova.overlay.ring import RingParams
from discovery_nova.overlay.ring import RingRouter
from discovery_nova.overlay.ring import ring_id
from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.network import SimNetwork
from discovery_nova.sim.topology import PlaneTopology

PARAMS = RingParams(request_timeout=20.0, hop_timeout=1.0)


class Cloud:
    """``n`` nodes of which the first ``members`` start as members."""

    def __init__(self, n=12, members=None, replicas=2, seed=0):
        self.topology = PlaneTopology(n, seed=seed)
        self.clock = VirtualClock()
        self.network = SimNetwork(self.clock, self.topology)
        self.routers = {}
        self.locators = {}
        for i, name in enumerate(self.topology.names):
            router = RingRouter(self.network.endpoint(name), PeerRef(name),
                                PARAMS, rng=random.Random(i))
            locator = Locator(router, LocatorParams(replicas=replicas))
            self.routers[name] = router
            self.locators[name] = locator
            self.network.register(name, self._dispatch(router, locator))
        self.members = list(self.topology.names[:members or n])
        ring = MemberRing(PeerRef(m) for m in self.members)
        for name in self.members:
            self.routers[name].set_members(ring)

    @staticmethod
    def _dispatch(router, locator):
        def dispatch(sender, message):
            target = locator if message['type'].startswith(
                'locate.') else router
            target.validate_message(message)
            target.handle(sender, message)
        return dispatch

    def put(self, source, key, value):
        out = []
        self.locators[source].put(key, value, out.append)
        self.clock.run_until()
        assert len(out) == 1
        return out[0]

    def get(self, source, key):
        out = []
        self.locators[source].get(key, out.append)
        self.clock.run_until()
        assert len(out) == 1
        return out[0]

    def replica_names(self, key, count=3, members=None):
        ring = MemberRing(PeerRef(m) for m in (members or self.members))
        return [p.name for p in ring.replica_set(ring_id(key), count)]

    def holders(self, key):
        return sorted(n for n, loc in self.locators.items()
                      if key in loc.records())

    def join(self, name):
        """``name`` joins: every member (and itself) hears of it."""
        self.members.append(name)
        ring = MemberRing(PeerRef(m) for m in self.members)
        self.routers[name].set_members(ring)
        for member in self.members:
            if member != name:
                self.routers[member].add_member(PeerRef(name))
        self.clock.run_until()

    def drop(self, name):
        """Membership declares ``name`` gone."""
        self.members.remove(name)
        for member in self.members:
            self.routers[member].remove_member(name)
        self.clock.run_until()


def test_a_record_is_found_from_every_node():
    cloud = Cloud()
    stored = cloud.put('n00', 'vm-1', {'pop': 'pl042'})
    assert isinstance(stored, Stored) and stored.version == 1
    assert stored.node.name == cloud.replica_names('vm-1')[0]
    assert cloud.holders('vm-1') == sorted(cloud.replica_names('vm-1'))
    for name in cloud.members:
        found = cloud.get(name, 'vm-1')
        assert isinstance(found, Located)
        assert found.found and found.value == {'pop': 'pl042'}
        assert found.node.name == stored.node.name


def test_an_unknown_key_is_reported_not_found():
    cloud = Cloud()
    found = cloud.get('n03', 'vm-nobody')
    assert isinstance(found, Located)
    assert not found.found and found.value is None and found.version == 0


def test_a_second_put_replaces_the_value_everywhere():
    cloud = Cloud()
    cloud.put('n00', 'vm-2', 'pl001')
    stored = cloud.put('n05', 'vm-2', 'pl002')
    assert stored.version == 2
    for name in cloud.holders('vm-2'):
        assert cloud.locators[name].records()['vm-2'] == (2, 'pl002')
    assert cloud.get('n07', 'vm-2').value == 'pl002'


def test_records_survive_the_crash_of_their_responsible_node():
    cloud = Cloud()
    keys = ['vm-%d' % i for i in range(30)]
    for i, key in enumerate(keys):
        cloud.put(cloud.members[i % 12], key, i)
    victim = cloud.replica_names(keys[0])[0]
    cloud.network.kill(victim)                 # membership not told
    alive = [m for m in cloud.members if m != victim]
    for i, key in enumerate(keys):
        found = cloud.get(alive[i % len(alive)], key)
        assert isinstance(found, Located), found
        assert found.found and found.value == i
        assert found.node.name != victim


def test_records_move_to_the_new_replica_set_when_a_member_is_dropped():
    cloud = Cloud()
    keys = ['vm-%d' % i for i in range(30)]
    for key in keys:
        cloud.put('n01', key, key.upper())
    victim = cloud.replica_names(keys[0])[0]
    cloud.network.kill(victim)
    cloud.drop(victim)
    for key in keys:
        live = [h for h in cloud.holders(key) if h != victim]
        assert live == sorted(cloud.replica_names(key)), key
    # The two next successors may die as well: one copy is still enough.
    successors = cloud.replica_names(keys[0])
    for name in successors[:2]:
        cloud.network.kill(name)
    found = cloud.get(successors[2], keys[0])
    assert found.found and found.value == keys[0].upper()


def test_a_joining_node_receives_the_records_it_becomes_responsible_for():
    cloud = Cloud(n=16, members=8)
    keys = ['vm-%d' % i for i in range(60)]
    for key in keys:
        cloud.put('n00', key, key)
    for newcomer in cloud.topology.names[8:]:
        cloud.join(newcomer)
    moved = 0
    for key in keys:
        expected = cloud.replica_names(key)
        assert cloud.holders(key) == sorted(expected), key
        if set(expected) & set(cloud.topology.names[8:]):
            moved += 1
    assert moved > 0
    for key in keys:
        found = cloud.get('n03', key)
        assert found.found and found.value == key


def test_a_graceful_leave_hands_every_record_over():
    cloud = Cloud(replicas=0)
    keys = ['vm-%d' % i for i in range(20)]
    for key in keys:
        cloud.put('n02', key, 1)
    leaving = cloud.replica_names(keys[0], 1)[0]
    mine = [k for k in keys if cloud.holders(k) == [leaving]]
    assert mine
    cloud.locators[leaving].leave()
    cloud.clock.run_until()
    assert cloud.locators[leaving].records() == {}
    cloud.network.kill(leaving)
    cloud.drop(leaving)
    for key in mine:
        assert cloud.get('n05', key).found


def test_a_stale_copy_does_not_replace_a_newer_one():
    cloud = Cloud()
    cloud.put('n00', 'vm-9', 'new')
    cloud.put('n00', 'vm-9', 'newer')
    holder = cloud.holders('vm-9')[0]
    other = next(m for m in cloud.members if m != holder)
    cloud.locators[holder].handle(other, {'type': STORE, 'key': 'vm-9',
                                          'value': 'old', 'version': 1})
    assert cloud.locators[holder].records()['vm-9'] == (2, 'newer')
    assert cloud.locators[holder].stats.copies_stale == 1


def test_copies_from_non_members_are_refused():
    cloud = Cloud(n=12, members=10)
    locator = cloud.locators['n00']
    locator.handle('n11', {'type': STORE, 'key': 'vm-x', 'value': 'evil',
                           'version': 99})
    assert locator.records() == {}
    assert locator.stats.copies_refused == 1


def test_put_refuses_values_that_are_not_small_json():
    cloud = Cloud()
    with pytest.raises(ValueError, match='JSON'):
        cloud.locators['n00'].put('vm-1', {1, 2})
    with pytest.raises(ValueError, match='at most 4096 bytes'):
        cloud.locators['n00'].put('vm-1', 'x' * 5000)


def test_failures_are_reported_as_routing_failed():
    cloud = Cloud(n=4)
    for name in cloud.members[1:]:
        cloud.network.kill(name)
    source = cloud.members[0]
    key = next('vm-%d' % i for i in range(100)
               if cloud.replica_names('vm-%d' % i)[0] != source)
    out = cloud.get(source, key)
    assert isinstance(out, RoutingFailed)
    assert repr(key) in str(out)


@pytest.mark.parametrize('message,field', [
    ({'type': STORE, 'key': '', 'value': 1, 'version': 1}, "'key'"),
    ({'type': STORE, 'key': 'k', 'value': 1, 'version': 0}, "'version'"),
    ({'type': STORE, 'key': 'k', 'value': 1, 'version': True}, "'version'"),
    ({'type': STORE, 'key': 'k', 'value': 'x' * 5000, 'version': 1},
     "'value'"),
    ({'type': STORE, 'key': 'k', 'value': 1}, "'version' is missing"),
    ({'type': STORE, 'key': 'k', 'value': 1, 'version': 1, 'x': 2},
     "unexpected field 'x'"),
    ({'type': 'locate.drop', 'key': 'k'}, "'type'"),
    ([], 'JSON object'),
])
def test_store_messages_are_checked_field_by_field(message, field):
    cloud = Cloud(n=2)
    with pytest.raises(InvalidMessage, match=field):
        cloud.locators['n0'].validate_message(message)


@pytest.mark.parametrize('payload,field', [
    ({'service': 'locate', 'op': 'delete'}, "'payload.op'"),
    ({'service': 'locate', 'op': 'put'}, "'value' is missing"),
    ({'service': 'locate', 'op': 'get', 'value': 1}, "unexpected field"),
    ({'service': 'locate', 'op': 'put', 'value': 'x' * 5000},
     "'payload.value'"),
])
def test_routed_locate_payloads_are_checked(payload, field):
    cloud = Cloud(n=2)
    message = {'type': 'ring.route', 'rid': 'n1/1', 'key': 'vm-1',
               'src': 'n1', 'path': ['n1'], 'final': False, 'hop': 1,
               'payload': payload}
    with pytest.raises(InvalidMessage, match=field):
        cloud.routers['n0'].validate_message(message)


def test_params_refuse_out_of_range_values():
    with pytest.raises(ValueError, match='replicas'):
        LocatorParams(replicas=-1)
    with pytest.raises(ValueError, match='max_value_bytes'):
        LocatorParams(max_value_bytes=0)
