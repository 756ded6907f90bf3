"""Peers without credentials can neither join nor inject; bad input is
refused and counted while the peer keeps serving.

All against the real driver on 127.0.0.1; the raw attacks use plain
sockets, the authenticated-but-broken peer uses the overlay's wire layer.
"""

import asyncio
import json
import os
import socket
import struct
import subprocess
import time

import oslo_messaging
import pytest

from discovery_nova.overlay import wire
from tests.functional.messaging import p2p_env
from tests.functional.messaging.test_contract import Deployment

pytestmark = pytest.mark.functional


@pytest.fixture
def deployment():
    dep = Deployment()
    yield dep
    dep.close()


def _stats(transport) -> dict:
    return transport._driver.node.stats_snapshot()


def _serving(deployment) -> tuple:
    endpoint, server_transport = deployment.server('compute', 'host1')
    client = deployment.client('compute', timeout=5)
    assert client.call({}, 'echo', value=0)['server'] == 'host1'
    return server_transport, client


def _seed_address(deployment) -> tuple[str, int]:
    return '127.0.0.1', deployment.seed


def test_peer_with_a_wrong_key_can_neither_join_nor_call(deployment):
    server_transport, client = _serving(deployment)
    intruder = deployment.transport(key='not-the-deployment-key-42')
    evil = oslo_messaging.get_rpc_server(
        intruder, oslo_messaging.Target(topic='compute', server='evil'),
        [object()], executor='threading')
    evil.start()
    deployment.servers.append(evil)
    intruder_client = oslo_messaging.get_rpc_client(
        intruder, oslo_messaging.Target(topic='compute', server='host1'),
        timeout=1)
    with pytest.raises(oslo_messaging.MessagingTimeout):
        intruder_client.call({}, 'echo', value=1)
    assert _stats(server_transport)['handshake_rejected'] >= 1
    assert _stats(intruder)['connect_failed'] >= 1
    # Its registration never reached the deployment.
    directory = client.transport._driver.node._mesh.directory
    assert intruder._driver.node.name not in directory.live_nodes()
    with pytest.raises(oslo_messaging.MessagingTimeout):
        client.prepare(server='evil', timeout=1).call({}, 'echo', value=1)
    assert client.call({}, 'echo', value=2)['value'] == 2


