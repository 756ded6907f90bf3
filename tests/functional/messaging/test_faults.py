"""Peers die in the middle of a run of calls, and come back.

Servers are real processes (``p2p_server.py``) killed with SIGKILL; the
client is this test process. The options are the fast ones of
``p2p_env.FAST`` (registration TTL 2 s).
"""

import threading
import time

import oslo_messaging
import pytest

from tests.functional.messaging import p2p_env

pytestmark = pytest.mark.functional

CALL_TIMEOUT = 1.5


@pytest.fixture
def cluster():
    seed = p2p_env.free_port()
    url = p2p_env.url_for(seed)
    peers: dict = {}
    transports: list = []

    def start(name: str) -> p2p_env.PeerProcess:
        peers[name] = p2p_env.PeerProcess(url, 'compute', name)
        return peers[name]

    def client():
        conf = p2p_env.make_conf()
        transport = oslo_messaging.get_rpc_transport(conf, url=url)
        transports.append(transport)
        return oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(topic='compute'),
            timeout=CALL_TIMEOUT)

    yield seed, start, client, peers
    for transport in transports:
        transport.cleanup()
    for peer in peers.values():
        peer.stop()


def _answers(client, server: str) -> bool:
    try:
        return client.prepare(server=server).call(
            {}, 'echo', value=0)['server'] == server
    except oslo_messaging.MessagingTimeout:
        return False


def _round(client, names, log) -> None:
    for name in names:
        start = time.monotonic()
        try:
            reply = client.prepare(server=name).call({}, 'echo', value=name)
            outcome = 'ok' if reply['server'] == name else 'wrong'
        except oslo_messaging.MessagingTimeout:
            outcome = 'timeout'
        log.append((name, outcome, time.monotonic() - start))
    start = time.monotonic()
    try:
        client.call({}, 'echo', value='any')
        outcome = 'ok'
    except oslo_messaging.MessagingTimeout:
        outcome = 'timeout'
    log.append(('topic', outcome, time.monotonic() - start))


def test_kill_a_server_mid_run_then_restart_it(cluster):
    seed, start, make_client, peers = cluster
    for name in ('s1', 's2', 's3'):
        start(name)
    assert peers['s1'].info['address'] == '127.0.0.1:%d' % seed
    client = make_client()
    for name in ('s1', 's2', 's3'):
        p2p_env.wait_for(lambda n=name: _answers(client, n))

    before: list = []
    for _ in range(5):
        _round(client, ('s1', 's2', 's3'), before)
    assert {o for _, o, _ in before} == {'ok'}

    peers['s2'].kill()
    after: list = []
    for _ in range(10):
        _round(client, ('s1', 's2', 's3'), after)
    for name, outcome, took in after:
        # None hangs: every call ends by its timeout (plus scheduling).
        assert took < CALL_TIMEOUT + 1.0, (name, took)
        if name == 's2':
            assert outcome == 'timeout'
        else:
            assert outcome == 'ok', (name, outcome)

    # Its registration expires everywhere (TTL 2 s); nobody else's is lost.
    directory = client.transport._driver.node._mesh.directory
    p2p_env.wait_for(lambda: not directory.nodes_for(
        ('rpc', p2p_env.EXCHANGE, 'compute', 's2')), timeout=5)
    assert all(directory.nodes_for(('rpc', p2p_env.EXCHANGE, 'compute', n))
               for n in ('s1', 's3'))

    start('s2')
    p2p_env.wait_for(lambda: _answers(client, 's2'), timeout=15)
    again: list = []
    for _ in range(5):
        _round(client, ('s1', 's2', 's3'), again)
    assert {o for _, o, _ in again} == {'ok'}


def test_kill_the_seed_others_go_on_and_it_takes_its_seat_back(cluster):
    seed, start, make_client, peers = cluster
    for name in ('s1', 's2', 's3'):
        start(name)
    client = make_client()
    for name in ('s1', 's2', 's3'):
        p2p_env.wait_for(lambda n=name: _answers(client, n))
    peers['s1'].kill()
    log: list = []
    for _ in range(6):
        _round(client, ('s2', 's3'), log)
    assert {o for n, o, _ in log} == {'ok'}, log
    restarted = start('s1')
    assert restarted.info['address'] == '127.0.0.1:%d' % seed
    p2p_env.wait_for(lambda: _answers(client, 's1'), timeout=15)


def test_call_monitor_notices_a_server_dying_mid_call(cluster):
    seed, start, make_client, peers = cluster
    start('s1')
    start('s2')
    client = make_client()
    p2p_env.wait_for(lambda: _answers(client, 's2'))
    slow = client.prepare(server='s2', timeout=60, call_monitor_timeout=2)
    outcome: list = []

    def call() -> None:
        started = time.monotonic()
        try:
            slow.call({}, 'sleep', seconds=30)
            outcome.append(('returned', time.monotonic() - started))
        except oslo_messaging.MessagingTimeout:
            outcome.append(('timeout', time.monotonic() - started))

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(2.5)
    peers['s2'].kill()
    caller.join(20)
    assert not caller.is_alive()
    kind, took = outcome[0]
    assert kind == 'timeout'
    # Heartbeats kept it alive past the 2 s monitor; the death ended it
    # about 2 s later, far before the 60 s timeout.
    assert 3.5 < took < 8.0
