"""Authenticated connections between peers, bounded, with relaying.

Runs entirely in the driver's asyncio thread. Each peer listens on one TCP
port and keeps at most ``max_connections`` authenticated connections
(``discovery_nova.overlay.wire``: HMAC challenge-response on the deployment
key, per-connection session key, MAC and sequence number on every frame,
optionally under mutual TLS). A message for a peer without a direct
connection opens one while the bound allows (closing the least recently
used idle connection if needed); otherwise, it is relayed through the
connected peer whose name hashes nearest to the destination on a ring,
each relay counted, with a hop bound against loops. A peer never opens a
connection past its bound; connections others open to it are accepted
even then (refusing would look like death to them) and the bound is
restored by closing idle ones, every heartbeat. A peer that refuses a
connection or does not answer is not relayed to: it is most likely dead,
and the caller should try another server or time out.

Frames on an established connection are JSON objects with a type ``t``:

* ``d``: directory records (``r``), see ``directory.TopicDirectory``;
* ``k``: a keepalive carrying the sender's directory digest (``n``, the
  number of live records, and ``h``, their hash), sent when a connection
  opens, then every heartbeat on the connections to ring neighbours, and
  answered unless one was sent on that connection within half a heartbeat;
* ``m``: a routed message ``{'src', 'sa' (source address), 'dst', 'h'
  (hops), 'b' (body)}``.

The directory costs nothing while nothing changes: records are sent when
they change (flooded, each peer forwarding what it stores), keepalives
carry a digest, and two neighbours exchange whole directories only when
their digests disagree (a new connection, a flood that missed a peer).
Each peer keeps connections to its ring neighbours (``WATCH`` successors
and predecessors of its name's hash among the live peers, fewer when
``max_connections`` is under ``2 * WATCH``), which are never closed for
being idle and keep the mesh connected, and declares a successor dead when
it has heard nothing from it for ``registration_ttl`` (longer when its own
loop has been running late). Other connections carry no keepalives: one
nobody uses closes after ``idle_timeout`` and is opened again on demand.

Whatever an authenticated or unauthenticated peer sends that is wrong
(bad MAC, oversized or garbage frame, silence during the handshake, an
unknown frame type) closes that connection and is counted; the listening
socket and the other connections carry on.
"""

import asyncio
import collections
import dataclasses
import random
import ssl
import time
import typing

from discovery_nova.messaging import directory as directory_mod
from discovery_nova.messaging import looplog
from discovery_nova.overlay import errors
from discovery_nova.overlay import wire

# Used from the loop thread: see looplog for why not a plain logger.
LOG = looplog.LoopLogger(__name__)

_RING = 1 << 64
#: Ring successors each peer watches (so each peer has as many watchers),
#: unless ``max_connections`` leaves room for fewer: ring links to the
#: successors and from the predecessors fit in half the bound each.
WATCH = 2
#: Keepalives in a row with differing digests before a neighbour's whole
#: directory is asked for: a flood in flight differs for a moment.
MISMATCH_ROUNDS = 3
OnBody = typing.Callable[[str, dict], None]


@dataclasses.dataclass(frozen=True)
class MeshSettings:
    """Everything the mesh needs, read from the option group once."""

    name: str
    key: bytes
    max_bytes: int
    connect_timeout: float
    idle_timeout: float
    max_connections: int
    min_neighbours: int
    max_hops: int
    heartbeat_interval: float
    registration_ttl: float
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None


@dataclasses.dataclass
class MeshStats:
    """Counters of one peer; ``wire`` holds the framing layer's own."""

    accepted: int = 0
    handshake_rejected: int = 0
    frames_rejected: int = 0
    idle_closed: int = 0
    over_bound: int = 0
    connect_failed: int = 0
    evicted: int = 0
    relayed: int = 0
    dropped_hops: int = 0
    dropped_unreachable: int = 0
    messages_out: int = 0
    messages_in: int = 0
    records_out: int = 0
    keepalives_out: int = 0
    full_syncs: int = 0
    declared_dead: int = 0
    refuted: int = 0


