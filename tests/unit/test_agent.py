"""Overlay agents in one process, on loopback, with in-process membership.

The protocol classes are tested on their own elsewhere; these tests cover
what the agent adds: the transport between agents, dispatch and its
defences against bad input from authenticated peers, the query interface,
supervision, membership wiring and coordinate publication.
"""

import asyncio

import pytest

from discovery_nova.overlay import wire
from discovery_nova.overlay.agent import AgentParams
from discovery_nova.overlay.agent import OverlayAgent
from discovery_nova.overlay.agent import query
from discovery_nova.overlay.errors import OverlayError
from discovery_nova.overlay.local_membership import LocalHub
from discovery_nova.overlay.local_membership import LocalMembership
from discovery_nova.overlay.spiral import SpiralParams
from tests.ports import free_tcp_udp_port

KEY = b'unit-test-deployment-key'


def _agent(name: str, hub: LocalHub, **overrides) -> OverlayAgent:
    values = dict(name=name, key=KEY, listen_host='127.0.0.1',
                  listen_port=free_tcp_udp_port(), probe_interval=0.02,
                  probe_timeout=0.5, request_timeout=1.0,
                  spiral=SpiralParams(near_set_size=4, spiral_k=2,
                                      hop_timeout=0.5),
                  spiral_refresh_interval=0.3,
                  membership_heartbeat_interval=0.05,
                  membership_timeout=0.5, restart_backoff=0.01,
                  restart_backoff_max=0.05)
    values.update(overrides)
    params = AgentParams(**values)
    membership = LocalMembership(
        'g', heartbeat_interval=params.membership_heartbeat_interval,
        timeout=params.membership_timeout, hub=hub)
    return OverlayAgent(params, membership=membership)


