"""PoP affinity and anti-affinity between servers of one environment."""

from collections.abc import Sequence

from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.scheduler.base import LocalityFilter
from discovery_nova.scheduler.request import LocalityRequest


class PopAffinityFilter(LocalityFilter):
    """Pass hosts in the PoP of ``same_pop_as``, not of ``different_pop_from``.
    """

    # A rebuild keeps the host; the other servers may have moved since,
    # which must not fail a rebuild in place. Migrations run the filter.
    RUN_ON_REBUILD = False

    def applies(self, request: LocalityRequest) -> bool:
        return request.same_pops is not None or bool(request.different_pops)

    def pop_passes(self, request: LocalityRequest,
                   pop: PopDescriptor | None) -> bool:
        # Servers of same_pop_as in two PoPs leave no PoP that is the same
        # as all of them.
        if request.same_pops is not None and (
                pop is None or request.same_pops != {pop.name}):
            return False
        return pop is None or pop.name not in request.different_pops

    def verdict_key(self, request: LocalityRequest) -> tuple:
        return request.same_pops, request.different_pops

    def explain(self, request: LocalityRequest,
                pops: Sequence[PopDescriptor]) -> str:
        parts = []
        if request.same_pops is not None:
            parts.append('same_pop_as servers run in %s' % (
                ','.join(sorted(request.same_pops)) or 'no PoP'))
        if request.different_pops:
            parts.append('different_pop_from servers run in %s'
                         % ','.join(sorted(request.different_pops)))
        return '%s; candidates were in %s' % (
            '; '.join(parts),
            ', '.join(sorted(p.name for p in pops)) or 'no PoP')
