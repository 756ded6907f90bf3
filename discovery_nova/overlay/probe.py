"""The prober interface: how a node learns its round-trip time to a peer.

Vivaldi needs, per sample, the measured RTT plus the peer's coordinate and
error estimate at the moment it answered. The agent's prober is an
authenticated UDP echo whose answer carries both (``udp_prober``); the
simulator's reads the RTT matrix (``discovery_nova.sim.matrix_prober``).
Both are stevedore plugins of ``discovery_nova.overlay.probers``.
"""

import abc
from collections.abc import Callable
import dataclasses

from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.peer import PeerRef


@dataclasses.dataclass(frozen=True, slots=True)
class RttSample:
    """One measured round trip to ``peer``."""

    peer: str
    rtt_ms: float
    coordinate: Coordinate
    error: float


SampleCallback = Callable[[RttSample | None], None]


class Prober(abc.ABC):
    """Measures round trips; answers through a callback (None: lost)."""

    @abc.abstractmethod
    def probe(self, peer: PeerRef, on_result: SampleCallback) -> None:
        """Start one probe of ``peer``; call ``on_result`` exactly once."""

    def close(self) -> None:  # noqa: B027 (optional hook, not abstract)
        """Release sockets or timers; the default holds none."""
