"""The oslo.messaging contract Nova relies on, over real sockets.

Every peer here has its own ``ConfigOpts`` and so its own node, port and
asyncio thread; they talk through TCP on 127.0.0.1 exactly as separate
processes do (``test_faults`` and the eventlet tests use real processes).
"""

import os
import subprocess
import sys
import threading
import time

import oslo_messaging
import pytest

from tests.functional.messaging import p2p_env

pytestmark = pytest.mark.functional


class Echo:
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list = []
        self.lock = threading.Lock()

    def echo(self, ctxt, value):
        return {'server': self.name, 'value': value,
                'user': ctxt.get('user')}

    def note(self, ctxt, value):
        with self.lock:
            self.seen.append(value)

    def fail(self, ctxt, kind):
        if kind == 'value':
            raise ValueError('value was wrong on %s' % self.name)
        if kind == 'expected':
            raise oslo_messaging.ExpectedException()
        raise p2p_env.PeerRefused('refused by %s' % self.name)

    def sleep(self, ctxt, seconds):
        time.sleep(seconds)
        return seconds


class Deployment:
    """Peers of one test, each with its own ConfigOpts; cleaned up after."""

    def __init__(self) -> None:
        self.seed = p2p_env.free_port()
        self.url = p2p_env.url_for(self.seed)
        self.transports: list = []
        self.servers: list = []

    def transport(self, key: str = p2p_env.KEY, **overrides):
        conf = p2p_env.make_conf(key=key, **overrides)
        transport = oslo_messaging.get_rpc_transport(
            conf, url=self.url,
            allowed_remote_exmods=['tests.functional.messaging.p2p_env'])
        self.transports.append(transport)
        return transport

    def notification_transport(self, **overrides):
        conf = p2p_env.make_conf(**overrides)
        transport = oslo_messaging.get_notification_transport(
            conf, url=self.url)
        self.transports.append(transport)
        return transport

    def server(self, topic: str, name: str, exchange: str | None = None,
               endpoint=None):
        endpoint = endpoint or Echo(name)
        transport = self.transport()
        server = oslo_messaging.get_rpc_server(
            transport, oslo_messaging.Target(topic=topic, server=name,
                                             exchange=exchange),
            [endpoint], executor='threading')
        server.start()
        self.servers.append(server)
        return endpoint, transport

    def client(self, topic: str, timeout: float = 5.0, **target):
        transport = self.transport()
        return oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic=topic, **target),
            timeout=timeout)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
            server.wait()
        for transport in self.transports:
            transport.cleanup()


@pytest.fixture
def deployment():
    dep = Deployment()
    yield dep
    dep.close()


def test_call_returns_the_reply_and_carries_the_context(deployment):
    deployment.server('compute', 'host1')
    client = deployment.client('compute')
    reply = client.call({'user': 'alice'}, 'echo', value=[1, 'two'])
    assert reply == {'server': 'host1', 'value': [1, 'two'],
                     'user': 'alice'}


def test_call_to_nobody_times_out(deployment):
    deployment.server('compute', 'host1')
    client = deployment.client('compute', timeout=0.5, server='nohost')
    start = time.monotonic()
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.call({}, 'echo', value=1)
    assert 0.4 < time.monotonic() - start < 3.0


def test_call_monitor_heartbeats_keep_a_long_call_alive(deployment):
    deployment.server('compute', 'host1')
    client = deployment.client('compute', timeout=20).prepare(
        call_monitor_timeout=2)
    start = time.monotonic()
    assert client.call({}, 'sleep', seconds=4.5) == 4.5
    assert time.monotonic() - start >= 4.5


def test_cast_is_delivered(deployment):
    endpoint, _ = deployment.server('compute', 'host1')
    client = deployment.client('compute')
    for i in range(20):
        client.cast({}, 'note', value=i)
    p2p_env.wait_for(lambda: len(endpoint.seen) == 20)
    assert sorted(endpoint.seen) == list(range(20))


def test_fanout_reaches_every_server_once(deployment):
    endpoints = [deployment.server('scheduler', 'h%d' % i)[0]
                 for i in range(3)]
    client = deployment.client('scheduler', fanout=True)
    p2p_env.wait_for(lambda: all(
        len(client.transport._driver.node._mesh.directory.nodes_for(
            ('rpc', p2p_env.EXCHANGE, 'scheduler', 'h%d' % i))) == 1
        for i in range(3)))
    client.cast({}, 'note', value='update')
    for endpoint in endpoints:
        p2p_env.wait_for(lambda e=endpoint: e.seen == ['update'])
    time.sleep(0.3)
    assert all(e.seen == ['update'] for e in endpoints)


def test_server_specific_target_reaches_only_that_server(deployment):
    for i in range(3):
        deployment.server('compute', 'host%d' % i)
    client = deployment.client('compute')
    for i in range(3):
        for _ in range(5):
            reply = client.prepare(server='host%d' % i).call(
                {}, 'echo', value=i)
            assert reply['server'] == 'host%d' % i


