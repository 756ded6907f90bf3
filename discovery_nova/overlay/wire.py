"""Authenticated framing of the overlay's own transport (TCP and UDP).

Every agent of a deployment shares one secret, the deployment key. A TCP
connection starts with a mutual challenge-response handshake: each side sends
a fresh random nonce and proves it holds the key with an HMAC-SHA256 over both
nonces and both names, so a peer without the key can neither join nor learn
anything it could replay. Both sides then derive a session key from the two
nonces; every later frame carries an HMAC over its direction, its sequence
number and its body. Sequence numbers are implicit (each side counts), so a
replayed, dropped, reordered or spliced frame fails its MAC and ends the
connection. This is authentication, not encryption: the overlay carries
coordinates and locations, not secrets; put TLS under it (``ssl_context``)
where confidentiality matters.

A frame is a 4-byte big-endian length and a body. The length is checked
against ``max_bytes`` before a single body byte is read, so an oversized or
garbage prefix costs nothing. Handshake bodies are compact JSON; data frames
are a 32-byte MAC followed by compact JSON. Bad input is counted in
``WireStats``, the connection is closed and the error raised names what was
wrong; the server that accepted the connection keeps serving the others.

UDP datagrams (round-trip probes) carry an HMAC under a key derived from the
deployment key; replay protection there is the prober's business (its
nonces), since a datagram has no connection to count in.
"""

import asyncio
import dataclasses
import hashlib
import hmac
import json
import os
import re
import struct
from typing import Any

from oslo_log import log as logging

from discovery_nova.overlay.errors import AuthenticationFailed
from discovery_nova.overlay.errors import ConnectionClosed
from discovery_nova.overlay.errors import InvalidMessage
from discovery_nova.overlay.errors import MessageTooLarge

LOG = logging.getLogger(__name__)

PROTOCOL = 'dn-wire-1'
#: Bytes of every MAC (HMAC-SHA256).
MAC_BYTES = 32
NONCE_BYTES = 32
#: Handshake frames are small whatever ``max_bytes`` allows.
HANDSHAKE_MAX_BYTES = 1024
#: Names a peer may announce in the handshake (same shape as a PoP name,
#: with room for ``:``-suffixed client names).
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$')

_HEADER = struct.Struct('>I')
_SEQ = struct.Struct('>Q')
_TO_SERVER = b'c>s'
_TO_CLIENT = b's>c'


@dataclasses.dataclass
class WireStats:
    """Counters of one agent's transport, shared by all its connections.

    ``handshake_failed`` counts connections refused during the handshake,
    whatever the reason; the ``rejected_*`` counters count refused frames
    and datagrams by reason, in the handshake or after it.
    """

    frames_in: int = 0
    frames_out: int = 0
    rejected_auth: int = 0
    rejected_oversize: int = 0
    rejected_malformed: int = 0
    handshake_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b'|'.join(parts), hashlib.sha256).digest()


def _encode(obj: dict[str, Any]) -> bytes:
    try:
        return json.dumps(obj, separators=(',', ':'), allow_nan=False,
                          ensure_ascii=False).encode('utf-8')
    except (TypeError, ValueError) as exc:
        raise InvalidMessage('an overlay message must be a JSON object of '
                             'finite numbers, strings, lists and objects: %s'
                             % exc) from None


def _reject_constant(name: str):
    raise ValueError('%s is not JSON' % name)


