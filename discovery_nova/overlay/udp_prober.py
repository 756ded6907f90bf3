"""The agent's prober: an authenticated UDP echo between overlay agents.

One UDP socket per agent (same port number as its TCP listener) both sends
probes and answers them. A probe carries a fresh random nonce; the echo
returns it with the answering agent's Vivaldi coordinate and error estimate
at the moment it answered, which is what a Vivaldi sample needs. Every
datagram is sealed with the deployment key (``wire.seal_datagram``); a
datagram without a valid MAC, malformed, oversized, or echoing a nonce we
are not waiting for (late, replayed, forged) is counted and dropped.

UDP rather than TCP: a probe is one packet each way, so its RTT is the
network's, without connection set-up or retransmission delays.
"""

import asyncio
from collections.abc import Callable
import dataclasses
import math
import os
import random
import socket
from typing import Any

from oslo_log import log as logging

from discovery_nova.overlay import wire
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.errors import AuthenticationFailed
from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import MessageTooLarge
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.probe import Prober
from discovery_nova.overlay.probe import RttSample
from discovery_nova.overlay.probe import SampleCallback

LOG = logging.getLogger(__name__)

#: Probes and echoes are a few hundred bytes; nothing bigger is accepted.
MAX_DATAGRAM_BYTES = 4096

#: What the responder reports: its coordinate and its error estimate.
StateFunction = Callable[[], tuple[Coordinate, float]]
#: Extra one-way delay in seconds per destination peer name (tests only).
DelayFunction = Callable[[str], float]


