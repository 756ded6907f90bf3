"""The code base stays ruff-clean (rules in pyproject.toml)."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _ruff() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), 'ruff')
    found = beside if os.path.exists(beside) else shutil.which('ruff')
    if found is None:
        pytest.fail('ruff is not installed: it is in test-requirements.txt')
    return found


def test_ruff_is_clean():
    proc = subprocess.run(
        [_ruff(), 'check', '--output-format', 'concise',
         'discovery_nova', 'tests', 'benchmarks'],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
