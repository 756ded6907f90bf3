"""Prefer hosts of PoPs that burn less non-renewable energy.

A PoP publishes its power usage effectiveness (``discovery_pue``) and the
renewable share of its supply (``discovery_renewable_share``); the energy
drawn from non-renewable sources per unit of IT energy is
``PUE * (1 - renewable share)``, and lower is better.
"""

import discovery_nova.conf
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.scheduler.base import LocalityWeigher
from discovery_nova.scheduler.request import HostGroup
from discovery_nova.scheduler.request import HostList
from discovery_nova.scheduler.request import LocalityRequest
from discovery_nova.scheduler.request import per_group

CONF = discovery_nova.conf.CONF


def non_renewable_per_it_energy(pop: PopDescriptor | None,
                                default_pue: float) -> float:
    """Facility energy from non-renewable sources per unit of IT energy."""
    if pop is None:
        return default_pue
    pue = pop.pue if pop.pue is not None else default_pue
    share = pop.renewable_share or 0.0
    return pue * (1.0 - share)


class EnergyWeigher(LocalityWeigher):
    """Weigh hosts by their PoP's non-renewable energy per IT energy."""

    multiplier_option = 'energy_weight_multiplier'

    def weigh_hosts(self, request: LocalityRequest, hosts: HostList,
                    spec_obj) -> list[float]:
        default_pue = CONF.discovery_scheduler.default_pue

        def weigh(group: HostGroup) -> float:
            return -non_renewable_per_it_energy(group.pop, default_pue)

        by_group = per_group(('energy', default_pue), hosts.distinct(),
                                 weigh)
        return list(map(by_group.__getitem__, hosts.groups))
