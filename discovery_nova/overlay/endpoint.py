"""What overlay protocol code needs from the world: a clock and a mailbox.

Protocol classes (spiral search, ring routing, membership dispatch) never open
sockets or read the wall clock. They are handed an ``Endpoint``: the agent's
implementation sends authenticated frames over TCP and uses the event loop's
clock; the simulator's delivers messages after half the RTT of the matrix on a
virtual clock. This is what lets simulation run the production code.
"""

import abc
from collections.abc import Callable
from typing import Any
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Endpoint(abc.ABC):
    """The sending side and clock of one overlay node."""

    #: This node's own name.
    name: str

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds on this endpoint's clock (monotonic, virtual in sim)."""

    @abc.abstractmethod
    def send(self, dest: str, message: dict[str, Any]) -> None:
        """Send ``message`` (JSON-compatible dict with a ``type``) to a peer.

        Delivery is best effort: a message to a dead or unknown peer is
        dropped, and the protocol's own timeouts notice it.
        """

    @abc.abstractmethod
    def call_later(self, delay: float,
                   callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds of this clock."""
