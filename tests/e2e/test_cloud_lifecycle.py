"""The local cloud end to end: up, boot with the openstack CLI, status, down.

Runs the real services (keystone, glance, placement, nova) as processes on
this machine, with sqlite and one RabbitMQ vhost per PoP, and drives them
with python-openstackclient as a subprocess, as a user would.
"""

import concurrent.futures
import json
import os
from pathlib import Path
import socket
import subprocess
import sys
import time

import pytest

from discovery_nova.cloud import layout as layout_mod
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import Supervisor
from discovery_nova.cloud.supervisor import group_members

pytestmark = pytest.mark.functional

POPS = 3
UP_TIMEOUT = 1200
CLI_TIMEOUT = 300
OPENSTACK = str(Path(sys.executable).parent / 'openstack')


def _cloud(state_dir: Path, *args: str, timeout: float = CLI_TIMEOUT):
    return subprocess.run(
        [sys.executable, '-m', 'discovery_nova.cloud', 'cloud',
         '--state-dir', str(state_dir)] + list(args),
        capture_output=True, text=True, timeout=timeout, check=False)


def _free_base_port() -> int:
    """A base port whose whole block is free on 127.0.0.1."""
    for base in range(26000, 60000, 500):
        layout = layout_mod.make_layout(POPS, base)
        if not layout_mod.taken_ports(layout):
            return base
    raise RuntimeError('no free block of ports for the test cloud')


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


@pytest.fixture(scope='module')
def cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp('cloud')
    base = _free_base_port()
    started = time.monotonic()
    done = _cloud(state_dir, 'up', '--pops', str(POPS), '--base-port',
                  str(base), '--database', 'sqlite', '--transport', 'rabbit',
                  '--clouds-yaml', 'none', timeout=UP_TIMEOUT)
    up_seconds = time.monotonic() - started
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        settings = CloudSettings.load(state_dir)
        env = dict(os.environ,
                   OS_CLIENT_CONFIG_FILE=str(state_dir / 'clouds.yaml'))
        yield {'state_dir': state_dir, 'settings': settings, 'env': env,
               'up_seconds': up_seconds, 'up_output': done.stdout}
    finally:
        records = Supervisor(state_dir / 'run', state_dir / 'logs').records()
        down = _cloud(state_dir, 'down')
        left = [r.name for r in records.values() if group_members(r.pid)]
        assert down.returncode == 0, down.stdout + down.stderr
        assert not left, 'still running after down: %s' % left
        assert not list((state_dir / 'run').glob('*.pid'))


def _openstack(cloud, region: str, *args: str) -> str:
    done = subprocess.run(
        [OPENSTACK, '--os-cloud', 'discovery', '--os-region-name', region]
        + list(args), capture_output=True, text=True, env=cloud['env'],
        timeout=CLI_TIMEOUT, check=False)
    assert done.returncode == 0, '%s: %s' % (' '.join(args), done.stderr)
    return done.stdout


def test_up_shows_progress_and_every_service_is_healthy(cloud):
    settings = cloud['settings']
    assert len(settings.layout.pops) == POPS
    for pop in settings.layout.pops:
        assert '%s/nova-api: API answers' % pop.name in cloud['up_output']
    status = _cloud(cloud['state_dir'], 'status')
    assert status.returncode == 0, status.stdout + status.stderr
    for pop in settings.layout.pops:
        assert settings.nova_url(pop) in status.stdout
    expected = 3 + POPS * (4 + settings.computes_per_pop)
    assert '%d services, %d healthy' % (expected, expected) in status.stdout
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
        4 + settings.computes_per_pop)
    for line in table:
        name = line.split()[0]
        dead = name.startswith(victim + '/')
        assert ('UNHEALTHY' in line) == dead, line
        assert (' dead ' in line) == dead, line
    started = _cloud(cloud['state_dir'], 'start-pop', victim,
                     timeout=UP_TIMEOUT)
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
