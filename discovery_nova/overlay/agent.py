"""The per-PoP overlay agent: the protocol classes on real sockets.

The agent runs on one asyncio event loop and gives the sans-IO protocol
classes what the simulator gives them there: an ``Endpoint`` (here: a pool
of authenticated ``wire`` connections per peer and the loop's clock) and a
``Prober`` (here: the authenticated UDP echo). Everything else is the same
code as in simulation:

* ``VivaldiNode`` is fed by a probe loop: half the probes go to near peers
  (they make coordinates right where locality matters, but are not
  representative of the node's error), half to random members;
* ``SpiralService`` answers and starts nearest-peer searches;
* ``RingRouter`` and ``Locator`` route keys on the identifier ring;
* a membership backend (tooz by default) tells every service of joins and
  leaves; the agent publishes its coordinate in its membership record;
* a ``ClientProber`` times TCP connections to the client prefixes of its
  PoP and of its nearest PoPs (``status()`` reports them as
  ``client_rtt``, the PoP descriptor's ``client_rtt``).

One TCP port carries overlay messages from other agents and a small query
interface for operators and tests (``status``, ``nearest``, ``locate``,
``put``); the UDP port of the same number answers probes. Every link is
authenticated with the deployment key. A message that fails validation is
dropped and counted; a handler that raises is logged and counted; the
agent keeps serving. Long-running parts run under the supervisor, which
restarts them when they fail.
"""

import asyncio
import collections
from collections.abc import Callable
import dataclasses
import itertools
import math
import random
import socket
import time
from typing import Any

from oslo_log import log as logging

from discovery_nova.overlay import wire
from discovery_nova.overlay.client_probe import ClientProber
from discovery_nova.overlay.client_probe import ClientTarget
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.coordinates import VivaldiNode
from discovery_nova.overlay.coordinates import VivaldiParams
from discovery_nova.overlay.endpoint import Endpoint
from discovery_nova.overlay.errors import ConnectionClosed
from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import OverlayError
from discovery_nova.overlay.locator import Located
from discovery_nova.overlay.locator import Locator
from discovery_nova.overlay.locator import LocatorParams
from discovery_nova.overlay.locator import Stored
from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.membership import Membership
from discovery_nova.overlay.membership import MembershipEvent
from discovery_nova.overlay.membership import load_membership
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.overlay.probe import RttSample
from discovery_nova.overlay.ring import RingParams
from discovery_nova.overlay.ring import RingRouter
from discovery_nova.overlay.spiral import SpiralParams
from discovery_nova.overlay.spiral import SpiralResult
from discovery_nova.overlay.spiral import SpiralService
from discovery_nova.overlay.supervisor import Supervisor
from discovery_nova.overlay.udp_prober import UdpEchoProber
from discovery_nova.overlay.udp_prober import parse_address

LOG = logging.getLogger(__name__)

QUERY_PREFIX = 'query.'
QUERY_REPLY = 'query.reply'
QUERY_KINDS = ('status', 'nearest', 'locate', 'put')


