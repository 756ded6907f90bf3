"""Every plugin this package declares loads through stevedore."""

import importlib.metadata
import subprocess
import sys

import pytest
import stevedore

DIST = 'discovery-nova'


def _declared():
    dist = importlib.metadata.distribution(DIST)
    return sorted({(ep.group, ep.name) for ep in dist.entry_points})


def test_the_package_declares_its_plugins():
    groups = {group for group, _ in _declared()}
    assert {'console_scripts', 'oslo.config.opts',
            'discovery_nova.overlay.probers',
            'discovery_nova.overlay.membership'} <= groups


#: Console scripts whose module sets up nova's concurrency model at import
#: (as nova's own cmd modules do), which must happen before anything else
#: imports eventlet: loaded in an interpreter of their own.
_FRESH_PROCESS = {('console_scripts', 'discovery-conductor')}


def _load_in_fresh_interpreter(group, name):
    code = ('import stevedore, sys\n'
            'm = stevedore.NamedExtensionManager(%r, names=[%r], '
            'on_load_failure_callback=lambda m, e, x: sys.exit(repr(x)))\n'
            'assert callable(m[%r].plugin)\n' % (group, name, name))
    done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize('group,name', _declared())
def test_entry_point_loads_through_stevedore(group, name):
    if (group, name) in _FRESH_PROCESS:
        _load_in_fresh_interpreter(group, name)
        return
    failures = []

    def on_failure(manager, entrypoint, exc):
        failures.append((entrypoint, exc))

    manager = stevedore.NamedExtensionManager(
        group, names=[name], on_load_failure_callback=on_failure,
        invoke_on_load=False)
    assert not failures, failures
    assert [ext.name for ext in manager] == [name]
    plugin = manager[name].plugin
    if group == 'openstack.cli.extension':
        # openstackclient's extensions are modules with its plugin API.
        for attribute in ('API_NAME', 'API_VERSIONS', 'make_client',
                          'build_option_parser'):
            assert hasattr(plugin, attribute), attribute
    else:
        assert callable(plugin)
