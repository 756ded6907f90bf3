#!/usr/bin/env bash
# Installs discovery-nova into .venv and runs the main job on the embedded
# default: the overlay simulation over the shipped PlanetLab RTT matrix
# (no server needed), printing its figures and writing plots to sim-output/.
set -euo pipefail
cd "$(dirname "$0")"
tools/bootstrap.sh
exec .venv/bin/discovery-nova simulate --output-dir sim-output "$@"