@dataclasses.dataclass
class ProbeStats:
    """Counters of one agent's prober and responder."""

    probes_sent: int = 0
    probes_answered: int = 0
    probes_lost: int = 0
    echoes_sent: int = 0
    rejected_auth: int = 0
    rejected_malformed: int = 0
    rejected_oversize: int = 0
    rejected_unexpected: int = 0
    send_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to a (host, port) pair, strictly."""
    host, sep, port = address.rpartition(':')
    if host.startswith('[') and host.endswith(']'):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        number = 0
    if not sep or not host or not 0 < number < 65536:
        raise ValueError('a peer address is "host:port" with a port from 1 '
                         'to 65535, got %r' % address)
    return host, number


class _Pending:
    __slots__ = ('peer', 'sent_at', 'on_result', 'timer')

    def __init__(self, peer: str, sent_at: float,
                 on_result: SampleCallback):
        self.peer = peer
        self.sent_at = sent_at
        self.on_result = on_result
        self.timer: asyncio.TimerHandle | None = None


class UdpEchoProber(Prober, asyncio.DatagramProtocol):
    """Authenticated UDP echo: the prober and the responder of one agent.

    ``state`` tells the responder what to put in echoes. ``dimensions``,
    when given, makes echoes with a coordinate of another size count as
    malformed. ``emulated_delay`` (tests only) holds each datagram to a
    peer back for that many seconds, to emulate WAN distances on loopback.
    Call ``start`` before probing; ``close`` fails every pending probe.
    """

    def __init__(self, name: str, key: bytes, state: StateFunction, *,
                 probe_timeout: float = 2.0,
                 dimensions: int | None = None,
                 emulated_delay: DelayFunction | None = None,
                 max_bytes: int = MAX_DATAGRAM_BYTES):
        if len(key) < 16:
            raise ValueError('the deployment key must be at least 16 bytes')
        self.name = name
        self._key = key
        self._state = state
        self.probe_timeout = probe_timeout
        self.dimensions = dimensions
        self._delay = emulated_delay
        self._max_bytes = max_bytes
        self.stats = ProbeStats()
        self._pending: dict[str, _Pending] = {}
        self._resolved: dict[str, tuple[str, int]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind the UDP socket; returns the (host, port) bound."""
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: self, local_addr=(host, port), family=family)
        self._transport = transport
        return transport.get_extra_info('sockname')[:2]

    @property
    def address(self) -> tuple[str, int] | None:
        if self._transport is None:
            return None
        return self._transport.get_extra_info('sockname')[:2]

    # -- prober side -------------------------------------------------------

    def probe(self, peer: PeerRef, on_result: SampleCallback) -> None:
        loop = self._loop
        if loop is None or self._transport is None:
            on_result(None)
            return
        nonce = os.urandom(16).hex()
        pending = _Pending(peer.name, loop.time(), on_result)
        pending.timer = loop.call_later(self.probe_timeout, self._expire,
                                        nonce)
        self._pending[nonce] = pending
        self.stats.probes_sent += 1
        message = {'type': 'probe', 'from': self.name, 'nonce': nonce}
        self._spawn(self._send(peer.name, peer.address, message))

    def _expire(self, nonce: str) -> None:
        pending = self._pending.pop(nonce, None)
        if pending is not None:
            self.stats.probes_lost += 1
            self._report(pending, None)

    def _report(self, pending: _Pending, sample: RttSample | None) -> None:
        try:
            pending.on_result(sample)
        except Exception:
            LOG.exception('probe result callback for %(peer)s failed',
                          {'peer': pending.peer})

    def _on_echo(self, message: dict[str, Any]) -> None:
        nonce = message.get('nonce')
        pending = self._pending.get(nonce) if isinstance(nonce, str) else None
        if pending is None or message.get('from') != pending.peer:
            # Late (already counted lost), replayed, or never asked.
            self.stats.rejected_unexpected += 1
            return
        try:
            coordinate = Coordinate.from_wire(message.get('coord'),
                                              self.dimensions)
            error = message.get('error')
            if (not isinstance(error, (int, float)) or
                    not math.isfinite(error) or error < 0):
                raise ValueError('error must be a finite number >= 0, got '
                                 '%r' % (error,))
        except ValueError as exc:
            self.stats.rejected_malformed += 1
            LOG.warning('echo from %(peer)s is malformed: %(err)s',
                        {'peer': pending.peer, 'err': exc})
            return
        del self._pending[nonce]
        if pending.timer is not None:
            pending.timer.cancel()
        rtt_ms = (self._loop.time() - pending.sent_at) * 1000.0
        self.stats.probes_answered += 1
        self._report(pending, RttSample(pending.peer, rtt_ms, coordinate,
                                        float(error)))

    # -- responder side ----------------------------------------------------

    def _on_probe(self, message: dict[str, Any],
                  addr: tuple[str, int]) -> None:
        sender = message.get('from')
        nonce = message.get('nonce')
        if not isinstance(sender, str) or not isinstance(nonce, str) or \
                len(nonce) > 64:
            self.stats.rejected_malformed += 1
            return
        coordinate, error = self._state()
        echo = {'type': 'echo', 'from': self.name, 'nonce': nonce,
                'coord': coordinate.to_wire(), 'error': error}
        self.stats.echoes_sent += 1
        self._spawn(self._send(sender, addr, echo))

    # -- datagram plumbing -------------------------------------------------

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            message = wire.open_datagram(self._key, data, self._max_bytes)
        except MessageTooLarge:
            self.stats.rejected_oversize += 1
            return
        except AuthenticationFailed:
            self.stats.rejected_auth += 1
            LOG.debug('dropped unauthenticated datagram from %(addr)s',
                      {'addr': addr})
            return
        except InvalidMessage:
            self.stats.rejected_malformed += 1
            return
        kind = message.get('type')
        if kind == 'probe':
            self._on_probe(message, addr[:2])
        elif kind == 'echo':
            self._on_echo(message)
        else:
            self.stats.rejected_malformed += 1

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the probe will time out.
        LOG.debug('UDP error: %(err)s', {'err': exc})

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, peer: str, address: str | tuple[str, int],
                    message: dict[str, Any]) -> None:
        try:
            if isinstance(address, str):
                addr = await self._resolve(address)
            else:
                addr = address
            if self._delay is not None:
                delay = self._delay(peer)
                if delay > 0:
                    await asyncio.sleep(delay)
            if self._transport is None or self._transport.is_closing():
                return
            self._transport.sendto(wire.seal_datagram(self._key, message),
                                   addr)
        except (OSError, ValueError) as exc:
            self.stats.send_errors += 1
            LOG.debug('cannot send %(kind)s to %(peer)s at %(addr)s: '
                      '%(err)s', {'kind': message['type'], 'peer': peer,
                                  'addr': address, 'err': exc})

    async def _resolve(self, address: str) -> tuple[str, int]:
        cached = self._resolved.get(address)
        if cached is not None:
            return cached
        host, port = parse_address(address)
        infos = await self._loop.getaddrinfo(host, port,
                                             type=socket.SOCK_DGRAM)
        sock = self._transport.get_extra_info('socket')
        family = sock.family if sock is not None else socket.AF_INET
        usable = [info for info in infos if info[0] == family] or infos
        addr = random.choice(usable)[4][:2]
        self._resolved[address] = addr
        return addr

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if entry.timer is not None:
                entry.timer.cancel()
            self._report(entry, None)
        if self._transport is not None:
            self._transport.close()
            self._transport = None
