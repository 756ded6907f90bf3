"""The local cloud's overlay agents: ports, configuration, health.

The health check is run against real agents on loopback.
"""

import json

import yaml

from discovery_nova.cloud import config_files
from discovery_nova.cloud import health
from discovery_nova.cloud import launcher
from discovery_nova.cloud import layout as layout_mod
from discovery_nova.cloud import pop_registry
from discovery_nova.cloud import services
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import ServiceSpec
from discovery_nova.sim.topology import PlanetLabTopology
from tests.ports import free_tcp_udp_port
from tests.unit.conductor.test_ring_records import KEY
from tests.unit.conductor.test_ring_records import Ring


def _settings(tmp_path) -> CloudSettings:
    return CloudSettings(state_dir=tmp_path / 'state',
                         layout=layout_mod.make_layout(3, 31000))


def test_each_pop_has_an_overlay_port_of_its_own(tmp_path):
    layout = _settings(tmp_path).layout
    ports = layout.ports()
    assert len(set(ports.values())) == len(ports)
    for index, pop in enumerate(layout.pops):
        assert pop.overlay_port == 31000 + 10 * (index + 1) + 4
        assert ports['%s/overlay' % pop.name] == pop.overlay_port


def test_the_agent_reads_the_pops_nova_conf_with_the_matrix_rtts(tmp_path):
    settings = _settings(tmp_path)
    pop = settings.layout.pops[1]
    paths = config_files.render_nova(settings, pop)
    overlay = config_files.nova_conf_sections(settings, pop)[
        'discovery_overlay']
    assert overlay['listen_port'] == pop.overlay_port
    assert overlay['deployment_key_file'] == config_files.p2p_key_file(
        settings)
    assert overlay['membership_url'] == 'file://%s' % (
        settings.state_dir / 'overlay-membership')
    assert '[discovery_overlay]' in paths['nova'].read_text()
    rtts = json.loads(paths['overlay_rtts'].read_text())
    assert rtts == pop_registry.measured_rtts(
        settings.layout, PlanetLabTopology())[pop.name]
    spec = next(s for s in services.pop_specs(settings, pop)
                if s.kind == services.OVERLAY_AGENT)
    assert spec.name == '%s/overlay-agent' % pop.name
    assert spec.port == pop.overlay_port
    assert spec.argv[-4:] == ['--config-file', str(paths['nova']),
                              '--emulated-rtt-file',
                              str(paths['overlay_rtts'])]
    # Started with the APIs, before the nova services that use it.
    assert spec.nova_binary is None


def test_clouds_yaml_names_each_regions_agent_and_the_key(tmp_path):
    settings = _settings(tmp_path)
    path = tmp_path / 'clouds.yaml'
    launcher.write_clouds_yaml(path, launcher.clouds_yaml_entry(settings))
    entry = yaml.safe_load(path.read_text())['clouds']['discovery']
    assert entry['discovery_overlay_key_file'] == str(
        config_files.p2p_key_file(settings))
    assert entry['regions'] == [
        {'name': pop.name, 'values': {
            'discovery_overlay_agent': '127.0.0.1:%d' % pop.overlay_port}}
        for pop in settings.layout.pops]


def test_health_asks_the_agent_with_the_clouds_key(tmp_path):
    settings = _settings(tmp_path)
    key_file = config_files.p2p_key_file(settings)
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(KEY + b'\n')
    ring = Ring(['pa', 'pb'])
    try:
        spec = ServiceSpec(name='pa/overlay-agent', argv=['x'], pop='pa',
                           kind=services.OVERLAY_AGENT,
                           port=ring.agents['pa'].params.listen_port)
        answered, detail = health.answers(settings, spec)
        assert answered, detail
        assert detail == 'overlay: 2 of 3 PoPs in the ring, 0 records'
        down = ServiceSpec(name='pc/overlay-agent', argv=['x'], pop='pc',
                           kind=services.OVERLAY_AGENT,
                           port=free_tcp_udp_port())
        answered, detail = health.answers(settings, down)
        assert not answered
        assert 'status' in detail and str(down.port) in detail
        key_file.write_text('another-key-of-the-right-size\n')
        answered, detail = health.answers(settings, spec)
        assert not answered
    finally:
        ring.close()
