"""``openstack discovery ...`` end to end, against a local 3-PoP cloud.

The real ``openstack`` command runs as a subprocess, as a user would run
it, against the cloud of ``discovery-nova cloud up``; its PoP aggregates
(coordinates fitted to the shipped PlanetLab matrix, one aggregate per PoP
in every PoP's nova) come from ``cloud up`` itself; the cloud is the
session's (tests/e2e/conftest.py).
"""

import math

import pytest

from tests.e2e import harness

pytestmark = pytest.mark.functional

POPS = harness.POPS
_run = harness.run
_json = harness.as_json


def _distance(a: dict, b: dict) -> float:
    """Vivaldi RTT between two coordinates as ``-f json`` shows them."""
    return math.dist(a['vector'], b['vector']) + a['height'] + b['height']


def test_pop_list_from_every_region(cloud):
    settings = cloud['settings']
    regions = cloud['regions']
    seen = {}
    for region in regions:
        rows = _json(cloud, region, 'discovery', 'pop', 'list')
        by_name = {row['Name']: row for row in rows}
        assert sorted(by_name) == sorted(regions)
        here = by_name[region]
        assert here['RTT (ms)'] == 0.0
        assert here['Health'] == '%d/%d up' % (settings.computes_per_pop,
                                               settings.computes_per_pop)
        assert here['Free vCPUs'] > 0 and here['Free RAM (MB)'] > 0
        rtts = [row['RTT (ms)'] for row in rows]
        assert rtts == sorted(rtts)
        for name, row in by_name.items():
            if name == region:
                continue
            expected = _distance(here['Coordinates'], row['Coordinates'])
            assert row['RTT (ms)'] > 0
            assert row['RTT (ms)'] == pytest.approx(expected, abs=0.01)
            # Every PoP's nova answers the health query of the others.
            assert row['Health'].endswith(' up'), row
            seen[(region, name)] = row['RTT (ms)']
    # All PoPs publish the same coordinates: A sees B where B sees A.
    for (a, b), rtt in seen.items():
        assert seen[(b, a)] == pytest.approx(rtt, abs=0.01)


def test_neighbors_are_the_other_pops_nearest_first(cloud):
    here = cloud['regions'][0]
    listed = _json(cloud, here, 'discovery', 'pop', 'list')
    rows = _json(cloud, here, 'discovery', 'neighbors')
    assert [row['Name'] for row in rows] == [
        row['Name'] for row in listed if row['Name'] != here]
    assert [row['Rank'] for row in rows] == [1, 2]
    assert rows[0]['RTT (ms)'] <= rows[1]['RTT (ms)']
    assert all(row['Error'] > 0 for row in rows)
    limited = _json(cloud, here, 'discovery', 'neighbors', '--limit', '1')
    assert [row['Name'] for row in limited] == [rows[0]['Name']]


def test_pop_show(cloud):
    here, other = cloud['regions'][:2]
    shown = _json(cloud, here, 'discovery', 'pop', 'show', other)
    assert shown['name'] == other
    assert shown['local'] is False
    assert shown['seen_from'] == here
    assert shown['rtt_ms'] > 0
    mine = _json(cloud, here, 'discovery', 'pop', 'show', here)
    assert mine['local'] is True
    assert mine['availability_zone'] == here
    assert mine['hosts'] == sorted(cloud['settings'].compute_hosts(
        cloud['settings'].layout.pops[0]))
    assert mine['capacity_source'] == 'placement'


def test_pop_show_of_an_unknown_pop_names_the_known_ones(cloud):
    here = cloud['regions'][0]
    done = _run(cloud, here, 'discovery', 'pop', 'show', 'atlantis')
    assert done.returncode == 1
    assert "no PoP 'atlantis' is known to region %s" % here in done.stderr
    assert ', '.join(sorted(cloud['regions'])) in done.stderr


def test_server_locate(cloud):
    settings = cloud['settings']
    regions = cloud['regions']
    home = regions[1]
    server = _json(cloud, home, 'server', 'create', '--flavor', 'dn.tiny',
                   '--image', 'discovery-tiny', '--nic', 'none', '--wait',
                   'e2e-locate')
    try:
        assert server['status'] == 'ACTIVE'
        host = server['OS-EXT-SRV-ATTR:host']
        assert host in settings.compute_hosts(settings.layout.pops[1])
        found = _json(cloud, home, 'discovery', 'server', 'locate',
                      'e2e-locate')
        assert (found['id'], found['pop'], found['region'], found['host'],
                found['status']) == (server['id'], home, home, host,
                                     'ACTIVE')
        assert found['path'] == [{'region': home,
                                  'answer': 'found: ACTIVE on %s' % host}]
        # By name from the other regions: a region search, here first, then
        # nearest first (names are not keys of the overlay's records).
        for start in (regions[0], regions[2]):
            found = _json(cloud, start, 'discovery', 'server', 'locate',
                          'e2e-locate')
            assert (found['region'], found['host']) == (home, host)
            assert found['method'].startswith('region search (')
            order = [start] + [
                row['Name'] for row in _json(cloud, start, 'discovery',
                                             'neighbors')]
            asked = [hop['region'] for hop in found['path']]
            assert asked == order[:order.index(home) + 1]
            assert all(hop['answer'] == 'not found'
                       for hop in found['path'][:-1])
        # By id: one routed lookup on the overlay, then the region it names
        # (the record is written by the conductor's next pass).
        for start in (regions[0], regions[2]):
            def by_overlay(start=start):
                found = _json(cloud, start, 'discovery', 'server', 'locate',
                              server['id'])
                return found if found['method'] == 'overlay' else None
            found = harness.wait_for(by_overlay, 60,
                                     'the overlay record of %s' % server['id'])
            assert (found['region'], found['host']) == (home, host)
            assert found['path'][0]['region'] == 'overlay'
            assert found['path'][-1]['region'] == home
        table = _run(cloud, regions[0], 'discovery', 'server', 'locate',
                     'e2e-locate')
        assert table.returncode == 0, table.stderr
        print('\n$ openstack --os-region-name %s discovery server locate '
              'e2e-locate\n%s' % (regions[0], table.stdout))
    finally:
        done = _run(cloud, home, 'server', 'delete', '--wait', server['id'])
        assert done.returncode == 0, done.stderr


def test_server_locate_of_a_missing_server(cloud):
    here = cloud['regions'][0]
    done = _run(cloud, here, 'discovery', 'server', 'locate',
                'no-such-server')
    assert done.returncode == 1
    assert "no server 'no-such-server' in any region" in done.stderr
    for region in cloud['regions']:
        assert '%s: not found' % region in done.stderr


def test_table_output_for_the_record(cloud):
    """The human-readable tables, printed (pytest -s) for the docs."""
    here = cloud['regions'][0]
    for args in (('discovery', 'pop', 'list'),
                 ('discovery', 'neighbors'),
                 ('discovery', 'pop', 'show', cloud['regions'][1])):
        done = _run(cloud, here, *args)
        assert done.returncode == 0, done.stderr
        assert cloud['regions'][1] in done.stdout
        print('\n$ openstack --os-region-name %s %s\n%s'
              % (here, ' '.join(args), done.stdout))
