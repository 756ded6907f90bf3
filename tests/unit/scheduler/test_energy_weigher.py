"""EnergyWeigher: less non-renewable energy per IT energy wins."""

from nova.scheduler import weights

from discovery_nova.scheduler.energy_weigher import EnergyWeigher
from discovery_nova.scheduler.energy_weigher import non_renewable_per_it_energy
from tests.unit.scheduler.fakes import FakeHostState
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import spec

GREEN = pop('green', 0, renewable_share=0.9, pue=1.2)
COAL = pop('coal', 5, renewable_share=0.0, pue=1.1)
UNKNOWN = pop('unknown', 9)


def weigh(hosts):
    weighed = [weights.WeighedHost(h, 0.0) for h in hosts]
    return EnergyWeigher().weigh_objects(weighed, spec({}))


def test_formula_and_defaults():
    assert abs(non_renewable_per_it_energy(GREEN, 1.5) - 0.12) < 1e-12
    assert non_renewable_per_it_energy(COAL, 1.5) == 1.1
    assert non_renewable_per_it_energy(UNKNOWN, 1.5) == 1.5
    assert non_renewable_per_it_energy(None, 1.7) == 1.7


def test_greener_pop_weighs_more(clean_state):
    hosts = hosts_for(COAL, GREEN, UNKNOWN, per_pop=1) + [
        FakeHostState('loose', [])]
    got = weigh(hosts)
    assert got[1] > got[0] > got[2] == got[3]
    clean_state.set_override('default_pue', 1.0,
                             group='discovery_scheduler')
    got = weigh(hosts)
    # An unknown PoP at PUE 1.0 now beats coal at 1.1.
    assert got[2] > got[0]


def test_multiplier_overridable_per_aggregate():
    hosts = hosts_for(GREEN, COAL, per_pop=1, extra_metadata={
        'coal': {'energy_weight_multiplier': '0'}})
    weigher = EnergyWeigher()
    assert weigher.weight_multiplier(hosts[0]) == 1.0
    assert weigher.weight_multiplier(hosts[1]) == 0.0
