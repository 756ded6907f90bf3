"""One peer per process and transport URL: the loop thread and routing.

All drivers of a process built on the same ``ConfigOpts`` and URL share one
``Node`` (Nova makes an RPC and a notification transport from one URL). The
node owns a native thread running an asyncio loop with the ``PeerMesh``;
callers (native threads or eventlet greenthreads) reach it only through
``call_soon_threadsafe`` and ``handoff.CrossQueue``.

Bodies routed between peers (inside mesh frames of type ``m``):

* ``{'k': 'q', 'x': exchange, 'tp': topic, 's': server, 'f': fanout,
  'p': json, 'id': msg_id | None, 'cm': call-monitor timeout | None}``;
* ``{'k': 'r', 'id': msg_id, 'p': json | None, 'fail': str | None,
  'end': bool}``: a reply, or a call-monitor heartbeat when not ``end``;
* ``{'k': 'n', 'x': exchange, 'tp': topic, 'pool': pool, 'p': json}``.

``p`` is the oslo.messaging payload already serialised with
``oslo_serialization.jsonutils`` by the caller's thread, so the loop thread
never converts application objects.
"""

import asyncio
import collections
import dataclasses
import itertools
import time
import typing

from discovery_nova.messaging import handoff
from discovery_nova.messaging import looplog
from discovery_nova.messaging import mesh as mesh_mod
from discovery_nova.overlay import errors

# Used from the loop thread: see looplog for why not a plain logger.
LOG = looplog.LoopLogger(__name__)

Key = tuple[str, str, str, str]


class Sink(typing.Protocol):
    """What a listener offers the node: called in the loop thread."""

    def deliver(self, src: str, body: dict) -> None:
        """Take one message ``body`` that peer ``src`` sent to this sink."""


@dataclasses.dataclass
class NodeStats:
    """Counters of routing: what waited, expired, or was refused."""

    held: int = 0
    expired_undelivered: int = 0
    backlog_dropped: int = 0
    invalid_bodies: int = 0
    orphan_replies: int = 0


class _Held:
    """A message nobody could take yet, retried until its deadline."""

    __slots__ = ('deadline', 'retry')

    def __init__(self, deadline: float,
                 retry: typing.Callable[[], typing.Awaitable[bool]]):
        self.deadline = deadline
        self.retry = retry


def _str_field(body: dict, name: str, optional: bool = False) -> str | None:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise errors.InvalidMessage(
            'message field %r must be a string, got %.80r' % (name, value))
    return value


