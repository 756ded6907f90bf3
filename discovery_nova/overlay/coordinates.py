"""Vivaldi network coordinates with a height vector and adaptive timestep.

Dabek, Cox, Kaashoek, Morris, "Vivaldi: A Decentralized Network Coordinate
System", SIGCOMM 2004. A node's coordinate is a Euclidean vector plus a
height: the height models the access link every packet crosses, so the
predicted RTT between two nodes is the Euclidean distance plus both heights.
Each sample moves the coordinate along the spring force by an adaptive
timestep ``cc * w`` where ``w = e_i / (e_i + e_j)`` weighs our confidence
against the peer's, and the per-node error estimate ``e_i`` is a moving
average (weight ``ce * w``) of the samples' relative errors, so a node can
say how far its own estimates may be trusted.

The arithmetic is plain Python over short tuples: with 2-8 dimensions that is
faster than numpy per sample, which is what both the agent (one sample a
second) and the simulator (a million samples a run) need.
"""

from collections.abc import Sequence
import dataclasses
import math
import operator
import random


@dataclasses.dataclass(frozen=True, slots=True)
class Coordinate:
    """A Vivaldi coordinate: Euclidean part plus a non-negative height."""

    vec: tuple[float, ...]
    height: float = 0.0

    def distance(self, other: 'Coordinate') -> float:
        """Predicted RTT in milliseconds between two coordinates."""
        return math.dist(self.vec, other.vec) + self.height + other.height

    def to_wire(self) -> list:
        return [list(self.vec), self.height]

    @classmethod
    def from_wire(cls, value, dimensions: int | None = None) -> 'Coordinate':
        """Parse ``[[x1, ..., xn], height]`` from the network, strictly."""
        def real(x) -> bool:
            # JSON numbers only: no strings, no booleans.
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        try:
            vec, height = value
            if (not isinstance(vec, (list, tuple)) or
                    not all(real(x) for x in vec) or not real(height)):
                raise TypeError('not numbers')
            vec = tuple(float(x) for x in vec)
            height = float(height)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(
                'a coordinate is [[x1, ..., xn], height] of numbers, got %r'
                % (value,)) from exc
        if dimensions is not None and len(vec) != dimensions:
            raise ValueError('a coordinate of %d dimensions was expected, '
                             'got %d' % (dimensions, len(vec)))
        if not all(math.isfinite(x) for x in vec + (height,)) or height < 0:
            raise ValueError('a coordinate needs finite numbers and a '
                             'non-negative height, got %r' % (value,))
        return cls(vec, height)

    @classmethod
    def origin(cls, dimensions: int) -> 'Coordinate':
        return cls((0.0,) * dimensions, 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class VivaldiParams:
    """Tuning of the Vivaldi update; defaults follow Dabek et al."""

    dimensions: int = 3
    cc: float = 0.25
    ce: float = 0.25
    #: Samples above this many milliseconds are rejected as absurd.
    max_rtt_ms: float = 10000.0
    #: Heights never fall below this (ms); it keeps the spring direction
    #: defined when two nodes share a Euclidean position.
    min_height: float = 0.01
    #: The error estimate starts here (total ignorance) and is capped here.
    initial_error: float = 1.0
    max_error: float = 10.0

    def __post_init__(self):
        if self.dimensions < 1:
            raise ValueError('dimensions must be at least 1, got %d'
                             % self.dimensions)
        for field in ('cc', 'ce'):
            value = getattr(self, field)
            if not 0 < value <= 1:
                raise ValueError('%s must be in (0, 1], got %r'
                                 % (field, value))
        if not self.max_rtt_ms > 0:
            raise ValueError('max_rtt_ms must be positive, got %r'
                             % self.max_rtt_ms)


@dataclasses.dataclass
class SampleCounters:
    """How many RTT samples were used and why the others were refused."""

    accepted: int = 0
    rejected_nan: int = 0
    rejected_negative: int = 0
    rejected_absurd: int = 0
    rejected_bad_peer: int = 0

    @property
    def rejected(self) -> int:
        return (self.rejected_nan + self.rejected_negative +
                self.rejected_absurd + self.rejected_bad_peer)


class VivaldiNode:
    """One node's Vivaldi state: coordinate, error estimate, sample counts."""

    __slots__ = ('params', 'coordinate', 'error', 'counters', '_rng')

    def __init__(self, params: VivaldiParams | None = None,
                 rng: random.Random | None = None):
        self.params = params or VivaldiParams()
        self.coordinate = Coordinate.origin(self.params.dimensions)
        self.error = self.params.initial_error
        self.counters = SampleCounters()
        self._rng = rng or random.Random()

    def estimate_rtt(self, other: Coordinate) -> float:
        """Predicted RTT in milliseconds from this node to ``other``."""
        return self.coordinate.distance(other)

    def check_sample(self, rtt_ms: float) -> str | None:
        """Why ``rtt_ms`` is no usable sample, or None when it is."""
        if not isinstance(rtt_ms, (int, float)) or math.isnan(rtt_ms):
            return 'nan'
        if rtt_ms < 0:
            return 'negative'
        if math.isinf(rtt_ms) or rtt_ms > self.params.max_rtt_ms:
            return 'absurd'
        return None

    def observe(self, rtt_ms: float, remote: Coordinate,
                remote_error: float, representative: bool = True) -> bool:
        """Feed one RTT sample to a peer whose coordinate and error we got.

        ``representative`` says the peer was picked at random rather than for
        being near: only such samples update the error estimate. Near peers
        are probed on purpose (they make the coordinates right where
        locality matters), but their sub-millisecond RTTs have relative
        errors far above the node's typical one; averaging them in would make
        every node report an error several times its real one. Coordinates
        move on every sample.

        Returns whether the sample was used; refused samples (NaN, negative,
        above ``max_rtt_ms``, or a peer reporting a broken coordinate or
        error) are counted in ``counters`` and change nothing.
        """
        params = self.params
        # A finite float in range (every sample of a healthy run) skips
        # check_sample's calls: the simulator feeds a million a run.
        if not (type(rtt_ms) is float and
                0.0 <= rtt_ms <= params.max_rtt_ms and
                rtt_ms != math.inf):
            reason = self.check_sample(rtt_ms)
            if reason is not None:
                setattr(self.counters, 'rejected_' + reason,
                        getattr(self.counters, 'rejected_' + reason) + 1)
                return False
        local = self.coordinate
        lvec = local.vec
        rvec = remote.vec
        if (len(rvec) != len(lvec) or
                not math.isfinite(remote_error) or remote_error < 0):
            self.counters.rejected_bad_peer += 1
            return False
        self.counters.accepted += 1
        # max() and min() spelt out, map() instead of comprehensions: the
        # same arithmetic in fewer steps, a million times a simulated run.
        rtt = float(rtt_ms)
        if rtt < 1e-3:
            rtt = 1e-3
        lerr = self.error
        rerr = 1e-6 if remote_error < 1e-6 else remote_error
        w = lerr / (lerr + rerr)

        diff = list(map(operator.sub, lvec, rvec))
        euclid = math.hypot(*diff)
        hsum = local.height + remote.height
        dist = euclid + hsum

        # Error estimate: moving average of this sample's relative error.
        if representative:
            sample_error = abs(dist - rtt) / rtt
            lerr = sample_error * params.ce * w + lerr * (1.0 - params.ce * w)
            self.error = params.max_error if params.max_error < lerr else lerr

        # Spring step along the unit vector of the height-vector difference.
        step = params.cc * w * (rtt - dist)
        if euclid < 1e-9:
            # Coincident positions: push in a random direction.
            diff = [self._rng.gauss(0.0, 1.0) for _ in diff]
            norm = math.hypot(*diff) or 1.0
            diff = [d / norm for d in diff]
            euclid = 1.0
            dist = 1.0 + hsum
        scale = step / dist
        # lvec[i] + scale * diff[i], component by component.
        vec = tuple(map(operator.add, lvec, map(scale.__mul__, diff)))
        height = local.height + scale * hsum
        if height < params.min_height:
            height = params.min_height
        self.coordinate = Coordinate(vec, height)
        return True


def relative_error(predicted: float, actual: float) -> float:
    """|predicted - actual| / actual, the accuracy measure of the paper."""
    return abs(predicted - actual) / actual


def nearest(origin: Coordinate, candidates: Sequence[tuple[str, Coordinate]],
            count: int) -> list[tuple[str, Coordinate]]:
    """The ``count`` candidates closest to ``origin`` in coordinate space."""
    return sorted(candidates, key=lambda c: origin.distance(c[1]))[:count]
