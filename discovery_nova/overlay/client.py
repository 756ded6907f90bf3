"""A blocking client of one overlay agent's query port.

The conductor (native threads) and the ``openstack`` command (no event
loop) ask their PoP's agent to ``put`` and ``locate`` records; each call
runs ``agent.query`` on an event loop of its own, so the caller needs none.
Records are routed by the agent: the caller only ever talks to its own
PoP's agent.
"""

import asyncio
import dataclasses
from typing import Any

from discovery_nova.overlay.agent import query
from discovery_nova.overlay.errors import OverlayError
from discovery_nova.overlay.udp_prober import parse_address


class AgentUnavailable(OverlayError):
    """The agent cannot be reached, refused us, or gave no usable answer."""


def read_key_file(path: str) -> bytes:
    """The deployment key in ``path`` (white space stripped).

    Raises AgentUnavailable naming the file and what is expected.
    """
    try:
        with open(path, encoding='utf-8') as src:
            key = src.read().strip()
    except OSError as exc:
        raise AgentUnavailable('cannot read the overlay deployment key file '
                               '%s: %s' % (path, exc.strerror)) from None
    if len(key.encode('utf-8')) < 16:
        raise AgentUnavailable('the overlay deployment key in %s is %d '
                               'characters long; expected at least 16'
                               % (path, len(key)))
    return key.encode('utf-8')


@dataclasses.dataclass(frozen=True)
class AgentClient:
    """Where one agent listens and the key that opens it."""

    host: str
    port: int
    key: bytes
    timeout: float = 10.0
    name: str = 'overlay-client'

    @classmethod
    def from_address(cls, address: str, key: bytes, **kwargs
                     ) -> 'AgentClient':
        """From ``host:port`` (``[v6]:port`` for IPv6); a wildcard host
        means this machine."""
        try:
            host, port = parse_address(address)
        except ValueError as exc:
            raise AgentUnavailable('overlay agent address %r: %s; expected '
                                   'host:port' % (address, exc)) from None
        if host in ('0.0.0.0', '::', ''):
            host = '127.0.0.1'
        return cls(host, port, key, **kwargs)

    def _ask(self, kind: str, **args: Any) -> dict[str, Any]:
        try:
            return asyncio.run(query(self.host, self.port, self.key, kind,
                                     timeout=self.timeout, name=self.name,
                                     **args))
        except (OverlayError, OSError, TimeoutError) as exc:
            raise AgentUnavailable('overlay agent %s:%d: %s %s failed: %s'
                                   % (self.host, self.port, kind,
                                      args.get('key', ''),
                                      exc or type(exc).__name__)) from None

    def put(self, key: str, value: Any) -> dict[str, Any]:
        """Store ``value`` under ``key`` on the ring; the agent's answer
        (``version``, ``node``, ``hops``)."""
        return self._ask('put', key=key, value=value)

    def locate(self, key: str) -> dict[str, Any]:
        """Look ``key`` up on the ring: ``found``, ``value``, ``node``,
        ``hops`` and the ``path`` of agents the lookup went through."""
        return self._ask('locate', key=key)

    def status(self) -> dict[str, Any]:
        return self._ask('status')

    def nearest(self, k: int | None = None,
                point: list | None = None) -> dict[str, Any]:
        """A spiral search from the agent for the ``k`` peers nearest to
        it, or to ``point`` (a coordinate's wire form): ``peers`` as
        ``[name, rtt_ms]`` nearest first, and what the search cost."""
        return self._ask('nearest', k=k, point=point)
