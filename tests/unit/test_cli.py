"""``discovery-nova``: the simulate job end to end, and its input errors."""

import json
import os
import subprocess
import sys

import pytest

from discovery_nova.cmd import cli


def run_cli(*args, cwd=None):
    """Run the console script as a user would: a separate process."""
    return subprocess.run(
        [sys.executable, '-m', 'discovery_nova.cmd.cli', *args],
        capture_output=True, text=True, cwd=cwd, timeout=300)


def test_simulate_small_run_writes_plots_report_and_figures(tmp_path):
    out = tmp_path / 'out'
    proc = run_cli('simulate', '--topology', 'backbone', '--nodes', '80',
                   '--rounds', '30', '--search-every', '5',
                   '--routing-sizes', '60,120', '--warmup-lookups', '2',
                   '--show-node', 'n05', '--no-progress',
                   '--output-dir', str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ('vivaldi-error.png', 'spiral-recall.png', 'overlay-map.png',
                 'routing-hops.png', 'routing-warmup.png', 'report.json'):
        path = out / name
        assert path.is_file() and path.stat().st_size > 1000, name
        if name.endswith('.png'):
            assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    report = json.loads((out / 'report.json').read_text())
    assert report['locality']['summary']['nodes'] == 80
    assert [s['nodes'] for s in report['routing']['summary']['sizes']] == [
        60, 120]
    assert 'vivaldi median relative error' in proc.stdout
    assert 'nearest peers of n05' in proc.stdout
    # No temporary directories are left beside the output.
    assert sorted(os.listdir(tmp_path)) == ['out']


@pytest.mark.parametrize('content,expected', [
    ('0 1\n1 zero\n', "line 2, column 2: 'zero', expected a number"),
    ('0 1 2\n1 0 2\n', 'expected a square N x N matrix'),
])
def test_malformed_matrix_is_one_line_and_writes_nothing(
        tmp_path, content, expected):
    matrix = tmp_path / 'rtt.tsv'
    matrix.write_text(content)
    out = tmp_path / 'out'
    proc = run_cli('simulate', '--matrix', str(matrix), '--no-progress',
                   '--output-dir', str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0] and str(matrix) in lines[0]
    assert not out.exists()
    assert os.listdir(tmp_path) == ['rtt.tsv']


def test_unknown_node_name_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(['simulate', '--show-node', 'nowhere', '--no-progress',
                   '--output-dir', str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown node 'nowhere'" in err and 'pl000 .. pl489' in err
    assert not (tmp_path / 'out').exists()


def test_bad_sizes_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(['simulate', '--routing-sizes', '100,abc'])
    assert exc.value.code == 2
    assert 'comma-separated list of node counts' in capsys.readouterr().err


def test_unreachable_membership_backend_is_one_line(capsys):
    rc = cli.main(['members', '--url', 'redis://127.0.0.1:1',
                   '--timeout', '1'])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1
    assert 'redis://127.0.0.1:1' in err[0] and 'unreachable' in err[0]


def test_members_lists_an_empty_file_group(tmp_path, capsys):
    url = 'file://%s' % (tmp_path / 'membership')
    assert cli.main(['members', '--url', url, '--group', 'g1']) == 0
    assert 'has no members' in capsys.readouterr().out
