"""The overlay benchmark still runs against today's APIs (small sizes)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def test_overlay_benchmark_quick_run_writes_its_report(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, 'benchmarks',
                                      'overlay_figures.py'),
         '--quick', '--output-dir', str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / 'overlay.md').read_text()
    assert 'vivaldi median relative error' in report
    assert '| 1000 |' in report
    assert (tmp_path / 'overlay' / 'overlay-map.png').is_file()
    assert 'scale: 1000 nodes x 20 rounds' in proc.stdout
