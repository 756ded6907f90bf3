#!/bin/bash
#
# DevStack plugin of discovery-nova: dispatches DevStack's phases to the
# functions of lib/discovery-nova. Enable it in local.conf with
#   enable_plugin discovery-nova <git url of this repository> [branch]
#
# nova-conductor is left as DevStack runs it: the discovery-nova conductor
# does not exist yet. There is no tempest plugin yet either, so the
# test-config phase has nothing to do.

# Save trace setting
_XTRACE_DISCOVERY_PLUGIN=$(set +o | grep xtrace)
set -o xtrace

# DevStack sets DEST and passes the phase as $1 and $2.
# shellcheck source-path=SCRIPTDIR source=lib/discovery-nova
source "$DEST/discovery-nova/devstack/lib/discovery-nova"

if is_service_enabled discovery-agent; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing discovery-nova"
        install_discovery_nova
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring discovery-nova"
        configure_discovery_nova
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting the discovery-nova overlay agent"
        start_discovery_nova
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