def _decode(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(body.decode('utf-8'),
                         parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage('%s is not valid UTF-8 JSON: %s'
                             % (what, str(exc)[:200])) from None
    if not isinstance(obj, dict):
        raise InvalidMessage('%s must be a JSON object, got %s'
                             % (what, type(obj).__name__))
    return obj


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) < 16:
        raise ValueError('the deployment key must be at least 16 bytes')


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidMessage(
            '%s must be a name of letters, digits and "_.:@-" (at most 128 '
            'characters), got %r' % (what, name))
    return name


def _check_nonce(value: Any, what: str) -> bytes:
    try:
        nonce = bytes.fromhex(value)
    except (TypeError, ValueError):
        nonce = b''
    if len(nonce) != NONCE_BYTES:
        raise InvalidMessage('%s must be %d random bytes in hex, got %r'
                             % (what, NONCE_BYTES, str(value)[:80]))
    return nonce


class Connection:
    """One authenticated, ordered, replay-proof message stream to a peer.

    ``send`` may be called from several tasks; ``recv`` from one at a time.
    Any error ``recv`` raises has already closed the connection.
    """

    def __init__(self, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer_name: str,
                 session_key: bytes, is_client: bool, max_bytes: int,
                 timeout: float, stats: WireStats):
        self.peer_name = peer_name
        self._reader = reader
        self._writer = writer
        self._key = session_key
        self._out_label = _TO_SERVER if is_client else _TO_CLIENT
        self._in_label = _TO_CLIENT if is_client else _TO_SERVER
        self._out_seq = 0
        self._in_seq = 0
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._stats = stats
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    def peername(self) -> Any:
        """The socket address of the other end, for logs."""
        return self._writer.get_extra_info('peername')

    def _write(self, obj: dict[str, Any]) -> None:
        """Encode, MAC and write one frame, without yielding, so concurrent
        senders cannot interleave or reorder frames."""
        if self.closed:
            raise ConnectionClosed('connection to %s is closed'
                                   % self.peer_name)
        payload = _encode(obj)
        if len(payload) + MAC_BYTES > self._max_bytes:
            raise MessageTooLarge(
                'message of %d bytes to %s exceeds max_message_bytes=%d'
                % (len(payload) + MAC_BYTES, self.peer_name,
                   self._max_bytes))
        tag = _mac(self._key, self._out_label, _SEQ.pack(self._out_seq),
                   payload)
        self._out_seq += 1
        self._writer.write(_HEADER.pack(MAC_BYTES + len(payload)) + tag +
                           payload)
        self._stats.frames_out += 1

    async def send(self, obj: dict[str, Any]) -> None:
        """Send one message; raises ConnectionClosed if the link is gone.

        Raises MessageTooLarge, without sending, when the encoded message
        exceeds ``max_bytes`` (the peer would refuse it anyway).
        """
        self._write(obj)
        try:
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            self.close()
            raise ConnectionClosed('connection to %s lost: %s'
                                   % (self.peer_name, exc)) from None

    def send_nowait(self, obj: dict[str, Any]) -> bool:
        """Send one message at once, from the loop's thread, if the
        socket's write buffer is below its high-water mark; return False,
        sending nothing, when it is not (only ``send`` can wait for it to
        drain). Raises as ``send`` does.

        Why: a message whose link is idle needs no task of its own; one
        task and one more turn of the loop per message were a measurable
        part of an RPC call's latency.
        """
        transport = self._writer.transport
        if transport.get_write_buffer_size() >= \
                transport.get_write_buffer_limits()[1]:
            return False
        self._write(obj)
        return True

    async def recv(self) -> dict[str, Any]:
        """The next message; raises ConnectionClosed at end of stream.

        Raises MessageTooLarge, AuthenticationFailed or InvalidMessage (and
        closes the connection) on an oversized, forged, replayed or
        malformed frame.
        """
        if self._closed:
            raise ConnectionClosed('connection to %s is closed'
                                   % self.peer_name)
        try:
            body = await _read_frame(self._reader, self._max_bytes,
                                     self._timeout, self._stats)
            if len(body) < MAC_BYTES:
                self._stats.rejected_malformed += 1
                raise InvalidMessage(
                    'frame of %d bytes from %s is shorter than its %d-byte '
                    'MAC' % (len(body), self.peer_name, MAC_BYTES))
            tag, payload = body[:MAC_BYTES], body[MAC_BYTES:]
            expected = _mac(self._key, self._in_label,
                            _SEQ.pack(self._in_seq), payload)
            if not hmac.compare_digest(tag, expected):
                self._stats.rejected_auth += 1
                raise AuthenticationFailed(
                    'frame %d from %s has a bad MAC (forged, replayed or '
                    'reordered)' % (self._in_seq, self.peer_name))
            self._in_seq += 1
            try:
                obj = _decode(payload, 'frame from %s' % self.peer_name)
            except InvalidMessage:
                self._stats.rejected_malformed += 1
                raise
        except BaseException:
            self.close()
            raise
        self._stats.frames_in += 1
        return obj

    def close(self) -> None:
        self._closed = True
        self._writer.close()

    async def wait_closed(self) -> None:
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def _read_frame(reader: asyncio.StreamReader, max_bytes: int,
                      timeout: float | None, stats: WireStats) -> bytes:
    """One frame body; the prefix is checked before the body is read.

    Waiting for a frame to start has no limit (idle links are fine); once
    the length has arrived, the body must follow within ``timeout``.
    """
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError:
        raise ConnectionClosed('peer closed the connection') from None
    except ConnectionError as exc:
        raise ConnectionClosed('connection lost: %s' % exc) from None
    (length,) = _HEADER.unpack(header)
    if length > max_bytes:
        stats.rejected_oversize += 1
        raise MessageTooLarge('frame announces %d bytes, more than the %d '
                              'allowed' % (length, max_bytes))
    try:
        async with asyncio.timeout(timeout):
            return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        stats.rejected_malformed += 1
        raise ConnectionClosed('peer closed the connection in the middle '
                               'of a frame') from None
    except TimeoutError:
        stats.rejected_malformed += 1
        raise InvalidMessage('frame body of %d bytes did not arrive within '
                             '%.1f s' % (length, timeout)) from None
    except ConnectionError as exc:
        raise ConnectionClosed('connection lost: %s' % exc) from None


def _write_plain(writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
    body = _encode(obj)
    writer.write(_HEADER.pack(len(body)) + body)


async def _read_plain(reader: asyncio.StreamReader, stats: WireStats,
                      what: str, expected_type: str) -> dict[str, Any]:
    body = await _read_frame(reader, HANDSHAKE_MAX_BYTES, None, stats)
    try:
        obj = _decode(body, what)
    except InvalidMessage:
        stats.rejected_malformed += 1
        raise
    if obj.get('type') != expected_type:
        stats.rejected_malformed += 1
        raise InvalidMessage('%s must have type %r, got %r'
                             % (what, expected_type,
                                str(obj.get('type'))[:40]))
    return obj


def _proofs(key: bytes, client_nonce: bytes, server_nonce: bytes,
            client: str, server: str) -> tuple[bytes, bytes, bytes]:
    """(server proof, client proof, session key) of one handshake.

    Each is an HMAC of the same transcript under a different label, so no
    value one side reveals can stand in for another.
    """
    transcript = (PROTOCOL.encode(), client_nonce, server_nonce,
                  client.encode(), server.encode())
    return (_mac(key, b'server-proof', *transcript),
            _mac(key, b'client-proof', *transcript),
            _mac(key, b'session-key', *transcript))


async def connect(host: str, port: int, my_name: str, key: bytes, *,
                  max_bytes: int, timeout: float,
                  stats: WireStats | None = None,
                  ssl_context=None) -> Connection:
    """Open an authenticated connection to the agent at ``host:port``.

    Raises ConnectionClosed when the peer cannot be reached or hangs up,
    AuthenticationFailed when it does not prove the deployment key (or
    refuses ours), InvalidMessage on a malformed handshake, and
    TimeoutError when connecting or the handshake takes over ``timeout``
    seconds. ``ssl_context`` puts TLS under the handshake (the server
    then listens with TLS; ``accept`` is unchanged).
    """
    _check_key(key)
    _check_name(my_name, 'our own name')
    stats = stats if stats is not None else WireStats()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl_context)
    except OSError as exc:
        raise ConnectionClosed('cannot connect to %s:%s: %s'
                               % (host, port, exc)) from None
    try:
        async with asyncio.timeout(timeout):
            return await _client_handshake(reader, writer, my_name, key,
                                           max_bytes, timeout, stats)
    except BaseException as exc:
        if isinstance(exc, (InvalidMessage, ConnectionClosed,
                            TimeoutError)):
            stats.handshake_failed += 1
        writer.close()
        raise


async def _client_handshake(reader, writer, my_name, key, max_bytes,
                            timeout, stats) -> Connection:
    client_nonce = os.urandom(NONCE_BYTES)
    _write_plain(writer, {'type': 'hello', 'proto': PROTOCOL,
                          'name': my_name, 'nonce': client_nonce.hex()})
    await writer.drain()
    challenge = await _read_plain(reader, stats, 'handshake challenge',
                                  'challenge')
    try:
        server = _check_name(challenge.get('name'), 'server name')
        server_nonce = _check_nonce(challenge.get('nonce'), 'server nonce')
        tag = bytes.fromhex(str(challenge.get('proof')))
    except (InvalidMessage, ValueError):
        stats.rejected_malformed += 1
        raise InvalidMessage('handshake challenge from %s is malformed: '
                             'expected name, nonce and proof'
                             % (writer.get_extra_info('peername'),)
                             ) from None
    server_proof, client_proof, session = _proofs(
        key, client_nonce, server_nonce, my_name, server)
    if not hmac.compare_digest(tag, server_proof):
        stats.rejected_auth += 1
        raise AuthenticationFailed(
            'peer %r does not prove the deployment key' % server)
    _write_plain(writer, {'type': 'proof', 'proof': client_proof.hex()})
    await writer.drain()
    conn = Connection(reader, writer, server, session, True, max_bytes,
                      timeout, stats)
    try:
        welcome = await conn.recv()
    except ConnectionClosed:
        raise AuthenticationFailed(
            'peer %r refused our proof of the deployment key' % server
        ) from None
    if welcome.get('type') != 'welcome':
        conn.close()
        raise InvalidMessage('handshake of %r ended with %r, expected '
                             'welcome' % (server, welcome.get('type')))
    return conn


async def accept(reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, my_name: str, key: bytes, *,
                 max_bytes: int, timeout: float,
                 stats: WireStats | None = None) -> Connection:
    """Run the server side of the handshake on an accepted stream.

    On any failure (no key, bad proof, garbage, oversized prefix, silence
    longer than ``timeout``) the stream is closed, ``handshake_failed`` is
    counted and the error raised; the caller logs it and goes on serving.
    """
    _check_key(key)
    stats = stats if stats is not None else WireStats()
    try:
        async with asyncio.timeout(timeout):
            return await _server_handshake(reader, writer, my_name, key,
                                           max_bytes, timeout, stats)
    except BaseException as exc:
        if isinstance(exc, (InvalidMessage, ConnectionClosed,
                            TimeoutError)):
            stats.handshake_failed += 1
        writer.close()
        if isinstance(exc, TimeoutError):
            raise InvalidMessage('handshake not completed within %.1f s '
                                 '(half-open connection)' % timeout
                                 ) from None
        raise


async def _server_handshake(reader, writer, my_name, key, max_bytes,
                            timeout, stats) -> Connection:
    hello = await _read_plain(reader, stats, 'handshake hello', 'hello')
    try:
        if hello.get('proto') != PROTOCOL:
            raise InvalidMessage('handshake protocol must be %r, got %r'
                                 % (PROTOCOL, str(hello.get('proto'))[:40]))
        client = _check_name(hello.get('name'), 'client name')
        client_nonce = _check_nonce(hello.get('nonce'), 'client nonce')
    except InvalidMessage:
        stats.rejected_malformed += 1
        raise
    server_nonce = os.urandom(NONCE_BYTES)
    server_proof, client_proof, session = _proofs(
        key, client_nonce, server_nonce, client, my_name)
    _write_plain(writer, {'type': 'challenge', 'name': my_name,
                          'nonce': server_nonce.hex(),
                          'proof': server_proof.hex()})
    await writer.drain()
    answer = await _read_plain(reader, stats, 'handshake proof', 'proof')
    try:
        tag = bytes.fromhex(str(answer.get('proof')))
    except ValueError:
        tag = b''
    if not hmac.compare_digest(tag, client_proof):
        stats.rejected_auth += 1
        raise AuthenticationFailed('peer %r does not prove the deployment '
                                   'key' % client)
    conn = Connection(reader, writer, client, session, False, max_bytes,
                      timeout, stats)
    await conn.send({'type': 'welcome'})
    return conn


def _datagram_key(key: bytes) -> bytes:
    return _mac(key, PROTOCOL.encode(), b'datagram-key')


def seal_datagram(key: bytes, obj: dict[str, Any]) -> bytes:
    """A UDP payload: 32-byte MAC then compact JSON."""
    _check_key(key)
    payload = _encode(obj)
    return _mac(_datagram_key(key), payload) + payload


def open_datagram(key: bytes, data: bytes, max_bytes: int) -> dict[str, Any]:
    """The object of a datagram sealed with ``key``, checked strictly.

    Raises MessageTooLarge, AuthenticationFailed or InvalidMessage.
    """
    if len(data) > max_bytes:
        raise MessageTooLarge('datagram of %d bytes exceeds %d'
                              % (len(data), max_bytes))
    if len(data) < MAC_BYTES:
        raise InvalidMessage('datagram of %d bytes is shorter than its '
                             '%d-byte MAC' % (len(data), MAC_BYTES))
    tag, payload = data[:MAC_BYTES], data[MAC_BYTES:]
    if not hmac.compare_digest(tag, _mac(_datagram_key(key), payload)):
        raise AuthenticationFailed('datagram has a bad MAC (sender lacks '
                                   'the deployment key, or it was altered)')
    return _decode(payload, 'datagram')
