"""Which PoPs a build may go to, nearest first: the conductor's ranking.

The same hint parsing, reference point and RTT estimate as the scheduler
(``discovery_nova.locality``), applied to whole PoPs: ``pop=``,
``avoid_pop=``, ``pop_tag=`` and ``max_rtt_ms=`` drop PoPs, and the rest
are ranked by estimated RTT to the reference (``near=``, ``near_ip=``, or
the PoP the request entered at). Nova-free, so it is unit-tested alone.
"""

from collections.abc import Collection
from collections.abc import Mapping
import dataclasses
import math

from discovery_nova.locality import hints as hints_mod
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.locality.ranking import rank_pops
from discovery_nova.locality.reference import resolve_reference
from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import RttEstimate
from discovery_nova.locality.rtt import estimate_rtt


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A PoP a build may be offered to, and how far it is estimated."""

    pop: str
    #: Estimated RTT from the request's reference point (the ranking key).
    rtt_ms: float
    error: float
    local: bool
    #: Estimated RTT from this PoP: what forwarding to it costs.
    rtt_from_here_ms: float = math.inf

    def describe(self) -> str:
        if self.local:
            return '%s (this PoP)' % self.pop
        if math.isinf(self.rtt_from_here_ms):
            return '%s (RTT unknown)' % self.pop
        return '%s (~%.0f ms away)' % (self.pop, self.rtt_from_here_ms)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The PoPs to try, in order, and the reference they were ranked from."""

    candidates: tuple[Candidate, ...]
    reference: str

    @property
    def local_first(self) -> bool:
        return bool(self.candidates) and self.candidates[0].local


def plan(raw_hints: Mapping[str, object], local: str,
         pops: Mapping[str, PopDescriptor], prefixes: PrefixTable,
         error_weight: float = 1.0, max_error: float = math.inf,
         alive: Collection[str] | None = None) -> Plan:
    """Rank the PoPs of ``pops`` (the local one included) for a request.

    ``pops`` is every PoP known (hints may name any of them); only those
    in ``alive`` (all when None) are candidates. Raises ``HintError`` for a
    malformed hint or one naming an unknown PoP, as the scheduler would.
    """
    hints = hints_mod.parse_hints(
        {k: v for k, v in raw_hints.items() if k in hints_mod.HINT_NAMES})
    hints_mod.check_known_pops(hints, pops)
    reference = resolve_reference(hints, pops, {}, prefixes, local)
    eligible = []
    for descriptor in pops.values():
        if alive is not None and descriptor.name not in alive:
            continue
        if hints.pops is not None and descriptor.name not in hints.pops:
            continue
        if descriptor.name in hints.avoid_pops:
            continue
        if hints.pop_tags and not all(descriptor.has_tag(tag)
                                      for tag in hints.pop_tags):
            continue
        eligible.append(descriptor)
    if reference is None:
        ranked = [(d, RttEstimate(math.inf, math.inf))
                  for d in sorted(eligible, key=lambda d: (d.name != local,
                                                           d.name))]
        label = 'none (this PoP first)'
    else:
        ranked = rank_pops(reference, eligible, hints.max_rtt_ms,
                           error_weight, max_error)
        label = reference.source
    here = Reference.of_pop(pops[local]) if local in pops else None

    def from_here(descriptor: PopDescriptor) -> float:
        if here is None:
            return math.inf
        return estimate_rtt(here, descriptor).rtt_ms

    return Plan(tuple(Candidate(d.name, e.rtt_ms, e.error, d.name == local,
                                from_here(d))
                      for d, e in ranked), label)
