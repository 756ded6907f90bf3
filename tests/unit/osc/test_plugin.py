"""The plugin interface openstackclient expects, found by entry point."""

import argparse
import importlib.metadata

from discovery_nova.osc import plugin


def _entry_points(group):
    dist = importlib.metadata.distribution('discovery-nova')
    return {ep.name: ep for ep in dist.entry_points if ep.group == group}


def test_the_extension_entry_point_is_the_plugin_module():
    ext = _entry_points('openstack.cli.extension')['discovery']
    module = ext.load()
    assert module is plugin
    assert module.API_NAME == 'discovery'
    assert 'openstack.%s.v%s' % (module.API_NAME, module.DEFAULT_API_VERSION)\
        == 'openstack.discovery.v1'


def test_every_command_of_the_api_group_loads():
    commands = _entry_points('openstack.discovery.v1')
    assert sorted(commands) == ['discovery_neighbors', 'discovery_pop_list',
                                'discovery_pop_show',
                                'discovery_server_locate']
    for ep in commands.values():
        cls = ep.load()
        assert cls.__doc__.strip(), ep.name


def test_api_version_option_defaults_and_reads_the_environment(
        monkeypatch):
    monkeypatch.delenv('OS_DISCOVERY_API_VERSION', raising=False)
    parser = plugin.build_option_parser(argparse.ArgumentParser())
    assert parser.parse_args([]).os_discovery_api_version == '1'
    assert parser.parse_args(
        ['--os-discovery-api-version', '1']).os_discovery_api_version == '1'
    assert plugin.API_VERSION_OPTION == 'os_discovery_api_version'
    monkeypatch.setenv('OS_DISCOVERY_API_VERSION', '7')
    parser = plugin.build_option_parser(argparse.ArgumentParser())
    assert parser.parse_args([]).os_discovery_api_version == '7'


def test_make_client_uses_the_session_region_and_interface():
    class Manager:
        _api_version = {'discovery': '1'}
        session = object()
        region_name = 'pl7'
        interface = 'internal'

    client = plugin.make_client(Manager())
    assert client.session is Manager.session
    assert client.region_name == 'pl7'
    assert client.interface == 'internal'
