"""Prefer hosts in PoPs near the request's reference point.

The reference point is ``near=<PoP or host>``, the PoP of
``near_ip=<address>``, or with neither the PoP the request entered at
(``[discovery] pop_name``). Weights are ``-log(1 + estimated RTT)``, see
``discovery_nova.locality.ranking.proximity_score``.
"""

from discovery_nova.locality.ranking import proximity_score
from discovery_nova.scheduler.base import LocalityWeigher
from discovery_nova.scheduler.base import floor_unknown
from discovery_nova.scheduler.request import HostGroup
from discovery_nova.scheduler.request import HostList
from discovery_nova.scheduler.request import LocalityRequest
from discovery_nova.scheduler.request import per_group


class ProximityWeigher(LocalityWeigher):
    """Weigh hosts by the estimated RTT of their PoP to the reference."""

    multiplier_option = 'proximity_weight_multiplier'

    def weigh_hosts(self, request: LocalityRequest, hosts: HostList,
                    spec_obj) -> list[float]:
        groups = hosts.groups
        if request.reference is None:
            return [0.0] * len(groups)

        def weigh(group: HostGroup) -> float:
            if group.pop is None:
                return float('-inf')
            return proximity_score(request.estimate(group.pop))

        distinct = hosts.distinct()
        by_group = per_group(('proximity', request.reference), distinct,
                                 weigh)
        scores = list(map(by_group.__getitem__, distinct))
        if float('-inf') in scores:
            # Hosts of which nothing is known weigh as the worst PoP
            # present.
            by_group = dict(zip(distinct, floor_unknown(scores),
                                strict=True))
        return list(map(by_group.__getitem__, groups))
