"""Estimated RTT between a reference point and a PoP, with its uncertainty.

A Vivaldi error estimate is the node's typical relative prediction error,
``|predicted - actual| / actual``. Both ends of a prediction contribute, so
the pair's relative error is taken as the two estimates combined in
quadrature (independent errors), and the bound is the estimate stretched by
``error_weight`` times that error. A caller that must not exceed a latency
(``max_rtt_ms``) compares the *upper* bound, so a PoP whose coordinates are
still uncertain is not admitted on a lucky estimate.

Where either end published a measured RTT to the other (its agent probes
its nearest PoPs), the measurement is used instead of the coordinates, with
the small error of repeated probes. Since a PoP publishes its *nearest*
PoPs, one it does not list is farther than all it lists: an estimate from a
reference PoP is never below the largest RTT that PoP measured.

A ``near_ip`` client is at an unknown place behind the PoP its prefix maps
to; PoPs near that one measure RTTs to a probe address of the prefix
(``PopDescriptor.client_rtt``). Such a measurement is the client's RTT to
that PoP and comes first. A PoP that measured none is estimated from the
mapped PoP as above plus the RTT the mapped PoP measured to the client: the
client is behind its PoP, and without that leg every unmeasured PoP would
look nearer than the measured ones, whose RTTs include it (the triangle
inequality makes the sum an upper bound, as ``max_rtt_ms`` wants).
"""

from collections.abc import Mapping
import dataclasses
import math

from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.overlay.coordinates import Coordinate


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    """The point a request is near: a PoP, or a bare coordinate."""

    coordinate: Coordinate | None
    error: float
    #: Set when the reference is a PoP: that PoP is 0 ms away from itself.
    pop_name: str | None = None
    #: Human-readable origin (``near=pl012``, ``entry PoP pl003``) for logs.
    source: str = ''
    #: RTTs the reference PoP measured to other PoPs, by name.
    measured: Mapping[str, float] = dataclasses.field(
        default_factory=dict, hash=False)
    #: PoPs missing from ``measured`` are at least this far (ms).
    farther_than: float = 0.0
    #: For a client behind ``pop_name``: RTTs (ms) PoPs measured to the
    #: client's prefix, by PoP name; they override every other estimate.
    client_measured: Mapping[str, float] = dataclasses.field(
        default_factory=dict, hash=False)

    @classmethod
    def of_pop(cls, pop: PopDescriptor, source: str = '',
               client_measured: Mapping[str, float] | None = None
               ) -> 'Reference':
        measured = pop.measured_rtt
        return cls(pop.coordinate, pop.error, pop.name,
                   source or 'PoP %s' % pop.name, measured,
                   max(measured.values(), default=0.0),
                   client_measured or {})


@dataclasses.dataclass(frozen=True, slots=True)
class RttEstimate:
    """An RTT estimate in ms with the pair's relative error."""

    rtt_ms: float
    error: float

    def upper(self, error_weight: float) -> float:
        """RTT the PoP is believed to stay under."""
        return self.rtt_ms * (1.0 + error_weight * self.error)

    def lower(self, error_weight: float) -> float:
        return self.rtt_ms / (1.0 + error_weight * self.error)


#: Returned when either end has no coordinate: nothing is known.
UNKNOWN = RttEstimate(math.inf, math.inf)
#: A PoP seen from itself.
SAME_POP = RttEstimate(0.0, 0.0)
#: Relative error of a measured RTT: jitter between repeated probes.
MEASURED_ERROR = 0.05


def pair_error(error_a: float, error_b: float) -> float:
    return math.hypot(error_a, error_b)


def estimate_rtt(reference: Reference, pop: PopDescriptor) -> RttEstimate:
    """Estimated RTT from ``reference`` to ``pop``."""
    if reference.client_measured:
        measured = reference.client_measured.get(pop.name)
        if measured is not None:
            return RttEstimate(measured, MEASURED_ERROR)
        behind = reference.client_measured.get(reference.pop_name, 0.0)
        estimate = _estimate_from_pop(reference, pop)
        return RttEstimate(behind + estimate.rtt_ms, estimate.error)
    return _estimate_from_pop(reference, pop)


def _estimate_from_pop(reference: Reference,
                       pop: PopDescriptor) -> RttEstimate:
    if reference.pop_name is not None:
        if reference.pop_name == pop.name:
            return SAME_POP
        measured = reference.measured.get(pop.name)
        if measured is None:
            measured = pop.measured_rtt.get(reference.pop_name)
        if measured is not None:
            return RttEstimate(measured, MEASURED_ERROR)
    if reference.coordinate is None or pop.coordinate is None:
        return UNKNOWN
    if len(reference.coordinate.vec) != len(pop.coordinate.vec):
        return UNKNOWN
    return RttEstimate(max(reference.coordinate.distance(pop.coordinate),
                           reference.farther_than),
                       pair_error(reference.error, pop.error))


def within(estimate: RttEstimate, max_rtt_ms: float, error_weight: float,
           max_error: float) -> bool:
    """Whether a PoP may be trusted to be within ``max_rtt_ms``.

    An estimate whose pair error exceeds ``max_error`` is not trusted at
    all, however small it is.
    """
    if estimate.error > max_error:
        return False
    return estimate.upper(error_weight) <= max_rtt_ms
