"""The authenticated UDP echo prober over real loopback sockets."""

import asyncio
import socket

import pytest
import stevedore

from discovery_nova.overlay import udp_prober
from discovery_nova.overlay import wire
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.peer import PeerRef

KEY = b'k' * 32
COORD = Coordinate((1.0, 2.0, 3.0), 4.0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def _prober(name, key=KEY, coord=COORD, error=0.5, **kwargs):
    prober = udp_prober.UdpEchoProber(name, key, lambda: (coord, error),
                                      dimensions=3, **kwargs)
    host, port = await prober.start('127.0.0.1', 0)
    return prober, PeerRef(name, '%s:%d' % (host, port))


async def _probe(prober, peer):
    future = asyncio.get_running_loop().create_future()
    prober.probe(peer, future.set_result)
    return await future


def test_probe_returns_rtt_and_the_answering_coordinate():
    async def main():
        a, _ = await _prober('a')
        b, b_ref = await _prober('b')
        sample = await _probe(a, b_ref)
        assert sample.peer == 'b'
        assert 0 < sample.rtt_ms < 500
        assert sample.coordinate == Coordinate((1.0, 2.0, 3.0), 4.0)
        assert sample.error == 0.5
        assert a.stats.probes_answered == 1
        assert b.stats.echoes_sent == 1
        a.close()
        b.close()
    run(main())


def test_emulated_delay_adds_to_the_rtt():
    async def main():
        delays = {'b': 0.03, 'a': 0.02}
        a, _ = await _prober('a', emulated_delay=delays.get)
        b, b_ref = await _prober('b', emulated_delay=delays.get)
        sample = await _probe(a, b_ref)
        # Out to b after 30 ms, back to a after 20 ms.
        assert 50 <= sample.rtt_ms < 300
        a.close()
        b.close()
    run(main())


def test_wrong_key_gets_no_answer_and_is_counted():
    async def main():
        a, _ = await _prober('a', key=b'z' * 32, probe_timeout=0.2)
        b, b_ref = await _prober('b')
        assert await _probe(a, b_ref) is None
        assert a.stats.probes_lost == 1
        assert b.stats.rejected_auth == 1
        assert b.stats.echoes_sent == 0
        a.close()
        b.close()
    run(main())


def test_dead_peer_reports_none_after_timeout():
    async def main():
        a, _ = await _prober('a', probe_timeout=0.1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
        sock.close()
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await _probe(a, PeerRef('gone', '127.0.0.1:%d' % port)) is None
        assert loop.time() - start >= 0.09
        assert await _probe(a, PeerRef('bad', 'no-port')) is None
        assert a.stats.send_errors == 1
        a.close()
    run(main())


def test_garbage_replays_and_strangers_are_dropped():
    async def main():
        a, a_ref = await _prober('a', probe_timeout=0.3)
        b, b_ref = await _prober('b')
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = udp_prober.parse_address(b_ref.address)
        sock.sendto(b'garbage', target)
        sock.sendto(b'x' * 5000, target)
        sock.sendto(wire.seal_datagram(KEY, {'type': 'what'}), target)
        sock.sendto(wire.seal_datagram(KEY, {'type': 'probe'}), target)
        # An echo nobody asked for, then a replay of a real one.
        sock.sendto(wire.seal_datagram(KEY, {
            'type': 'echo', 'from': 'b', 'nonce': 'ab' * 16,
            'coord': [[0, 0, 0], 1], 'error': 1}), target)
        await asyncio.sleep(0.1)
        assert b.stats.rejected_malformed == 3  # garbage, what, probe
        assert b.stats.rejected_oversize == 1
        assert b.stats.rejected_unexpected == 1
        assert b.stats.echoes_sent == 0
        sample = await _probe(a, b_ref)
        assert sample is not None
        a.close()
        b.close()
    run(main())


def test_malformed_echo_counts_and_probe_is_lost():
    async def main():
        a, _ = await _prober('a', probe_timeout=0.2)
        b, b_ref = await _prober('b', coord=Coordinate((1.0, 2.0), 0.0))
        assert await _probe(a, b_ref) is None  # 2-d coordinate, 3 expected
        assert a.stats.rejected_malformed == 1
        assert a.stats.probes_lost == 1
        a.close()
        b.close()
    run(main())


def test_close_fails_pending_probes():
    async def main():
        a, _ = await _prober('a', probe_timeout=5)
        results = []
        a.probe(PeerRef('x', '127.0.0.1:9'), results.append)
        a.close()
        assert results == [None]
    run(main())


@pytest.mark.parametrize('address', ['host', 'host:0', 'host:99999', ':80',
                                     'h:x'])
def test_parse_address_rejects(address):
    with pytest.raises(ValueError, match='host:port'):
        udp_prober.parse_address(address)


def test_parse_address_ipv6():
    assert udp_prober.parse_address('[::1]:7390') == ('::1', 7390)


def test_loaded_through_stevedore():
    manager = stevedore.DriverManager('discovery_nova.overlay.probers', 'udp')
    assert manager.driver is udp_prober.UdpEchoProber
