"""Every plugin this package declares loads through stevedore."""

import importlib.metadata

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


@pytest.mark.parametrize('group,name', _declared())
def test_entry_point_loads_through_stevedore(group, name):
    failures = []

    def on_failure(manager, entrypoint, exc):
        failures.append((entrypoint, exc))

    manager = stevedore.NamedExtensionManager(
        group, names=[name], on_load_failure_callback=on_failure,
        invoke_on_load=False)
    assert not failures, failures
    assert [ext.name for ext in manager] == [name]
    assert callable(manager[name].plugin)