def _raw(address, data: bytes, linger: float = 0.0) -> bytes:
    """Send ``data`` on a fresh socket; return what came back until EOF."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(data)
        time.sleep(linger)
        chunks = []
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        return b''.join(chunks)


def test_garbage_oversize_and_half_open_are_refused_and_counted(deployment):
    server_transport, client = _serving(deployment)
    # The seed is the first peer started: the server.
    seed = _seed_address(deployment)
    seed_node = server_transport._driver.node
    assert seed_node.address == '%s:%d' % seed
    before = _stats(server_transport)

    _raw(seed, os.urandom(64))
    _raw(seed, struct.pack('>I', 16) + b'\xff\xfe not json at all')
    _raw(seed, struct.pack('>I', 1 << 30) + b'x' * 16)
    half_open = socket.create_connection(seed, timeout=5)
    try:
        # Says nothing: closed after connect_timeout (1 s here).
        assert half_open.recv(10) == b''
    finally:
        half_open.close()

    after = p2p_env.wait_for(
        lambda: (lambda s: s if s['handshake_rejected'] >=
                 before['handshake_rejected'] + 4 else None)(
            _stats(server_transport)))
    assert after['wire_rejected_oversize'] > before['wire_rejected_oversize']
    assert (after['wire_rejected_malformed'] >
            before['wire_rejected_malformed'])
    # It kept serving throughout.
    assert client.call({}, 'echo', value=3)['value'] == 3


def test_forged_handshake_cannot_inject(deployment):
    server_transport, client = _serving(deployment)
    seed = _seed_address(deployment)
    hello = json.dumps({'type': 'hello', 'proto': wire.PROTOCOL,
                        'name': 'mallory', 'nonce': '00' * 32}).encode()
    forged_proof = json.dumps({'type': 'proof',
                               'proof': 'ab' * 32}).encode()
    message = json.dumps({'t': 'm', 'src': 'mallory', 'dst': 'x', 'h': 0,
                          'b': {'k': 'q'}}).encode()
    frames = b''.join(struct.pack('>I', len(b)) + b
                      for b in (hello, forged_proof, message))
    before = _stats(server_transport)
    reply = _raw(seed, frames, linger=0.2)
    assert b'welcome' not in reply
    after = p2p_env.wait_for(
        lambda: (lambda s: s if s['wire_rejected_auth'] >
                 before['wire_rejected_auth'] else None)(
            _stats(server_transport)))
    assert after['messages_in'] == before['messages_in']
    assert client.call({}, 'echo', value=4)['value'] == 4


def test_authenticated_peer_sending_nonsense_is_cut_off(deployment):
    server_transport, client = _serving(deployment)
    seed = _seed_address(deployment)
    before = _stats(server_transport)

    async def misbehave() -> bool:
        conn = await wire.connect(
            seed[0], seed[1], 'buggy-peer', p2p_env.KEY.encode(),
            max_bytes=1 << 20, timeout=2)
        # A well-framed message whose body is nonsense: dropped, counted,
        # connection kept.
        await conn.send({'t': 'm', 'src': 'buggy-peer',
                         'dst': server_transport._driver.node.name, 'h': 0,
                         'b': {'k': 'q', 'x': 5}})
        # An unknown frame type: the connection is closed.
        await conn.send({'t': 'bogus'})
        try:
            while True:
                await asyncio.wait_for(conn.recv(), 5)
        except Exception:
            return True

    assert asyncio.run(misbehave())
    after = p2p_env.wait_for(
        lambda: (lambda s: s if s['frames_rejected'] >
                 before['frames_rejected'] else None)(
            _stats(server_transport)))
    assert after['invalid_bodies'] > before['invalid_bodies']
    assert client.call({}, 'echo', value=5)['value'] == 5


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(['openssl', *args], cwd=cwd, check=True,
                   capture_output=True)


def _make_ca(tmp: str, ca: str, peers: list[str]) -> None:
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
             '-subj', '/CN=%s' % ca, '-keyout', '%s.key' % ca,
             '-out', '%s.pem' % ca, cwd=tmp)
    for peer in peers:
        _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj',
                 '/CN=%s' % peer, '-keyout', '%s.key' % peer,
                 '-out', '%s.csr' % peer, cwd=tmp)
        _openssl('x509', '-req', '-in', '%s.csr' % peer, '-CA',
                 '%s.pem' % ca, '-CAkey', '%s.key' % ca, '-CAcreateserial',
                 '-days', '2', '-out', '%s.pem' % peer, cwd=tmp)


def test_tls_mode_admits_only_certificates_of_the_deployment_ca(tmp_path):
    tmp = str(tmp_path)
    _make_ca(tmp, 'ca', ['server', 'client'])
    _make_ca(tmp, 'rogue-ca', ['rogue'])

    def tls(name: str, ca: str = 'ca') -> dict:
        return {'auth_mode': 'tls',
                'ssl_ca_file': os.path.join(tmp, '%s.pem' % ca),
                'ssl_cert_file': os.path.join(tmp, '%s.pem' % name),
                'ssl_key_file': os.path.join(tmp, '%s.key' % name)}

    dep = Deployment()
    try:
        server_transport = dep.transport(**tls('server'))
        server = oslo_messaging.get_rpc_server(
            server_transport, oslo_messaging.Target(topic='t', server='s'),
            [_Echo()], executor='threading')
        server.start()
        dep.servers.append(server)
        client = oslo_messaging.get_rpc_client(
            dep.transport(**tls('client')), oslo_messaging.Target(topic='t'),
            timeout=5)
        assert client.call({}, 'echo', value=1) == 1
        rogue = oslo_messaging.get_rpc_client(
            dep.transport(**tls('rogue', ca='rogue-ca')),
            oslo_messaging.Target(topic='t'), timeout=1)
        with pytest.raises(oslo_messaging.MessagingTimeout):
            rogue.call({}, 'echo', value=2)
        p2p_env.wait_for(lambda: _stats(server_transport)[
            'handshake_rejected'] >= 1)
        assert rogue.transport._driver.node.stats_snapshot()[
            'connect_failed'] >= 1
        assert client.call({}, 'echo', value=3) == 3
    finally:
        dep.close()


class _Echo:
    def echo(self, ctxt, value):
        return value


def test_authenticated_but_silent_connection_is_closed_and_counted():
    dep = Deployment()
    try:
        server_transport = dep.transport(idle_timeout=1.0)
        server = oslo_messaging.get_rpc_server(
            server_transport, oslo_messaging.Target(topic='t', server='s'),
            [_Echo()], executor='threading')
        server.start()
        dep.servers.append(server)
        host, port = server_transport._driver.node.address.split(':')

        async def stay_silent() -> float:
            conn = await wire.connect(host, int(port), 'silent-peer',
                                      p2p_env.KEY.encode(),
                                      max_bytes=1 << 20, timeout=2)
            start = time.monotonic()
            try:
                while True:
                    await asyncio.wait_for(conn.recv(), 10)
            except Exception:
                return time.monotonic() - start

        closed_after = asyncio.run(stay_silent())
        assert 0.9 < closed_after < 5
        assert _stats(server_transport)['idle_closed'] >= 1
        # Honest peers talk every heartbeat and are never cut off.
        client = oslo_messaging.get_rpc_client(
            dep.transport(), oslo_messaging.Target(topic='t'), timeout=5)
        time.sleep(2)
        assert client.call({}, 'echo', value=1) == 1
        assert _stats(server_transport)['idle_closed'] == 1
    finally:
        dep.close()
