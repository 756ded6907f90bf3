"""Order PoPs by estimated distance from a reference point.

The conductor uses it to pick the remote PoP to forward to; the scheduler's
proximity weigher uses ``proximity_score`` for hosts of one deployment. Both
go through ``estimate_rtt``, so a request is ranked the same way wherever
it is decided.
"""

from collections.abc import Iterable
import math

from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import RttEstimate
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.locality.rtt import within

#: Offset (ms) in the log scale: differences below ~1 ms barely matter.
LOG_OFFSET_MS = 1.0


def proximity_score(estimate: RttEstimate) -> float:
    """Higher is nearer: ``-log(1 + rtt)``; unknown RTT scores -inf.

    A log scale weighs relative differences: 10 vs 20 ms counts as much as
    100 vs 200 ms. After Nova normalises the weights, a host 5 % farther
    loses the same share of the range wherever the requester is, so one
    multiplier lets RAM spreading decide only between nearly equidistant
    hosts, near or far from the requester.
    """
    if math.isinf(estimate.rtt_ms):
        return -math.inf
    return -math.log(LOG_OFFSET_MS + estimate.rtt_ms)


def rank_pops(reference: Reference, pops: Iterable[PopDescriptor],
              max_rtt_ms: float | None = None, error_weight: float = 1.0,
              max_error: float = math.inf
              ) -> list[tuple[PopDescriptor, RttEstimate]]:
    """PoPs nearest first, with estimates; PoPs without coordinates last.

    With ``max_rtt_ms`` only PoPs trusted to be within the bound are kept
    (see ``within``). Ties break on the PoP name so the order is stable.
    """
    ranked = []
    for pop in pops:
        estimate = estimate_rtt(reference, pop)
        if max_rtt_ms is not None and not within(
                estimate, max_rtt_ms, error_weight, max_error):
            continue
        ranked.append((pop, estimate))
    ranked.sort(key=lambda pe: (pe[1].rtt_ms, pe[1].error, pe[0].name))
    return ranked
