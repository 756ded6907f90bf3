"""Prefer hosts in PoPs near the request's reference point.

The reference point is ``near=<PoP or host>``, the PoP of
``near_ip=<address>``, or with neither the PoP the request entered at
(``[discovery] pop_name``). Weights are ``-log(1 + estimated RTT)``, see
``discovery_nova.locality.ranking.proximity_score``.
"""

from discovery_nova.locality.ranking import proximity_score
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.scheduler.base import LocalityWeigher
from discovery_nova.scheduler.base import floor_unknown
from discovery_nova.scheduler.request import LocalityRequest


class ProximityWeigher(LocalityWeigher):
    """Weigh hosts by the estimated RTT of their PoP to the reference."""

    multiplier_option = 'proximity_weight_multiplier'

    def weigh_hosts(self, request: LocalityRequest, host_states: list,
                    spec_obj) -> list[float]:
        reference = request.reference
        if reference is None:
            return [0.0] * len(host_states)
        by_pop: dict[str | None, float] = {None: float('-inf')}
        out = []
        for pop in request.pops_of(host_states):
            name = pop.name if pop is not None else None
            score = by_pop.get(name)
            if score is None:
                score = by_pop[name] = proximity_score(
                    estimate_rtt(reference, pop))
            out.append(score)
        return floor_unknown(out)
