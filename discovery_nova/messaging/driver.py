"""The ``p2p`` oslo.messaging driver: brokerless, authenticated, routed.

URL form::

    p2p://host1:port1,host2:port2/

The hosts are seed peers: every service process is a peer, and the first
process started on a seed host listens on that seed address (see
``[oslo_messaging_p2p] bind_seed``); the others listen where
``listen_host``/``listen_port`` say and are found through the directory
the peers keep among themselves. Options live in ``[oslo_messaging_p2p]``.

It implements oslo.messaging's private driver API (``BaseDriver``); the
compatible oslo.messaging range is pinned in ``requirements.txt`` and
``tests/unit/messaging/test_driver_api.py`` fails loudly when that API
moves.
"""

import os
import re
import socket
import ssl
import threading
import time
import uuid

from oslo_log import log as logging
from oslo_messaging import exceptions
from oslo_messaging._drivers import base
from oslo_messaging._drivers import common as rpc_common
from oslo_serialization import jsonutils

from discovery_nova.conf import messaging as messaging_conf
from discovery_nova.messaging import handoff
from discovery_nova.messaging import listener as listener_mod
from discovery_nova.messaging import mesh as mesh_mod
from discovery_nova.messaging import node as node_mod

LOG = logging.getLogger(__name__)

DEFAULT_PORT = 7490
_WILDCARDS = ('0.0.0.0', '::', '')
_NAME_CHARS = re.compile(r'[^A-Za-z0-9_.:@-]')


class P2PConfigurationError(base.TransportDriverError):
    """The driver's options or URL cannot work; the message says why."""


def _read_key(group) -> bytes:
    key = group.deployment_key
    if not key and group.deployment_key_file:
        try:
            with open(group.deployment_key_file, encoding='utf-8') as f:
                key = f.read().strip()
        except OSError as exc:
            raise P2PConfigurationError(
                '[oslo_messaging_p2p] deployment_key_file %s cannot be '
                'read: %s' % (group.deployment_key_file, exc)) from None
    if not key or len(key) < 16:
        raise P2PConfigurationError(
            '[oslo_messaging_p2p] deployment_key (or deployment_key_file) '
            'must hold a secret of at least 16 characters shared by every '
            'peer; peers without it can neither join nor send')
    return key.encode('utf-8')


def _tls_contexts(group) -> tuple[ssl.SSLContext | None,
                                  ssl.SSLContext | None]:
    if group.auth_mode != 'tls':
        return None, None
    missing = [name for name in ('ssl_ca_file', 'ssl_cert_file',
                                 'ssl_key_file') if not group[name]]
    if missing:
        raise P2PConfigurationError(
            '[oslo_messaging_p2p] auth_mode = tls needs %s'
            % ', '.join(missing))
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                            cafile=group.ssl_ca_file)
        server.load_cert_chain(group.ssl_cert_file, group.ssl_key_file)
        server.verify_mode = ssl.CERT_REQUIRED
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                            cafile=group.ssl_ca_file)
        client.load_cert_chain(group.ssl_cert_file, group.ssl_key_file)
        # Peers are addressed by IP from the directory; the deployment CA
        # signing their certificate is what identifies them.
        client.check_hostname = False
    except (OSError, ssl.SSLError) as exc:
        raise P2PConfigurationError(
            '[oslo_messaging_p2p] TLS files cannot be loaded: %s'
            % exc) from None
    return server, client


def _resolve(host: str) -> str:
    """An IP address for ``host``, resolved in the caller's world."""
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM
                                  )[0][4][0]
    except socket.gaierror as exc:
        raise P2PConfigurationError(
            'p2p peer host %r cannot be resolved: %s' % (host, exc)
        ) from None


def _seeds(url) -> list[tuple[str, int]]:
    seeds = []
    for host in url.hosts:
        if not host.hostname:
            continue
        seeds.append((_resolve(host.hostname), host.port or DEFAULT_PORT))
    if not seeds:
        raise P2PConfigurationError(
            'a p2p transport URL names at least one seed peer, as in '
            'p2p://host1:port1,host2:port2/; got %s' % (url,))
    return seeds


