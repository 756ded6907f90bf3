"""The ``openstack discovery`` commands through openstackclient's shell,
against fake keystone, compute and placement APIs (HTTP level)."""

import json
import logging
import math
import os

from openstackclient import shell
from osc_lib import clientmanager
import pytest
import requests_mock
import yaml

from discovery_nova.osc import client as client_mod
from tests.unit.osc import fakes

REGIONS = ['pl1', 'pl2', 'pl3']
SERVER_ID = '6a1c7d0e-3f9b-4c55-9d8e-0123456789ab'


@pytest.fixture
def no_os_env(monkeypatch, tmp_path):
    """No OS_* variable nor clouds.yaml of the user reaches the shell."""
    for name in list(os.environ):
        if name.startswith('OS_'):
            monkeypatch.delenv(name)
    empty = tmp_path / 'clouds.yaml'
    empty.write_text('clouds: {}\n')
    monkeypatch.setenv('OS_CLIENT_CONFIG_FILE', str(empty))


@pytest.fixture
def cloud(no_os_env):
    with requests_mock.Mocker() as mocker:
        fake = fakes.FakeCloud(mocker, REGIONS)
        fake.set_aggregates('pl1', fakes.AGGREGATES)
        fake.set_services('pl1', [fakes.compute_service('pl1-cmp1'),
                                  fakes.compute_service('pl1-cmp2')])
        fake.set_services('pl2', [fakes.compute_service('pl2-cmp1'),
                                  fakes.compute_service('pl2-cmp2',
                                                        'down')])
        fake.unreachable('pl3')
        fake.set_hypervisors('pl1', [
            {'id': 'rp-1', 'service': {'host': 'pl1-cmp1'},
             'vcpus': 8, 'vcpus_used': 3, 'free_ram_mb': 3072},
            {'id': 'rp-2', 'service': {'host': 'pl1-cmp2'},
             'vcpus': 4, 'vcpus_used': 0, 'free_ram_mb': 2048},
            {'id': 'rp-x', 'service': {'host': 'not-in-the-pop'},
             'vcpus': 64, 'vcpus_used': 0, 'free_ram_mb': 65536}])
        fake.set_provider('pl1', 'rp-1',
                          {'VCPU': {'total': 8, 'reserved': 0,
                                    'allocation_ratio': 4.0},
                           'MEMORY_MB': {'total': 4096, 'reserved': 512,
                                         'allocation_ratio': 1.0}},
                          {'VCPU': 3, 'MEMORY_MB': 1024})
        fake.set_provider('pl1', 'rp-2',
                          {'VCPU': {'total': 4, 'reserved': 0,
                                    'allocation_ratio': 2.0},
                           'MEMORY_MB': {'total': 2048, 'reserved': 0,
                                         'allocation_ratio': 1.5}},
                          {})
        yield fake


def run(capsys, *args, region='pl1'):
    argv = ['--os-auth-url', fakes.KEYSTONE, '--os-username', 'admin',
            '--os-password', 'secret', '--os-project-name', 'admin',
            '--os-user-domain-id', 'default',
            '--os-project-domain-id', 'default',
            '--os-identity-api-version', '3']
    if region:
        argv += ['--os-region-name', region]
    # openstackclient caches plugin clients on the ClientManager class,
    # for the life of the process: each run here gets a fresh one.
    vars(clientmanager.ClientManager)['discovery']._handle = None
    # ... and adds a root log handler on the stderr of the moment, which
    # pytest closes after the test.
    handlers = logging.root.handlers[:]
    try:
        code = shell.main(argv + list(args))
    except SystemExit as exc:  # argparse rejected the command line
        code = exc.code
    finally:
        logging.root.handlers[:] = handlers
    out, err = capsys.readouterr()
    return code, out, err


def test_pop_list_json(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'pop', 'list', '-f', 'json')
    assert code == 0, err
    rows = json.loads(out)
    assert [r['Name'] for r in rows] == ['pl1', 'pl3', 'pl2']
    by_name = {r['Name']: r for r in rows}
    assert by_name['pl1']['RTT (ms)'] == 0.0
    assert by_name['pl3']['RTT (ms)'] == pytest.approx(11.5)
    assert by_name['pl2']['RTT (ms)'] == pytest.approx(52.0)
    assert by_name['pl2']['Coordinates'] == {'vector': [30.0, 40.0],
                                             'height': 1.0}
    assert by_name['pl1']['Error'] == pytest.approx(0.1)
    assert by_name['pl1']['Tags'] == ['country:FR', 'renewable']
    # Live placement figures for pl1 (see test_directory), published
    # ones for pl2, none for pl3.
    assert (by_name['pl1']['Free vCPUs'],
            by_name['pl1']['Free RAM (MB)']) == (37, 5632)
    assert (by_name['pl2']['Free vCPUs'],
            by_name['pl2']['Free RAM (MB)']) == (12, 2048)
    assert by_name['pl3']['Free vCPUs'] is None
    assert by_name['pl1']['Health'] == '2/2 up'
    assert by_name['pl2']['Health'] == '1/2 up'
    assert by_name['pl3']['Health'] == 'unreachable'
    assert 'pl3' in err and 'unreachable' in err


