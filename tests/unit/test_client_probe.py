"""Client prefix probes: the configuration, the TCP connect time over real
loopback sockets, which prefixes an agent probes, and what it publishes."""

import asyncio
import ipaddress
import logging
import socket

from hypothesis import given
from hypothesis import strategies as st
import pytest

from discovery_nova.overlay import client_probe
from discovery_nova.overlay.client_probe import ClientProbeError
from discovery_nova.overlay.client_probe import ClientProber
from discovery_nova.overlay.client_probe import ClientTarget
from discovery_nova.overlay.client_probe import parse_client_probes
from discovery_nova.overlay.client_probe import select_targets
from discovery_nova.overlay.client_probe import tcp_connect_rtt


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_parse_targets_v4_and_v6():
    got = parse_client_probes([' 192.0.2.0/24 = 192.0.2.53:53',
                               '2001:db8::/32=[2001:db8::80]:443',
                               '198.51.100.0/24=edge.example.net:80'])
    assert got == {
        ipaddress.ip_network('192.0.2.0/24'): ('192.0.2.53', 53),
        ipaddress.ip_network('2001:db8::/32'): ('2001:db8::80', 443),
        ipaddress.ip_network('198.51.100.0/24'): ('edge.example.net', 80)}


@pytest.mark.parametrize('item,expected', [
    ('192.0.2.0/24', 'expected CIDR=host:port'),
    ('192.0.2.1/24=192.0.2.53:53', 'no network in CIDR form'),
    ('192.0.2.0/24=192.0.2.53', 'no probe target; expected host:port'),
    ('192.0.2.0/24=192.0.2.53:0', 'port from 1 to 65535'),
    ('192.0.2.0/24=192.0.2.53:http', 'port from 1 to 65535'),
    ('192.0.2.0/24=:53', 'no probe target'),
])
def test_bad_targets_say_what_is_wrong_and_expected(item, expected):
    with pytest.raises(ClientProbeError) as info:
        parse_client_probes([item])
    assert repr(item) in str(info.value)
    assert expected in str(info.value)


def test_one_target_per_prefix():
    with pytest.raises(ClientProbeError, match='one target per prefix'):
        parse_client_probes(['192.0.2.0/24=192.0.2.1:53',
                             '192.0.2.0/24=192.0.2.2:53'])


def test_connect_time_to_a_real_listener_and_a_closed_port():
    async def main():
        accepted = []

        async def on_connect(reader, writer):
            accepted.append(writer.get_extra_info('peername'))
            writer.close()

        server = await asyncio.start_server(on_connect, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        try:
            rtt = await tcp_connect_rtt('127.0.0.1', port, 2.0)
            await asyncio.sleep(0.05)
        finally:
            server.close()
            await server.wait_closed()
        assert 0 < rtt < 2000
        assert len(accepted) == 1

        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            closed = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            await tcp_connect_rtt('127.0.0.1', closed, 2.0)
    run(main())


TARGETS = [ClientTarget('10.%d.0.0/16' % i, pop, '127.0.0.1', 1)
           for i, pop in enumerate(['b', 'a', 'c', 'a', 'd', 'b'])]


def test_own_prefixes_first_then_the_nearest_pops_within_the_limit():
    chosen = select_targets(TARGETS, 'a', ['c', 'b', 'd'], 2, 10)
    assert [t.pop for t in chosen] == ['a', 'a', 'c', 'b', 'b']
    assert [t.pop for t in select_targets(TARGETS, 'a', ['c', 'b'], 0,
                                          10)] == ['a', 'a']
    assert [t.pop for t in select_targets(TARGETS, 'a', ['c', 'b'], 2,
                                          3)] == ['a', 'a', 'c']


@given(own=st.sampled_from('abcde'),
       near=st.lists(st.sampled_from('abcde'), unique=True),
       pops=st.integers(0, 6), limit=st.integers(1, 8))
def test_selection_is_bounded_and_never_skips_a_nearer_pop(own, near, pops,
                                                           limit):
    chosen = select_targets(TARGETS, own, near, pops, limit)
    allowed = [own] + [n for n in near[:pops] if n != own]
    assert len(chosen) == min(limit, sum(t.pop in allowed for t in TARGETS))
    ranks = [allowed.index(t.pop) for t in chosen]
    assert ranks == sorted(ranks)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def prober(samples, near=('b',), **kwargs):
    """A prober whose connects answer from ``samples`` per host (a float,
    or an exception to raise)."""
    targets = [ClientTarget('192.0.2.0/24', 'a', 'own', 1),
               ClientTarget('198.51.100.0/24', 'b', 'near', 1)]

    async def connect(host, port, timeout):
        value = samples[host].pop(0)
        if isinstance(value, BaseException):
            raise value
        return value

    clock = FakeClock()
    return ClientProber(targets, 'a', lambda: list(near), connect=connect,
                        clock=clock, interval=30.0, **kwargs), clock


def test_published_rtt_is_the_median_of_the_last_samples():
    samples = {'own': [10.0, 1000.0, 11.0, 12.0, 9.0, 13.0, 14.0],
               'near': [20.0] * 7}
    p, _ = prober(samples)
    for _ in range(3):
        run(p.probe_once())
    # A lost SYN (1000 ms) does not move the median much.
    assert p.measurements() == {'192.0.2.0/24': 11.0,
                                '198.51.100.0/24': 20.0}
    for _ in range(4):
        run(p.probe_once())
    # Only the last five count: 11, 12, 9, 13, 14.
    assert p.measurements()['192.0.2.0/24'] == 12.0


def test_unreachable_target_is_logged_once_and_publishes_nothing(caplog):
    refused = ConnectionRefusedError(111, 'Connection refused')
    samples = {'own': [5.0, refused, TimeoutError(), 6.0],
               'near': [20.0] * 4}
    p, _ = prober(samples)
    with caplog.at_level(logging.INFO, logger=client_probe.__name__):
        run(p.probe_once())
        assert '192.0.2.0/24' in p.measurements()
        run(p.probe_once())
        run(p.probe_once())
        assert '192.0.2.0/24' not in p.measurements()
        assert '198.51.100.0/24' in p.measurements()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert '192.0.2.0/24' in warnings[0].getMessage()
        assert 'unreachable' in warnings[0].getMessage()
        run(p.probe_once())
    # Back: published again from the new sample alone.
    assert p.measurements()['192.0.2.0/24'] == 6.0
    assert 'answers again' in caplog.records[-1].getMessage()


def test_prefixes_no_longer_probed_or_stale_are_withdrawn():
    near = ['b']
    p, clock = prober({'own': [5.0] * 3, 'near': [7.0] * 3}, near=near)
    run(p.probe_once())
    assert set(p.measurements()) == {'192.0.2.0/24', '198.51.100.0/24'}
    near.clear()   # b left our near set
    p.near = lambda: near
    run(p.probe_once())
    assert set(p.measurements()) == {'192.0.2.0/24'}
    clock.now += client_probe.STALE_INTERVALS * 30.0 + 1
    assert p.measurements() == {}
