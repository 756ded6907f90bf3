"""A prober for simulation: RTTs from the topology, answers on virtual time.

The sample arrives one round trip after the probe was sent, carrying the
peer's coordinate and error as they are when the probe reaches it, exactly
what the agent's UDP echo returns.
"""

from collections.abc import Callable

from discovery_nova.overlay.coordinates import VivaldiNode
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.probe import Prober
from discovery_nova.overlay.probe import RttSample
from discovery_nova.overlay.probe import SampleCallback
from discovery_nova.sim.network import SimNetwork


class MatrixProber(Prober):
    """Probes between simulated nodes, timed by the simulated network."""

    def __init__(self, network: SimNetwork, source: str,
                 vivaldi_of: Callable[[str], VivaldiNode | None]):
        self.network = network
        self.source = source
        self.vivaldi_of = vivaldi_of

    def probe(self, peer: PeerRef, on_result: SampleCallback) -> None:
        net = self.network
        if peer.name in net.dead or self.source in net.dead:
            on_result(None)
            return
        delay = net.one_way_delay(self.source, peer.name)
        net.clock.call_later(delay, self._at_peer, peer.name, delay,
                             on_result)

    def _at_peer(self, name: str, delay: float,
                 on_result: SampleCallback) -> None:
        node = self.vivaldi_of(name)
        if node is None or name in self.network.dead:
            on_result(None)
            return
        sample = RttSample(name, delay * 2000.0, node.coordinate, node.error)
        self.network.clock.call_later(delay, on_result, sample)
