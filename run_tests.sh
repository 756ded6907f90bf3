#!/usr/bin/env bash
# Runs every test of discovery-nova on a fresh clone: bootstraps .venv (see
# tools/bootstrap.sh), then pytest over tests/. Extra arguments go to pytest,
# e.g. ./run_tests.sh tests/unit -x
#
# With no arguments the functional tests run in a pytest process of their
# own: importing nova.tests.functional (at collection time) monkey-patches
# the whole process with eventlet, and the unit tests that run real overlay
# agents in a thread of their own cannot work in such a process.
set -euo pipefail
cd "$(dirname "$0")"
tools/bootstrap.sh
if [ "$#" -gt 0 ]; then
    exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/e2e \
    || status=$?
.venv/bin/python -m pytest -q -p no:cacheprovider tests/functional \
    || status=$?
exit "$status"
