"""The PoPs nearest to this one, or to another PoP, as the overlay's
spiral search found them.

A build that overflows this PoP, with no locality hint of its own, goes to
this PoP's nearest neighbours; one whose hint names another PoP as its
reference (``near``, ``near_ip``) to the PoPs nearest to that one, which a
spiral search from here towards its coordinate finds (``near_point``).

The PoP's overlay agent keeps its own nearest neighbours: its spiral
searches (and the learning rule that improves them from the views
it sees) maintain the set of peers nearest to it, which the agent reports
in its status. The conductor reads that set from its own agent, at most
once per ``ttl`` seconds (the set changes as coordinates settle, not from
one build to the next), and ranks the PoPs in it with the same locality
scoring as the scheduler.

Without an agent, or before its first search has found anyone, there is no
spiral view: the caller then ranks every live PoP of the directory, which
is what the spiral approximates, and the log says so once.
"""

import threading
import time

from oslo_log import log as logging

from discovery_nova.overlay.client import AgentClient
from discovery_nova.overlay.client import AgentUnavailable

LOG = logging.getLogger(__name__)


class SpiralNeighbours:
    """A cached read of the agent's spiral-search neighbours."""

    def __init__(self, client: AgentClient | None, ttl: float,
                 clock=time.monotonic):
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._names: frozenset[str] | None = None
        self._read_at: float | None = None
        self._warned = False
        #: reference PoP -> (when searched, names found or None).
        self._around: dict[str, tuple[float, frozenset[str] | None]] = {}
        #: reference PoPs whose answer a thread is renewing.
        self._renewing: set[str] = set()

    def names(self) -> frozenset[str] | None:
        """Names of the nearest peers the spiral found, or None when there
        is no usable answer (no agent, agent down, empty view)."""
        if self._client is None:
            return None
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._ttl:
                return self._names
            self._read_at = now
            try:
                near = self._client.status().get('near') or []
                names = frozenset(
                    entry[0] for entry in near
                    if isinstance(entry, list) and entry and
                    isinstance(entry[0], str))
            except (AgentUnavailable, AttributeError) as exc:
                names = frozenset()
                if not self._warned:
                    LOG.warning("No spiral neighbours from the overlay "
                                "agent (%(err)s); overflow ranks every live "
                                "PoP of the directory instead",
                                {'err': exc})
                    self._warned = True
            self._names = names or None
            if names:
                self._warned = False
            return self._names

    def near_point(self, name: str, point: list) -> frozenset[str] | None:
        """Names of the peers nearest to ``point`` (the coordinate of PoP
        ``name``, wire form) that a spiral search from this PoP's agent
        finds; None when there is no answer.

        A search costs O(k) messages and a few round trips, so a build
        waits for one only the first time its reference PoP is asked
        about: the answer is kept, and once older than ``ttl`` seconds it
        is still given while a search in a thread of its own renews it.
        """
        if self._client is None:
            return None
        with self._lock:
            found = self._around.get(name)
            if found is not None:
                if self._clock() - found[0] >= self._ttl and \
                        name not in self._renewing:
                    self._renewing.add(name)
                    threading.Thread(
                        target=self._search, args=(name, point),
                        daemon=True,
                        name='discovery-spiral-%s' % name).start()
                return found[1]
        return self._search(name, point)

    def _search(self, name: str, point: list) -> frozenset[str] | None:
        started = self._clock()
        try:
            peers = self._client.nearest(point=point).get('peers') or []
            names = frozenset(
                entry[0] for entry in peers
                if isinstance(entry, list) and entry and
                isinstance(entry[0], str)) or None
        except (AgentUnavailable, AttributeError) as exc:
            LOG.warning("No spiral search towards PoP %(pop)s from the "
                        "overlay agent (%(err)s); ranking every live PoP "
                        "of the directory instead", {'pop': name,
                                                     'err': exc})
            names = None
        with self._lock:
            self._around[name] = (started, names)
            self._renewing.discard(name)
        return names