@dataclasses.dataclass(frozen=True)
class AgentParams:
    """Everything an agent needs, as plain values (no ``CONF``).

    ``discovery_nova.cmd.agent`` builds it from ``[discovery]`` and
    ``[discovery_overlay]``; tests build it directly.
    """

    name: str
    key: bytes
    listen_host: str = '127.0.0.1'
    listen_port: int = 7390
    #: Host published in membership; defaults to ``listen_host``.
    advertise_host: str | None = None
    tags: tuple[str, ...] = ()
    max_message_bytes: int = 1048576
    request_timeout: float = 5.0
    probe_interval: float = 1.0
    probe_timeout: float = 2.0
    vivaldi: VivaldiParams = VivaldiParams()
    vivaldi_neighbours: int = 32
    spiral: SpiralParams = SpiralParams()
    spiral_refresh_interval: float = 30.0
    ring: RingParams = RingParams()
    locator: LocatorParams = LocatorParams()
    membership_backend: str = 'tooz'
    membership_url: str = 'file:///var/lib/discovery-nova/membership'
    membership_group: str = 'discovery-overlay'
    membership_heartbeat_interval: float = 1.0
    membership_timeout: float = 10.0
    restart_backoff: float = 0.5
    restart_backoff_max: float = 30.0
    #: Seconds between two publications of our coordinate in membership
    #: (peers learn fresh coordinates from probes and spiral views; the
    #: record seeds newcomers, and rewriting it is not free everywhere).
    publish_interval: float = 60.0
    #: How far (ms) the coordinate must have moved to be republished.
    publish_min_move_ms: float = 5.0
    #: Outgoing connections kept at most per peer.
    connections_per_peer: int = 2
    #: Messages queued at most per peer before new ones are dropped.
    send_queue_size: int = 1000
    #: Connections at most in their handshake at once; more are closed at
    #: once, so silent or slow clients cannot pile up (each waits up to
    #: ``request_timeout`` before it is dropped).
    max_pending_handshakes: int = 64
    #: Client prefixes with a probe target, each with the PoP it maps to;
    #: the agent probes those of its PoP and of its
    #: ``client_probe_pops`` nearest, at most ``client_probe_limit``.
    client_probes: tuple[ClientTarget, ...] = ()
    client_probe_pops: int = 8
    client_probe_limit: int = 64
    client_probe_interval: float = 30.0
    #: Tests only: emulated RTT in ms to each peer name. Every datagram
    #: and message to that peer is held back for half of it, so loopback
    #: agents see WAN-like distances.
    emulated_rtt_ms: dict[str, float] | None = None

    def __post_init__(self):
        if not isinstance(self.key, bytes) or len(self.key) < 16:
            raise ValueError('the deployment key must be at least 16 bytes '
                             '([discovery_overlay] deployment_key or '
                             'deployment_key_file)')
        if not wire.NAME_RE.match(self.name):
            raise ValueError('agent name %r must be letters, digits and '
                             '"_.-", at most 128 characters' % self.name)

    @property
    def advertised_address(self) -> str:
        host = self.advertise_host or self.listen_host
        if host in ('0.0.0.0', '::', ''):
            host = socket.gethostname()
        if ':' in host:
            host = '[%s]' % host
        return '%s:%d' % (host, self.listen_port)


