"""The local cloud end to end: up, boot with the openstack CLI, status, down.

Runs the real services (keystone, glance, placement, nova) as processes on
this machine (the session's cloud of conftest.py: sqlite, the p2p driver,
our conductor) and drives them with python-openstackclient as a
subprocess, as a user would.
"""

import concurrent.futures
import json
import os
import socket

import pytest

from discovery_nova.cloud import layout as layout_mod
from discovery_nova.cloud.supervisor import Supervisor
from discovery_nova.cloud.supervisor import group_members
from tests.e2e import harness

pytestmark = pytest.mark.functional

POPS = harness.POPS
_cloud = harness.cloud_command
_free_base_port = harness.free_base_port


def _rss_bytes(pgids: list[int]) -> int:
    page = os.sysconf('SC_PAGE_SIZE')
    total = 0
    for pgid in pgids:
        for pid in group_members(pgid):
            try:
                with open('/proc/%d/statm' % pid) as src:
                    total += int(src.read().split()[1]) * page
            except OSError:
                pass
    return total


_openstack = harness.ok


def test_up_shows_progress_and_every_service_is_healthy(cloud):
    settings = cloud['settings']
    assert len(settings.layout.pops) == POPS
    for pop in settings.layout.pops:
        assert '%s/nova-api: API answers' % pop.name in cloud['up_output']
    status = _cloud(cloud['state_dir'], 'status')
    assert status.returncode == 0, status.stdout + status.stderr
    for pop in settings.layout.pops:
        assert settings.nova_url(pop) in status.stdout
    # Per PoP: placement, overlay agent, conductor, scheduler, API.
    expected = 3 + POPS * (5 + settings.computes_per_pop)
    assert '%d services, %d healthy' % (expected, expected) in status.stdout
    for pop in settings.layout.pops:
        assert '%s/overlay-agent: agent answers' % pop.name in \
            cloud['up_output']
    for pop in settings.layout.pops:
        for host in settings.compute_hosts(pop):
            assert '%s/%s' % (pop.name, host) in status.stdout


def test_second_up_is_refused_while_running(cloud):
    again = _cloud(cloud['state_dir'], 'up', '--pops', str(POPS),
                   '--clouds-yaml', 'none')
    assert again.returncode == 1
    assert 'already running' in again.stderr


def test_server_lifecycle_in_every_region(cloud):
    settings = cloud['settings']
    regions = [pop.name for pop in settings.layout.pops]

    def boot(region: str) -> dict:
        out = _openstack(cloud, region, 'server', 'create', '--flavor',
                         'dn.tiny', '--image', 'discovery-tiny', '--nic',
                         'none', '--wait', '-f', 'json', 'e2e-%s' % region)
        return json.loads(out)

    with concurrent.futures.ThreadPoolExecutor(len(regions)) as pool:
        servers = dict(zip(regions, pool.map(boot, regions), strict=True))
    for pop in settings.layout.pops:
        server = servers[pop.name]
        assert server['status'] == 'ACTIVE'
        assert server['OS-EXT-SRV-ATTR:host'] in settings.compute_hosts(pop)
        listed = json.loads(_openstack(cloud, pop.name, 'server', 'list',
                                       '-f', 'json'))
        assert [s['ID'] for s in listed] == [server['id']]
        shown = json.loads(_openstack(cloud, pop.name, 'server', 'show',
                                      server['id'], '-f', 'json'))
        assert shown['status'] == 'ACTIVE'
        assert shown['name'] == 'e2e-%s' % pop.name

    def delete(region: str) -> None:
        _openstack(cloud, region, 'server', 'delete', '--wait',
                   servers[region]['id'])

    with concurrent.futures.ThreadPoolExecutor(len(regions)) as pool:
        list(pool.map(delete, regions))
    for region in regions:
        listed = json.loads(_openstack(cloud, region, 'server', 'list',
                                       '-f', 'json'))
        assert listed == []


def test_memory_of_the_whole_cloud_is_reported(cloud):
    """Sum of RSS of every process of the cloud, printed for the record."""
    records = Supervisor(cloud['state_dir'] / 'run',
                         cloud['state_dir'] / 'logs').records()
    total = _rss_bytes([r.pid for r in records.values()])
    print('\ncloud up took %.1f s; %d services use %.0f MiB RSS in total'
          % (cloud['up_seconds'], len(records), total / 2 ** 20))
    assert total > 0
    assert total < 12 * 2 ** 30


def test_a_killed_pop_is_reported_and_comes_back(cloud):
    """Crash one PoP; the others stay healthy; it restarts with its data."""
    settings = cloud['settings']
    victim = settings.layout.pops[-1].name
    killed = _cloud(cloud['state_dir'], 'stop-pop', victim, '--kill')
    assert killed.returncode == 0, killed.stderr
    status = _cloud(cloud['state_dir'], 'status')
    assert status.returncode == 3
    lines = status.stdout.splitlines()
    table = lines[lines.index(next(x for x in lines
                                   if x.startswith('SERVICE'))) + 1:-1]
    assert len(table) == 3 + len(settings.layout.pops) * (
        5 + settings.computes_per_pop)
    for line in table:
        name = line.split()[0]
        dead = name.startswith(victim + '/')
        assert ('UNHEALTHY' in line) == dead, line
        assert (' dead ' in line) == dead, line
    started = _cloud(cloud['state_dir'], 'start-pop', victim,
                     timeout=harness.UP_TIMEOUT)
    assert started.returncode == 0, started.stdout + started.stderr
    status = _cloud(cloud['state_dir'], 'status')
    assert status.returncode == 0, status.stdout
    server = json.loads(_openstack(
        cloud, victim, 'server', 'create', '--flavor', 'dn.tiny', '--image',
        'discovery-tiny', '--nic', 'none', '--wait', '-f', 'json',
        'after-restart'))
    assert server['status'] == 'ACTIVE'
    _openstack(cloud, victim, 'server', 'delete', '--wait', server['id'])


def test_taken_port_is_a_clear_error(tmp_path):
    base = _free_base_port()
    layout = layout_mod.make_layout(POPS, base)
    port = layout.pops[1].placement_port
    with socket.socket() as sock:
        # Like a server would: a port in TIME_WAIT after an earlier cloud
        # can still be listened on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('127.0.0.1', port))
        sock.listen()
        done = _cloud(tmp_path / 'state', 'up', '--pops', str(POPS),
                      '--base-port', str(base), '--clouds-yaml', 'none')
    assert done.returncode == 1
    assert '%d (%s/placement)' % (port, layout.pops[1].name) in done.stderr
    assert not list((tmp_path / 'state').glob('run/*.pid'))
