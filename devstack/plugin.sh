#!/bin/bash
#
# DevStack plugin of discovery-nova: dispatches DevStack's phases to the
# functions of lib/discovery-nova. Enable it in local.conf with
#   enable_plugin discovery-nova <git url of this repository> [branch]
#
# Its services are discovery-agent (the overlay agent) and
# discovery-conductor, which stack extra puts in place of the
# nova-conductor serving nova-api (n-super-cond, or n-cond with
# CELLSV2_SETUP=singleconductor) once lib/nova has started it. test-config
# fills in the [discovery] group of tempest.conf for the tempest plugin.

# Save trace setting
_XTRACE_DISCOVERY_PLUGIN=$(set +o | grep xtrace)
set -o xtrace

# DevStack sets DEST and passes the phase as $1 and $2.
# shellcheck source-path=SCRIPTDIR source=lib/discovery-nova
source "$DEST/discovery-nova/devstack/lib/discovery-nova"

if is_service_enabled discovery-agent discovery-conductor; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing discovery-nova"
        install_discovery_nova
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring discovery-nova"
        configure_discovery_nova
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting the discovery-nova agent and conductor"
        start_discovery_nova
    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        # lib/tempest defines TEMPEST_CONFIG and, in this phase just
        # before the plugins, writes tempest.conf afresh.
        if is_service_enabled tempest && [[ -n ${TEMPEST_CONFIG:-} ]]; then
            echo_summary "Configuring tempest for discovery-nova"
            configure_discovery_tempest
        fi
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_discovery_nova
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_discovery_nova
    fi
fi

# Restore xtrace
$_XTRACE_DISCOVERY_PLUGIN
