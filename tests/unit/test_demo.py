"""The demo's pure parts: its table, report, map, and how it reads nova.

The scenario itself runs against a real cloud in tests/e2e/test_demo.py;
here the rows are built by hand and nova's answers come from small fakes
shaped like openstacksdk's resources.
"""

import json
import math
import shutil
from types import SimpleNamespace

import matplotlib.colors
import numpy as np
from PIL import Image
import pytest

from discovery_nova.cloud import cli as cloud_cli
from discovery_nova.cloud import demo
from discovery_nova.cloud import demo_report
from discovery_nova.cloud import layout as layout_mod
from discovery_nova.cloud import services
from discovery_nova.cloud.demo_report import DemoResult
from discovery_nova.cloud.demo_report import Hop
from discovery_nova.cloud.demo_report import PopPoint
from discovery_nova.cloud.demo_report import Row
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import ServiceSpec
from discovery_nova.cloud.supervisor import Supervisor

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _result(killed: str | None = 'pl158') -> DemoResult:
    pops = [PopPoint('pl255', -51.6, 0.0, 0.3, 0.1, 8),
            PopPoint('pl023', 44.2, 13.0, 0.0, 0.2, 8),
            PopPoint('pl158', -69.5, 33.1, 5.4, 0.09, 16)]
    rows = [
        Row('demo-near-pl255', 'locality', 'pl255', 'near=pl255', 'pl255',
            'ACTIVE', 0.0, 0.0, 5.4),
        Row('demo-near-pl023', 'locality', 'pl255', 'near=pl023', 'pl023',
            'ACTIVE', 107.2, 119.7, 6.4, [Hop('pl023', True)]),
        Row('demo-fill', 'overflow', 'pl255', '', 'pl255', 'ACTIVE', 0.0,
            0.0, 12.5, count=8),
        Row('demo-overflow', 'overflow', 'pl255', '', 'pl158', 'ACTIVE',
            43.4, 48.9, 3.8,
            [Hop('pl255', False, 'no valid host'), Hop('pl158', True)]),
        Row('demo-bad-hint', 'malformed', 'pl255', 'max_rtt_ms=abc', None,
            'ERROR', note='fault: max_rtt_ms=abc is invalid'),
    ]
    if killed:
        rows.append(Row('demo-overflow (rebuilt)', 'failure', 'pl255', '',
                        'pl023', 'ACTIVE', 107.2, 119.7, 25.0,
                        [Hop(killed, False), Hop('pl023', True)]))
    return DemoResult('pl255', pops, rows, killed_pop=killed,
                      notes=['deleted demo-overflow'], seconds=80.0)


# The table ----------------------------------------------------------------

def _table_lines(rows):
    text = demo_report.format_table(rows)
    lines = text.splitlines()
    assert lines[0].split() == ' '.join(demo_report.COLUMNS).split()
    return lines


def test_table_has_a_line_per_row_with_its_cells_aligned():
    result = _result()
    lines = _table_lines(result.rows)
    body = lines[1:1 + len(result.rows)]
    starts = [lines[0].index(col) for col in demo_report.COLUMNS]
    for line, row in zip(body, result.rows, strict=True):
        cells = demo_report.row_cells(row)
        for start, cell in zip(starts, cells, strict=True):
            assert line[start:start + len(cell)] == cell, (line, cell)


def test_row_cells_show_rtts_path_and_count():
    row = _result().rows[3]
    cells = dict(zip(demo_report.COLUMNS, demo_report.row_cells(row),
                     strict=True))
    assert cells['LANDED AT'] == row.landed_at
    assert cells['RTT EST/MATRIX ms'] == '%.0f/%.0f' % (row.est_rtt_ms,
                                                      row.matrix_rtt_ms)
    assert cells['PATH'] == '%s(x) > %s' % (row.path[0].pop,
                                            row.path[1].pop)
    assert cells['TO ACTIVE s'] == '%.1f' % row.seconds_to_active
    fill = _result().rows[2]
    assert demo_report.row_cells(fill)[0] == '%s (x%d)' % (fill.server,
                                                           fill.count)


def test_refused_server_has_dashes_and_its_fault_under_the_table():
    result = _result()
    refused = result.rows[4]
    cells = dict(zip(demo_report.COLUMNS, demo_report.row_cells(refused),
                     strict=True))
    assert cells['LANDED AT'] == cells['RTT EST/MATRIX ms'] == '-'
    assert cells['TO ACTIVE s'] == '-'
    assert cells['STATUS'] == 'ERROR'
    assert '%s: %s' % (refused.server, refused.note) in \
        demo_report.format_table(result.rows).splitlines()


def test_path_of_a_server_placed_at_once_is_where_it_landed():
    row = _result().rows[0]
    assert row.path == []
    assert row.path_text() == row.landed_at


def test_unknown_rtt_shows_a_question_mark():
    row = Row('x', 'locality', 'a', 'near=b', 'b', 'ACTIVE', None,
              math.inf, 1.0)
    assert demo_report.row_cells(row)[4] == '?/?'


