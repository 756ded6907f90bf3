"""Servers found by ID through the overlay, and a dead PoP's own servers.

Drives the session's 3-PoP cloud (conftest.py) with the real ``openstack``
CLI. Every PoP runs an overlay agent; every conductor keeps the ring
records of its servers. ``openstack discovery server locate <id>`` asks
the current region's agent, whose routed lookup finds the record wherever
the server was asked; a PoP that is killed has its own servers rebuilt at
the nearest live PoP from those records, and leaves no duplicate when it
comes back. The tests run in file order and share servers.
"""

import json

import pytest

from discovery_nova.cloud import config_files
from discovery_nova.cloud import pop_registry
from discovery_nova.conductor import ring_records
from discovery_nova.overlay.client import AgentClient
from discovery_nova.overlay.client import read_key_file
from discovery_nova.sim.topology import PlanetLabTopology
from tests.e2e import harness

pytestmark = pytest.mark.functional

BOOT = ('server', 'create', '--image', 'discovery-tiny', '--nic', 'none',
        '--flavor', 'dn.small', '--wait', '-f', 'json')
#: Records are written by a pass every 2 s (the cloud's sync_interval).
RECORD_TIMEOUT = 60
#: A dead PoP leaves membership (10 s), is taken over (10 s more), its
#: servers are rebuilt; a returning PoP deletes its copies once older
#: than the reconcile's minimum age (180 s in this cloud).
FAILOVER_TIMEOUT = 400


@pytest.fixture(scope='module')
def pops(cloud):
    """Entry PoP (first), the farthest from it, and the PoP to kill: the
    one that is not the entry (so the CLI keeps a live region)."""
    layout = cloud['settings'].layout
    rtts = pop_registry.measured_rtts(layout, PlanetLabTopology())
    entry = layout.pops[0].name
    others = sorted(rtts[entry], key=rtts[entry].get)
    return {'entry': entry, 'far': others[-1], 'victim': others[0],
            'rtt': rtts}


@pytest.fixture(scope='module')
def made(cloud):
    """Name -> ID of the servers created here, deleted at the end from
    every region (wherever they run then)."""
    servers: dict[str, str] = {}
    yield servers
    for server_id in servers.values():
        for region in cloud['regions']:
            harness.run(cloud, region, 'server', 'delete', '--wait',
                        server_id)


def _boot(cloud, region, name, made, *extra):
    done = harness.run(cloud, region, *BOOT, *extra, name)
    assert done.returncode == 0, done.stderr
    server = json.loads(done.stdout)
    made[name] = server['id']
    return server


def _locate(cloud, region, ref):
    done = harness.run(cloud, region, 'discovery', 'server', 'locate', ref,
                       '-f', 'json')
    return done, (json.loads(done.stdout) if done.returncode == 0 else None)


def _located_by_overlay(cloud, region, ref, pop):
    """Poll until the overlay's record names ``pop``; the answer."""
    def check():
        done, shown = _locate(cloud, region, ref)
        if shown and shown['method'] == 'overlay' and shown['pop'] == pop \
                and shown['status'] == 'ACTIVE':
            return shown
        return None
    return harness.wait_for(check, RECORD_TIMEOUT,
                            '%s located at %s from %s by the overlay'
                            % (ref, pop, region))


def _ring(cloud, pop_name: str) -> ring_records.RingRecords:
    """The records as one PoP's agent answers them (test-side checks)."""
    settings = cloud['settings']
    pop = next(p for p in settings.layout.pops if p.name == pop_name)
    key = read_key_file(str(config_files.p2p_key_file(settings)))
    return ring_records.RingRecords(AgentClient(
        settings.layout.host, pop.overlay_port, key, timeout=20.0))


def _names_at(cloud, region):
    return {s['Name']: s for s in harness.as_json(cloud, region, 'server',
                                                  'list')}


def test_every_pop_runs_a_healthy_overlay_agent(cloud):
    done = harness.cloud_command(cloud['state_dir'], 'status')
    assert done.returncode == 0, done.stdout + done.stderr
    for region in cloud['regions']:
        line = next(row for row in done.stdout.splitlines()
                    if row.startswith('%s/overlay-agent ' % region))
        assert 'healthy' in line and 'UNHEALTHY' not in line, line
        assert 'overlay: %d of %d PoPs in the ring' % (
            len(cloud['regions']), len(cloud['regions'])) in line, line