def test_servers_on_one_topic_share_the_load(deployment):
    for i in range(3):
        deployment.server('conductor', 'c%d' % i)
    client = deployment.client('conductor')
    p2p_env.wait_for(lambda: len(
        client.transport._driver.node._mesh.directory.nodes_for(
            ('rpc', p2p_env.EXCHANGE, 'conductor', ''))) == 3)
    counts: dict = {}
    for i in range(60):
        server = client.call({}, 'echo', value=i)['server']
        counts[server] = counts.get(server, 0) + 1
    assert sorted(counts) == ['c0', 'c1', 'c2']
    assert min(counts.values()) >= 10


def test_exchanges_are_separate(deployment):
    deployment.server('compute', 'host1', exchange='nova')
    nova = deployment.client('compute', exchange='nova')
    other = deployment.client('compute', exchange='cinder', timeout=0.5)
    assert nova.call({}, 'echo', value=1)['server'] == 'host1'
    with pytest.raises(oslo_messaging.MessagingTimeout):
        other.call({}, 'echo', value=1)


def test_remote_exceptions_keep_their_type(deployment):
    deployment.server('compute', 'host1')
    client = deployment.client('compute')
    with pytest.raises(ValueError, match='value was wrong on host1'):
        client.call({}, 'fail', kind='value')
    with pytest.raises(p2p_env.PeerRefused, match='refused by host1'):
        client.call({}, 'fail', kind='refused')


def test_exceptions_of_modules_not_allowed_become_remote_error(deployment):
    deployment.server('compute', 'host1')
    conf = p2p_env.make_conf()
    transport = oslo_messaging.get_rpc_transport(conf, url=deployment.url)
    deployment.transports.append(transport)
    client = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(topic='compute'), timeout=5)
    with pytest.raises(oslo_messaging.RemoteError) as info:
        client.call({}, 'fail', kind='refused')
    assert info.value.exc_type == 'PeerRefused'


