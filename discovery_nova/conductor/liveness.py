"""Which PoPs are alive: the conductors' membership group, and its events.

Each conductor joins ``[discovery_conductor] membership_group`` through the
overlay's membership (tooz) with its PoP name, and learns from it, pushed,
when another PoP's conductor joins or stops heartbeating. Where each PoP is
(coordinates, tags) comes from the PoP directory in the API database (the
PoP aggregates); membership only says which of them are alive, so a PoP
that is known but silent is never offered a build.
"""

import threading

from oslo_log import log as logging

from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.membership import MembershipListener
from discovery_nova.overlay.tooz_membership import ToozMembership

LOG = logging.getLogger(__name__)


class PopLiveness:
    """This conductor's membership: join, heartbeat, tell ``on_leave``.

    ``poll`` runs in a thread of its own every heartbeat interval; the
    listeners run in that thread, one event at a time.
    """

    def __init__(self, url: str, group: str, pop_name: str,
                 heartbeat_interval: float, timeout: float):
        self.pop_name = pop_name
        self.membership = ToozMembership(
            url, group=group, member=Member.create(pop_name),
            heartbeat_interval=heartbeat_interval, timeout=timeout)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, listener: MembershipListener | None = None) -> None:
        self.membership.start()
        if listener is not None:
            self.membership.register_listener(listener)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='discovery-pop-membership')
        self._thread.start()

    def _run(self) -> None:
        interval = self.membership.heartbeat_interval
        while not self._stop.wait(interval):
            try:
                self.membership.poll()
            except Exception as exc:  # the backend may come back
                LOG.warning("PoP membership round failed: %s", exc)

    def alive(self) -> set[str]:
        """Names of the PoPs alive now, this one included."""
        return set(self.membership.members()) | {self.pop_name}

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.membership.stop()
        except Exception as exc:
            LOG.warning("Leaving the PoP membership failed: %s", exc)
