#!/usr/bin/env bash
# Runs every test of discovery-nova on a fresh clone: bootstraps .venv (see
# tools/bootstrap.sh), then pytest over tests/. Extra arguments go to pytest,
# e.g. ./run_tests.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")"
tools/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
