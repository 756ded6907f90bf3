"""The PoPs as one cloud: forwarding, visibility from the origin, failure.

Drives the session's 3-PoP cloud (conftest.py) with the real ``openstack``
CLI only. Each compute offers 4 vCPUs, so the entry PoP is full after
eight one-vCPU servers. The tests run in file order and share servers:
the overflowed server of one is the victim of the PoP failure of the next.
"""

import json

import pytest

from discovery_nova.cloud import pop_registry
from discovery_nova.sim.topology import PlanetLabTopology
from tests.e2e import harness

pytestmark = pytest.mark.functional

BOOT = ('server', 'create', '--image', 'discovery-tiny', '--nic', 'none')
#: Time for a dead PoP to leave the membership and its servers to be
#: rebuilt, or for a returning PoP to reconcile.
FAILOVER_TIMEOUT = 300


@pytest.fixture(scope='module')
def pops(cloud):
    """Entry PoP, its nearest neighbour and the farthest PoP, by RTT."""
    layout = cloud['settings'].layout
    rtts = pop_registry.measured_rtts(layout, PlanetLabTopology())
    entry = layout.pops[0].name
    others = sorted(rtts[entry], key=rtts[entry].get)
    return {'entry': entry, 'near': others[0], 'far': others[-1],
            'rtt': rtts}


@pytest.fixture(scope='module')
def made(cloud, pops):
    """Servers created at the entry PoP, deleted from there at the end."""
    names: list[str] = []
    yield names
    for name in names:
        harness.run(cloud, pops['entry'], 'server', 'delete', '--wait', name)


def _show(cloud, region, server):
    return harness.as_json(cloud, region, 'server', 'show', server)


def _boot(cloud, region, name, *extra, made=None):
    done = harness.run(cloud, region, *BOOT, '--flavor', 'dn.small',
                       '--wait', *extra, '-f', 'json', name)
    if made is not None:
        made.append(name)
    return done


def _actions(cloud, region, server):
    return [a['Action'] for a in harness.as_json(
        cloud, region, 'server', 'event', 'list', server)]


def _names_at(cloud, region):
    return {s['Name']: s for s in harness.as_json(cloud, region, 'server',
                                                  'list')}


def test_near_hint_sends_the_server_to_that_pop(cloud, pops, made):
    entry, far = pops['entry'], pops['far']
    done = _boot(cloud, entry, 'fed-near', '--hint', 'near=%s' % far,
                 made=made)
    assert done.returncode == 0, done.stderr
    shown = _show(cloud, entry, 'fed-near')
    assert shown['status'] == 'ACTIVE'
    assert shown['OS-EXT-AZ:availability_zone'] == far
    assert shown['properties'] == {'discovery_pop': far,
                                   'discovery_origin': entry}
    # It runs there: the remote PoP lists it as its own, on a real host.
    remote = _show(cloud, far, shown['id'])
    assert remote['status'] == 'ACTIVE'
    assert remote['OS-EXT-SRV-ATTR:host'].startswith(far)
    actions = _actions(cloud, entry, 'fed-near')
    assert 'create' in actions
    assert any(a.startswith('forward to %s (~' % far) for a in actions)


def test_delete_at_the_origin_deletes_where_it_runs(cloud, pops, made):
    entry, far = pops['entry'], pops['far']
    server = _show(cloud, entry, 'fed-near')['id']
    harness.ok(cloud, entry, 'server', 'delete', '--wait', 'fed-near')
    made.remove('fed-near')
    harness.wait_for(lambda: server not in {
        s['ID'] for s in harness.as_json(cloud, far, 'server', 'list')},
        120, 'the server to be deleted at %s' % far)


def test_malformed_hint_fails_with_a_fault_naming_it(cloud, pops, made):
    entry = pops['entry']
    for hint, words in (('max_rtt_ms=abc', ('max_rtt_ms=abc', 'expected')),
                        ('pop=atlantis', ('pop=atlantis',
                                          'names of known PoPs'))):
        name = 'fed-bad-%s' % hint.split('=')[0]
        done = _boot(cloud, entry, name, '--hint', hint, made=made)
        assert done.returncode != 0
        shown = _show(cloud, entry, name)
        assert shown['status'] == 'ERROR'
        for word in words:
            assert word in shown['fault']['message'], shown['fault']