def test_pop_list_sorted_by_name_as_a_table(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'pop', 'list', '--sort',
                         'name')
    assert code == 0, err
    names = [line.split('|')[1].strip() for line in out.splitlines()
             if line.startswith('| pl')]
    assert names == ['pl1', 'pl2', 'pl3']
    assert '30.0, 40.0; h 1.0' in out
    assert '| -' in out


def test_free_capacity_from_hypervisors_without_placement(no_os_env,
                                                          capsys):
    with requests_mock.Mocker() as mocker:
        fake = fakes.FakeCloud(mocker, REGIONS, placement_regions=[])
        fake.set_aggregates('pl1', fakes.AGGREGATES)
        fake.set_hypervisors('pl1', [
            {'id': 'rp-1', 'service': {'host': 'pl1-cmp1'},
             'vcpus': 8, 'vcpus_used': 3, 'free_ram_mb': 3072}])
        for region in REGIONS:
            fake.set_services(region, [])
        code, out, err = run(capsys, 'discovery', 'pop', 'show', 'pl1',
                             '-f', 'json')
    assert code == 0, err
    shown = json.loads(out)
    assert (shown['free_vcpus'], shown['free_ram_mb'],
            shown['capacity_source']) == (5, 3072, 'hypervisors')


def test_pop_show_yaml(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'pop', 'show', 'pl2',
                         '-f', 'yaml')
    assert code == 0, err
    shown = yaml.safe_load(out)
    assert shown['name'] == 'pl2'
    assert shown['local'] is False
    assert shown['seen_from'] == 'pl1'
    assert shown['aggregate'] == 'pop-pl2'
    assert shown['rtt_ms'] == pytest.approx(52.0)
    assert shown['rtt_error'] == pytest.approx(math.hypot(0.1, 0.2),
                                               abs=1e-4)
    assert shown['error'] == pytest.approx(0.2)
    assert shown['client_rtt_ms'] == {'192.0.2.0/24': 12.25}
    assert shown['free_vcpus'] == 12
    assert shown['capacity_source'] == 'metadata'
    assert shown['health'] == '1/2 up'


def test_pop_show_of_an_unknown_pop_names_the_known_ones(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'pop', 'show', 'nowhere')
    assert code == 1
    assert "no PoP 'nowhere' is known to region pl1" in err
    assert 'pl1, pl2, pl3' in err


def test_neighbors_rank_like_the_scheduler(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'neighbors', '-f', 'json')
    assert code == 0, err
    rows = json.loads(out)
    assert [(r['Rank'], r['Name']) for r in rows] == [(1, 'pl3'),
                                                      (2, 'pl2')]
    assert rows[0]['RTT (ms)'] == pytest.approx(11.5)
    assert rows[0]['Error'] == pytest.approx(math.hypot(0.1, 0.3),
                                             abs=1e-4)
    code, out, err = run(capsys, 'discovery', 'neighbors', '--limit', '1',
                         '-f', 'value', '-c', 'Name')
    assert (code, out) == (0, 'pl3\n')


def test_neighbors_limit_must_be_positive(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'neighbors', '--limit', '0')
    assert code == 2
    assert 'expected a whole number >= 1, got 0' in err


def test_forbidden_aggregates_say_admin_is_needed(cloud, capsys):
    cloud.forbid('pl1', '/os-aggregates')
    code, out, err = run(capsys, 'discovery', 'pop', 'list')
    assert code == 1
    assert 'region pl1: reading host aggregates is forbidden' in err
    assert 'admin role' in err
    assert 'os_compute_api:os-aggregates:index' in err


def test_a_region_without_pop_aggregates_is_explained(cloud, capsys):
    cloud.set_aggregates('pl1', [])
    code, out, err = run(capsys, 'discovery', 'neighbors')
    assert code == 1
    assert 'has no PoP aggregates' in err


def test_no_region_given_lists_the_regions(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'pop', 'list', region=None)
    assert code == 1
    assert '--os-region-name' in err
    assert 'pl1, pl2, pl3' in err