class Node:
    """This process's peer for one transport URL."""

    def __init__(self, settings: mesh_mod.MeshSettings,
                 seeds: list[tuple[str, int]], bind_seed: bool,
                 listen: tuple[str, int], advertise_host: str | None,
                 undelivered_hold: float, notification_backlog: int) -> None:
        self.name = settings.name
        self.stats = NodeStats()
        self._settings = settings
        self._undelivered_hold = undelivered_hold
        self._backlog_size = notification_backlog
        self._mesh = mesh_mod.PeerMesh(
            settings, seeds, bind_seed, listen, advertise_host,
            self._on_body, self._on_directory_change)
        self._sinks: dict[Key, list[Sink]] = {}
        self._waiters: dict[str, handoff.CrossQueue] = {}
        self._rr = collections.defaultdict(itertools.count)
        self._held: list[_Held] = []
        #: Sends waiting in tasks (loop thread): while any does, a new
        #: message waits its turn in a task too instead of overtaking.
        self._sending = 0
        self._backlog: dict[tuple[str, str], collections.deque] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = None
        self._retry_task: asyncio.Task | None = None
        self.refs = 0

    # -- life cycle (caller threads) --------------------------------------

    def start(self) -> None:
        looplog.start_drain()
        started = handoff.CrossQueue()
        threading = handoff.native_module('threading')
        self._thread = threading.Thread(
            target=self._run, args=(started,),
            name='p2p-%s' % self.name, daemon=True)
        self._thread.start()
        outcome = started.get()
        if isinstance(outcome, BaseException):
            self._thread.join()
            raise outcome

    def _run(self, started: handoff.CrossQueue) -> None:
        loop = asyncio.SelectorEventLoop(handoff.native_selector())
        asyncio.set_event_loop(loop)
        # asyncio's own reports go through the loop-safe logger too.
        loop.set_exception_handler(
            lambda _loop, context: LOG.error(
                'p2p peer %(me)s: %(what)s',
                {'me': self.name, 'what': context.get('exception') or
                 context.get('message')}))
        try:
            loop.run_until_complete(self._mesh.start())
        except BaseException as exc:
            loop.close()
            started.put(exc)
            return
        self._loop = loop
        self._retry_task = loop.create_task(self._retry_held())
        started.put(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        """Leave the deployment and stop the loop thread (blocks)."""
        if self._loop is None:
            return

        async def shutdown() -> None:
            if self._retry_task is not None:
                self._retry_task.cancel()
                await asyncio.gather(self._retry_task,
                                     return_exceptions=True)
            await self._mesh.stop()

        try:
            self.run_in_loop(shutdown(), timeout=5.0)
        except handoff.Empty:
            LOG.warning('p2p peer %s did not stop within 5 s', self.name)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._loop = None

    def run_in_loop(self, coro, timeout: float | None = None):
        """Run ``coro`` in the loop thread; block this caller for it."""
        done = handoff.CrossQueue()

        async def runner() -> None:
            try:
                done.put((True, await coro))
            except Exception as exc:
                done.put((False, exc))

        self._loop.call_soon_threadsafe(
            lambda: self._loop.create_task(runner()))
        ok, value = done.get(timeout)
        if not ok:
            raise value
        return value

    def call_in_loop(self, fn: typing.Callable, *args) -> None:
        """Schedule ``fn(*args)`` in the loop thread, without waiting."""
        self._loop.call_soon_threadsafe(fn, *args)

    # -- subscriptions (caller threads, applied in the loop) ---------------

    def subscribe(self, keys: typing.Iterable[Key], sink: Sink) -> None:
        keys = list(keys)

        async def apply() -> None:
            for key in keys:
                self._sinks.setdefault(key, []).append(sink)
            self._mesh.set_subscriptions(self._sinks.keys())
            self._flush_backlog()

        self.run_in_loop(apply(), timeout=10.0)

    def unsubscribe(self, sink: Sink) -> None:
        async def apply() -> None:
            for key in list(self._sinks):
                sinks = [s for s in self._sinks[key] if s is not sink]
                if sinks:
                    self._sinks[key] = sinks
                else:
                    del self._sinks[key]
            self._mesh.set_subscriptions(self._sinks.keys())

        if self._loop is not None:
            self.run_in_loop(apply(), timeout=10.0)

    def add_waiter(self, msg_id: str) -> handoff.CrossQueue:
        waiter = handoff.CrossQueue()
        self._waiters[msg_id] = waiter
        return waiter

    def remove_waiter(self, msg_id: str) -> None:
        self._waiters.pop(msg_id, None)

    # -- sending (scheduled from caller threads) ---------------------------

    def post_rpc(self, body: dict, deadline: float | None) -> None:
        if deadline is None:
            deadline = time.monotonic() + self._undelivered_hold
        self._loop.call_soon_threadsafe(self._route_rpc, body, deadline)

    def post_reply(self, dst: str, body: dict) -> None:
        self._loop.call_soon_threadsafe(self._route_reply, dst, body)

    def post_notification(self, body: dict) -> None:
        self._loop.call_soon_threadsafe(self._route_notification, body)

    def stats_snapshot(self) -> dict:
        """Counters of the node, its mesh and its framing layer."""
        snapshot = dataclasses.asdict(self.stats)
        snapshot.update(dataclasses.asdict(self._mesh.stats))
        snapshot.update({'wire_' + k: v for k, v in
                         self._mesh.wire_stats.as_dict().items()})
        snapshot['connections'] = self._mesh.link_count()
        snapshot['address'] = self._mesh.address
        return snapshot

    @property
    def address(self) -> str:
        return self._mesh.address

    # -- routing (loop thread) ---------------------------------------------

    def _spawn(self, coro) -> None:
        self._mesh.spawn(coro)

    def _candidates(self, key: Key, shared: bool) -> list[str]:
        nodes = self._mesh.directory.nodes_for(key)
        if shared and len(nodes) > 1:
            nodes.sort()
            start = next(self._rr[key]) % len(nodes)
            nodes = nodes[start:] + nodes[:start]
        return nodes

    def _route_rpc(self, body: dict, deadline: float) -> None:
        exchange, topic, server = body['x'], body['tp'], body['s']
        if body['f']:
            for node in self._candidates(('rpc', exchange, topic, ''),
                                         shared=False):
                if node == self.name:
                    self._on_body(self.name, body)
                else:
                    self._send(node, body)
            return
        key = ('rpc', exchange, topic, server or '')
        self._route_one(key, body, deadline)

    def _send_now(self, node: str, body: dict) -> bool | None:
        """``PeerMesh.deliver_now`` while no message waits in a task, so
        that messages leave in the order they were routed."""
        if self._sending:
            return None
        return self._mesh.deliver_now(node, body)

    def _spawn_send(self, coro) -> None:
        """Run a sending coroutine in a task, counted in ``_sending``."""
        self._sending += 1
        self._mesh.spawn(coro).add_done_callback(self._sent)

    def _sent(self, task) -> None:
        self._sending -= 1

    def _send(self, node: str, body: dict) -> None:
        """Send ``body`` to peer ``node``: at once if its link is idle,
        else in a task of its own."""
        if self._send_now(node, body) is None:
            self._spawn_send(self._mesh.deliver(node, body))

    def _route_one(self, key: Key, body: dict, deadline: float) -> None:
        """Hand ``body`` to one subscriber of ``key``: at once when the
        first in turn is here or has an idle link (most messages), else
        in a task that tries each in turn and holds it if none takes it."""
        nodes = self._candidates(key, shared=True)
        if nodes and not self._sending:
            if nodes[0] == self.name:
                if self._deliver_local(key, body):
                    return
            elif self._send_now(nodes[0], body):
                return
        self._spawn_send(self._deliver_one(key, body, deadline, nodes))

    async def _deliver_one(self, key: Key, body: dict, deadline: float,
                           nodes: list[str] | None = None) -> bool:
        """Hand ``body`` to one subscriber of ``key``; hold it otherwise.

        ``nodes``: the candidates in turn for the first try, if already
        taken (taking them advances the turn)."""
        if await self._try_one(key, body, nodes):
            return True
        self.stats.held += 1

        async def retry() -> bool:
            return await self._try_one(key, body)

        self._held.append(_Held(deadline, retry))
        return False

    async def _try_one(self, key: Key, body: dict,
                       nodes: list[str] | None = None) -> bool:
        if nodes is None:
            nodes = self._candidates(key, shared=True)
        for node in nodes:
            if node == self.name:
                if self._deliver_local(key, body):
                    return True
                continue
            if await self._mesh.deliver(node, body):
                return True
        return False

    def _route_reply(self, dst: str, body: dict) -> None:
        if dst == self.name:
            self._on_body(dst, body)
        else:
            self._send(dst, body)

    def _route_notification(self, body: dict) -> None:
        pools = self._mesh.directory.qualifiers('notify', body['x'],
                                                body['tp'])
        if not pools:
            self._keep_in_backlog(body)
            return
        for pool in pools:
            pooled = dict(body, pool=pool)
            key = ('notify', body['x'], body['tp'], pool)
            self._spawn(self._deliver_one(
                key, pooled, time.monotonic() + self._undelivered_hold))

    def requeue_notification(self, body: dict) -> None:
        """Give a notification back to its pool (loop thread)."""
        key = ('notify', body['x'], body['tp'], body['pool'])
        self._spawn(self._deliver_one(
            key, body, time.monotonic() + self._undelivered_hold))

    def _keep_in_backlog(self, body: dict) -> None:
        if self._backlog_size == 0:
            self.stats.backlog_dropped += 1
            return
        queue = self._backlog.setdefault(
            (body['x'], body['tp']),
            collections.deque(maxlen=self._backlog_size))
        if len(queue) == queue.maxlen:
            self.stats.backlog_dropped += 1
        queue.append(body)

    def _flush_backlog(self) -> None:
        directory = self._mesh.directory
        for (exchange, topic) in list(self._backlog):
            if directory.qualifiers('notify', exchange, topic):
                for body in self._backlog.pop((exchange, topic)):
                    self._route_notification(body)

    def _on_directory_change(self) -> None:
        self._flush_backlog()
        if self._held:
            self._spawn(self._retry_held_once())

    async def _retry_held_once(self) -> None:
        held, self._held = self._held, []
        now = time.monotonic()
        for item in held:
            if item.deadline < now:
                self.stats.expired_undelivered += 1
                continue
            if not await item.retry():
                self._held.append(item)

    async def _retry_held(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval / 2)
            try:
                await self._retry_held_once()
            except Exception:
                LOG.exception('p2p peer %s: retrying held messages failed',
                              self.name)

    # -- receiving (loop thread) ---------------------------------------------

    def _deliver_local(self, key: Key, body: dict) -> bool:
        sinks = self._sinks.get(key)
        if not sinks:
            return False
        sink = sinks[next(self._rr[('local',) + key]) % len(sinks)]
        sink.deliver(self.name, body)
        return True

    def _on_body(self, src: str, body: dict) -> None:
        try:
            kind = body.get('k')
            if kind == 'r':
                self._on_reply(body)
            elif kind == 'q':
                self._on_request(src, body)
            elif kind == 'n':
                self._on_notification(src, body)
            else:
                raise errors.InvalidMessage(
                    'message kind must be "q", "r" or "n", got %.40r'
                    % (kind,))
        except errors.InvalidMessage as exc:
            self.stats.invalid_bodies += 1
            LOG.warning('p2p peer %(me)s drops a message from %(src)s: '
                        '%(err)s', {'me': self.name, 'src': src, 'err': exc})

    def _on_reply(self, body: dict) -> None:
        msg_id = _str_field(body, 'id')
        _str_field(body, 'p', optional=True)
        _str_field(body, 'fail', optional=True)
        if not isinstance(body.get('end'), bool):
            raise errors.InvalidMessage('a reply needs a boolean "end"')
        waiter = self._waiters.get(msg_id)
        if waiter is None:
            self.stats.orphan_replies += 1
            LOG.debug('p2p reply %s arrived after its caller gave up',
                      msg_id)
            return
        waiter.put(body)

    def _on_request(self, src: str, body: dict) -> None:
        exchange = _str_field(body, 'x')
        topic = _str_field(body, 'tp')
        server = _str_field(body, 's', optional=True)
        _str_field(body, 'p')
        _str_field(body, 'id', optional=True)
        cm = body.get('cm')
        if cm is not None and (isinstance(cm, bool) or
                               not isinstance(cm, (int, float))):
            raise errors.InvalidMessage(
                'call-monitor timeout "cm" must be a number or null')
        if not isinstance(body.get('f'), bool):
            raise errors.InvalidMessage('a request needs a boolean "f"')
        if body['f']:
            seen: set[int] = set()
            for sink in self._sinks.get(('rpc', exchange, topic, ''), ()):
                if id(sink) not in seen:
                    seen.add(id(sink))
                    sink.deliver(src, body)
            return
        key = ('rpc', exchange, topic, server or '')
        sinks = self._sinks.get(key)
        if not sinks:
            LOG.warning('p2p peer %(me)s has no listener for %(key)s any '
                        'more; message from %(src)s dropped',
                        {'me': self.name, 'key': key, 'src': src})
            return
        sinks[next(self._rr[('local',) + key]) % len(sinks)].deliver(
            src, body)

    def _on_notification(self, src: str, body: dict) -> None:
        exchange = _str_field(body, 'x')
        topic = _str_field(body, 'tp')
        pool = _str_field(body, 'pool')
        _str_field(body, 'p')
        key = ('notify', exchange, topic, pool)
        if not self._deliver_local(key, body):
            # The listener left while the notification travelled: another
            # member of the same pool gets it if there is one in time.
            self._spawn(self._deliver_one(
                key, body, time.monotonic() + self._undelivered_hold))