def test_a_full_pop_overflows_to_its_nearest_neighbour(cloud, pops, made):
    entry, near = pops['entry'], pops['near']
    fill = harness.run(cloud, entry, *BOOT, '--flavor', 'dn.small',
                       '--min', '8', '--max', '8', '--wait', 'fed-fill')
    made.extend('fed-fill-%d' % i for i in range(1, 9))
    assert fill.returncode == 0, fill.stderr
    done = _boot(cloud, entry, 'fed-over', made=made)
    assert done.returncode == 0, done.stderr
    shown = _show(cloud, entry, 'fed-over')
    assert shown['status'] == 'ACTIVE'
    assert shown['OS-EXT-AZ:availability_zone'] == near
    actions = _actions(cloud, entry, 'fed-over')
    assert 'schedule at %s (this PoP)' % entry in actions
    assert any(a.startswith('forward to %s' % near) for a in actions)
    assert _names_at(cloud, near)['fed-over']['Status'] == 'ACTIVE'


def test_no_pop_can_take_it_fault_lists_every_pop(cloud, pops, made):
    entry = pops['entry']
    harness.ok(cloud, entry, 'flavor', 'create', '--vcpus', '6', '--ram',
               '256', '--disk', '1', 'fed-too-big')
    done = harness.run(cloud, entry, *BOOT, '--flavor', 'fed-too-big',
                       '--wait', 'fed-big')
    made.append('fed-big')
    assert done.returncode != 0
    shown = _show(cloud, entry, 'fed-big')
    assert shown['status'] == 'ERROR'
    fault = shown['fault']['message']
    for pop in cloud['regions']:
        assert pop in fault, fault
    assert len(_actions(cloud, entry, 'fed-big')) >= 1 + len(
        cloud['regions'])


def test_servers_of_a_killed_pop_come_back_elsewhere(cloud, pops, made):
    """Two servers forwarded from the entry PoP run at its neighbour when
    that dies: ``fed-over`` (no hint) comes back home, the entry PoP
    having room again, and ``fed-away`` (``avoid_pop`` the entry PoP)
    goes to the remaining PoP."""
    entry, near, far = pops['entry'], pops['near'], pops['far']
    done = _boot(cloud, entry, 'fed-away', '--hint', 'avoid_pop=%s' % entry,
                 made=made)
    assert done.returncode == 0, done.stderr
    assert _show(cloud, entry, 'fed-away')[
        'OS-EXT-AZ:availability_zone'] == near
    harness.ok(cloud, entry, 'server', 'delete', '--wait', 'fed-fill-1')
    made.remove('fed-fill-1')
    killed = harness.cloud_command(cloud['state_dir'], 'stop-pop', near,
                                   '--kill')
    assert killed.returncode == 0, killed.stderr

    def moved(name):
        def check():
            shown = _show(cloud, entry, name)
            az = shown['OS-EXT-AZ:availability_zone']
            return shown if az != near and shown['status'] == 'ACTIVE' \
                else None
        return check

    home = harness.wait_for(moved('fed-over'), FAILOVER_TIMEOUT,
                            'fed-over to be rebuilt away from %s' % near)
    assert home['OS-EXT-AZ:availability_zone'] == entry
    assert home['OS-EXT-SRV-ATTR:host'].startswith(entry)
    assert 'discovery_pop' not in home['properties']
    actions = _actions(cloud, entry, 'fed-over')
    # The dead PoP as the first attempt of the rebuild (its event says
    # it left the membership), then this PoP taking it.
    assert 'forward to %s (RTT unknown)' % near in actions, actions
    assert actions.count('schedule at %s (this PoP)' % entry) == 2

    away = harness.wait_for(moved('fed-away'), FAILOVER_TIMEOUT,
                            'fed-away to be rebuilt away from %s' % near)
    assert away['OS-EXT-AZ:availability_zone'] == far
    assert away['properties']['discovery_pop'] == far
    assert _names_at(cloud, far)['fed-away']['Status'] == 'ACTIVE'
    assert any(a.startswith('forward to %s' % far)
               for a in _actions(cloud, entry, 'fed-away'))


def test_a_returning_pop_leaves_no_duplicate(cloud, pops, made):
    entry, near, far = pops['entry'], pops['near'], pops['far']
    started = harness.cloud_command(cloud['state_dir'], 'start-pop', near,
                                    timeout=harness.UP_TIMEOUT)
    assert started.returncode == 0, started.stdout + started.stderr
    harness.wait_for(lambda: not {'fed-over', 'fed-away'} &
                     set(_names_at(cloud, near)),
                     FAILOVER_TIMEOUT,
                     'the old copies of fed-over and fed-away at %s to be '
                     'removed' % near)
    where = {name: _show(cloud, entry, name)['OS-EXT-AZ:availability_zone']
             for name in ('fed-over', 'fed-away')}
    assert where == {'fed-over': entry, 'fed-away': far}
    print('\n' + json.dumps({'now at': where}))
