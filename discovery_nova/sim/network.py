"""The simulated network: endpoints whose messages arrive after RTT/2.

It implements the overlay's ``Endpoint`` on a ``VirtualClock``; nodes
register a handler per name, and a message sent from ``a`` to ``b`` is
handed to ``b``'s handler half a round trip later. Dead nodes drop what they
are sent, as a crashed agent would.
"""

from collections.abc import Callable
from typing import Any

from discovery_nova.overlay.endpoint import Endpoint
from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.topology import Topology

Handler = Callable[[str, dict[str, Any]], None]


class SimNetwork:
    """Delivers messages between simulated nodes over a topology."""

    def __init__(self, clock: VirtualClock, topology: Topology):
        self.clock = clock
        self.topology = topology
        self.handlers: dict[str, Handler] = {}
        self.dead: set[str] = set()
        self.sent = 0
        self.dropped = 0
        self.sent_by_type: dict[str, int] = {}

    def endpoint(self, name: str) -> 'SimEndpoint':
        self.topology.index_of(name)  # fail early on an unknown name
        return SimEndpoint(self, name)

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    def kill(self, name: str) -> None:
        self.dead.add(name)

    def revive(self, name: str) -> None:
        self.dead.discard(name)

    def one_way_delay(self, src: str, dst: str) -> float:
        """Seconds a message takes from ``src`` to ``dst``: RTT / 2."""
        index = self.topology.index
        return self.topology.rtt(index[src], index[dst]) / 2000.0

    def send(self, src: str, dst: str, message: dict[str, Any]) -> None:
        self.sent += 1
        kind = message.get('type', '?')
        self.sent_by_type[kind] = self.sent_by_type.get(kind, 0) + 1
        if dst in self.dead or src in self.dead or dst not in self.handlers:
            self.dropped += 1
            return
        # one_way_delay inlined: every simulated message comes this way.
        index = self.topology.index
        self.clock.call_later(
            self.topology.rtt(index[src], index[dst]) / 2000.0,
            self._deliver, src, dst, message)

    def _deliver(self, src: str, dst: str, message: dict[str, Any]) -> None:
        if dst in self.dead:
            self.dropped += 1
            return
        self.handlers[dst](src, message)


class SimEndpoint(Endpoint):
    """One simulated node's view of the network and the virtual clock."""

    __slots__ = ('network', 'name')

    def __init__(self, network: SimNetwork, name: str):
        self.network = network
        self.name = name

    def now(self) -> float:
        return self.network.clock.now()

    def send(self, dest: str, message: dict[str, Any]) -> None:
        self.network.send(self.name, dest, message)

    def call_later(self, delay: float, callback: Callable[[], None]):
        return self.network.clock.call_later(delay, callback)