def run(coro, timeout=20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _ask(agent: OverlayAgent, kind: str, **args):
    return await query('127.0.0.1', agent.params.listen_port, KEY, kind,
                       timeout=5, **args)


async def _until(check, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError('condition not met in %.1f s' % timeout)


def test_three_agents_search_store_and_locate():
    async def main():
        hub = LocalHub()
        rtts = {'a': {'b': 10, 'c': 300}, 'b': {'a': 10, 'c': 250},
                'c': {'a': 300, 'b': 250}}
        agents = [_agent(n, hub, emulated_rtt_ms=rtts[n]) for n in 'abc']
        for a in agents:
            await a.start()
        try:
            await _until(lambda: all(len(a.peers) == 2 for a in agents))
            await _until(lambda: all(
                a.vivaldi.counters.accepted > 10 for a in agents))
            answer = await _ask(agents[0], 'nearest', k=1)
            assert [n for n, _ in answer['peers']] == ['b']
            assert answer['peers'][0][1] >= 10
            stored = await _ask(agents[1], 'put', key='vm-1',
                                value={'pop': 'b'})
            for a in agents:
                found = await _ask(a, 'locate', key='vm-1')
                assert found['found'] and found['value'] == {'pop': 'b'}
                assert found['node'] == stored['node']
            status = await _ask(agents[2], 'status')
            assert status['members'] == ['a', 'b', 'c']
            assert sorted(status['successors']) == ['a', 'b']
            assert status['services']['vivaldi']['running']
        finally:
            for a in agents:
                await a.stop()
        # A clean stop is a leave: the hub no longer lists anyone.
        assert hub.member_names('g') == []
    run(main())


def test_bad_messages_from_an_authenticated_peer_are_counted():
    async def main():
        hub = LocalHub()
        target = _agent('target', hub)
        await target.start()
        try:
            conn = await wire.connect('127.0.0.1',
                                      target.params.listen_port, 'rogue',
                                      KEY, max_bytes=1 << 20, timeout=2)
            await conn.send({'type': 'spiral.request', 'search': 1})
            await conn.send({'type': 'ring.route'})
            await conn.send({'type': 'locate.store', 'key': 'k'})
            await conn.send({'type': 'bogus.thing'})
            await conn.send({'no': 'type'})
            await conn.send({'type': 'query.reply', 'id': 1})
            stats = target.dispatch_stats
            await _until(lambda: stats.invalid == 4 and
                         stats.unknown_type == 2)
            # The connection stays open and the agent keeps answering.
            await conn.send({'type': 'query.status', 'id': 7})
            reply = await conn.recv()
            assert reply['id'] == 7 and reply['ok']
            assert reply['result']['dispatch']['invalid'] == 4
            conn.close()
        finally:
            await target.stop()
    run(main())


def test_failing_handler_is_isolated():
    async def main():
        hub = LocalHub()
        target = _agent('target', hub)

        def explode(sender, message):
            raise RuntimeError('boom')
        target.spiral.handle = explode
        await target.start()
        try:
            conn = await wire.connect('127.0.0.1',
                                      target.params.listen_port, 'peer',
                                      KEY, max_bytes=1 << 20, timeout=2)
            await conn.send({'type': 'spiral.ack', 'search': 'x/1'})
            await _until(lambda: target.dispatch_stats.handler_errors == 1)
            status = await _ask(target, 'status')
            assert status['dispatch']['handler_errors'] == 1
            conn.close()
        finally:
            await target.stop()
    run(main())


def test_query_errors_name_the_problem():
    async def main():
        hub = LocalHub()
        target = _agent('target', hub)
        await target.start()
        try:
            with pytest.raises(OverlayError, match='unknown query'):
                await _ask(target, 'explode')
            with pytest.raises(OverlayError, match='k must be'):
                await _ask(target, 'nearest', k=0)
            with pytest.raises(OverlayError, match='"key"'):
                await _ask(target, 'locate')
            with pytest.raises(OverlayError, match='ValueError'):
                await _ask(target, 'put', key='k', value='x' * 10000)
            # Alone, an agent answers searches with nobody and owns every
            # key.
            assert (await _ask(target, 'nearest', k=3))['peers'] == []
            stored = await _ask(target, 'put', key='k', value=1)
            assert stored['node'] == 'target'
        finally:
            await target.stop()
    run(main())


def test_failed_service_is_restarted():
    async def main():
        hub = LocalHub()
        a, b = _agent('a', hub), _agent('b', hub)
        real = a.choose_probe_target
        failures = []

        def flaky():
            if len(failures) < 2:
                failures.append(1)
                raise RuntimeError('probe loop failure %d' % len(failures))
            return real()
        a.choose_probe_target = flaky
        await a.start()
        await b.start()
        try:
            await _until(lambda: a.vivaldi.counters.accepted > 3)
            status = a.status()
            assert status['services']['vivaldi']['restarts'] == 2
            assert 'probe loop failure 2' in (
                status['services']['vivaldi']['last_error'])
        finally:
            await a.stop()
            await b.stop()
    run(main())


def test_unreachable_and_unknown_peers_are_dropped_and_counted():
    async def main():
        hub = LocalHub()
        a, b = _agent('a', hub), _agent('b', hub)
        await a.start()
        await b.start()
        try:
            await _until(lambda: 'b' in a.peers)
            a.send('nobody', {'type': 'spiral.ack', 'search': 'x'})
            assert a.dispatch_stats.dropped_unknown_peer == 1
            # b's agent dies without leaving membership: sends fail.
            await b._close_transport()
            a.send('b', {'type': 'spiral.ack', 'search': 'x'})
            await _until(lambda: a.dispatch_stats.connect_failures == 1)
            assert a.dispatch_stats.dropped_unreachable >= 1
        finally:
            await a.stop()
            b.membership.stop()
    run(main())


def test_leave_takes_effect_after_grace_and_a_flap_does_not():
    async def main():
        hub = LocalHub()
        a, b = _agent('a', hub), _agent('b', hub)
        await a.start()
        await b.start()
        try:
            await _until(lambda: 'b' in a.peers and
                         [p.name for p in a.ring.successors] == ['b'])
            member = b.membership.member
            b.membership.leave()
            b.membership.join(member)
            await asyncio.sleep(a._leave_grace * 2)
            assert 'b' in a.peers
            assert [p.name for p in a.ring.successors] == ['b']
            b.membership.leave()
            assert 'b' in a.peers  # not yet: the grace period
            await _until(lambda: 'b' not in a.peers)
            assert a.ring.successors == ()
            assert 'b' not in a.spiral.near_names()
        finally:
            await a.stop()
            await b.stop()
    run(main())


def test_coordinate_is_published_when_it_moved():
    async def main():
        hub = LocalHub()
        a = _agent('a', hub, publish_interval=0.05, publish_min_move_ms=1)
        b = _agent('b', hub, emulated_rtt_ms={'a': 80})
        await a.start()
        await b.start()
        try:
            def published():
                record = hub.group('g').records['a'].member
                return (record.coordinate == a._published and
                        a._published.distance(b.vivaldi.coordinate) > 10 and
                        record.capabilities['error'] < 1.0)
            await _until(published)
        finally:
            await a.stop()
            await b.stop()
    run(main())


def test_params_refuse_bad_key_and_name():
    with pytest.raises(ValueError, match='at least 16 bytes'):
        AgentParams(name='a', key=b'short')
    with pytest.raises(ValueError, match='agent name'):
        AgentParams(name='bad name', key=KEY)
    params = AgentParams(name='a', key=KEY, listen_host='::1',
                         listen_port=7390)
    assert params.advertised_address == '[::1]:7390'


def test_pending_handshakes_are_bounded():
    async def main():
        target = _agent('target', LocalHub(), max_pending_handshakes=2,
                        request_timeout=3.0)
        await target.start()
        port = target.params.listen_port
        try:
            silent = [await asyncio.open_connection('127.0.0.1', port)
                      for _ in range(2)]
            await _until(lambda: target._handshaking == 2)
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            # Closed at once, not after the 3 s handshake timeout.
            assert await asyncio.wait_for(reader.read(), 1.0) == b''
            assert target.wire_stats.handshake_failed == 1
            for _, w in silent + [(reader, writer)]:
                w.close()
            await _until(lambda: target._handshaking == 0)
            assert (await _ask(target, 'status'))['name'] == 'target'
        finally:
            await target.stop()
    run(main())


def test_agent_probes_client_prefixes_and_reports_them_in_status():
    from discovery_nova.overlay.client_probe import ClientTarget

    async def main():
        async def on_connect(reader, writer):
            writer.close()

        listener = await asyncio.start_server(on_connect, '127.0.0.1', 0)
        open_port = listener.sockets[0].getsockname()[1]
        closed_port = free_tcp_udp_port()
        hub = LocalHub()
        agent = _agent('a', hub, client_probe_interval=0.05, client_probes=(
            ClientTarget('192.0.2.0/24', 'a', '127.0.0.1', open_port),
            ClientTarget('198.51.100.0/24', 'a', '127.0.0.1', closed_port),
            # Mapped to a PoP that is not near: not probed.
            ClientTarget('203.0.113.0/24', 'zz', '127.0.0.1', open_port)))
        await agent.start()
        try:
            await _until(lambda: agent.client_prober.measurements())
            status = await _ask(agent, 'status')
            assert list(status['client_rtt']) == ['192.0.2.0/24']
            assert 0 < status['client_rtt']['192.0.2.0/24'] < 500
            assert status['services']['client-probes']['running']
            assert agent.client_prober.unreachable == {'198.51.100.0/24'}
        finally:
            await agent.stop()
            listener.close()
            await listener.wait_closed()
    run(main())


def test_locality_view_lists_measured_nearest_first():
    async def main():
        hub = LocalHub()
        rtts = {'a': {'b': 10, 'c': 120}, 'b': {'a': 10, 'c': 110},
                'c': {'a': 120, 'b': 110}}
        agents = [_agent(n, hub, emulated_rtt_ms=rtts[n]) for n in 'abc']
        for a in agents:
            await a.start()
        try:
            first = agents[0]
            await _until(lambda: len(first.locality_view().measured_rtt)
                         == 2, timeout=10)
            view = first.locality_view()
            assert list(view.measured_rtt) == ['b', 'c']
            assert 10 <= view.measured_rtt['b'] < 60
            assert view.measured_rtt['c'] >= 120
            assert view.coordinate == first.vivaldi.coordinate
            assert view.error == first.vivaldi.error
            assert view.client_rtt == {}
        finally:
            for a in agents:
                await a.stop()
    run(main())