class _Link:
    __slots__ = ('conn', 'peer', 'outbound', 'last_used', 'gossip_seq',
                 'address', 'synced', 'mismatches', 'last_sync',
                 'last_keepalive')

    def __init__(self, conn: wire.Connection, outbound: bool,
                 address: str | None) -> None:
        self.conn = conn
        self.peer = conn.peer_name
        self.outbound = outbound
        # Last message routed over it (keepalives do not count): what
        # eviction of idle links goes by.
        self.last_used = time.monotonic()
        self.gossip_seq = 0
        self.address = address
        # Whether whole directories were compared or exchanged on it yet.
        self.synced = False
        self.mismatches = 0
        self.last_sync = 0.0
        self.last_keepalive = 0.0


def _ring_distance(a: int, b: int) -> int:
    d = (a - b) % _RING
    return min(d, _RING - d)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(':')
    if not host or not port.isdigit():
        raise ValueError('a peer address is "host:port", got %r' % address)
    return host.strip('[]'), int(port)


class PeerMesh:
    """This peer's listening socket, its connections and the directory."""

    def __init__(self, settings: MeshSettings,
                 seeds: list[tuple[str, int]], bind_seed: bool,
                 listen: tuple[str, int], advertise_host: str | None,
                 on_body: OnBody,
                 on_directory_change: typing.Callable[[], None]) -> None:
        self.settings = settings
        self.name = settings.name
        self.stats = MeshStats()
        self.wire_stats = wire.WireStats()
        self._seeds = seeds
        self._bind_seed = bind_seed
        self._listen = listen
        self._advertise_host = advertise_host
        self._on_body = on_body
        self._on_directory_change = on_directory_change
        self._links: dict[str, list[_Link]] = {}
        self._connecting: dict[str, asyncio.Future] = {}
        self._unreachable_until: dict[str, float] = {}
        self._learned_addresses: dict[str, str] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._tick_task: asyncio.Task | None = None
        self._gossip_pending = False
        # Watched successor -> when this peer began watching it; what it
        # last heard from each peer is in ``_heard``.
        self._watched: dict[str, float] = {}
        self._watch_count = max(1, min(WATCH, settings.max_connections // 2))
        # How late this peer's loop woke, over about the last TTL.
        self._lateness: collections.deque[float] = collections.deque(
            maxlen=max(8, int(4 * settings.registration_ttl /
                              settings.heartbeat_interval)))
        self._loop_beat = 0.0
        self._heard: dict[str, float] = {}
        self._stopping = False
        self.address = ''
        self.directory: directory_mod.TopicDirectory | None = None

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        # A seed is published under its seed address; otherwise under what
        # the caller resolved (no name lookups in this thread, which may
        # live in an eventlet process).
        candidates = ([(h, p, h) for h, p in self._seeds]
                      if self._bind_seed else [])
        candidates.append((self._listen[0], self._listen[1],
                           self._advertise_host or self._listen[0]))
        last_error: OSError | None = None
        for host, port, published in candidates:
            try:
                self._server = await asyncio.start_server(
                    self._accept, host, port, reuse_address=True)
            except OSError as exc:
                last_error = exc
                continue
            bound = self._server.sockets[0].getsockname()[1]
            self.address = '%s:%d' % (published, bound)
            break
        if self._server is None:
            raise OSError('peer %s could bind none of %s: %s'
                          % (self.name, candidates, last_error))
        # Tombstones outlive the slowest anti-entropy exchange by far.
        self.directory = directory_mod.TopicDirectory(
            self.name, self.address, 4 * self.settings.registration_ttl)
        LOG.info('p2p peer %(name)s listening on %(addr)s',
                 {'name': self.name, 'addr': self.address})
        await asyncio.gather(*(self._connect_address(h, p)
                               for h, p in self._seeds
                               if '%s:%d' % (h, p) != self.address),
                             return_exceptions=True)
        self._tick_task = asyncio.get_running_loop().create_task(
            self._ticker())

    async def stop(self) -> None:
        """Say goodbye (so registrations vanish at once) and close all."""
        self._stopping = True
        if self._tick_task is not None:
            self._tick_task.cancel()
            await asyncio.gather(self._tick_task, return_exceptions=True)
        if self.directory is not None:
            self.directory.refresh_self(subs=(), gone=True)
            await self._gossip_round()
        self.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def abort(self) -> None:
        """Close the listening socket and every connection at once, with
        no goodbye: to the other peers this looks like a crash, which is
        what fault-injection tests and benchmarks use it for."""
        self._stopping = True
        if self._tick_task is not None:
            self._tick_task.cancel()
        if self._server is not None:
            self._server.close()
        for links in list(self._links.values()):
            for link in links:
                link.conn.close()
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- connections ------------------------------------------------------

    def link_count(self) -> int:
        return sum(len(v) for v in self._links.values())

    def neighbours(self) -> list[str]:
        return list(self._links)

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        # Handshakes in progress are this peer's tasks too: stop() must
        # end them before the loop closes.
        task = asyncio.current_task()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if self._stopping:
            writer.close()
            return
        try:
            if self.settings.server_ssl is not None:
                # TLS is set up here rather than by the listening socket so
                # that a refused certificate is counted like any other
                # refused handshake.
                async with asyncio.timeout(self.settings.connect_timeout):
                    await writer.start_tls(self.settings.server_ssl)
            conn = await wire.accept(
                reader, writer, self.name, self.settings.key,
                max_bytes=self.settings.max_bytes,
                timeout=self.settings.connect_timeout,
                stats=self.wire_stats)
        except (errors.OverlayError, OSError, TimeoutError) as exc:
            # ssl.SSLError is an OSError.
            self.stats.handshake_rejected += 1
            writer.close()
            LOG.warning('p2p peer %(me)s refused a connection from '
                        '%(who)s: %(err)s',
                        {'me': self.name,
                         'who': writer.get_extra_info('peername'),
                         'err': exc})
            return
        if (self.link_count() >= self.settings.max_connections and
                not self._evict_one()):
            # Refusing would look like a dead peer to the other side; the
            # link is kept and the bound restored as soon as one goes idle.
            self.stats.over_bound += 1
        self.stats.accepted += 1
        self._add_link(_Link(conn, outbound=False, address=None))

    def _add_link(self, link: _Link) -> None:
        self._links.setdefault(link.peer, []).append(link)
        self._unreachable_until.pop(link.peer, None)
        self.spawn(self._reader(link))
        # Changes from now on flow as they happen; what came before is
        # compared by digest (and exchanged whole if it differs).
        link.gossip_seq = self.directory.seq
        self._send_keepalive(link)

    def _drop_link(self, link: _Link) -> None:
        links = self._links.get(link.peer)
        if links and link in links:
            links.remove(link)
            if not links:
                del self._links[link.peer]
        link.conn.close()

    def _evict_one(self) -> bool:
        """Close the least recently used link idle for a while, if any."""
        idle_for = max(1.0, 2 * self.settings.heartbeat_interval)
        limit = time.monotonic() - idle_for
        ring = self.ring_neighbours()
        candidates = [link for peer, links in self._links.items()
                      if peer not in ring
                      for link in links if link.last_used < limit]
        if not candidates:
            return False
        victim = min(candidates, key=lambda link: link.last_used)
        self.stats.evicted += 1
        self._drop_link(victim)
        return True

    def _can_open(self) -> bool:
        return (self.link_count() < self.settings.max_connections or
                self._evict_one())

    def _restore_bound(self) -> None:
        while (self.link_count() > self.settings.max_connections and
               self._evict_one()):
            pass

    async def _connect_address(self, host: str, port: int) -> _Link | None:
        address = '%s:%d' % (host, port)
        try:
            conn = await wire.connect(
                host, port, self.name, self.settings.key,
                max_bytes=self.settings.max_bytes,
                timeout=self.settings.connect_timeout,
                stats=self.wire_stats, ssl_context=self.settings.client_ssl)
        except (errors.OverlayError, OSError, TimeoutError,
                ssl.SSLError) as exc:
            self.stats.connect_failed += 1
            LOG.debug('p2p peer %(me)s cannot connect to %(addr)s: %(err)s',
                      {'me': self.name, 'addr': address, 'err': exc})
            return None
        if conn.peer_name == self.name:
            conn.close()
            return None
        link = _Link(conn, outbound=True, address=address)
        self._add_link(link)
        return link

    async def _open(self, node: str) -> _Link | None:
        """A direct link to ``node``; one connection attempt at a time."""
        now = time.monotonic()
        if self._unreachable_until.get(node, 0.0) > now:
            return None
        pending = self._connecting.get(node)
        if pending is not None:
            return await asyncio.shield(pending)
        # A caller whose record has not reached us yet is still answered:
        # its messages carry its address.
        address = (self.directory.address_of(node) or
                   self._learned_addresses.get(node))
        if not address:
            return None
        future = asyncio.get_running_loop().create_future()
        self._connecting[node] = future
        try:
            host, port = split_address(address)
            link = await self._connect_address(host, port)
            if link is not None and link.peer != node:
                # Somebody else lives there now (a restarted seed).
                link = None
            if link is None:
                self._unreachable_until[node] = now + min(
                    1.0, self.settings.registration_ttl / 4)
            future.set_result(link)
            return link
        except ValueError:
            future.set_result(None)
            return None
        finally:
            del self._connecting[node]

    def _link_to(self, node: str) -> _Link | None:
        links = self._links.get(node)
        return links[0] if links else None

    def _pick_relay(self, dst: str, exclude: set[str]) -> _Link | None:
        target = directory_mod.ring_point(dst)
        best = None
        for peer, links in self._links.items():
            if peer in exclude or not links:
                continue
            distance = _ring_distance(directory_mod.ring_point(peer),
                                      target)
            if best is None or distance < best[0]:
                best = (distance, links[0])
        return best[1] if best else None

    # -- messages ---------------------------------------------------------

    async def deliver(self, dst: str, body: dict) -> bool:
        """Send ``body`` to peer ``dst``, directly or relayed.

        Returns False when it could not be handed to any connection (the
        peer is unreachable); the caller decides whether to try another.
        """
        env = {'t': 'm', 'src': self.name, 'sa': self.address, 'dst': dst,
               'h': 0, 'b': body}
        self.stats.messages_out += 1
        return await self._forward(env, came_from=None)

    def deliver_now(self, dst: str, body: dict) -> bool | None:
        """Send ``body`` to ``dst`` without yielding, over a direct link.

        True when handed to the link, False when that failed as in
        ``deliver``; None, with nothing done, when it needs waiting (no
        direct link, or the link's write buffer is full): then ``deliver``
        does it. Loop thread only.
        """
        link = self._link_to(dst)
        if link is None:
            return None
        env = {'t': 'm', 'src': self.name, 'sa': self.address, 'dst': dst,
               'h': 0, 'b': body}
        try:
            if not link.conn.send_nowait(env):
                return None
        except (errors.OverlayError, OSError) as exc:
            return self._send_failed(link, dst, exc)
        self.stats.messages_out += 1
        link.last_used = time.monotonic()
        return True

    async def _forward(self, env: dict, came_from: str | None) -> bool:
        dst = env['dst']
        link = self._link_to(dst)
        if link is None and self._can_open():
            link = await self._open(dst)
            if link is None:
                # Refused or silent: most likely dead. Relaying would only
                # hide that from the caller, who can try another peer.
                self.stats.dropped_unreachable += 1
                return False
        if link is None:
            exclude = {dst, env['src']}
            if came_from:
                exclude.add(came_from)
            link = self._pick_relay(dst, exclude)
            if link is None:
                self.stats.dropped_unreachable += 1
                return False
            self.stats.relayed += 1
        link.last_used = time.monotonic()
        try:
            await link.conn.send(env)
        except (errors.OverlayError, OSError) as exc:
            return self._send_failed(link, dst, exc)
        return True

    def _send_failed(self, link: _Link, dst: str, exc: Exception) -> bool:
        """Log a send to ``dst`` over ``link`` that raised ``exc``, drop the
        link if it is broken; False, the sender's answer."""
        if isinstance(exc, errors.MessageTooLarge):
            # Refused before a byte was written: the link is fine.
            LOG.error('p2p peer %(me)s cannot send to %(dst)s: %(err)s',
                      {'me': self.name, 'dst': dst, 'err': exc})
        else:
            LOG.debug('p2p peer %(me)s lost link to %(peer)s: %(err)s',
                      {'me': self.name, 'peer': link.peer, 'err': exc})
            self._drop_link(link)
        return False

    async def _reader(self, link: _Link) -> None:
        conn = link.conn
        try:
            while True:
                try:
                    async with asyncio.timeout(self.settings.idle_timeout):
                        frame = await conn.recv()
                except TimeoutError:
                    self.stats.idle_closed += 1
                    # Routine for a link nobody uses (it is reopened on
                    # demand); a half-open peer is caught the same way.
                    LOG.info('p2p peer %(me)s closes connection of '
                                '%(peer)s: silent for %(t).1f s',
                                {'me': self.name, 'peer': link.peer,
                                 't': self.settings.idle_timeout})
                    return
                self._handle_frame(link, frame)
        except errors.ConnectionClosed:
            return
        except errors.InvalidMessage as exc:
            self.stats.frames_rejected += 1
            LOG.warning('p2p peer %(me)s closes connection of %(peer)s: '
                        '%(err)s',
                        {'me': self.name, 'peer': link.peer, 'err': exc})
        except OSError as exc:
            LOG.debug('p2p connection of %(peer)s failed: %(err)s',
                      {'peer': link.peer, 'err': exc})
        finally:
            self._drop_link(link)

    def _handle_frame(self, link: _Link, frame: dict) -> None:
        kind = frame.get('t')
        self._heard[link.peer] = time.monotonic()
        if kind == 'm':
            link.last_used = time.monotonic()
            src, dst, hops, body = (frame.get('src'), frame.get('dst'),
                                    frame.get('h'), frame.get('b'))
            if (not isinstance(src, str) or not isinstance(dst, str) or
                    isinstance(hops, bool) or not isinstance(hops, int) or
                    not isinstance(body, dict)):
                raise errors.InvalidMessage(
                    'a routed message needs "src" and "dst" strings, an '
                    'integer "h" and an object "b"')
            if dst == self.name:
                address = frame.get('sa')
                if isinstance(address, str) and len(address) < 300:
                    if len(self._learned_addresses) > 4096:
                        self._learned_addresses.clear()
                    self._learned_addresses[src] = address
                self.stats.messages_in += 1
                self._on_body(src, body)
                return
            if hops + 1 > self.settings.max_hops:
                self.stats.dropped_hops += 1
                LOG.warning('p2p peer %(me)s drops a message from %(src)s '
                            'to %(dst)s after %(h)d hops',
                            {'me': self.name, 'src': src, 'dst': dst,
                             'h': hops})
                return
            frame['h'] = hops + 1
            self.spawn(self._forward(frame, came_from=link.peer))
        elif kind == 'd':
            records = frame.get('r')
            if not isinstance(records, list):
                raise errors.InvalidMessage(
                    'a directory frame needs a list "r" of records')
            self._merge(records)
        elif kind == 'k':
            count, digest = frame.get('n'), frame.get('h')
            if (isinstance(count, bool) or not isinstance(count, int) or
                    not isinstance(digest, str) or len(digest) > 64):
                raise errors.InvalidMessage(
                    'a keepalive needs an integer "n" and a digest string '
                    '"h" of at most 64 characters')
            # Answered, so that a watcher hears its target even when the
            # target's view of the ring does not count the watcher in.
            if (time.monotonic() - link.last_keepalive >
                    self.settings.heartbeat_interval / 2):
                self._send_keepalive(link)
            self._compare_digest(link, (count, digest))
        else:
            raise errors.InvalidMessage(
                'frame type must be "m", "d" or "k", got %.40r' % (kind,))

    def _merge(self, records: list) -> None:
        before = self.directory.seq
        refuted = self.directory.refutations
        changed = self.directory.merge(records)
        if self.directory.refutations != refuted:
            self.stats.refuted += 1
            LOG.warning('p2p peer %s was declared dead by a watcher that '
                        'did not hear from it; it refutes that with a newer '
                        'record', self.name)
        if changed:
            self._on_directory_change()
        if self.directory.seq != before:
            self.gossip_soon()

    # -- directory gossip -------------------------------------------------

    def _send_gossip(self, link: _Link) -> None:
        records = self.directory.changes_since(link.gossip_seq)
        link.gossip_seq = self.directory.seq
        if records:
            self.stats.records_out += len(records)
            self.spawn(self._send_frame(link, {'t': 'd', 'r': records}))

    def _send_keepalive(self, link: _Link) -> None:
        link.last_keepalive = time.monotonic()
        count, digest = self.directory.digest()
        self.stats.keepalives_out += 1
        self.spawn(self._send_frame(link, {'t': 'k', 'n': count,
                                           'h': digest}))

    def _compare_digest(self, link: _Link, theirs: tuple[int, str]) -> None:
        """Send the whole directory over ``link`` if the neighbour's digest
        is not ours.

        At once on a new link (a peer that just joined learns the
        directory so, and makes itself known); on a link compared before,
        only once the difference has outlasted ``MISMATCH_ROUNDS``
        keepalives while this replica saw no change (changes in flight
        make digests differ for a moment, and while peers come and go the
        floods carry what changes), and at most once per half TTL.
        """
        mine = self.directory.digest()
        if theirs == mine:
            link.synced = True
            link.mismatches = 0
            return
        link.mismatches += 1
        now = time.monotonic()
        settled = (link.mismatches >= MISMATCH_ROUNDS and
                   now - self.directory.changed_at >=
                   MISMATCH_ROUNDS * self.settings.heartbeat_interval)
        if link.synced and (
                not settled or
                now - link.last_sync < self.settings.registration_ttl / 2):
            return
        link.synced = True
        link.mismatches = 0
        link.last_sync = now
        self.stats.full_syncs += 1
        records = self.directory.all_records()
        link.gossip_seq = self.directory.seq
        self.stats.records_out += len(records)
        self.spawn(self._send_frame(link, {'t': 'd', 'r': records}))

    async def _send_frame(self, link: _Link, frame: dict) -> None:
        try:
            await link.conn.send(frame)
        except (errors.OverlayError, OSError):
            self._drop_link(link)

    async def _gossip_round(self) -> None:
        for links in list(self._links.values()):
            if links:
                self._send_gossip(links[0])
        await asyncio.sleep(0)

    def gossip_soon(self) -> None:
        """Send changed records to the neighbours on the next loop pass."""
        if self._gossip_pending or self._stopping:
            return
        self._gossip_pending = True

        def run() -> None:
            self._gossip_pending = False
            for links in list(self._links.values()):
                if links:
                    self._send_gossip(links[0])

        asyncio.get_running_loop().call_soon(run)

    def set_subscriptions(self, subs: typing.Iterable) -> None:
        self.directory.refresh_self(subs=subs)
        self.gossip_soon()

    async def _ticker(self) -> None:
        interval = self.settings.heartbeat_interval
        loop = asyncio.get_running_loop()
        self._loop_beat = loop.time()
        monitor = loop.create_task(self._watch_own_loop())
        try:
            await self._tick_forever(interval)
        finally:
            monitor.cancel()

    async def _watch_own_loop(self) -> None:
        """Note how late this peer's loop runs: frames others sent may wait
        unread for as long, and silence heard meanwhile proves nothing."""
        loop = asyncio.get_running_loop()
        step = self.settings.heartbeat_interval / 4
        while True:
            self._loop_beat = loop.time()
            await asyncio.sleep(step)
            self._lateness.append(
                max(0.0, loop.time() - self._loop_beat - step))

    def _loop_is_late(self) -> bool:
        """Whether this peer's loop is running late now or was lately."""
        loop = asyncio.get_running_loop()
        return (loop.time() - self._loop_beat >
                self.settings.heartbeat_interval / 2)

    async def _tick_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))
            try:
                self._restore_bound()
                self.directory.expire()
                await self._gossip_round()
                ring = self.ring_neighbours()
                recent = time.monotonic() - interval / 2
                for peer, links in list(self._links.items()):
                    if (links and peer in ring and
                            links[0].last_keepalive < recent):
                        self._send_keepalive(links[0])
                self._watch()
                await self._keep_neighbours()
            except Exception:
                # The ticker must survive anything a round runs into.
                LOG.exception('p2p peer %s: directory round failed',
                              self.name)

    def ring_neighbours(self) -> set[str]:
        """The peers whose links are kept whatever the bound: the watched
        successors and the watching predecessors."""
        return set(self.directory.watch_targets(self._watch_count) +
                   self.directory.watchers(self._watch_count))

    def _watch(self) -> None:
        """Keep links to the watched successors; declare dead one not heard
        from for ``registration_ttl``."""
        now = time.monotonic()
        targets = self.directory.watch_targets(self._watch_count)
        self._watched = {node: self._watched.get(node, now)
                         for node in targets}
        self._heard = {node: heard for node, heard in self._heard.items()
                       if self.directory.is_live(node)}
        for node in targets:
            if self._link_to(node) is None and node not in self._connecting:
                # Opened past the bound if need be: ring links are what
                # keeps every peer watched and the mesh connected. In the
                # background: a black-holed address must not hold the
                # tick (and the keepalives) for connect_timeout.
                self.spawn(self._open(node))
            heard = max(self._heard.get(node, 0.0), self._watched[node])
            silent = time.monotonic() - heard
            # A peer whose own loop runs late (a starved process) has not
            # read what its targets sent meanwhile: it accuses nobody while
            # late, and waits that much longer after (Lifeguard's local
            # health).
            if self._loop_is_late() or (
                    silent <= self.settings.registration_ttl + 2 * max(
                        self._lateness, default=0.0)):
                continue
            if self.directory.declare_dead(node):
                self.stats.declared_dead += 1
                LOG.info('p2p peer %(me)s declares %(node)s dead: nothing '
                         'heard from it for %(t).1f s; its registrations '
                         'are withdrawn', {'me': self.name, 'node': node,
                                           't': silent})
                self._watched.pop(node, None)
                self._heard.pop(node, None)
                for link in list(self._links.get(node, ())):
                    self._drop_link(link)
                self._on_directory_change()
                self.gossip_soon()

    async def _keep_neighbours(self) -> None:
        wanted = min(self.settings.min_neighbours,
                     self.settings.max_connections)
        if len(self._links) >= wanted:
            return
        connected = {link.address for links in self._links.values()
                     for link in links if link.address}
        for host, port in self._seeds:
            address = '%s:%d' % (host, port)
            if address == self.address or address in connected:
                continue
            until = self._unreachable_until.get(address, 0.0)
            if until > time.monotonic():
                continue
            if await self._connect_address(host, port) is None:
                self._unreachable_until[address] = (
                    time.monotonic() + 4 * self.settings.heartbeat_interval)
            if len(self._links) >= wanted:
                return
        others = [n for n in self.directory.live_nodes()
                  if n not in self._links]
        random.shuffle(others)
        for node in others[:wanted - len(self._links)]:
            await self._open(node)