# demo.json ----------------------------------------------------------------

def test_json_report_round_trips_and_has_no_nan(tmp_path):
    result = _result()
    result.rows[1].est_rtt_ms = math.nan
    path = demo_report.write_json(result, tmp_path / 'demo.json')
    data = json.loads(path.read_text())
    assert data['origin'] == result.origin
    assert data['killed_pop'] == result.killed_pop
    assert data['table'] == [demo_report.row_cells(r) for r in result.rows]
    assert [r['server'] for r in data['rows']] == [
        r.server for r in result.rows]
    assert data['rows'][1]['est_rtt_ms'] is None
    assert data['rows'][3]['path'][0] == {
        'pop': 'pl255', 'accepted': False, 'reason': 'no valid host'}
    assert [p['name'] for p in data['pops']] == [
        p.name for p in result.pops]
    assert data['notes'] == result.notes


# demo.png -----------------------------------------------------------------

def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert('RGB'))


def _has_colour(pixels: np.ndarray, name: str) -> bool:
    rgb = np.array([round(255 * c) for c in matplotlib.colors.to_rgb(name)])
    return bool((np.abs(pixels.astype(int) - rgb).max(axis=2) <= 2).sum()
                > 30)


def test_map_is_a_png_of_the_expected_size(tmp_path):
    path = demo_report.write_map(_result(), tmp_path / 'demo.png')
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.size == (round(demo_report.FIGSIZE[0] * demo_report.DPI),
                              round(demo_report.FIGSIZE[1] * demo_report.DPI))
    pixels = _pixels(path)
    # Not a blank canvas: a good share of the pixels are drawn on.
    assert (pixels.min(axis=2) < 250).mean() > 0.02


def test_map_colours_arrows_by_scenario(tmp_path):
    full = _pixels(demo_report.write_map(_result(), tmp_path / 'a.png'))
    for scenario in ('locality', 'overflow', 'failure'):
        assert _has_colour(full, demo_report.SCENARIOS[scenario][1]), \
            scenario
    assert _has_colour(full, 'red')  # the killed PoP's cross
    calm = _pixels(demo_report.write_map(_result(killed=None),
                                         tmp_path / 'b.png'))
    assert not _has_colour(calm, demo_report.SCENARIOS['failure'][1])
    assert not _has_colour(calm, 'red')


def test_map_of_a_single_pop_and_no_rows(tmp_path):
    result = DemoResult('solo', [PopPoint('solo', 0.0, 0.0)], [])
    path = demo_report.write_map(result, tmp_path / 'demo.png')
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_labels_are_pushed_off_those_already_placed():
    half_w, half_h = demo_report._LABEL_HALF
    placed = [(100.0, 100.0)]
    offset = demo_report._clear_spot((100.0, 100.0), (0.0, 1.0), placed)
    assert offset[0] == 0.0
    assert offset[1] >= 2 * half_h
    assert placed[-1] == (100.0, 100.0 + offset[1])
    free = demo_report._clear_spot((500.0, 500.0), (0.0, 1.0), placed)
    assert free == (0.0, 0.0)


def test_arc_point_of_a_straight_arrow_is_the_chord_middle():
    mid, normal = demo_report._arc_point((0.0, 0.0), (10.0, 0.0), 0.0)
    assert mid == (5.0, 0.0)
    assert normal == (0.0, -1.0)
    bent, _ = demo_report._arc_point((0.0, 0.0), (10.0, 0.0), 0.2)
    # The curve's middle is half way to arc3's control point (rad * L).
    assert bent == pytest.approx((5.0, -0.2 * 10.0 / 2))


# Reading nova: instance actions and placement -----------------------------

class FakeCompute:
    """openstacksdk's compute proxy, for the two calls path_of makes."""

    def __init__(self, actions):
        self._actions = actions  # oldest first

    def server_actions(self, server_id):
        return [SimpleNamespace(action=name, request_id='req-%d' % i,
                                message=None if ok else 'Error')
                for i, (name, ok, _) in enumerate(self._actions)][::-1]

    def get_server_action(self, request_id, server_id):
        name, ok, reason = self._actions[int(request_id.split('-')[1])]
        return SimpleNamespace(events=[SimpleNamespace(
            event='discovery_forward',
            result='Success' if ok else 'Error', details=reason)])


def test_path_of_reads_the_conductors_actions_oldest_first():
    conn = SimpleNamespace(compute=FakeCompute([
        ('create', True, None),
        ('schedule at pl255 (this PoP)', False, 'No valid host'),
        ('forward to pl023 (~107 ms away)', False, 'timed out'),
        ('forward to pl158 (~43 ms away)', True, None),
    ]))
    assert demo.path_of(conn, 'uuid') == [
        Hop('pl255', False, 'No valid host'), Hop('pl023', False,
                                                   'timed out'),
        Hop('pl158', True, '')]


