"""Our plugins decide per group of hosts: same results as host by host.

Filters and weighers work once per set of aggregates and the weighers hand
nova's handler the multipliers they worked out while weighing. These tests
hold them to nova's own per-host answers: ``get_weight_multiplier`` for
every host, ``normalize`` and the multipliers for the final weights, and
``host_passes`` one host at a time for the filters.
"""

from nova import weights as nova_weights
from nova.scheduler import utils
from nova.scheduler import weights
import pytest

from discovery_nova import scheduler
from discovery_nova.conf import CONF
from tests.unit.scheduler.fakes import FakeAggregate
from tests.unit.scheduler.fakes import FakeHostState
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import instance
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import spec

IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
OPTIONS = {'EnergyWeigher': 'energy_weight_multiplier',
           'ImageLocalityWeigher': 'image_locality_weight_multiplier',
           'ProximityWeigher': 'proximity_weight_multiplier'}


def world():
    """Hosts in three PoPs; some also in an aggregate that overrides every
    multiplier, so hosts of one PoP differ; one PoP overrides energy."""
    hosts = hosts_for(
        pop('par1', 0, renewable_share=0.9, pue=1.1),
        pop('fra1', 10, pue=1.5),
        pop('nyc1', 80, renewable_share=0.2), per_pop=3,
        extra_metadata={'fra1': {'energy_weight_multiplier': '4'}})
    special = FakeAggregate('special', {
        'energy_weight_multiplier': '0.5',
        'image_locality_weight_multiplier': '3',
        'proximity_weight_multiplier': '7'}, [])
    for host in (hosts[1], hosts[4], hosts[8]):
        host.aggregates = host.aggregates + [special]
    running = instance(IMAGE)
    hosts[7].instances[running.uuid] = running      # nyc1-c2
    return hosts


def weighers():
    return [cls() for cls in scheduler.all_weighers()]


def nova_multiplier(weigher, host):
    option = OPTIONS[type(weigher).__name__]
    return utils.get_weight_multiplier(
        host, option, getattr(CONF.discovery_scheduler, option))


def test_handler_gets_nova_multiplier_of_every_host(clean_state):
    clean_state.set_override('pop_name', 'par1', group='discovery')
    hosts = world()
    asked = []
    plugins = weighers()
    for weigher in plugins:
        answer = weigher.weight_multiplier

        def spy(host, weigher=weigher, answer=answer):
            asked.append((weigher, host, answer(host)))
            return asked[-1][2]
        weigher.weight_multiplier = spy
    weights.HostWeightHandler().get_weighed_objects(
        plugins, hosts, spec({'near': 'fra1'}, image=IMAGE,
                             image_size=2 ** 30))
    assert len(asked) == len(plugins) * len(hosts)
    assert [value for _, _, value in asked] == [
        nova_multiplier(weigher, host) for weigher, host, _ in asked]
    # The overrides were in play: hosts of one PoP got different ones.
    assert len({value for _, _, value in asked}) > 3


def test_final_weights_are_nova_sums_per_host(clean_state):
    clean_state.set_override('pop_name', 'par1', group='discovery')
    hosts = world()
    request = spec({'near': 'nyc1'}, image=IMAGE, image_size=2 ** 30)
    ranked = weights.HostWeightHandler().get_weighed_objects(
        weighers(), hosts, request)
    # What nova's handler computes, written host by host: each weigher's
    # raw weights (the image weigher's depend on the other hosts of a PoP)
    # normalised over the hosts, times nova's multiplier of each host.
    expected = dict.fromkeys(hosts, 0.0)
    for weigher in weighers():
        raw = weigher.weigh_objects(
            [weights.WeighedHost(host, 0.0) for host in hosts], request)
        for host, weight in zip(hosts, nova_weights.normalize(raw),
                                strict=True):
            expected[host] += nova_multiplier(weigher, host) * weight
    assert {w.obj.host: w.weight for w in ranked} == pytest.approx(
        {host.host: weight for host, weight in expected.items()})
    assert [w.obj for w in ranked] == sorted(
        hosts, key=expected.__getitem__, reverse=True)


def test_multiplier_asked_out_of_turn_reads_config_now(clean_state):
    hosts = world()
    weigher = scheduler.all_weighers()[2]()     # ProximityWeigher
    clean_state.set_override('pop_name', 'par1', group='discovery')
    weigher.weigh_objects([weights.WeighedHost(h, 0.0) for h in hosts],
                          spec({}))
    clean_state.set_override('proximity_weight_multiplier', 2.0,
                             group='discovery_scheduler')
    # hosts[0] is next in the weighed order, hosts[2] is not: both are
    # answered from the configuration as it is now.
    assert weigher.weight_multiplier(hosts[2]) == 2.0
    assert weigher.weight_multiplier(hosts[0]) == 2.0
    assert weigher.weight_multiplier(hosts[1]) == 7.0     # special


@pytest.mark.parametrize('cls', scheduler.all_filters())
def test_filters_return_the_hosts_unchanged_without_hints(cls):
    hosts = world() + [FakeHostState('loose', [])]
    assert cls().filter_all(hosts, spec({})) == hosts


@pytest.mark.parametrize('cls', scheduler.all_filters())
def test_filters_skip_rebuilds_as_nova_does(cls):
    hosts = world()
    server = next(iter(hosts[7].instances))
    hints = {'pop': 'par1', 'max_rtt_ms': '5', 'near': 'par1',
             'same_pop_as': server}
    assert cls.RUN_ON_REBUILD is False
    assert cls().filter_all(hosts, spec(hints, rebuild=True)) == hosts
    assert cls().filter_all(hosts, spec(hints)) != hosts


@pytest.mark.parametrize('cls', scheduler.all_filters())
def test_filter_all_agrees_with_host_passes(cls, clean_state):
    clean_state.set_override('pop_name', 'fra1', group='discovery')
    hosts = world() + [FakeHostState('loose', [])]
    server = next(iter(hosts[7].instances))
    request = spec({'avoid_pop': 'par1', 'max_rtt_ms': '20',
                    'different_pop_from': server})
    passed = cls().filter_all(hosts, request)
    assert passed == [h for h in hosts if cls().host_passes(h, request)]
    assert 0 < len(passed) < len(hosts)
