"""``openstack discovery server locate`` through real overlay agents.

The regions' APIs are the HTTP fakes of ``test_commands``; the overlay is
three real agents on loopback (``test_ring_records.Ring``) holding the
records a conductor would have written, and the command opens them with
``--overlay-agent`` and ``--overlay-key-file`` as clouds.yaml would.
"""

import json

import pytest

from discovery_nova.conductor import ring_records
from tests.ports import free_tcp_udp_port
from tests.unit.conductor.test_ring_records import KEY
from tests.unit.conductor.test_ring_records import Ring
from tests.unit.osc import fakes
from tests.unit.osc import test_commands
from tests.unit.osc.test_commands import SERVER_ID
from tests.unit.osc.test_commands import run

#: The fake regions of test_commands, as fixtures of this module too.
no_os_env = test_commands.no_os_env
cloud = test_commands.cloud


@pytest.fixture(scope='module')
def ring():
    ring = Ring(['pl1', 'pl2', 'pl3'])
    yield ring
    ring.close()


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / 'deployment.key'
    path.write_bytes(KEY + b'\n')
    return str(path)


def _locate(capsys, ring, key_file, ref, agent='pl1'):
    address = '127.0.0.1:%d' % ring.agents[agent].params.listen_port
    return run(capsys, 'discovery', 'server', 'locate', ref,
               '--overlay-agent', address, '--overlay-key-file', key_file,
               '-f', 'json')


def _record(ring, uuid, **value):
    ring_records.RingRecords(ring.client('pl3')).put_server(uuid, value)


def test_the_overlay_record_leads_straight_to_the_region(cloud, capsys,
                                                          ring, key_file):
    _record(ring, SERVER_ID, pop='pl2', holder='pl1', origin='pl1')
    cloud.add_server('pl2', fakes.server(SERVER_ID, 'far', host='pl2-cmp1'))
    code, out, err = _locate(capsys, ring, key_file, SERVER_ID)
    assert code == 0, err
    shown = json.loads(out)
    assert (shown['method'], shown['pop'], shown['region'], shown['host'],
            shown['status']) == ('overlay', 'pl2', 'pl2', 'pl2-cmp1',
                                 'ACTIVE')
    assert shown['overlay_route'].startswith('pl1')
    found = ring_records.RingRecords(ring.client('pl1')).server(SERVER_ID)
    assert shown['overlay_route'] == '%s (record at %s, %d hop%s)' % (
        ' -> '.join(found.path), found.node, found.hops,
        '' if found.hops == 1 else 's')
    assert shown['path'] == [
        {'region': 'overlay',
         'answer': 'record at ring node %s after %d hop(s): runs at pl2, '
                   'record kept by pl1 (asked at pl1)'
                   % (found.node, found.hops)},
        {'region': 'pl2', 'answer': 'found: ACTIVE on pl2-cmp1'}]


def test_without_a_record_the_regions_are_searched(cloud, capsys, ring,
                                                   key_file):
    uuid = '7d0c9a51-52f1-4c2e-9f00-000000000001'
    cloud.add_server('pl1', fakes.server(uuid, 'here', host='pl1-cmp1'))
    code, out, err = _locate(capsys, ring, key_file, uuid, agent='pl2')
    assert code == 0, err
    shown = json.loads(out)
    assert shown['method'] == ('region search (the overlay has no record '
                               'of %s)' % uuid)
    assert shown['path'][0]['region'] == 'overlay'
    assert shown['path'][0]['answer'].startswith('no record, via pl2')
    assert shown['path'][1:] == [{'region': 'pl1',
                                  'answer': 'found: ACTIVE on pl1-cmp1'}]


def test_a_stale_record_falls_back_to_the_region_search(cloud, capsys,
                                                        ring, key_file):
    uuid = '7d0c9a51-52f1-4c2e-9f00-000000000002'
    _record(ring, uuid, pop='pl2', holder='pl2', origin='pl2')
    cloud.add_server('pl1', fakes.server(uuid, 'moved', host='pl1-cmp2'))
    code, out, err = _locate(capsys, ring, key_file, uuid)
    assert code == 0, err
    shown = json.loads(out)
    assert shown['method'] == ("region search (the overlay's record names "
                               "pl2, which does not have it)")
    assert [hop['region'] for hop in shown['path']] == ['overlay', 'pl2',
                                                        'pl1']
    assert shown['pop'] == 'pl1'


def test_a_deleted_record_says_deleted(cloud, capsys, ring, key_file):
    uuid = '7d0c9a51-52f1-4c2e-9f00-000000000003'
    _record(ring, uuid, pop='pl2', holder='pl1', deleted=True)
    code, out, err = _locate(capsys, ring, key_file, uuid)
    assert code == 1
    assert 'server %s was deleted: the record kept by pl1 says so' % uuid \
        in err


def test_no_agent_or_no_key_is_said_and_the_regions_searched(
        cloud, capsys, tmp_path, key_file):
    cloud.add_server('pl1', fakes.server(SERVER_ID, 'web', host='pl1-cmp1'))
    code, out, err = run(capsys, 'discovery', 'server', 'locate', SERVER_ID,
                         '-f', 'json')
    assert code == 0, err
    assert json.loads(out)['method'].startswith(
        'region search (no overlay agent for this region: pass '
        '--overlay-agent')
    code, out, err = run(capsys, 'discovery', 'server', 'locate', SERVER_ID,
                         '--overlay-agent',
                         '127.0.0.1:%d' % free_tcp_udp_port(),
                         '--overlay-key-file', key_file, '-f', 'json')
    assert code == 0, err
    assert json.loads(out)['method'].startswith(
        'region search (the overlay could not be asked: overlay agent '
        '127.0.0.1:')
    code, out, err = run(capsys, 'discovery', 'server', 'locate', SERVER_ID,
                         '--overlay-agent', '127.0.0.1:1',
                         '--overlay-key-file', str(tmp_path / 'nope'),
                         '-f', 'json')
    assert code == 0, err
    assert 'cannot read the overlay deployment key file' in \
        json.loads(out)['method']