def test_path_of_keeps_the_first_line_of_a_remote_error():
    conn = SimpleNamespace(compute=FakeCompute([
        ('forward to pl023 (~107 ms away)', False,
         'declined: RemoteError: volume_size not lazy-loadable\n'
         "['Traceback (most recent call last):\\n', ...]"),
        ('forward to pl158 (~43 ms away)', False, 'x' * 500),
    ]))
    first, second = demo.path_of(conn, 'uuid')
    assert first.reason == 'RemoteError: volume_size not lazy-loadable'
    assert len(second.reason) == 200
    assert second.reason.endswith('...')


def test_path_of_a_server_with_no_forwarding_is_empty():
    conn = SimpleNamespace(compute=FakeCompute([('create', True, None)]))
    assert demo.path_of(conn, 'uuid') == []


class FakePlacement:
    """Resource providers with inventories and usages, as placement has.
    """

    def __init__(self, providers):
        self._providers = providers

    def resource_providers(self):
        return [SimpleNamespace(id=name) for name in self._providers]

    def resource_provider_inventories(self, provider):
        return [SimpleNamespace(resource_class=rc, total=total,
                                reserved=reserved, allocation_ratio=ratio)
                for rc, (total, reserved, ratio, _)
                in self._providers[provider.id].items()]

    def get(self, url):
        name = url.split('/')[2]
        usages = {rc: used for rc, (_, _, _, used)
                  in self._providers[name].items()}
        return SimpleNamespace(json=lambda: {'usages': usages})


def test_capacity_counts_the_scarcest_resource_per_provider():
    flavor = SimpleNamespace(vcpus=1, ram=64, disk=1)
    conn = SimpleNamespace(placement=FakePlacement({
        # 4 vCPUs free of (1000 - 996) * 1.0; RAM for far more.
        'cmp1': {'VCPU': (1000, 996, 1.0, 0),
                 'MEMORY_MB': (800000, 795904, 1.0, 0),
                 'DISK_GB': (600000, 0, 1.0, 0)},
        # 2 vCPUs * 2.0 = 4, one used; RAM for 2 more servers only.
        'cmp2': {'VCPU': (2, 0, 2.0, 1),
                 'MEMORY_MB': (512, 0, 1.0, 384),
                 'DISK_GB': (10, 0, 1.0, 1)},
    }))
    slots, vcpus, used = demo.capacity(conn, flavor)
    assert (vcpus, used) == (4 + 4, 1)
    assert slots == 4 + (512 - 384) // 64


# The command ---------------------------------------------------------------

def test_demo_without_a_cloud_says_to_bring_one_up(tmp_path, capsys):
    state = tmp_path / 'nothing-here'
    assert cloud_cli.main(['cloud', '--state-dir', str(state), 'demo',
                           '--output-dir', str(tmp_path / 'out')]) == 1
    err = capsys.readouterr().err
    assert 'no cloud in %s; run discovery-nova cloud up first' % state \
        in err
    assert not (tmp_path / 'out').exists()


def test_demo_of_a_stopped_cloud_is_refused_the_same_way(tmp_path, capsys):
    """settings.json left by a cloud that was brought down: nothing runs.
    """
    state = tmp_path / 'stopped'
    CloudSettings(state_dir=state,
                  layout=layout_mod.make_layout(3, 40000)).save()
    # --state-dir after "demo" is accepted too.
    assert cloud_cli.main(['cloud', 'demo', '--state-dir', str(state),
                           '--output-dir', str(tmp_path / 'out')]) == 1
    assert 'no cloud in %s; run discovery-nova cloud up first' % state \
        in capsys.readouterr().err


def test_demo_of_a_cloud_with_a_pop_down_names_the_pop(tmp_path, capsys):
    """Every service runs (as a stand-in process) but one PoP's."""
    state = tmp_path / 'partial'
    settings = CloudSettings(state_dir=state,
                             layout=layout_mod.make_layout(3, 40000))
    settings.save()
    down = settings.layout.pops[1].name
    sup = Supervisor(state / 'run', state / 'logs')
    sleep = shutil.which('sleep')
    try:
        for spec in services.all_specs(settings):
            if spec.pop != down:
                sup.start(ServiceSpec(name=spec.name, argv=[sleep, '120']))
        assert cloud_cli.main(['cloud', '--state-dir', str(state), 'demo',
                               '--output-dir', str(tmp_path / 'out')]) == 1
    finally:
        sup.stop_all()
    err = capsys.readouterr().err
    assert 'not fully running' in err
    assert 'discovery-nova cloud start-pop %s' % down in err
    for spec in services.all_specs(settings):
        assert (spec.name in err) == (spec.pop == down), spec.name


def test_nova_times_are_read_as_utc():
    naive = demo._utc('2026-11-22T00:27:31.739161')
    zoned = demo._utc('2026-11-22T00:27:31Z')
    assert naive.tzinfo is not None and zoned.tzinfo is not None
    assert (naive - zoned).total_seconds() == pytest.approx(0.739161)
    assert demo._utc(None) is None
