#!/usr/bin/env bash
# Installs discovery-nova into .venv, brings up a local 3-PoP cloud (one
# Nova per PoP; their discovery-conductors forward what a PoP cannot place
# to the nearest PoPs) and runs the demo against it: locality hints, a full
# PoP overflowing to its nearest neighbour, a malformed hint and a killed
# PoP, printed as a table and drawn in demo-output/. Then it runs the
# overlay simulation over the shipped PlanetLab RTT matrix (sim-output/;
# extra arguments go to "discovery-nova simulate"). The cloud is left
# running: the last lines say how to use it and how to stop it. A cloud
# already running from the same state directory is reused.
set -euo pipefail
cd "$(dirname "$0")"
tools/bootstrap.sh
dn=.venv/bin/discovery-nova

# The state directory (DISCOVERY_NOVA_STATE_DIR or the default) and how
# many of its cloud's services run.
{ read -r state; read -r running; } < <(.venv/bin/python -c '
from discovery_nova.cloud import launcher, settings
state = settings.default_state_dir()
print(state)
print(len(launcher.running(state)))')

if [ "$running" -gt 0 ]; then
    echo "quickstart: reusing the cloud already running from $state"
else
    # 4 vCPUs per compute: a PoP is full after 8 servers, so the demo's
    # overflow comes quickly. clouds.yaml stays in the state directory.
    "$dn" cloud up --pops 3 --compute-size 4:4096 --clouds-yaml none
fi

demo_status=0
"$dn" cloud demo --output-dir demo-output || demo_status=$?

"$dn" simulate --output-dir sim-output "$@"

region=$(.venv/bin/python -c '
from discovery_nova.cloud import settings
print(settings.CloudSettings.load(settings.default_state_dir())
      .layout.pops[0].name)')
cat <<EOF

The multi-PoP cloud is still running (state in $state). Use it with, for
any PoP (region) listed by "$dn cloud status":
  OS_CLIENT_CONFIG_FILE=$state/clouds.yaml .venv/bin/openstack --os-cloud discovery --os-region-name $region server list
Stop it with:
  $dn cloud down
EOF
if [ "$demo_status" -ne 0 ]; then
    echo "quickstart: the demo failed (exit status $demo_status); see its output above" >&2
fi
exit "$demo_status"