@dataclasses.dataclass(frozen=True)
class LocalityView:
    """Where this agent's PoP is, as it measured it: what others publish.

    ``measured_rtt`` holds the RTTs (ms) last measured to the nearest
    peers, by name, nearest first, and only a prefix of the near set:
    every peer it leaves out is at least as far as every peer it lists,
    so a reader may take an unlisted peer to be farther than the largest
    listed RTT. ``client_rtt`` is the client prober's view, by prefix.
    """

    coordinate: Coordinate
    error: float
    measured_rtt: dict[str, float]
    client_rtt: dict[str, float]
    #: The other live members as their membership records place them, by
    #: name: how this PoP's deployment learns where the other PoPs are.
    others: dict[str, 'PeerPlace'] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PeerPlace:
    """Where another member says it is (its membership record): the
    coordinate and error it last published, and its tags."""

    coordinate: Coordinate
    error: float
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class DispatchStats:
    """What the agent did with the messages it received."""

    delivered: int = 0
    invalid: int = 0
    unknown_type: int = 0
    handler_errors: int = 0
    queries: int = 0
    sent: int = 0
    dropped_queue_full: int = 0
    dropped_unreachable: int = 0
    dropped_unknown_peer: int = 0
    connect_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class _PeerLink:
    """A bounded pool of outgoing connections to one peer, with a queue.

    Messages wait in one bounded queue; up to ``connections_per_peer``
    workers, each owning a connection, take them off and send them. A
    worker that cannot connect drops what is queued (the protocols time out
    on their own) and ends; the next message starts a new one.
    """

    def __init__(self, agent: 'OverlayAgent', name: str):
        self.agent = agent
        self.name = name
        self.queue: asyncio.Queue = asyncio.Queue(
            agent.params.send_queue_size)
        self.workers: set[asyncio.Task] = set()
        self.connections: set[wire.Connection] = set()
        self.failed_until = 0.0

    def enqueue(self, message: dict[str, Any]) -> None:
        stats = self.agent.dispatch_stats
        loop = asyncio.get_running_loop()
        if loop.time() < self.failed_until:
            stats.dropped_unreachable += 1
            return
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            stats.dropped_queue_full += 1
            return
        idle = len(self.workers) - len(self.connections)
        if not self.workers or (
                idle <= 0 and self.queue.qsize() > 1 and
                len(self.workers) < self.agent.params.connections_per_peer):
            task = loop.create_task(self._work(), name='link-' + self.name)
            self.workers.add(task)
            task.add_done_callback(self.workers.discard)

    async def _work(self) -> None:
        agent = self.agent
        address = agent.address_of(self.name)
        if address is None:
            self._drop_all('dropped_unknown_peer')
            return
        try:
            host, port = parse_address(address)
            conn = await wire.connect(
                host, port, agent.name, agent.params.key,
                max_bytes=agent.params.max_message_bytes,
                timeout=agent.params.request_timeout,
                stats=agent.wire_stats)
        except (OverlayError, TimeoutError, ValueError, OSError) as exc:
            agent.dispatch_stats.connect_failures += 1
            LOG.info('Cannot reach %(peer)s at %(addr)s: %(err)s',
                     {'peer': self.name, 'addr': address, 'err': exc})
            # Back off briefly so a dead peer does not cost a connect
            # attempt per message until membership reports it gone.
            self.failed_until = (asyncio.get_running_loop().time() +
                                 agent.params.request_timeout)
            self._drop_all('dropped_unreachable')
            return
        self.connections.add(conn)
        reader = asyncio.get_running_loop().create_task(
            agent.serve_connection(conn))
        try:
            while not conn.closed:
                getter = asyncio.ensure_future(self.queue.get())
                done, _ = await asyncio.wait(
                    {getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                message = getter.result()
                try:
                    await conn.send(message)
                    agent.dispatch_stats.sent += 1
                except ConnectionClosed:
                    agent.dispatch_stats.dropped_unreachable += 1
                    break
                except InvalidMessage as exc:
                    LOG.error('Not sending %(type)s to %(peer)s: %(err)s',
                              {'type': message.get('type'),
                               'peer': self.name, 'err': exc})
        finally:
            self.connections.discard(conn)
            conn.close()
            reader.cancel()

    def _drop_all(self, counter: str) -> None:
        stats = self.agent.dispatch_stats
        while not self.queue.empty():
            self.queue.get_nowait()
            setattr(stats, counter, getattr(stats, counter) + 1)

    def close(self) -> None:
        for task in list(self.workers):
            task.cancel()
        for conn in list(self.connections):
            conn.close()


class AgentEndpoint(Endpoint):
    """The protocols' mailbox and clock inside an agent."""

    def __init__(self, agent: 'OverlayAgent'):
        self.agent = agent
        self.name = agent.name

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def send(self, dest: str, message: dict[str, Any]) -> None:
        self.agent.send(dest, message)

    def call_later(self, delay: float, callback: Callable[[], None]):
        return asyncio.get_running_loop().call_later(
            max(delay, 0.0), self.agent.guarded, callback)


class OverlayAgent:
    """One PoP's overlay agent. ``await start()``, then ``await stop()``."""

    def __init__(self, params: AgentParams,
                 membership: Membership | None = None,
                 rng: random.Random | None = None):
        self.params = params
        self.name = params.name
        self.rng = rng or random.Random()
        self.wire_stats = wire.WireStats()
        self.dispatch_stats = DispatchStats()
        self.vivaldi = VivaldiNode(params.vivaldi, self.rng)
        self.endpoint = AgentEndpoint(self)
        self.me = PeerRef(self.name, params.advertised_address)
        emulated = params.emulated_rtt_ms or {}
        self._one_way = {peer: max(float(rtt), 0.0) / 2000.0
                         for peer, rtt in emulated.items()}
        self.prober = UdpEchoProber(
            self.name, params.key, self._vivaldi_state,
            probe_timeout=params.probe_timeout,
            dimensions=params.vivaldi.dimensions,
            emulated_delay=self._delay_to if self._one_way else None)
        self.spiral = SpiralService(self.endpoint, self.me,
                                    lambda: self.vivaldi.coordinate,
                                    self.prober, params.spiral, self.rng)
        self.spiral.on_near_changed = self._near_changed
        self.ring = RingRouter(self.endpoint, self.me, params.ring,
                               rng=self.rng)
        self.ring.on_neighbours_changed = self._successors_changed
        self.locator = Locator(self.ring, params.locator)
        self.client_prober = ClientProber(
            params.client_probes, self.name,
            lambda: [p.peer.name for p in self.spiral.near_peers()],
            pops=params.client_probe_pops, limit=params.client_probe_limit,
            interval=params.client_probe_interval,
            timeout=params.probe_timeout)
        self.membership = membership or load_membership(
            params.membership_backend, url=params.membership_url,
            group=params.membership_group,
            heartbeat_interval=params.membership_heartbeat_interval,
            timeout=params.membership_timeout)
        self._handlers: dict[str, Any] = {'spiral.': self.spiral,
                                          'ring.': self.ring,
                                          'locate.': self.locator}
        self._links: dict[str, _PeerLink] = {}
        self._random_probe_set: list[str] = []
        #: Live peers as this agent acts on them: membership's view, but a
        #: leave takes effect only after ``_leave_grace`` seconds without
        #: the peer joining again.
        self.peers: dict[str, PeerRef] = {}
        self._leaving: dict[str, asyncio.TimerHandle] = {}
        self._leave_grace = 2 * params.membership_heartbeat_interval
        self._probe_round = itertools.count()
        self._server: asyncio.AbstractServer | None = None
        self.supervisor = Supervisor(params.restart_backoff,
                                     params.restart_backoff_max)
        self._incoming: set[asyncio.Task] = set()
        self._accepted: dict[asyncio.Task, asyncio.StreamWriter] = {}
        self._handshaking = 0
        self._published = self.vivaldi.coordinate
        self.probe_log: collections.deque = collections.deque(maxlen=64)
        self.started_at = 0.0

    # -- life cycle --------------------------------------------------------

    async def start(self) -> None:
        """Bind TCP and UDP, join membership and start the loops.

        Raises OSError when the port is taken and MembershipUnavailable
        when the membership backend cannot be reached; nothing is left
        running then.
        """
        params = self.params
        self.started_at = time.time()
        self._server = await asyncio.start_server(
            self._accept, params.listen_host, params.listen_port)
        try:
            await self.prober.start(params.listen_host, params.listen_port)
            # Membership calls stay on the loop's thread: they deliver
            # events to the services, which are not thread-safe.
            self.membership.start()
            self.membership.register_listener(
                on_join=self._on_join, on_leave=self._on_leave,
                on_update=self._on_update, name='agent-%s' % self.name)
            self.membership.join(Member(self.me, self._capabilities()))
            # The first whole member list is the ring's join: it picks
            # its first shortcuts among them.
            self.ring.set_members([self.me, *self.peers.values()])
        except BaseException:
            try:
                self.membership.stop()
            except Exception:
                LOG.debug('Membership stop after a failed start failed',
                          exc_info=True)
            await self._close_transport()
            raise
        supervisor = self.supervisor
        supervisor.add('membership', self.membership.run)
        supervisor.add('vivaldi', self._probe_loop)
        supervisor.add('spiral-refresh', self._refresh_loop)
        supervisor.add('publish', self._publish_loop)
        if params.client_probes:
            supervisor.add('client-probes', self.client_prober.run)
        supervisor.start()
        LOG.info('Overlay agent %(name)s serving on %(addr)s',
                 {'name': self.name, 'addr': self.me.address})

    async def stop(self) -> None:
        """Leave membership cleanly and close every socket."""
        await self.supervisor.stop()
        # Hand our records to their next holders and give the links a
        # moment to carry them before we leave.
        self.locator.leave()
        await self._flush_links(1.0)
        try:
            self.membership.stop()
        except Exception:
            LOG.exception('Leaving membership failed')
        await self._close_transport()

    async def _flush_links(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and any(
                not link.queue.empty() for link in self._links.values()):
            await asyncio.sleep(0.02)

    async def _close_transport(self) -> None:
        for timer in self._leaving.values():
            timer.cancel()
        self._leaving.clear()
        for link in self._links.values():
            link.close()
        for task in list(self._incoming):
            task.cancel()
        for writer in list(self._accepted.values()):
            writer.close()
        if self._accepted:
            await asyncio.wait(list(self._accepted), timeout=2.0)
        self.prober.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def guarded(self, callback: Callable[[], None]) -> None:
        """Run a protocol timer callback; a failure is logged, not fatal."""
        try:
            callback()
        except Exception:
            self.dispatch_stats.handler_errors += 1
            LOG.exception('Overlay timer callback failed')

    # -- sending -----------------------------------------------------------

    def address_of(self, name: str) -> str | None:
        peer = self.peers.get(name)
        return peer.address if peer is not None else None

    def _delay_to(self, peer: str) -> float:
        return self._one_way.get(peer, 0.0)

    def send(self, dest: str, message: dict[str, Any]) -> None:
        """Best-effort send through the peer's connection pool."""
        if dest == self.name:
            asyncio.get_running_loop().call_soon(self._dispatch, self.name,
                                                 message, None)
            return
        link = self._links.get(dest)
        if link is None:
            if self.address_of(dest) is None:
                self.dispatch_stats.dropped_unknown_peer += 1
                return
            link = self._links[dest] = _PeerLink(self, dest)
        delay = self._one_way.get(dest, 0.0)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, link.enqueue,
                                                  message)
        else:
            link.enqueue(message)

    # -- receiving ---------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        # Stopping closes these streams and waits for their tasks rather
        # than cancelling them: a cancelled client_connected_cb task is
        # logged as an error by asyncio (Python 3.11).
        if self._handshaking >= self.params.max_pending_handshakes:
            self.wire_stats.handshake_failed += 1
            LOG.debug('Refused connection from %(addr)s: %(n)d handshakes '
                      'already pending',
                      {'addr': writer.get_extra_info('peername'),
                       'n': self._handshaking})
            writer.close()
            return
        task = asyncio.current_task()
        self._accepted[task] = writer
        try:
            self._handshaking += 1
            try:
                conn = await wire.accept(
                    reader, writer, self.name, self.params.key,
                    max_bytes=self.params.max_message_bytes,
                    timeout=self.params.request_timeout,
                    stats=self.wire_stats)
            except (InvalidMessage, ConnectionClosed) as exc:
                LOG.warning('Refused connection from %(addr)s: %(err)s',
                            {'addr': writer.get_extra_info('peername'),
                             'err': exc})
                return
            finally:
                self._handshaking -= 1
            await self.serve_connection(conn)
        finally:
            self._accepted.pop(task, None)

    async def serve_connection(self, conn: wire.Connection) -> None:
        """Read messages off ``conn`` until it closes or misbehaves."""
        try:
            while True:
                message = await conn.recv()
                self._dispatch(conn.peer_name, message, conn)
        except ConnectionClosed:
            pass
        except InvalidMessage as exc:
            LOG.warning('Closed connection from %(peer)s: %(err)s',
                        {'peer': conn.peer_name, 'err': exc})
        finally:
            conn.close()

    def _dispatch(self, sender: str, message: dict[str, Any],
                  conn: wire.Connection | None) -> None:
        kind = message.get('type')
        if not isinstance(kind, str):
            self.dispatch_stats.invalid += 1
            LOG.warning('Message from %(peer)s has no string "type"',
                        {'peer': sender})
            return
        if kind.startswith(QUERY_PREFIX):
            if conn is not None and kind != QUERY_REPLY:
                self.dispatch_stats.queries += 1
                self._spawn(self._answer_query(conn, message))
            else:
                self.dispatch_stats.unknown_type += 1
            return
        prefix = kind.split('.', 1)[0] + '.'
        service = self._handlers.get(prefix)
        if service is None:
            self.dispatch_stats.unknown_type += 1
            LOG.warning('Message of unknown type %(type)r from %(peer)s, '
                        'expected one of the prefixes %(known)s',
                        {'type': kind[:40], 'peer': sender,
                         'known': ', '.join(sorted(self._handlers))})
            return
        try:
            service.validate_message(message)
        except InvalidMessage as exc:
            self.dispatch_stats.invalid += 1
            LOG.warning('Dropped invalid message from %(peer)s: %(err)s',
                        {'peer': sender, 'err': exc})
            return
        try:
            service.handle(sender, message)
            self.dispatch_stats.delivered += 1
        except Exception:
            self.dispatch_stats.handler_errors += 1
            LOG.exception('Handling %(type)s from %(peer)s failed',
                          {'type': kind, 'peer': sender})

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._incoming.add(task)
        task.add_done_callback(self._incoming.discard)

    # -- membership --------------------------------------------------------

    def _capabilities(self) -> dict[str, Any]:
        self._published = self.vivaldi.coordinate
        return {'coordinate': self.vivaldi.coordinate.to_wire(),
                'error': self.vivaldi.error,
                'tags': list(self.params.tags)}

    def _on_join(self, event: MembershipEvent) -> None:
        member = event.member
        pending = self._leaving.pop(member.name, None)
        if pending is not None:
            # Back within the grace period: a backend that rewrites a
            # record by leaving and joining again, not a departure.
            pending.cancel()
        else:
            LOG.info('Peer %(name)s joined at %(addr)s',
                     {'name': member.name, 'addr': member.address})
        self.peers[member.name] = member.peer
        self.ring.add_member(member.peer)
        self._learn(member)
        if len(self._random_probe_set) < self._random_set_size():
            self._random_probe_set.append(member.name)

    def _on_update(self, event: MembershipEvent) -> None:
        self.peers[event.member.name] = event.member.peer
        self.ring.add_member(event.member.peer)
        self._learn(event.member)

    def _learn(self, member: Member) -> None:
        try:
            coord = member.coordinate
        except ValueError as exc:
            LOG.warning('Member %(name)s publishes a bad coordinate: '
                        '%(err)s', {'name': member.name, 'err': exc})
            return
        if coord is not None and len(coord.vec) == len(
                self.vivaldi.coordinate.vec):
            self.spiral.add_known(member.peer, coord)

    def _on_leave(self, event: MembershipEvent) -> None:
        name = event.member.name
        if name in self._leaving or name not in self.peers:
            return
        self._leaving[name] = asyncio.get_running_loop().call_later(
            self._leave_grace, self._confirm_leave, name,
            event.reason.value if event.reason else 'gone')

    def _confirm_leave(self, name: str, why: str) -> None:
        self._leaving.pop(name, None)
        if name in self.membership.members():
            return
        LOG.info('Peer %(name)s left (%(why)s)', {'name': name, 'why': why})
        self.peers.pop(name, None)
        self.ring.remove_member(name)
        self.spiral.remove(name)
        if name in self._random_probe_set:
            self._random_probe_set.remove(name)
        link = self._links.pop(name, None)
        if link is not None:
            link.close()

    def _near_changed(self, old: frozenset, new: frozenset) -> None:
        peers = self.peers
        # Views of searches still in flight may carry a peer that has just
        # left; the near set only keeps live members.
        for name in new - old:
            if name not in peers:
                asyncio.get_running_loop().call_soon(self._forget_dead,
                                                     name)

        def refs(names):
            return [peers.get(n, PeerRef(n)) for n in sorted(names)]
        self.membership.notify_neighbours_changed(
            'spiral_near', refs(new - old), refs(old - new))

    def _successors_changed(self, old: tuple[PeerRef, ...],
                            new: tuple[PeerRef, ...]) -> None:
        self.membership.notify_neighbours_changed(
            'ring_successors', [p for p in new if p not in old],
            [p for p in old if p not in new])

    def _forget_dead(self, name: str) -> None:
        if name not in self.peers:
            self.spiral.remove(name)

    async def _publish_loop(self) -> None:
        """Republish our coordinate when it moved noticeably.

        Peers learn coordinates from probes and spiral views too; the
        membership record only seeds newcomers, so it is rewritten when
        the coordinate moved by ``publish_min_move_ms`` (some backends
        rewrite a record by leaving and joining again).
        """
        while True:
            await asyncio.sleep(self.params.publish_interval)
            now = self.vivaldi.coordinate
            old = self._published
            moved = (math.dist(now.vec, old.vec) +
                     abs(now.height - old.height))
            if moved >= self.params.publish_min_move_ms:
                self.membership.update_capabilities(self._capabilities())
                self._published = now

    # -- coordinates ---------------------------------------------------------

    def _vivaldi_state(self):
        return self.vivaldi.coordinate, self.vivaldi.error

    def _random_set_size(self) -> int:
        return max(1, self.params.vivaldi_neighbours // 2)

    def choose_probe_target(self) -> tuple[PeerRef, bool] | None:
        """Next peer to probe and whether it counts as representative.

        Even rounds go to a near peer (not representative), odd rounds to
        one of a random subset of members (representative), which is
        refreshed one member at a time so it stays a uniform sample.
        """
        members = self.peers
        if not members:
            return None
        half = self._random_set_size()
        if next(self._probe_round) % 2 == 0:
            near = [p.peer for p in self.spiral.near_peers()[:half]
                    if p.peer.name in members]
            if near:
                return self.rng.choice(near), False
        self._random_probe_set = [n for n in self._random_probe_set
                                  if n in members]
        others = [n for n in members if n not in self._random_probe_set]
        if others and (len(self._random_probe_set) < half or
                       self.rng.random() < 0.1):
            if len(self._random_probe_set) >= half:
                self._random_probe_set.pop(
                    self.rng.randrange(len(self._random_probe_set)))
            self._random_probe_set.append(self.rng.choice(others))
        name = self.rng.choice(self._random_probe_set)
        return members[name], True

    async def _probe_loop(self) -> None:
        interval = self.params.probe_interval
        while True:
            # Jitter keeps agents started together from probing in step.
            await asyncio.sleep(interval * self.rng.uniform(0.5, 1.5))
            target = self.choose_probe_target()
            if target is None:
                continue
            peer, representative = target
            self.prober.probe(peer, lambda sample, r=representative:
                              self._on_sample(sample, r))

    def _on_sample(self, sample: RttSample | None,
                   representative: bool) -> None:
        if sample is None:
            return
        used = self.vivaldi.observe(sample.rtt_ms, sample.coordinate,
                                    sample.error, representative)
        if used:
            # The measured RTT ranks the near set better than coordinates
            # can at a few milliseconds (see SpiralService.update_coordinate).
            self.spiral.update_coordinate(sample.peer, sample.coordinate,
                                          sample.rtt_ms)
            self.probe_log.append((sample.peer, sample.rtt_ms))

    async def _refresh_loop(self) -> None:
        interval = self.params.spiral_refresh_interval
        while True:
            await asyncio.sleep(interval * self.rng.uniform(0.5, 1.0))
            if self.membership.peers():
                self.spiral.search(None, lambda result: None)

    # -- queries -------------------------------------------------------------

    async def _answer_query(self, conn: wire.Connection,
                            message: dict[str, Any]) -> None:
        query_id = message.get('id')
        kind = message['type'][len(QUERY_PREFIX):]
        try:
            if not isinstance(query_id, int) or isinstance(query_id, bool):
                raise InvalidMessage('a query needs an integer "id"')
            if kind == 'status':
                result = self.status()
            elif kind == 'nearest':
                result = await self.nearest(message.get('k'),
                                            message.get('point'))
            elif kind == 'locate':
                result = await self.locate(message.get('key'))
            elif kind == 'put':
                result = await self.put(message.get('key'),
                                        message.get('value'))
            else:
                raise InvalidMessage('unknown query %r, expected one of %s'
                                     % (kind[:40], ', '.join(QUERY_KINDS)))
            reply = {'type': QUERY_REPLY, 'id': query_id, 'ok': True,
                     'result': result}
        except (OverlayError, ValueError, TimeoutError) as exc:
            reply = {'type': QUERY_REPLY, 'id': query_id, 'ok': False,
                     'error': '%s: %s' % (type(exc).__name__, exc)}
        try:
            await conn.send(reply)
        except (ConnectionClosed, InvalidMessage) as exc:
            LOG.info('Could not answer query %(kind)s of %(peer)s: %(err)s',
                     {'kind': kind, 'peer': conn.peer_name, 'err': exc})

    def locality_view(self) -> LocalityView:
        """This agent's coordinate, error and measured RTTs, now.

        Call it on the agent's loop (the state it reads is the loop's).
        The near set is ranked by measured RTT where there is one, else by
        the coordinates' prediction; it is cut at its first unmeasured
        peer, which may be nearer than peers measured after it.
        """
        measured = {}
        for near in self.spiral.near_peers():
            if near.rtt_ms is None:
                break
            measured[near.peer.name] = near.rtt_ms
        return LocalityView(self.vivaldi.coordinate, self.vivaldi.error,
                            measured, self.client_prober.measurements(),
                            self._peer_places())

    def _peer_places(self) -> dict[str, PeerPlace]:
        """The other members whose records place them in our space: a
        coordinate of our dimension and a finite error in [0, 1]."""
        places = {}
        dimension = len(self.vivaldi.coordinate.vec)
        for name, member in self.membership.members().items():
            if name == self.name:
                continue
            try:
                coordinate = member.coordinate
                error = float(member.capabilities.get('error', 1.0))
            except (TypeError, ValueError):
                continue  # logged when the member joined (_learn)
            if (coordinate is None or len(coordinate.vec) != dimension or
                    not 0.0 <= error <= 1.0):
                continue
            places[name] = PeerPlace(coordinate, error, member.tags)
        return places

    def status(self) -> dict[str, Any]:
        """What this agent knows, as JSON-ready values."""
        coord = self.vivaldi.coordinate
        return {
            'name': self.name,
            'address': self.me.address,
            'uptime': time.time() - self.started_at,
            'coordinate': coord.to_wire(),
            'error': self.vivaldi.error,
            'samples': dataclasses.asdict(self.vivaldi.counters),
            'wire': self.wire_stats.as_dict(),
            'probes': self.prober.stats.as_dict(),
            'dispatch': self.dispatch_stats.as_dict(),
            'spiral': dataclasses.asdict(self.spiral.stats),
            'members': sorted([self.name, *self.peers]),
            'near': [[p.peer.name, p.distance]
                     for p in self.spiral.near_peers()],
            'recent_probes': [list(sample) for sample in self.probe_log],
            'client_rtt': self.client_prober.measurements(),
            'successors': [p.name for p in self.ring.successors],
            'predecessor': (self.ring.predecessor.name
                            if self.ring.predecessor else None),
            'ring': dataclasses.asdict(self.ring.stats),
            'records': len(self.locator.keys()),
            'locator': dataclasses.asdict(self.locator.stats),
            'listener_failures': dict(self.membership.dispatcher.failures),
            'services': {name: {'running': st.running,
                                'restarts': st.restarts,
                                'last_error': st.last_error}
                         for name, st in self.supervisor.status().items()},
        }

    async def nearest(self, k: Any, point: Any = None) -> dict[str, Any]:
        """Run a spiral search for the ``k`` peers nearest to us or, given
        ``point`` (a coordinate, wire form), nearest to that point (this
        agent included, ranked by coordinates)."""
        if k is not None and (not isinstance(k, int) or isinstance(k, bool)
                              or not 1 <= k <= 1024):
            raise InvalidMessage('k must be an integer from 1 to 1024, got '
                                 '%r' % (k,))
        origin = None
        if point is not None:
            dims = len(self.vivaldi.coordinate.vec)
            try:
                origin = Coordinate.from_wire(point, dims)
            except (TypeError, ValueError) as exc:
                raise InvalidMessage(
                    'point must be a coordinate [[x1, ..., x%d], height], '
                    'got %.100r (%s)' % (dims, point, exc)) from None
        future = asyncio.get_running_loop().create_future()

        def done(result: SpiralResult) -> None:
            if not future.done():
                future.set_result(result)
        self.spiral.search(k, done, origin_coord=origin)
        result = await future
        # The origin probes about 2k candidates and ranks them all; the
        # answer is the k best.
        best = result.peers[:self.params.spiral.spiral_k if k is None else k]
        return {'peers': [[p.peer.name, p.rtt_ms] for p in best],
                'hops': result.hops, 'messages': result.messages,
                'probes': result.probes, 'visited': result.visited,
                'timed_out': result.timed_out}


    async def locate(self, key: Any) -> dict[str, Any]:
        """Look ``key`` up on the ring (``Locator.get``)."""
        future = asyncio.get_running_loop().create_future()
        self.locator.get(_check_key(key), _resolver(future))
        outcome = await future
        if not isinstance(outcome, Located):
            raise outcome
        return {'key': outcome.key, 'found': outcome.found,
                'value': outcome.value, 'version': outcome.version,
                'node': outcome.node.name, 'hops': outcome.hops,
                'path': list(outcome.path)}

    async def put(self, key: Any, value: Any) -> dict[str, Any]:
        """Store ``value`` under ``key`` on the ring (``Locator.put``)."""
        future = asyncio.get_running_loop().create_future()
        self.locator.put(_check_key(key), value, _resolver(future))
        outcome = await future
        if not isinstance(outcome, Stored):
            raise outcome
        return {'key': outcome.key, 'version': outcome.version,
                'node': outcome.node.name, 'hops': outcome.hops}


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidMessage('a query needs a non-empty string "key", got '
                             '%r' % (key,))
    return key


def _resolver(future: asyncio.Future) -> Callable[[Any], None]:
    def done(outcome: Any) -> None:
        if not future.done():
            future.set_result(outcome)
    return done


async def query(host: str, port: int, key: bytes, kind: str, /, *,
                timeout: float = 10.0, name: str = 'query-client',
                **args: Any) -> dict[str, Any]:
    """Ask the agent at ``host:port`` one query; returns its result.

    Raises OverlayError when the agent refuses us or answers an error.
    """
    conn = await wire.connect(host, port, name, key, max_bytes=1 << 24,
                              timeout=timeout)
    try:
        query_id = random.randrange(1 << 30)
        await conn.send(dict(args, type=QUERY_PREFIX + kind, id=query_id))
        async with asyncio.timeout(timeout):
            while True:
                reply = await conn.recv()
                if (reply.get('type') == QUERY_REPLY and
                        reply.get('id') == query_id):
                    break
    finally:
        conn.close()
        await conn.wait_closed()
    if not reply.get('ok'):
        raise OverlayError('query %s to %s:%d failed: %s'
                           % (kind, host, port, reply.get('error')))
    return reply['result']
