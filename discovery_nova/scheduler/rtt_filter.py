"""Keep hosts of PoPs estimated within ``max_rtt_ms`` of the reference."""

from collections.abc import Sequence

from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.rtt import within
from discovery_nova.scheduler.base import LocalityFilter
from discovery_nova.scheduler.request import LocalityRequest


class MaxRttFilter(LocalityFilter):
    """Pass hosts whose PoP is surely within ``max_rtt_ms`` of the request."""

    # A rebuild keeps the host; coordinates drifting since the boot must
    # not make a rebuild fail where the server already runs.
    RUN_ON_REBUILD = False

    def applies(self, request: LocalityRequest) -> bool:
        return request.hints.max_rtt_ms is not None

    def pop_passes(self, request: LocalityRequest,
                   pop: PopDescriptor | None) -> bool:
        if pop is None or request.reference is None:
            return False
        return within(request.estimate(pop), request.hints.max_rtt_ms,
                      request.rtt_error_weight, request.max_trusted_error)

    def verdict_key(self, request: LocalityRequest) -> tuple:
        return (request.reference, request.hints.max_rtt_ms,
                request.rtt_error_weight, request.max_trusted_error)

    def explain(self, request: LocalityRequest,
                pops: Sequence[PopDescriptor]) -> str:
        weight = request.rtt_error_weight
        shown = []
        for pop in pops:
            estimate = request.estimate(pop)
            shown.append((estimate.upper(weight), pop.name, estimate))
        shown.sort()
        return ('no candidate PoP is within max_rtt_ms=%g of %s; '
                'candidates (estimate, error, bound used): %s' % (
                    request.hints.max_rtt_ms,
                    request.reference.source if request.reference else '?',
                    ', '.join('%s %.1f ms, %.2f, %.1f ms'
                              % (name, est.rtt_ms, est.error, upper)
                              for upper, name, est in shown[:5]) or 'none'))