def test_many_concurrent_calls_from_threads(deployment):
    deployment.server('compute', 'host1')
    client = deployment.client('compute')
    errors: list = []
    results: list = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                results.append(client.call({}, 'echo', value=(n, i)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(tuple(r['value']) for r in results) == sorted(
        (n, i) for n in range(10) for i in range(50))


class Collector:
    def __init__(self) -> None:
        self.events: list = []
        self.batches: list = []
        self.lock = threading.Lock()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        with self.lock:
            self.events.append(payload['n'])


class BatchCollector:
    def __init__(self) -> None:
        self.batches: list = []

    def info(self, messages):
        self.batches.append([m['payload']['n'] for m in messages])


def _listener(deployment, endpoint, pool=None, batch=None):
    transport = deployment.notification_transport()
    targets = [oslo_messaging.Target(topic='versioned_notifications')]
    if batch:
        listener = oslo_messaging.get_batch_notification_listener(
            transport, targets, [endpoint], executor='threading',
            pool=pool, batch_size=batch, batch_timeout=1)
    else:
        listener = oslo_messaging.get_notification_listener(
            transport, targets, [endpoint], executor='threading', pool=pool)
    listener.start()
    deployment.servers.append(listener)
    return listener


def _notifier(deployment):
    transport = deployment.notification_transport()
    return oslo_messaging.Notifier(transport, publisher_id='compute.host1',
                                   driver='messagingv2',
                                   topics=['versioned_notifications'])


def _subscribed(notifier, pools: set) -> bool:
    directory = notifier.transport._driver.node._mesh.directory
    return directory.qualifiers('notify', p2p_env.EXCHANGE,
                                'versioned_notifications.info') == pools


def test_notification_pools_each_get_one_copy(deployment):
    a1, a2, b, default = Collector(), Collector(), Collector(), Collector()
    _listener(deployment, a1, pool='a')
    _listener(deployment, a2, pool='a')
    _listener(deployment, b, pool='b')
    _listener(deployment, default)
    notifier = _notifier(deployment)
    p2p_env.wait_for(lambda: _subscribed(notifier, {'a', 'b', ''}))
    for n in range(40):
        notifier.info({}, 'instance.create.end', {'n': n})
    p2p_env.wait_for(lambda: len(a1.events) + len(a2.events) == 40 and
                     len(b.events) == 40 and len(default.events) == 40)
    assert sorted(a1.events + a2.events) == list(range(40))
    assert a1.events and a2.events
    assert sorted(b.events) == list(range(40))


def test_batch_notification_listener_gets_batches(deployment):
    collector = BatchCollector()
    _listener(deployment, collector, batch=10)
    notifier = _notifier(deployment)
    p2p_env.wait_for(lambda: _subscribed(notifier, {''}))
    for n in range(30):
        notifier.info({}, 'instance.update', {'n': n})
    p2p_env.wait_for(lambda: sum(map(len, collector.batches)) == 30)
    assert max(map(len, collector.batches)) > 1
    assert sorted(n for b in collector.batches for n in b) == list(range(30))


def test_notifications_wait_for_a_listener(deployment):
    notifier = _notifier(deployment)
    for n in range(5):
        notifier.info({}, 'instance.update', {'n': n})
    collector = Collector()
    _listener(deployment, collector)
    p2p_env.wait_for(lambda: len(collector.events) == 5)
    assert sorted(collector.events) == list(range(5))


def test_cleanup_stops_the_peer_and_withdraws_its_registrations(deployment):
    endpoint, transport = deployment.server('compute', 'leaving')
    client = deployment.client('compute')
    assert client.call({}, 'echo', value=1)['server'] == 'leaving'
    node = transport._driver.node
    directory = client.transport._driver.node._mesh.directory
    server = deployment.servers.pop()
    server.stop()
    server.wait()
    transport.cleanup()
    deployment.transports.remove(transport)
    # The goodbye record removes it at once, well before the TTL.
    p2p_env.wait_for(lambda: not directory.nodes_for(
        ('rpc', p2p_env.EXCHANGE, 'compute', 'leaving')), timeout=1.0)
    assert not node._thread.is_alive()
    host, port = node.address.split(':')
    with pytest.raises(OSError):
        import socket
        socket.create_connection((host, int(port)), timeout=1).close()


def test_eventlet_executor_server_in_a_monkey_patched_process(deployment):
    peer = p2p_env.PeerProcess(deployment.url, 'compute', 'green1',
                               executor='eventlet')
    try:
        client = deployment.client('compute', timeout=10,
                                   server='green1')
        assert client.call({}, 'green') is True
        assert client.call({}, 'echo', value=3)['server'] == 'green1'
        slow = client.prepare(timeout=20, call_monitor_timeout=2)
        results: list = []
        threads = [threading.Thread(
            target=lambda: results.append(slow.call({}, 'sleep',
                                                    seconds=3)))
            for _ in range(5)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # Five 3-second calls overlap in greenthreads: not 15 s.
        assert results == [3] * 5
        assert time.monotonic() - start < 9
        with pytest.raises(p2p_env.PeerRefused):
            client.call({}, 'fail', kind='refused')
    finally:
        peer.stop()


GREEN_CLIENT = r'''
import eventlet
eventlet.monkey_patch()
import faulthandler
import sys
faulthandler.dump_traceback_later(40, exit=True)
sys.path.insert(0, %(root)r)
import oslo_messaging
from tests.functional.messaging import p2p_env
conf = p2p_env.make_conf()
transport = oslo_messaging.get_rpc_transport(conf, url=%(url)r)
client = oslo_messaging.get_rpc_client(
    transport, oslo_messaging.Target(topic='compute'), timeout=10)
pool = eventlet.GreenPool(10)
results = list(pool.imap(lambda i: client.call({}, 'echo', value=i)['value'],
                         range(200)))
assert results == list(range(200)), results
try:
    client.prepare(server='nobody', timeout=0.5).call({}, 'echo', value=0)
except oslo_messaging.MessagingTimeout:
    print('timeout ok')
transport.cleanup()
print('green client ok')
'''


def test_client_in_a_monkey_patched_process(deployment):
    deployment.server('compute', 'host1')
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    out = subprocess.run(
        [sys.executable, '-c', GREEN_CLIENT % {'root': root,
                                               'url': deployment.url}],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'timeout ok' in out.stdout
    assert 'green client ok' in out.stdout


def test_oversized_message_fails_at_once_with_a_clear_error(deployment):
    deployment.server('compute', 'host1')
    transport = deployment.transport(max_message_bytes=4096)
    client = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(topic='compute'), timeout=5)
    with pytest.raises(oslo_messaging.MessageDeliveryFailure,
                       match='max_message_bytes'):
        client.call({}, 'echo', value='x' * 8192)
    assert client.call({}, 'echo', value='small')['value'] == 'small'


def test_requeued_notification_goes_back_to_its_pool(deployment):
    class Flaky:
        def __init__(self) -> None:
            self.attempts = 0
            self.done: list = []

        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            self.attempts += 1
            if self.attempts == 1:
                return oslo_messaging.NotificationResult.REQUEUE
            self.done.append(payload['n'])
            return oslo_messaging.NotificationResult.HANDLED

    flaky = Flaky()
    transport = deployment.notification_transport()
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic='versioned_notifications')],
        [flaky], executor='threading', allow_requeue=True)
    listener.start()
    deployment.servers.append(listener)
    notifier = _notifier(deployment)
    p2p_env.wait_for(lambda: _subscribed(notifier, {''}))
    notifier.info({}, 'instance.update', {'n': 7})
    p2p_env.wait_for(lambda: flaky.done == [7])
    assert flaky.attempts == 2
