"""``discovery-nova cloud demo --skip-failure`` against the session cloud.

The command runs as a user would run it, as a subprocess; what it printed
and wrote is checked against the cloud's own settings (its PoPs, the
capacity of a PoP, the RTTs it reports), and the cloud must hold no
server of the demo afterwards: the other modules share it.
"""

import json

from PIL import Image
import pytest

from discovery_nova.cloud import demo_report
from tests.e2e import harness

pytestmark = pytest.mark.functional

#: Locality boots, a PoP filled up, one overflow, a refused boot, with
#: deletions in between; a few minutes on a busy two-core machine.
DEMO_TIMEOUT = 1200


@pytest.fixture(scope='module')
def demo_run(cloud, tmp_path_factory):
    out = tmp_path_factory.mktemp('demo-output')
    done = harness.cloud_command(cloud['state_dir'], 'demo',
                                 '--skip-failure', '--output-dir', str(out),
                                 timeout=DEMO_TIMEOUT)
    report = out / 'demo.json'
    return {'done': done, 'out': out,
            'report': json.loads(report.read_text())
            if report.exists() else None}


def _rows(demo_run) -> dict[str, dict]:
    done = demo_run['done']
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return {row['server']: row for row in demo_run['report']['rows']}


def test_table_is_printed_with_a_line_per_server(demo_run):
    rows = _rows(demo_run)
    stdout = demo_run['done'].stdout
    header = next(line for line in stdout.splitlines()
                  if line.startswith('SERVER '))
    assert header.split() == ' '.join(demo_report.COLUMNS).split()
    for cells in demo_run['report']['table']:
        assert any(line.split() == ' '.join(cells).split()
                   for line in stdout.splitlines()), cells
    assert len(rows) == len(demo_run['report']['table'])
    assert 'demo done in' in stdout


def test_each_near_hint_lands_at_the_pop_it_names(cloud, demo_run):
    rows = _rows(demo_run)
    origin = cloud['regions'][0]
    for region in cloud['regions']:
        row = rows['demo-near-%s' % region]
        assert row['asked_at'] == origin
        assert row['hint'] == 'near=%s' % region
        assert row['landed_at'] == region
        assert row['status'] == 'ACTIVE'
        assert row['seconds_to_active'] > 0
        if region == origin:
            assert row['est_rtt_ms'] == row['matrix_rtt_ms'] == 0
        else:
            assert row['est_rtt_ms'] > 0 and row['matrix_rtt_ms'] > 0
            assert row['path'][-1] == {'pop': region, 'accepted': True,
                                       'reason': ''}


def test_a_full_origin_sends_the_next_server_to_its_nearest_pop(
        cloud, demo_run):
    rows = _rows(demo_run)
    settings = cloud['settings']
    origin = cloud['regions'][0]
    fill = rows['demo-fill']
    # dn.tiny takes one vCPU: the origin holds one per vCPU it offers.
    assert fill['count'] == settings.computes_per_pop * \
        settings.compute_vcpus
    assert fill['landed_at'] == origin
    overflow = rows['demo-overflow']
    others = [r for r in cloud['regions'] if r != origin]
    nearest = min(others,
                  key=lambda r: rows['demo-near-%s' % r]['est_rtt_ms'])
    assert overflow['landed_at'] == nearest
    assert overflow['status'] == 'ACTIVE'
    assert [h['pop'] for h in overflow['path']] == [origin, nearest]
    assert [h['accepted'] for h in overflow['path']] == [False, True]
    assert '%s(x) > %s' % (origin, nearest) in demo_run['done'].stdout
    assert 'availability zone %s' % nearest in demo_run['done'].stdout
    notes = demo_run['report']['notes']
    assert any(n.startswith('deleted demo-overflow at %s' % origin)
               and 'at %s, where it ran' % nearest in n for n in notes)


def test_a_malformed_hint_is_an_error_naming_it(demo_run):
    row = _rows(demo_run)['demo-bad-hint']
    assert row['status'] == 'ERROR'
    assert row['landed_at'] is None
    assert 'max_rtt_ms=abc' in row['note']
    assert 'demo-bad-hint: fault: ' in demo_run['done'].stdout


def test_no_pop_was_killed_with_skip_failure(demo_run):
    _rows(demo_run)
    assert demo_run['report']['killed_pop'] is None
    assert 'killing' not in demo_run['done'].stdout


def test_map_is_written(demo_run):
    _rows(demo_run)
    path = demo_run['out'] / 'demo.png'
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with Image.open(path) as image:
        assert image.size == (round(demo_report.FIGSIZE[0] * demo_report.DPI),
                              round(demo_report.FIGSIZE[1] * demo_report.DPI))


def test_no_demo_server_is_left_anywhere(cloud, demo_run):
    _rows(demo_run)
    for region in cloud['regions']:
        listed = harness.as_json(cloud, region, 'server', 'list')
        assert [s['Name'] for s in listed
                if s['Name'].startswith('demo-')] == [], region
