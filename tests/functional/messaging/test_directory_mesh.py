"""The topic directory over real meshes: quiet when nothing changes, a
crashed peer withdrawn by its watchers, a false death refuted, a missed
flood repaired by anti-entropy.

Peers are ``PeerMesh`` objects over authenticated TCP on 127.0.0.1, all in
one asyncio loop, with a 0.2 s heartbeat and a 2 s TTL.
"""

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from discovery_nova.messaging import mesh as mesh_mod

pytestmark = pytest.mark.functional

KEY = b'test-deployment-key-0123456789'
HEARTBEAT = 0.2
TTL = 2.0
SUBS = [('rpc', 'x', 'compute', '')]


async def _peer(name: str, seeds: list) -> mesh_mod.PeerMesh:
    settings = mesh_mod.MeshSettings(
        name=name, key=KEY, max_bytes=1 << 20, connect_timeout=1.0,
        idle_timeout=5.0, max_connections=8, min_neighbours=2, max_hops=8,
        heartbeat_interval=HEARTBEAT, registration_ttl=TTL)
    mesh = mesh_mod.PeerMesh(settings, seeds=seeds, bind_seed=False,
                             listen=('127.0.0.1', 0), advertise_host=None,
                             on_body=lambda src, body: None,
                             on_directory_change=lambda: None)
    await mesh.start()
    mesh.set_subscriptions(SUBS + [('rpc', 'x', 'compute', name)])
    return mesh


async def _cluster(size: int) -> list[mesh_mod.PeerMesh]:
    first = await _peer('p00', [])
    host, port = first.address.rsplit(':', 1)
    seed = [(host, int(port))]
    meshes = [first]
    for i in range(1, size):
        meshes.append(await _peer('p%02d' % i, seed))
    await _until(lambda: all(len(m.directory.live_nodes()) == size - 1
                             for m in meshes), 10)
    return meshes


async def _until(condition, timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError('condition not met within %.1f s' % timeout)
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _stop(meshes) -> None:
    await asyncio.gather(*(m.stop() for m in meshes), return_exceptions=True)


def _on_cluster(size: int, body) -> None:
    """Run ``await body(meshes)`` on a new cluster, then stop it."""
    async def run():
        meshes = await _cluster(size)
        try:
            await body(meshes)
        finally:
            await _stop(meshes)
    asyncio.run(run())


def test_a_quiet_mesh_sends_keepalives_and_no_records():
    async def body(meshes):
        await asyncio.sleep(4 * HEARTBEAT)
        records = [m.stats.records_out for m in meshes]
        keepalives = [m.stats.keepalives_out for m in meshes]
        await asyncio.sleep(10 * HEARTBEAT)
        assert [m.stats.records_out for m in meshes] == records
        sent = [m.stats.keepalives_out - k
                for m, k in zip(meshes, keepalives, strict=True)]
        # One per connection per heartbeat: bounded by the links.
        for mesh, count in zip(meshes, sent, strict=True):
            assert 5 <= count <= 12 * mesh.link_count(), (mesh.name,
                                                          count)
        assert sum(m.stats.full_syncs for m in meshes) <= 2 * len(
            meshes) * 8, 'digests should agree once converged'
    _on_cluster(8, body)


def test_a_crashed_peer_is_withdrawn_everywhere_by_its_watchers():
    async def body(meshes):
        victim = meshes.pop(3)
        key = ('rpc', 'x', 'compute', victim.name)
        assert all(m.directory.nodes_for(key) for m in meshes)
        victim.abort()
        took = await _until(lambda: not any(
            m.directory.nodes_for(key) for m in meshes), 4 * TTL)
        assert took >= TTL * 0.8  # not before the TTL ...
        assert sum(m.stats.declared_dead for m in meshes) >= 1
        # ... and nobody else was lost or suspected.
        assert all(len(m.directory.live_nodes()) == 6 for m in meshes)
        assert sum(m.stats.refuted for m in meshes) == 0
        shared = ('rpc', 'x', 'compute', '')
        assert all(len(m.directory.nodes_for(shared)) in (6, 7)
                   for m in meshes)
    _on_cluster(8, body)


def test_a_live_peer_declared_dead_refutes_it_everywhere():
    async def body(meshes):
        accuser, accused = meshes[0], meshes[4]
        key = ('rpc', 'x', 'compute', accused.name)
        assert accuser.directory.declare_dead(accused.name)
        accuser.gossip_soon()
        await _until(lambda: accused.stats.refuted == 1, 5)
        await _until(lambda: all(
            m.directory.nodes_for(key) for m in meshes
            if m is not accused), 5)
        assert accused.directory.is_live(accused.name)
    _on_cluster(6, body)


def test_a_record_one_peer_missed_reaches_it_by_anti_entropy():
    async def body(meshes):
        # A record stored at one peer without a flood (as when the
        # frame carrying it was lost with its connection).
        record = {'node': 'ghost', 'addr': '127.0.0.1:9', 'ver': 1,
                  'subs': [['rpc', 'x', 'other', '']], 'gone': False}
        holder = meshes[2]
        holder.directory.merge([record])
        for links in holder._links.values():
            for link in links:
                link.gossip_seq = holder.directory.seq
        await _until(lambda: all(
            m.directory.nodes_for(('rpc', 'x', 'other', ''))
            for m in meshes), 10 * TTL)
        assert sum(m.stats.full_syncs for m in meshes) >= 1
    _on_cluster(6, body)


def test_the_directory_benchmark_still_runs():
    """benchmarks/messaging_directory.py against today's mesh, small."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    proc = subprocess.run(
        [sys.executable, os.path.join(repo, 'benchmarks',
                                      'messaging_directory.py'),
         '--sizes', '6', '--heartbeat', '0.2', '--ttl', '1.0',
         '--window', '1.0', '--timeout', '20', '--no-write'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith('{')]
    result = json.loads(line)
    assert result['size'] == 6
    assert result['steady_records_per_peer_s'] == 0
    assert result['keepalives_per_peer_s'] > 0
    assert result['crash_withdrawn_s'] is not None
    assert result['late_join_s'] is not None


def test_a_peer_whose_loop_stalled_accuses_nobody():
    """All peers share this loop: blocking it for longer than the TTL
    stalls every one of them, as a starved process stalls its own peer.
    What the others sent meanwhile is unread, not missing: nobody is
    declared dead."""
    async def body(meshes):
        await asyncio.sleep(3 * HEARTBEAT)
        time.sleep(1.5 * TTL)
        await asyncio.sleep(4 * HEARTBEAT)
        assert sum(m.stats.declared_dead for m in meshes) == 0
        assert all(len(m.directory.live_nodes()) == 4 for m in meshes)
    _on_cluster(5, body)