def _node_name() -> str:
    host = _NAME_CHARS.sub('-', socket.gethostname())[:60] or 'peer'
    return '%s:%d:%s' % (host, os.getpid(), uuid.uuid4().hex[:8])


class _Registry:
    """One node per (ConfigOpts, URL) in a process, reference counted."""

    _lock = threading.Lock()
    _nodes: dict[tuple, node_mod.Node] = {}

    @classmethod
    def acquire(cls, key: tuple, build) -> node_mod.Node:
        with cls._lock:
            node = cls._nodes.get(key)
            if node is None:
                node = build()
                node.start()
                cls._nodes[key] = node
            node.refs += 1
            return node

    @classmethod
    def release(cls, key: tuple) -> None:
        with cls._lock:
            node = cls._nodes.get(key)
            if node is None:
                return
            node.refs -= 1
            if node.refs > 0:
                return
            del cls._nodes[key]
        node.stop()


class P2PDriver(base.BaseDriver):
    """Brokerless oslo.messaging driver over authenticated peer links."""

    def __init__(self, conf, url, default_exchange=None,
                 allowed_remote_exmods=None):
        super().__init__(conf, url, default_exchange, allowed_remote_exmods)
        messaging_conf.register_opts(conf)
        group = conf.oslo_messaging_p2p
        self._group = group
        self._key = _read_key(group)
        self._ssl = _tls_contexts(group)
        self._seed_list = _seeds(url)
        self._registry_key = (id(conf), tuple(self._seed_list),
                              url.virtual_host or '')
        self._node: node_mod.Node | None = None
        self._node_lock = threading.Lock()
        self._closed = False

    # -- the shared peer ---------------------------------------------------

    def _build_node(self) -> node_mod.Node:
        group = self._group
        if group.registration_ttl <= 2 * group.heartbeat_interval:
            raise P2PConfigurationError(
                '[oslo_messaging_p2p] registration_ttl (%s) must exceed '
                'twice heartbeat_interval (%s)'
                % (group.registration_ttl, group.heartbeat_interval))
        listen_host = _resolve(group.listen_host)
        advertise = group.advertise_host
        if advertise:
            advertise = _resolve(advertise)
        elif listen_host in _WILDCARDS:
            advertise = _resolve(socket.gethostname())
        settings = mesh_mod.MeshSettings(
            name=_node_name(), key=self._key,
            max_bytes=group.max_message_bytes,
            connect_timeout=group.connect_timeout,
            idle_timeout=group.idle_timeout,
            max_connections=group.max_connections,
            min_neighbours=group.min_neighbours,
            max_hops=group.max_hops,
            heartbeat_interval=group.heartbeat_interval,
            registration_ttl=group.registration_ttl,
            server_ssl=self._ssl[0], client_ssl=self._ssl[1])
        return node_mod.Node(
            settings, self._seed_list, group.bind_seed,
            (listen_host, group.listen_port), advertise,
            group.undelivered_hold, group.notification_backlog)

    @property
    def node(self) -> node_mod.Node:
        """The process's peer for this URL, started on first use."""
        if self._node is None:
            with self._node_lock:
                if self._closed:
                    raise exceptions.MessageDeliveryFailure(
                        'this p2p transport has been cleaned up')
                if self._node is None:
                    self._node = _Registry.acquire(self._registry_key,
                                                   self._build_node)
        return self._node

    def _exchange(self, target) -> str:
        return target.exchange or self._default_exchange or ''

    def _encode(self, ctxt: dict, message: dict) -> str:
        """Serialise in the caller's thread; refuse what cannot travel."""
        payload = jsonutils.dumps({'c': ctxt, 'm': message})
        # Envelope and JSON escaping of the payload string stay well under
        # a quarter of its size for any realistic message.
        limit = self._group.max_message_bytes * 3 // 4
        if len(payload) > limit:
            raise exceptions.MessageDeliveryFailure(
                'message of %d bytes exceeds the %d bytes a p2p frame can '
                'carry ([oslo_messaging_p2p] max_message_bytes = %d)'
                % (len(payload), limit, self._group.max_message_bytes))
        return payload

    # -- BaseDriver ----------------------------------------------------------

    def require_features(self, requeue=False):
        """Requeue is supported: the message is routed again."""

    def send(self, target, ctxt, message, wait_for_reply=None, timeout=None,
             call_monitor_timeout=None, retry=None, transport_options=None):
        node = self.node
        payload = self._encode(ctxt, message)
        deadline = None if timeout is None else time.monotonic() + timeout
        body = {'k': 'q', 'x': self._exchange(target), 'tp': target.topic,
                's': target.server, 'f': bool(target.fanout), 'p': payload,
                'id': None, 'cm': None}
        if not wait_for_reply:
            node.post_rpc(body, deadline)
            return None
        msg_id = uuid.uuid4().hex
        body['id'] = msg_id
        body['cm'] = call_monitor_timeout
        waiter = node.add_waiter(msg_id)
        try:
            node.post_rpc(body, deadline if deadline is not None
                          else float('inf'))
            return self._wait(waiter, msg_id, target, deadline,
                              call_monitor_timeout)
        finally:
            node.remove_waiter(msg_id)

    def _wait(self, waiter: handoff.CrossQueue, msg_id: str, target,
              deadline: float | None, call_monitor_timeout: float | None):
        monitor = (None if not call_monitor_timeout
                   else time.monotonic() + call_monitor_timeout)
        while True:
            limits = [t for t in (deadline, monitor) if t is not None]
            wait = (None if not limits
                    else max(0.0, min(limits) - time.monotonic()))
            try:
                reply = waiter.get(wait)
            except handoff.Empty:
                what = ('call-monitor heartbeat' if monitor is not None and
                        (deadline is None or monitor < deadline) else
                        'reply')
                raise exceptions.MessagingTimeout(
                    'Timed out waiting for a %s to message ID %s on topic '
                    '%s (server %s)' % (what, msg_id, target.topic,
                                        target.server)) from None
            if not reply['end']:
                if call_monitor_timeout:
                    monitor = time.monotonic() + call_monitor_timeout
                continue
            if reply['fail']:
                raise rpc_common.deserialize_remote_exception(
                    reply['fail'], self._allowed_remote_exmods)
            return (None if reply['p'] is None
                    else jsonutils.loads(reply['p']))

    def send_notification(self, target, ctxt, message, version, retry=None):
        payload = self._encode(ctxt, message)
        self.node.post_notification({'k': 'n', 'x': self._exchange(target),
                                     'tp': target.topic, 'pool': '',
                                     'p': payload})

    def listen(self, target, batch_size, batch_timeout):
        exchange = self._exchange(target)
        keys = [('rpc', exchange, target.topic, '')]
        if target.server:
            keys.append(('rpc', exchange, target.topic, target.server))
        listener = listener_mod.P2PListener(self.node, keys,
                                            notifications=False)
        return base.PollStyleListenerAdapter(listener, batch_size,
                                             batch_timeout)

    def listen_for_notifications(self, targets_and_priorities, pool,
                                 batch_size, batch_timeout):
        keys = [('notify', self._exchange(target),
                 '%s.%s' % (target.topic, priority), pool or '')
                for target, priority in targets_and_priorities]
        listener = listener_mod.P2PListener(self.node, keys,
                                            notifications=True)
        return base.PollStyleListenerAdapter(listener, batch_size,
                                             batch_timeout)

    def cleanup(self):
        with self._node_lock:
            self._closed = True
            if self._node is not None:
                self._node = None
                _Registry.release(self._registry_key)