def test_any_pop_locates_native_and_forwarded_servers_by_id(cloud, pops,
                                                            made):
    entry, far = pops['entry'], pops['far']
    native = _boot(cloud, entry, 'loc-native', made, '--hint',
                   'pop=%s' % entry)
    forwarded = _boot(cloud, entry, 'loc-forwarded', made, '--hint',
                      'near=%s' % far)
    for server, pop in ((native, entry), (forwarded, far)):
        for region in cloud['regions']:
            shown = _located_by_overlay(cloud, region, server['id'], pop)
            assert shown['id'] == server['id']
            assert shown['region'] == pop
            assert shown['host'].startswith(pop + '-')
            # The lookup starts at the region's own agent and ends at the
            # ring node that holds the record.
            assert shown['overlay_route'].startswith(region)
            assert shown['path'][0]['region'] == 'overlay'
            assert 'runs at %s' % pop in shown['path'][0]['answer']
            assert 'record kept by %s' % entry in shown['path'][0]['answer']
            assert shown['path'][-1] == {
                'region': pop, 'answer': 'found: ACTIVE on %s'
                % shown['host']}


def test_names_and_unknown_ids_fall_back_to_the_region_search(cloud, pops):
    entry = pops['entry']
    done, shown = _locate(cloud, entry, 'loc-native')
    assert done.returncode == 0, done.stderr
    assert shown['method'].startswith('region search (')
    assert "'loc-native' is a name" in shown['method']
    assert shown['pop'] == entry
    ghost = '00000000-1111-4222-8333-444444444444'
    done, _ = _locate(cloud, entry, ghost)
    assert done.returncode == 1
    assert 'no server %r in any region' % ghost in done.stderr


def test_a_deleted_server_is_reported_deleted(cloud, pops, made):
    entry = pops['entry']
    server_id = made.pop('loc-forwarded')
    harness.ok(cloud, entry, 'server', 'delete', '--wait', server_id)

    def deleted():
        done, _ = _locate(cloud, pops['victim'], server_id)
        return done.returncode == 1 and 'was deleted' in done.stderr
    harness.wait_for(deleted, RECORD_TIMEOUT,
                     'the record of %s to be marked deleted' % server_id)


def test_a_dead_pops_own_server_is_rebuilt_at_the_nearest_live_pop(
        cloud, pops, made):
    entry, victim = pops['entry'], pops['victim']
    # No hint: it stays at the victim, and may be rebuilt anywhere.
    server = _boot(cloud, victim, 'loc-victim', made)
    _located_by_overlay(cloud, entry, server['id'], victim)
    ring = _ring(cloud, entry)
    harness.wait_for(lambda: ring.server(server['id']).value.get('spec'),
                     RECORD_TIMEOUT, 'the rebuild spec of loc-victim')
    killed = harness.cloud_command(cloud['state_dir'], 'stop-pop', victim,
                                   '--kill')
    assert killed.returncode == 0, killed.stderr
    # It comes back at the live PoP nearest to the victim by the
    # coordinates every PoP's directory holds.
    where = {d.name: d.coordinate for d in pop_registry.describe_pops(
        cloud['settings'].layout, PlanetLabTopology())}
    nearest = min((p for p in where if p != victim),
                  key=lambda p: (where[victim].distance(where[p]), p))

    def moved():
        done, shown = _locate(cloud, entry, server['id'])
        if shown and shown['pop'] != victim and shown['status'] == 'ACTIVE':
            return shown
        return None
    shown = harness.wait_for(moved, FAILOVER_TIMEOUT,
                             'loc-victim to be rebuilt away from %s'
                             % victim)
    assert shown['method'] == 'overlay'
    assert shown['pop'] == nearest
    assert _names_at(cloud, nearest)['loc-victim']['Status'] == 'ACTIVE'
    record = ring.server(server['id']).value
    assert record['holder'] == nearest and record['rebuilt_from'] == victim


def test_a_returning_pop_leaves_no_duplicate_of_its_server(cloud, pops,
                                                           made):
    victim = pops['victim']
    started = harness.cloud_command(cloud['state_dir'], 'start-pop', victim,
                                    timeout=harness.UP_TIMEOUT)
    assert started.returncode == 0, started.stdout + started.stderr
    harness.wait_for(lambda: 'loc-victim' not in _names_at(cloud, victim),
                     FAILOVER_TIMEOUT,
                     'the old copy of loc-victim at %s to be removed'
                     % victim)
    running = [region for region in cloud['regions']
               if 'loc-victim' in _names_at(cloud, region)]
    assert len(running) == 1 and running[0] != victim, running
    done, shown = _locate(cloud, victim, made['loc-victim'])
    assert done.returncode == 0, done.stderr
    assert (shown['method'], shown['pop']) == ('overlay', running[0])
