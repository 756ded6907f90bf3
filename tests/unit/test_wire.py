"""The overlay transport over real loopback sockets.

Each test runs an echo server built on ``wire.accept`` and checks that a
bad client is refused and counted while a good client, connecting after
it, is still served.
"""

import asyncio
import contextlib
import json
import shutil
import ssl
import struct
import subprocess

import pytest

from discovery_nova.overlay import wire
from discovery_nova.overlay.errors import AuthenticationFailed
from discovery_nova.overlay.errors import ConnectionClosed
from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import MessageTooLarge

KEY = b'k' * 32
OTHER_KEY = b'x' * 32
MAX = 4096
TIMEOUT = 0.5


class EchoServer:
    """Accepts wire connections and sends every message back."""

    def __init__(self):
        self.stats = wire.WireStats()
        self.errors: list[Exception] = []
        self.peers: list[str] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> 'EchoServer':
        self.server = await asyncio.start_server(self._handle, '127.0.0.1',
                                                 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader, writer) -> None:
        try:
            conn = await wire.accept(reader, writer, 'server', KEY,
                                     max_bytes=MAX, timeout=TIMEOUT,
                                     stats=self.stats)
            self.peers.append(conn.peer_name)
            while True:
                message = await conn.recv()
                await conn.send({'type': 'echo', 'got': message})
        except ConnectionClosed:
            return
        except InvalidMessage as exc:
            self.errors.append(exc)

    async def check_still_serving(self) -> None:
        conn = await wire.connect('127.0.0.1', self.port, 'good', KEY,
                                  max_bytes=MAX, timeout=2)
        await conn.send({'type': 'ping', 'n': 1})
        assert await conn.recv() == {'type': 'echo',
                                     'got': {'type': 'ping', 'n': 1}}
        conn.close()
        await conn.wait_closed()

    async def settle(self) -> None:
        # Let the server task notice what the client did.
        for _ in range(50):
            await asyncio.sleep(0.01)
            if self.errors:
                return


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def _handshake(port: int, name: str = 'client', key: bytes = KEY):
    return await wire.connect('127.0.0.1', port, name, key, max_bytes=MAX,
                              timeout=2)


def test_handshake_and_messages_both_ways():
    async def main():
        async with EchoServer() as srv:
            conn = await _handshake(srv.port)
            assert conn.peer_name == 'server'
            for i in range(5):
                await conn.send({'type': 'm', 'i': i, 's': 'é'})
            for i in range(5):
                assert (await conn.recv())['got'] == {'type': 'm', 'i': i,
                                                      's': 'é'}
            conn.close()
            await conn.wait_closed()
            await asyncio.sleep(0.05)
            assert srv.peers == ['client']
            assert srv.stats.frames_in == 5
            assert srv.stats.frames_out == 6  # welcome + 5 echoes
            assert srv.stats.handshake_failed == 0
    run(main())


def test_wrong_key_is_refused_both_ways():
    async def main():
        async with EchoServer() as srv:
            with pytest.raises(AuthenticationFailed):
                await _handshake(srv.port, key=OTHER_KEY)
            await srv.settle()
            # The server proved itself first; the client saw it fail and
            # never sent a proof, so the server times out on it.
            await asyncio.sleep(TIMEOUT + 0.2)
            assert srv.stats.handshake_failed == 1
            assert srv.peers == []
            await srv.check_still_serving()
    run(main())


async def _raw_client(port: int, name: str = 'raw'):
    reader, writer = await asyncio.open_connection('127.0.0.1', port)

    def write(obj):
        body = json.dumps(obj).encode()
        writer.write(struct.pack('>I', len(body)) + body)

    async def read():
        (n,) = struct.unpack('>I', await reader.readexactly(4))
        return json.loads(await reader.readexactly(n))

    return reader, writer, write, read


def test_client_without_key_cannot_forge_a_proof():
    async def main():
        async with EchoServer() as srv:
            reader, writer, write, read = await _raw_client(srv.port)
            write({'type': 'hello', 'proto': wire.PROTOCOL, 'name': 'evil',
                   'nonce': '00' * 32})
            challenge = await read()
            # Echo the server's own proof back: labels differ, so no.
            write({'type': 'proof', 'proof': challenge['proof']})
            assert await reader.read() == b''  # closed on us
            await srv.settle()
            assert isinstance(srv.errors[0], AuthenticationFailed)
            assert srv.stats.rejected_auth == 1
            assert srv.stats.handshake_failed == 1
            writer.close()
            await srv.check_still_serving()
    run(main())