def test_locate_a_local_server(cloud, capsys):
    cloud.add_server('pl1', fakes.server(SERVER_ID, 'web', host='pl1-cmp2',
                                         zone='pl1'))
    code, out, err = run(capsys, 'discovery', 'server', 'locate', 'web',
                         '-f', 'json')
    assert code == 0, err
    shown = json.loads(out)
    assert (shown['id'], shown['pop'], shown['region'], shown['host'],
            shown['status']) == (SERVER_ID, 'pl1', 'pl1', 'pl1-cmp2',
                                 'ACTIVE')
    assert shown['path'] == [{'region': 'pl1',
                              'answer': 'found: ACTIVE on pl1-cmp2'}]


def test_locate_follows_a_forwarded_server(cloud, capsys):
    meta = {'discovery_pop': 'pl2', 'discovery_origin': 'pl1'}
    cloud.add_server('pl1', fakes.server(SERVER_ID, 'far', status='BUILD',
                                         metadata=meta, zone='pl2'))
    cloud.add_server('pl2', fakes.server(SERVER_ID, 'far', host='pl2-cmp1',
                                         metadata=meta, zone='pl2'))
    code, out, err = run(capsys, 'discovery', 'server', 'locate', SERVER_ID,
                         '-f', 'json')
    assert code == 0, err
    shown = json.loads(out)
    assert (shown['pop'], shown['region'], shown['host'], shown['status'],
            shown['origin']) == ('pl2', 'pl2', 'pl2-cmp1', 'ACTIVE', 'pl1')
    assert shown['path'] == [
        {'region': 'pl1', 'answer': 'forwarded to pl2 (asked at pl1)'},
        {'region': 'pl2', 'answer': 'found: ACTIVE on pl2-cmp1'}]


def test_locate_asks_the_other_regions_nearest_first(cloud, capsys):
    cloud.unreachable('pl3')
    cloud.add_server('pl2', fakes.server(SERVER_ID, 'elsewhere',
                                         host='pl2-cmp2'))
    code, out, err = run(capsys, 'discovery', 'server', 'locate',
                         'elsewhere')
    assert code == 0, err
    assert '1. pl1: not found' in out
    # pl3 (11.5 ms) is nearer than pl2 (52 ms), so it is asked first.
    assert '2. pl3: no answer:' in out
    assert '3. pl2: found: ACTIVE on pl2-cmp2' in out


def test_locate_in_name_order_without_admin(cloud, capsys):
    cloud.forbid('pl1', '/os-aggregates')
    cloud.add_server('pl3', fakes.server(SERVER_ID, 'x'))
    code, out, err = run(capsys, 'discovery', 'server', 'locate', SERVER_ID,
                         '-f', 'json')
    assert code == 0, err
    shown = json.loads(out)
    assert [hop['region'] for hop in shown['path']] == ['pl1', 'pl2',
                                                        'pl3']
    assert shown['host'] is None
    assert 'name order' in err


def test_locate_of_a_missing_server_fails_listing_the_path(cloud, capsys):
    code, out, err = run(capsys, 'discovery', 'server', 'locate', 'ghost')
    assert code == 1
    assert "no server 'ghost' in any region" in err
    assert 'pl1: not found' in err and 'pl2: not found' in err


def test_locate_a_name_used_twice_asks_for_the_id(cloud, capsys):
    cloud.add_server('pl1', fakes.server(SERVER_ID, 'twin'))
    cloud.add_server('pl1', fakes.server('other-id', 'twin'))
    code, out, err = run(capsys, 'discovery', 'server', 'locate', 'twin')
    assert code == 1
    assert "2 servers are named 'twin' in region pl1" in err
    assert SERVER_ID in err


def test_a_record_pointing_nowhere_is_reported(cloud, capsys):
    meta = {'discovery_pop': 'pl2', 'discovery_origin': 'pl1'}
    cloud.add_server('pl1', fakes.server(SERVER_ID, 'lost', metadata=meta))
    code, out, err = run(capsys, 'discovery', 'server', 'locate', 'lost')
    assert code == 1
    assert 'its record in pl1 says it runs at pl2' in err


def test_request_timeout_is_set_when_osc_sets_none(cloud):
    client = client_mod.Client(cloud.session(), 'pl1')
    cloud.set_services('pl2', [])
    client.compute_services('pl2')
    assert cloud.mocker.last_request.timeout == client_mod.REQUEST_TIMEOUT


def test_unsupported_api_version(cloud, capsys):
    # "1.1" still selects the v1 commands; the client refuses it.
    code, out, err = run(capsys, '--os-discovery-api-version', '1.1',
                         'discovery', 'pop', 'list')
    assert code == 1
    assert "discovery API version '1.1' is not supported: expected one " \
        "of 1" in err
