"""ProximityWeigher: nearest PoP to the reference point wins."""

import math

from nova.scheduler import weights
from nova.scheduler.weights import HostWeightHandler

from discovery_nova.scheduler.proximity_weigher import ProximityWeigher
from tests.unit.scheduler.fakes import FakeHostState
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import spec

PAR, FRA, NYC = pop('par1', 0), pop('fra1', 10), pop('nyc1', 80)


def weigh(hints, hosts, entry='par1'):
    from discovery_nova.conf import CONF
    CONF.set_override('pop_name', entry, group='discovery')
    weighed = [weights.WeighedHost(h, 0.0) for h in hosts]
    return ProximityWeigher().weigh_objects(weighed, spec(hints))


def best(hints, hosts, entry='par1'):
    """What nova's handler picks with our weigher alone."""
    from discovery_nova.conf import CONF
    CONF.set_override('pop_name', entry, group='discovery')
    handler = HostWeightHandler()
    ranked = handler.get_weighed_objects([ProximityWeigher()], hosts,
                                         spec(hints))
    return ranked[0].obj.host.rsplit('-', 1)[0]


def test_no_hint_prefers_the_entry_pop():
    hosts = hosts_for(NYC, FRA, PAR)
    assert best({}, hosts) == 'par1'
    assert best({}, hosts, entry='nyc1') == 'nyc1'


def test_near_and_near_ip(clean_state):
    hosts = hosts_for(PAR, FRA, NYC)
    assert best({'near': 'nyc1'}, hosts) == 'nyc1'
    assert best({'near': 'fra1-c2'}, hosts) == 'fra1'
    clean_state.set_override('client_prefixes', ['203.0.113.0/24=fra1'],
                             group='discovery_scheduler')
    assert best({'near_ip': '203.0.113.5'}, hosts) == 'fra1'


def test_weights_follow_log_rtt_and_same_pop_is_zero():
    hosts = hosts_for(PAR, FRA, NYC, per_pop=1)
    got = weigh({}, hosts)
    assert got == [0.0, -math.log(11), -math.log(81)]


def test_host_in_no_pop_weighs_as_the_worst_known():
    hosts = hosts_for(PAR, NYC, per_pop=1) + [FakeHostState('loose', [])]
    got = weigh({}, hosts)
    assert got[2] == got[1] == -math.log(81)


def test_no_reference_weighs_nothing():
    hosts = hosts_for(PAR, FRA)
    assert weigh({}, hosts, entry=None) == [0.0] * 4


def test_multiplier_from_config_and_aggregate(clean_state):
    hosts = hosts_for(PAR, FRA, extra_metadata={
        'fra1': {'proximity_weight_multiplier': '2.5'}})
    weigher = ProximityWeigher()
    assert weigher.weight_multiplier(hosts[0]) == 100.0
    assert weigher.weight_multiplier(hosts[2]) == 2.5
    clean_state.set_override('proximity_weight_multiplier', 7.0,
                             group='discovery_scheduler')
    assert weigher.weight_multiplier(hosts[0]) == 7.0
