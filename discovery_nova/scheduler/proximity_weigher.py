"""Prefer hosts in PoPs near the request's reference point.

The reference point is ``near=<PoP or host>``, the PoP of
``near_ip=<address>``, or with neither the PoP the request entered at
(``[discovery] pop_name``). Weights are ``-log(1 + estimated RTT)``, see
``discovery_nova.locality.ranking.proximity_score``.
"""

from collections.abc import Sequence

from discovery_nova.locality.ranking import proximity_score
from discovery_nova.scheduler.base import LocalityWeigher
from discovery_nova.scheduler.base import floor_unknown
from discovery_nova.scheduler.request import HostGroup
from discovery_nova.scheduler.request import LocalityRequest


class ProximityWeigher(LocalityWeigher):
    """Weigh hosts by the estimated RTT of their PoP to the reference."""

    multiplier_option = 'proximity_weight_multiplier'

    def weigh_hosts(self, request: LocalityRequest, host_states: list,
                    groups: Sequence[HostGroup],
                    spec_obj) -> list[float]:
        if request.reference is None:
            return [0.0] * len(host_states)
        by_name: dict[str, float] = {}
        by_group: dict[HostGroup, float] = {}
        for group in dict.fromkeys(groups):
            if group.pop is None:
                by_group[group] = float('-inf')
                continue
            score = by_name.get(group.name)
            if score is None:
                score = by_name[group.name] = proximity_score(
                    request.estimate(group.pop))
            by_group[group] = score
        # Hosts of which nothing is known weigh as the worst PoP present.
        floored = dict(zip(by_group, floor_unknown(list(by_group.values())),
                           strict=True))
        return list(map(floored.__getitem__, groups))
