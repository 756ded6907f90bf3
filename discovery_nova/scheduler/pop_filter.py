"""Keep hosts of the PoPs named by ``pop``/``avoid_pop``/``pop_tag``."""

from collections.abc import Sequence

from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.scheduler.base import LocalityFilter
from discovery_nova.scheduler.request import LocalityRequest


class PopFilter(LocalityFilter):
    """Pass hosts in a PoP of ``pop``, not of ``avoid_pop``, with ``pop_tag``.
    """

    # A rebuild stays on its host and keeps its hints; only the image
    # changes, which says nothing about where the host is.
    RUN_ON_REBUILD = False

    def applies(self, request: LocalityRequest) -> bool:
        hints = request.hints
        return bool(hints.pops is not None or hints.avoid_pops or
                    hints.pop_tags)

    def pop_passes(self, request: LocalityRequest,
                   pop: PopDescriptor | None) -> bool:
        hints = request.hints
        if pop is None:
            return hints.pops is None and not hints.pop_tags
        if hints.pops is not None and pop.name not in hints.pops:
            return False
        if pop.name in hints.avoid_pops:
            return False
        return all(pop.has_tag(tag) for tag in hints.pop_tags)

    def verdict_key(self, request: LocalityRequest) -> tuple:
        hints = request.hints
        return hints.pops, hints.avoid_pops, hints.pop_tags

    def explain(self, request: LocalityRequest,
                pops: Sequence[PopDescriptor]) -> str:
        hints = request.hints
        wanted = []
        if hints.pops is not None:
            wanted.append('pop=%s' % ','.join(sorted(hints.pops)))
        if hints.avoid_pops:
            wanted.append('avoid_pop=%s' % ','.join(sorted(hints.avoid_pops)))
        if hints.pop_tags:
            wanted.append('pop_tag=%s' % ','.join(sorted(hints.pop_tags)))
        where = ', '.join(
            '%s (tags %s)' % (p.name, ','.join(sorted(p.tags)) or 'none')
            for p in sorted(pops, key=lambda p: p.name)) or 'no PoP'
        return ('no candidate host is in a PoP with %s; candidates were '
                'in %s' % (' '.join(wanted), where))