class _Tap:
    """A TCP proxy between client and server that can tamper with frames."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.to_server: list[bytes] = []
        self.server_writer = None
        self.mutate = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, '127.0.0.1',
                                                 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _handle(self, creader, cwriter):
        sreader, swriter = await asyncio.open_connection('127.0.0.1',
                                                         self.target_port)
        self.server_writer = swriter

        async def pump(reader, writer, record):
            with contextlib.suppress(Exception):
                while True:
                    header = await reader.readexactly(4)
                    (n,) = struct.unpack('>I', header)
                    frame = header + await reader.readexactly(n)
                    if record is not None:
                        record.append(frame)
                        if self.mutate is not None:
                            frame = self.mutate(len(record), frame)
                    writer.write(frame)
            writer.close()

        await asyncio.gather(pump(creader, swriter, self.to_server),
                             pump(sreader, cwriter, None))


def test_tampered_frame_is_refused():
    async def main():
        async with EchoServer() as srv, _Tap(srv.port) as tap:
            # Frames to the server: hello, proof, then data frames.
            def flip(index, frame):
                if index == 4:
                    return frame[:-2] + b'9' + frame[-1:]
                return frame
            tap.mutate = flip
            conn = await _handshake(tap.port)
            await conn.send({'type': 'm', 'v': 1})
            assert (await conn.recv())['got'] == {'type': 'm', 'v': 1}
            await conn.send({'type': 'm', 'v': 1})
            with pytest.raises(ConnectionClosed):
                await conn.recv()
            await srv.settle()
            assert isinstance(srv.errors[0], AuthenticationFailed)
            assert srv.stats.rejected_auth == 1
            await srv.check_still_serving()
    run(main())


def test_replayed_frame_is_refused():
    async def main():
        async with EchoServer() as srv, _Tap(srv.port) as tap:
            conn = await _handshake(tap.port)
            await conn.send({'type': 'pay', 'amount': 1})
            await conn.recv()
            # Re-inject the data frame recorded by the tap, byte for byte.
            tap.server_writer.write(tap.to_server[-1])
            await srv.settle()
            assert isinstance(srv.errors[0], AuthenticationFailed)
            assert srv.stats.frames_in == 1
            with pytest.raises(ConnectionClosed):
                await conn.recv()
            await srv.check_still_serving()
    run(main())


def test_frame_spliced_from_another_connection_is_refused():
    async def main():
        async with EchoServer() as srv, _Tap(srv.port) as tap:
            first = await _handshake(tap.port)
            await first.send({'type': 'm'})
            await first.recv()
            stolen = tap.to_server[-1]
            second = await _handshake(tap.port)
            tap.server_writer.write(stolen)  # first data frame of second
            await srv.settle()
            assert isinstance(srv.errors[0], AuthenticationFailed)
            with pytest.raises(ConnectionClosed):
                await second.recv()
            await srv.check_still_serving()
    run(main())


def test_oversized_prefix_refused_before_body():
    async def main():
        async with EchoServer() as srv:
            conn = await _handshake(srv.port)
            # Announce a frame over the limit and send no body at all: the
            # server must refuse on the prefix alone, not wait for bytes.
            conn._writer.write(struct.pack('>I', MAX + 1))
            await srv.settle()
            assert isinstance(srv.errors[0], MessageTooLarge)
            assert srv.stats.rejected_oversize == 1
            with pytest.raises(ConnectionClosed):
                await conn.recv()
            await srv.check_still_serving()
    run(main())


def test_sending_an_oversized_message_fails_locally():
    async def main():
        async with EchoServer() as srv:
            conn = await _handshake(srv.port)
            with pytest.raises(MessageTooLarge):
                await conn.send({'type': 'big', 'data': 'x' * MAX})
            await conn.send({'type': 'small'})
            assert (await conn.recv())['got'] == {'type': 'small'}
    run(main())


def test_garbage_bytes_are_refused():
    async def main():
        async with EchoServer() as srv:
            for garbage in (b'GET / HTTP/1.1\r\n\r\n',
                            b'\x00\x00\x00\x05hello',
                            b'\x00\x00\x00\x02[]',
                            b'\x00\x00\x00\x0f{"type":"nope"}'):
                reader, writer = await asyncio.open_connection(
                    '127.0.0.1', srv.port)
                writer.write(garbage)
                assert await reader.read() == b''
                writer.close()
            await srv.settle()
            assert srv.stats.handshake_failed == 4
            assert srv.stats.rejected_oversize == 1
            assert srv.stats.rejected_malformed == 3
            assert all(isinstance(e, InvalidMessage) for e in srv.errors)
            await srv.check_still_serving()
    run(main())


def test_bad_json_after_handshake_is_refused():
    async def main():
        async with EchoServer() as srv:
            conn = await _handshake(srv.port)
            # A correctly MACed body that is not a JSON object.
            payload = b'[1, 2'
            tag = wire._mac(conn._key, conn._out_label,
                            wire._SEQ.pack(conn._out_seq), payload)
            conn._writer.write(struct.pack('>I', len(tag + payload)) + tag +
                               payload)
            await srv.settle()
            assert srv.stats.rejected_malformed == 1
            assert 'not valid UTF-8 JSON' in str(srv.errors[0])
            await srv.check_still_serving()
    run(main())


def test_half_open_connection_times_out():
    async def main():
        async with EchoServer() as srv:
            reader, writer = await asyncio.open_connection('127.0.0.1',
                                                           srv.port)
            await asyncio.sleep(TIMEOUT + 0.2)
            assert await reader.read() == b''
            assert srv.stats.handshake_failed == 1
            assert 'half-open' in str(srv.errors[0])
            # A frame started but never finished also ends the link.
            conn = await _handshake(srv.port)
            conn._writer.write(struct.pack('>I', 100) + b'x' * 10)
            await asyncio.sleep(TIMEOUT + 0.2)
            with pytest.raises(ConnectionClosed):
                await conn.recv()
            await srv.check_still_serving()
    run(main())


def test_connect_to_nothing_raises_connection_closed():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, '127.0.0.1',
                                            0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionClosed):
            await _handshake(port)
    run(main())


def test_datagram_round_trip_and_rejections():
    data = wire.seal_datagram(KEY, {'type': 'probe', 'n': 1})
    assert wire.open_datagram(KEY, data, 512) == {'type': 'probe', 'n': 1}
    with pytest.raises(AuthenticationFailed):
        wire.open_datagram(OTHER_KEY, data, 512)
    with pytest.raises(AuthenticationFailed):
        wire.open_datagram(KEY, data[:-1] + b'2', 512)
    with pytest.raises(MessageTooLarge):
        wire.open_datagram(KEY, data, 10)
    with pytest.raises(InvalidMessage):
        wire.open_datagram(KEY, b'short', 512)
    bad = wire._mac(wire._datagram_key(KEY), b'nope') + b'nope'
    with pytest.raises(InvalidMessage, match='JSON'):
        wire.open_datagram(KEY, bad, 512)


def test_messages_must_be_json():
    with pytest.raises(InvalidMessage):
        wire.seal_datagram(KEY, {'x': float('nan')})
    with pytest.raises(ValueError):
        wire.seal_datagram(b'short', {'x': 1})


def test_stats_as_dict():
    stats = wire.WireStats(frames_in=2)
    assert stats.as_dict()['frames_in'] == 2
    assert set(stats.as_dict()) == {
        'frames_in', 'frames_out', 'rejected_auth', 'rejected_oversize',
        'rejected_malformed', 'handshake_failed'}


def _self_signed(tmp_path):
    cert, key = tmp_path / 'cert.pem', tmp_path / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                    '-nodes', '-keyout', str(key), '-out', str(cert),
                    '-days', '1', '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=IP:127.0.0.1'],
                   check=True, capture_output=True)
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which('openssl') is None,
                    reason='needs the openssl command to make a cert')
def test_handshake_over_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)

    async def main():
        srv = EchoServer()
        srv.server = await asyncio.start_server(srv._handle, '127.0.0.1', 0,
                                                ssl=server_ctx)
        port = srv.server.sockets[0].getsockname()[1]
        try:
            conn = await wire.connect('127.0.0.1', port, 'client', KEY,
                                      max_bytes=MAX, timeout=5,
                                      ssl_context=client_ctx)
            assert conn.peername() is not None
            await conn.send({'type': 'over-tls'})
            assert (await conn.recv())['got'] == {'type': 'over-tls'}
            conn.close()
            # Without TLS the server's socket speaks nothing we know.
            with pytest.raises((ConnectionClosed, InvalidMessage,
                                TimeoutError)):
                await wire.connect('127.0.0.1', port, 'plain', KEY,
                                   max_bytes=MAX, timeout=1)
        finally:
            srv.server.close()
            await srv.server.wait_closed()
    run(main())
