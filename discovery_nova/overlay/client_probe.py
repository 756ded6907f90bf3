"""Measure this PoP's RTT to client prefixes: TCP connect time to a target.

The prefix table maps a ``near_ip`` client to a PoP; where the client sits
behind that PoP only a measurement tells. Each agent measures the client
prefixes of its own PoP and of its nearest PoPs (those a full PoP's
clients overflow to) by timing a TCP handshake with a configured host of
the prefix (``[discovery_overlay] client_probes``): a real round trip, no
privileges needed, nothing sent but a SYN and a FIN. The RTTs end up in
the PoP's aggregate metadata (``PopDescriptor.client_rtt``).

A sample is the time ``connect()`` takes after the name is resolved. The
published RTT of a prefix is the median of its last ``SAMPLES`` samples: a
lost SYN, retransmitted a second later, makes one sample about a second
long, which a mean would carry for many rounds. A probe that fails (refused,
unreachable, timed out) withdraws the prefix's RTT until one succeeds
again, and is logged once until then; so is a prefix the agent no longer
probes, and an RTT older than ``STALE_INTERVALS`` intervals (a stuck loop
publishes nothing rather than the past).
"""

import asyncio
import collections
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Sequence
import dataclasses
import ipaddress
import socket
import statistics
import time

from oslo_log import log as logging

from discovery_nova.overlay.cidr_entries import split_cidr_entry
from discovery_nova.overlay.udp_prober import parse_address

LOG = logging.getLogger(__name__)

#: Samples a published RTT is the median of.
SAMPLES = 5
#: Intervals without a sample after which a prefix's RTT is withdrawn.
STALE_INTERVALS = 5

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Connect = Callable[[str, int, float], Awaitable[float]]


class ClientProbeError(ValueError):
    """A client probe entry is malformed; the message says which and why."""


@dataclasses.dataclass(frozen=True, slots=True)
class ClientTarget:
    """Where to measure the RTT to the clients of one prefix."""

    #: The prefix in canonical CIDR form, as published.
    prefix: str
    #: The PoP the prefix maps to in the client prefix table.
    pop: str
    host: str
    port: int


def parse_client_probes(items: Iterable[str]
                        ) -> dict[Network, tuple[str, int]]:
    """``CIDR=host:port`` strings by network; raise ClientProbeError."""
    targets: dict[Network, tuple[str, int]] = {}
    for item in items:
        network, address = split_cidr_entry(
            item, 'client probe',
            'CIDR=host:port, e.g. 192.0.2.0/24=192.0.2.53:53',
            ClientProbeError)
        try:
            host, port = parse_address(address)
        except ValueError:
            raise ClientProbeError(
                'client probe %r: %r is no probe target; expected host:port '
                'with a port from 1 to 65535, an IPv6 address in brackets '
                '([2001:db8::53]:53)' % (item, address)) from None
        if network in targets:
            raise ClientProbeError(
                'client probe %r: %s has a target already (%s:%d); expected '
                'one target per prefix' % ((item, network) +
                                          targets[network]))
        targets[network] = (host, port)
    return targets


async def tcp_connect_rtt(host: str, port: int, timeout: float) -> float:
    """Milliseconds a TCP connection to ``host:port`` takes to open.

    The name is resolved first, outside the measured time. Raises OSError
    (refused, unreachable, unresolvable) or TimeoutError.
    """
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        infos = await loop.getaddrinfo(host, port,
                                       type=socket.SOCK_STREAM)
        family, _, _, _, sockaddr = infos[0]
        start = time.perf_counter()
        _, writer = await asyncio.open_connection(sockaddr[0], sockaddr[1],
                                                  family=family)
        rtt_ms = (time.perf_counter() - start) * 1000.0
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return rtt_ms


def select_targets(targets: Sequence[ClientTarget], own: str,
                   near: Sequence[str], pops: int,
                   limit: int) -> list[ClientTarget]:
    """The targets an agent of PoP ``own`` probes: those of its own PoP,
    then those of the first ``pops`` of ``near`` (nearest first), at most
    ``limit``."""
    order = {own: 0}
    for rank, name in enumerate(near[:pops], start=1):
        order.setdefault(name, rank)
    chosen = [t for t in targets if t.pop in order]
    chosen.sort(key=lambda t: order[t.pop])
    return chosen[:limit]


class ClientProber:
    """Probes the client prefixes this PoP is responsible for, each once per
    ``interval``; ``measurements()`` is what to publish."""

    def __init__(self, targets: Sequence[ClientTarget], own: str,
                 near: Callable[[], Sequence[str]], *, pops: int = 8,
                 limit: int = 64, interval: float = 30.0,
                 timeout: float = 2.0, connect: Connect = tcp_connect_rtt,
                 clock: Callable[[], float] = time.monotonic):
        self.targets = tuple(targets)
        self.own = own
        self.near = near
        self.pops = pops
        self.limit = limit
        self.interval = interval
        self.timeout = timeout
        self.connect = connect
        self.clock = clock
        #: prefix -> the last samples (ms), and when the last was taken.
        self._samples: dict[str, collections.deque[float]] = {}
        self._sampled_at: dict[str, float] = {}
        #: Prefixes whose last probe failed (logged once).
        self.unreachable: set[str] = set()

    def measurements(self) -> dict[str, float]:
        """Smoothed RTT (ms) of each prefix with a fresh sample."""
        oldest = self.clock() - STALE_INTERVALS * self.interval
        return {prefix: statistics.median(samples)
                for prefix, samples in self._samples.items()
                if self._sampled_at[prefix] >= oldest}

    async def probe_once(self) -> None:
        """Probe every target this PoP is responsible for now, at once."""
        chosen = select_targets(self.targets, self.own, self.near(),
                                self.pops, self.limit)
        wanted = {t.prefix for t in chosen}
        for prefix in set(self._samples) - wanted:
            self._forget(prefix)
        await asyncio.gather(*(self._probe(t) for t in chosen))

    async def _probe(self, target: ClientTarget) -> None:
        try:
            rtt_ms = await self.connect(target.host, target.port,
                                        self.timeout)
        except (OSError, TimeoutError) as exc:
            self._forget(target.prefix)
            if target.prefix not in self.unreachable:
                self.unreachable.add(target.prefix)
                LOG.warning('Client prefix %(prefix)s: probe target '
                            '%(host)s port %(port)d unreachable (%(err)s); '
                            'no RTT published for it until it answers',
                            {'prefix': target.prefix, 'host': target.host,
                             'port': target.port,
                             'err': exc or type(exc).__name__})
            return
        if target.prefix in self.unreachable:
            self.unreachable.discard(target.prefix)
            LOG.info('Client prefix %(prefix)s: probe target %(host)s '
                     'port %(port)d answers again',
                     {'prefix': target.prefix, 'host': target.host,
                      'port': target.port})
        samples = self._samples.setdefault(
            target.prefix, collections.deque(maxlen=SAMPLES))
        samples.append(rtt_ms)
        self._sampled_at[target.prefix] = self.clock()

    def _forget(self, prefix: str) -> None:
        self._samples.pop(prefix, None)
        self._sampled_at.pop(prefix, None)

    async def run(self) -> None:
        """Probe every ``interval`` seconds until cancelled."""
        while True:
            await self.probe_once()
            await asyncio.sleep(self.interval)
