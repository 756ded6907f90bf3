#!/usr/bin/env bash
# Builds what discovery-nova needs on a fresh machine, idempotently:
#   - a virtualenv in .venv with the package, its requirements and the test
#     requirements (skipped when the requirement files did not change);
#   - Debian's etcd-server, for the membership tests against a real etcd
#     (only when running as root with apt-get; otherwise those tests skip
#     and say how to install it);
#   - Debian's shellcheck, for the DevStack plugin's shellcheck test (same
#     conditions; otherwise that test skips).
# Used by quickstart.sh and run_tests.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.discovery-nova-requirements"
want=$(cat requirements.txt test-requirements.txt setup.cfg tools/bootstrap.sh | sha256sum | cut -d" " -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || \
        ! "$VENV/bin/python" -c 'import discovery_nova' 2>/dev/null; then
    echo "bootstrap: installing requirements into $VENV (first run takes a few minutes)"
    log="$VENV/bootstrap-install.log"
    : > "$log"
    pip_quietly() {
        # pip and the build backends are chatty; keep their output in a log
        # and show it only when an install fails.
        if ! "$VENV/bin/pip" install -q "$@" >> "$log" 2>&1; then
            cat "$log" >&2
            echo "bootstrap: pip install $* failed (log above, also in $log)" >&2
            exit 1
        fi
    }
    pip_quietly --upgrade pip wheel setuptools
    pip_quietly -r requirements.txt -r test-requirements.txt
    # The cloud extra brings keystone, glance and placement for the local
    # multi-PoP cloud (discovery-nova cloud up) and its end-to-end tests.
    pip_quietly -e '.[cloud]'
    echo "$want" > "$stamp"
fi

if ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing Debian's etcd-server for the etcd membership tests"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq etcd-server >/dev/null 2>&1 || \
            echo "bootstrap: could not install etcd-server; etcd tests will skip"
    else
        echo "bootstrap: no etcd binary (apt-get install etcd-server); etcd tests will skip"
    fi
fi

if ! command -v shellcheck >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "bootstrap: installing Debian's shellcheck for the DevStack plugin test"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null 2>&1 || true
        apt-get install -y -qq shellcheck >/dev/null 2>&1 || \
            echo "bootstrap: could not install shellcheck; the DevStack shellcheck test will skip"
    else
        echo "bootstrap: no shellcheck binary (apt-get install shellcheck); the DevStack shellcheck test will skip"
    fi
fi
