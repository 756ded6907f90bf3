"""The DevStack plugin, run phase by phase without a DevStack checkout.

Each phase runs in bash as DevStack runs it (``settings`` then
``plugin.sh MODE PHASE``) against the stand-ins of DevStack's functions in
``tests/devstack_stubs/``: their ini functions really edit the files, their
service and install functions record what was asked, and ``run_process``
and ``stop_process`` keep the state systemd would have of DevStack's units.
Whole ``stack.sh``, ``unstack.sh`` and ``clean.sh`` runs also start and
stop nova's conductors as ``lib/nova`` does, which the plugin's conductor
takes over from. The resulting ``nova.conf`` is read with nova's own
scheduler options and the agent's file with this project's options, so a
value nova or the agent would misread fails here.
"""

import configparser
import contextlib
import json
import os
import pathlib
import shlex
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time

from nova.conf import conductor as nova_conductor_conf
from nova.conf import scheduler as nova_scheduler_conf
from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging
import pytest

import discovery_nova.conf
from discovery_nova.scheduler import aggregate_publisher
from tests.ports import free_tcp_port
from tests.ports import free_tcp_udp_port

REPO = pathlib.Path(__file__).resolve().parents[2]
RUN_PHASE = REPO / 'tests' / 'devstack_stubs' / 'run-phase'
RUN_SCRIPT = RUN_PHASE.parent / 'run-script'
DEVSTACK_DIR = REPO / 'devstack'

RABBIT_URL = 'rabbit://stackrabbit:secret@10.0.0.5:5672/'
# What DevStack's lib/nova leaves in [filter_scheduler] (its FILTERS).
DEVSTACK_FILTERS = (
    'AvailabilityZoneFilter,ComputeFilter,ComputeCapabilitiesFilter,'
    'ImagePropertiesFilter,ServerGroupAntiAffinityFilter,'
    'ServerGroupAffinityFilter,SameHostFilter,DifferentHostFilter')
OUR_FILTERS = ['PopFilter', 'MaxRttFilter', 'PopAffinityFilter']
NOVA_CONF_TEXT = f"""[DEFAULT]
debug = True
transport_url = {RABBIT_URL}

[filter_scheduler]
enabled_filters = {DEVSTACK_FILTERS}

[conductor]
workers = 2

[api_database]
connection = mysql+pymysql://root:secret@127.0.0.1/nova_api
"""
NOVA_CPU_CONF_TEXT = f"""[DEFAULT]
transport_url = {RABBIT_URL}
compute_driver = fake.FakeDriver
"""


class DevStack:
    """A temporary DEST/DATA_DIR/etc with DevStack's globals for a run."""

    def __init__(self, root: pathlib.Path, **local_conf: str) -> None:
        self.root = root
        dest = root / 'opt' / 'stack'
        dest.mkdir(parents=True)
        (dest / 'discovery-nova').symlink_to(REPO)
        etc = root / 'etc' / 'nova'
        etc.mkdir(parents=True)
        self.nova_conf = etc / 'nova.conf'
        self.nova_cpu_conf = etc / 'nova-cpu.conf'
        self.nova_conf.write_text(NOVA_CONF_TEXT)
        self.nova_cpu_conf.write_text(NOVA_CPU_CONF_TEXT)
        self.conf_dir = root / 'etc' / 'discovery-nova'
        self.agent_conf = self.conf_dir / 'discovery-nova.conf'
        self.state_dir = root / 'data' / 'discovery-nova'
        self.bin_dir = root / 'usr' / 'local' / 'bin'
        self.log = root / 'calls.log'
        self.systemd_dir = root / 'etc' / 'systemd' / 'system'
        self.env = {
            'PATH': os.environ['PATH'],
            'HOME': str(root),
            'DEST': str(dest),
            'DATA_DIR': str(root / 'data'),
            'NOVA_CONF': str(self.nova_conf),
            'NOVA_CPU_CONF': str(self.nova_cpu_conf),
            'HOST_IP': '10.0.0.5',
            'SERVICE_HOST': '10.0.0.5',
            'SERVICE_PASSWORD': 'secret',
            'SERVICE_DOMAIN_NAME': 'Default',
            'SERVICE_PROJECT_NAME': 'service',
            'KEYSTONE_SERVICE_URI': 'http://10.0.0.5/identity',
            'STACK_USER': subprocess.run(
                ['id', '-un'], capture_output=True, text=True,
                check=True).stdout.strip(),
            'ENABLE_DEBUG_LOG_LEVEL': 'True',
            'REGION_NAME': 'RegionOne',
            # Without n-api: its cell mappings need a database, which
            # only the test that brings one enables.
            'ENABLED_SERVICES': 'key,n-cond,n-sch,n-cpu,placement-api',
            'DEVSTACK_STUB_LOG': str(self.log),
            'DEVSTACK_STUB_BIN_DIR': str(self.bin_dir),
            'DEVSTACK_STUB_SYSTEMD_DIR': str(self.systemd_dir),
            'DISCOVERY_CONF_DIR': str(self.conf_dir),
            'DISCOVERY_POP_NAME': 'par1',
        }
        self.env.update(local_conf)

    def run(self, *phase: str,
            check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ['bash', str(RUN_PHASE), *phase], env=self.env,
            capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, (phase, done.stderr[-2000:])
        return done

    def script(self, name: str,
               check: bool = True) -> subprocess.CompletedProcess:
        """stack.sh, unstack.sh or clean.sh around the plugin's phases."""
        done = subprocess.run(
            ['bash', str(RUN_SCRIPT), name], env=self.env,
            capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, (name, done.stderr[-2000:])
        return done

    def stack(self) -> None:
        self.script('stack')

    def unstack(self) -> None:
        self.script('unstack')

    def clean(self) -> None:
        self.script('clean')

    def running(self) -> dict[str, str]:
        """The command each running DevStack unit runs, by service."""
        prefix, suffix = 'devstack@', '.service.running'
        return {path.name[len(prefix):-len(suffix)]:
                path.read_text().strip()
                for path in self.systemd_dir.glob(prefix + '*' + suffix)}

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split('\t')
                for line in self.log.read_text().splitlines()]


def nova_view(path: pathlib.Path) -> cfg.ConfigOpts:
    """nova.conf as nova-scheduler reads it."""
    conf = cfg.ConfigOpts()
    nova_scheduler_conf.register_opts(conf)
    conf.register_opt(cfg.StrOpt('transport_url'))
    discovery_nova.conf.register_opts(conf)
    conf(args=[], default_config_files=[str(path)])
    return conf


def conductor_view(path: pathlib.Path) -> cfg.ConfigOpts:
    """nova.conf as discovery-conductor reads and validates it."""
    conf = cfg.ConfigOpts()
    nova_conductor_conf.register_opts(conf)
    discovery_nova.conf.register_opts(conf)
    conf(args=[], default_config_files=[str(path)])
    discovery_nova.conf.validate(conf)
    return conf


def devstack_conductors(devstack: DevStack) -> dict[str, str]:
    """What lib/nova runs in the default superconductor layout."""
    return {
        'n-super-cond': (f'{devstack.bin_dir}/nova-conductor --config-file '
                         f'{devstack.nova_conf}'),
        'n-cond-cell1': (f'{devstack.bin_dir}/nova-conductor --config-file '
                         f'{devstack.nova_conf.parent}/nova_cell1.conf'),
    }


def agent_view(path: pathlib.Path) -> cfg.ConfigOpts:
    """The agent's file as discovery-agent reads and validates it."""
    conf = cfg.ConfigOpts()
    logging.register_options(conf)
    discovery_nova.conf.register_opts(conf)
    conf(args=[], default_config_files=[str(path)])
    discovery_nova.conf.validate(conf)
    return conf


def settings(path: pathlib.Path) -> dict[str, dict[str, str]]:
    """Every non-empty section of an ini file (one value per option)."""
    # oslo.config's [DEFAULT] is a section like the others, not
    # configparser's defaults merged into every section.
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, default_section='\x00')
    parser.read(path)
    view = {name: dict(parser[name]) for name in parser.sections()}
    return {name: options for name, options in view.items() if options}


@pytest.fixture
def devstack(tmp_path: pathlib.Path) -> DevStack:
    return DevStack(tmp_path)


def test_install_develops_this_repository(devstack: DevStack) -> None:
    devstack.run('stack', 'install')
    assert devstack.calls() == [
        ['setup_develop', devstack.env['DEST'] + '/discovery-nova']]


def test_install_adds_etcd3gw_when_membership_uses_etcd(
        tmp_path: pathlib.Path) -> None:
    devstack = DevStack(tmp_path, ENABLED_SERVICES='etcd3,n-cpu')
    devstack.run('stack', 'install')
    assert ['pip_install', 'etcd3gw'] in devstack.calls()


def test_post_config_adds_scheduler_plugins_to_nova(
        devstack: DevStack) -> None:
    devstack.run('stack', 'install')
    devstack.run('stack', 'post-config')
    nova = nova_view(devstack.nova_conf)
    assert nova.filter_scheduler.available_filters == [
        'nova.scheduler.filters.all_filters',
        'discovery_nova.scheduler.all_filters']
    assert nova.filter_scheduler.enabled_filters == (
        DEVSTACK_FILTERS.split(',') + OUR_FILTERS)
    assert nova.filter_scheduler.weight_classes == [
        'nova.scheduler.weights.all_weighers',
        'discovery_nova.scheduler.all_weighers']
    assert nova.discovery.pop_name == 'par1'
    # rabbit (the default) leaves DevStack's transport alone; the p2p
    # group only holds what the conductors' federation needs.
    assert nova.transport_url == RABBIT_URL
    assert settings(devstack.nova_conf)['oslo_messaging_p2p'] == {
        'deployment_key_file': str(devstack.conf_dir / 'deployment.key'),
        'advertise_host': '10.0.0.5'}


def test_post_config_twice_adds_nothing_twice(devstack: DevStack) -> None:
    devstack.run('stack', 'post-config')
    first = devstack.nova_conf.read_text()
    devstack.run('stack', 'post-config')
    assert devstack.nova_conf.read_text() == first


def test_nova_defaults_are_kept_when_devstack_set_no_filters(
        devstack: DevStack) -> None:
    devstack.nova_conf.write_text(f'[DEFAULT]\ntransport_url = {RABBIT_URL}\n')
    devstack.run('stack', 'post-config')
    nova = nova_view(devstack.nova_conf)
    defaults = nova_view(_written(devstack.root / 'empty.conf', ''))
    assert nova.filter_scheduler.enabled_filters == (
        defaults.filter_scheduler.enabled_filters + OUR_FILTERS)
    assert nova.filter_scheduler.available_filters == (
        defaults.filter_scheduler.available_filters
        + ['discovery_nova.scheduler.all_filters'])
    assert nova.filter_scheduler.weight_classes == (
        defaults.filter_scheduler.weight_classes
        + ['discovery_nova.scheduler.all_weighers'])


def test_scheduler_disabled_leaves_filter_scheduler_alone(
        tmp_path: pathlib.Path) -> None:
    devstack = DevStack(tmp_path, DISCOVERY_ENABLE_SCHEDULER='False')
    devstack.run('stack', 'post-config')
    conf = settings(devstack.nova_conf)
    assert conf['filter_scheduler'] == {'enabled_filters': DEVSTACK_FILTERS}
    assert conf['discovery'] == {'pop_name': 'par1'}


def test_post_config_writes_agent_configuration(devstack: DevStack) -> None:
    devstack.run('stack', 'post-config')
    agent = agent_view(devstack.agent_conf)
    assert agent.debug is True
    assert agent.discovery.pop_name == 'par1'
    overlay = agent.discovery_overlay
    assert overlay.listen_port == 7390
    assert overlay.advertise_host == '10.0.0.5'
    assert overlay.membership_url == (
        'file://' + str(devstack.state_dir) + '/membership')
    assert overlay.state_path == str(devstack.state_dir)
    key_file = pathlib.Path(overlay.deployment_key_file)
    assert key_file.parent == devstack.conf_dir
    assert len(key_file.read_text().strip()) >= 16
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_agent_publishes_the_pop_aggregate_as_nova(
        devstack: DevStack) -> None:
    devstack.run('stack', 'post-config')
    written = settings(devstack.agent_conf)['discovery_aggregates']
    assert written == {
        'publish_interval': '60', 'auth_type': 'password',
        'auth_url': 'http://10.0.0.5/identity', 'username': 'nova',
        'password': 'secret', 'user_domain_name': 'Default',
        'project_name': 'service', 'project_domain_name': 'Default',
        'region_name': 'RegionOne'}
    # What discovery-agent makes of it: keystoneauth loads the password
    # plugin from these options (nothing is sent before the first publish).
    publisher = aggregate_publisher.from_conf(
        agent_view(devstack.agent_conf), 'par1')
    assert publisher is not None and publisher.interval == 60.0
    assert publisher.connection.config.get_region_name() == 'RegionOne'


def test_aggregate_publishing_can_be_turned_off(
        tmp_path: pathlib.Path) -> None:
    devstack = DevStack(tmp_path, DISCOVERY_PUBLISH_AGGREGATES='False')
    devstack.run('stack', 'post-config')
    assert 'discovery_aggregates' not in settings(devstack.agent_conf)
    assert aggregate_publisher.from_conf(
        agent_view(devstack.agent_conf), 'par1') is None


def test_local_conf_settings_reach_the_agent(tmp_path: pathlib.Path) -> None:
    devstack = DevStack(
        tmp_path, DISCOVERY_POP_NAME='fra1', DISCOVERY_AGENT_PORT='7391',
        DISCOVERY_POP_TAGS='country:DE,renewable',
        DISCOVERY_DEPLOYMENT_KEY='a-shared-key-of-32-characters-xx',
        DISCOVERY_MEMBERSHIP_URL='etcd3+http://10.0.0.4:2379')
    devstack.run('stack', 'post-config')
    agent = agent_view(devstack.agent_conf)
    assert agent.discovery.pop_name == 'fra1'
    assert agent.discovery.pop_tags == ['country:DE', 'renewable']
    assert agent.discovery_overlay.listen_port == 7391
    assert agent.discovery_overlay.membership_url == (
        'etcd3+http://10.0.0.4:2379')
    key_file = pathlib.Path(agent.discovery_overlay.deployment_key_file)
    assert key_file.read_text().strip() == 'a-shared-key-of-32-characters-xx'


def test_derived_key_is_the_same_on_every_node(
        tmp_path: pathlib.Path) -> None:
    keys = []
    for node in ('node1', 'node2'):
        devstack = DevStack(tmp_path / node, DISCOVERY_POP_NAME=node)
        devstack.run('stack', 'post-config')
        keys.append((devstack.conf_dir / 'deployment.key').read_text())
    assert keys[0] == keys[1]
    other = DevStack(tmp_path / 'other', SERVICE_PASSWORD='another')
    other.run('stack', 'post-config')
    assert (other.conf_dir / 'deployment.key').read_text() != keys[0]


def test_p2p_switches_nova_transport(tmp_path: pathlib.Path) -> None:
    devstack = DevStack(tmp_path, DISCOVERY_TRANSPORT='p2p')
    devstack.run('stack', 'post-config')
    key_file = str(devstack.conf_dir / 'deployment.key')
    for path in (devstack.nova_conf, devstack.nova_cpu_conf):
        conf = settings(path)
        assert conf['DEFAULT']['transport_url'] == 'p2p://10.0.0.5:7490/'
        assert conf['oslo_messaging_p2p'] == {
            'deployment_key_file': key_file, 'advertise_host': '10.0.0.5'}
    url = oslo_messaging.TransportURL.parse(
        cfg.ConfigOpts(), settings(devstack.nova_conf)['DEFAULT'][
            'transport_url'])
    assert url.transport == 'p2p'
    assert [(host.hostname, host.port) for host in url.hosts] == [
        ('10.0.0.5', 7490)]


def test_p2p_peers_from_local_conf(tmp_path: pathlib.Path) -> None:
    devstack = DevStack(tmp_path, DISCOVERY_TRANSPORT='p2p',
                        DISCOVERY_P2P_PEERS='10.0.0.5:7490,10.0.0.5:7491')
    devstack.run('stack', 'post-config')
    assert settings(devstack.nova_conf)['DEFAULT']['transport_url'] == (
        'p2p://10.0.0.5:7490,10.0.0.5:7491/')


@pytest.mark.parametrize('local_conf, message', [
    ({'DISCOVERY_DEPLOYMENT_KEY': 'too-short'},
     'DISCOVERY_DEPLOYMENT_KEY must have at least 16 characters (got 9)'),
    ({'DISCOVERY_TRANSPORT': 'kafka'},
     "DISCOVERY_TRANSPORT must be rabbit or p2p (got 'kafka')"),
    ({'DISCOVERY_TRANSPORT': 'p2p', 'DISCOVERY_P2P_PEERS': '10.0.0.5'},
     "DISCOVERY_P2P_PEERS must be host:port[,host:port...] "
     "(got '10.0.0.5')"),
    ({'DISCOVERY_FEDERATION_PEERS': '192.0.2.20,ctl/fra1'},
     'DISCOVERY_FEDERATION_PEERS must be host[:port][,host[:port]...] '
     "with ports from 1 to 65535 (got 'ctl/fra1')"),
    ({'DISCOVERY_FEDERATION_PEERS': '192.0.2.20:65536'},
     'DISCOVERY_FEDERATION_PEERS must be host[:port][,host[:port]...] '
     "with ports from 1 to 65535 (got '192.0.2.20:65536')"),
    ({'DISCOVERY_FEDERATION_PORT': '0'},
     'HOST_IP and DISCOVERY_FEDERATION_PORT must make a host:port with a '
     "port from 1 to 65535 (got '10.0.0.5' and '0')"),
    ({'DISCOVERY_CONDUCTOR_WORKERS': 'two'},
     'DISCOVERY_CONDUCTOR_WORKERS must be a whole number from 1 to 999 '
     "(got 'two')"),
    ({'DISCOVERY_PUBLISH_INTERVAL': '0'},
     'DISCOVERY_PUBLISH_INTERVAL must be a whole number of seconds from 1 '
     "to 999999 (got '0')"),
])
def test_bad_settings_stop_stacking_with_a_clear_error(
        tmp_path: pathlib.Path, local_conf: dict[str, str],
        message: str) -> None:
    devstack = DevStack(tmp_path, **local_conf)
    done = devstack.run('stack', 'post-config', check=False)
    assert done.returncode != 0
    assert message in done.stderr
    assert settings(devstack.nova_conf) == settings(
        _written(tmp_path / 'expected.conf', NOVA_CONF_TEXT))


def test_extra_starts_and_unstack_stops_the_agent(
        devstack: DevStack) -> None:
    devstack.stack()
    agent_command = (f'{devstack.bin_dir}/discovery-agent --config-file '
                     f'{devstack.agent_conf}')
    assert ['run_process', 'discovery-agent', agent_command] in (
        devstack.calls())
    assert devstack.running()['discovery-agent'] == agent_command
    assert ['stop_process', 'discovery-agent'] not in devstack.calls()
    devstack.run('unstack')
    assert devstack.calls()[-1] == ['stop_process', 'discovery-agent']
    assert 'discovery-agent' not in devstack.running()
    # unstack stops; the configuration stays for the next stack.
    assert devstack.agent_conf.exists()


def test_phases_do_nothing_when_the_services_are_disabled(
        tmp_path: pathlib.Path) -> None:
    # local.conf's "disable_service discovery-agent discovery-conductor":
    # DevStack reads it before the settings' enable_service.
    devstack = DevStack(
        tmp_path, DISABLED_SERVICES='discovery-agent,discovery-conductor')
    devstack.stack()
    assert not devstack.agent_conf.exists()
    assert settings(devstack.nova_conf) == settings(
        _written(tmp_path / 'expected.conf', NOVA_CONF_TEXT))
    assert [call[0] for call in devstack.calls()] == [
        'run_process', 'run_process']
    assert devstack.running() == devstack_conductors(devstack)


@pytest.mark.parametrize('transport', ['rabbit', 'p2p'])
def test_clean_undoes_configuration(tmp_path: pathlib.Path,
                                    transport: str) -> None:
    devstack = DevStack(tmp_path, DISCOVERY_TRANSPORT=transport)
    before = {path: settings(path)
              for path in (devstack.nova_conf, devstack.nova_cpu_conf)}
    devstack.stack()
    assert settings(devstack.nova_conf) != before[devstack.nova_conf]
    devstack.clean()
    for path, expected in before.items():
        assert settings(path) == expected, path
    assert not devstack.conf_dir.exists()
    assert not devstack.state_dir.exists()
    assert devstack.running() == {}


@pytest.mark.parametrize('workers', ['', 'workers = 4\n'])
def test_clean_gives_devstack_its_conductor_workers_back(
        devstack: DevStack, workers: str) -> None:
    devstack.nova_conf.write_text(
        NOVA_CONF_TEXT.replace('workers = 2\n', workers))
    before = settings(devstack.nova_conf)
    devstack.stack()
    assert conductor_view(devstack.nova_conf).conductor.workers == 1
    # A second post-config (stack.sh run again) keeps DevStack's value.
    devstack.run('stack', 'post-config')
    devstack.clean()
    assert settings(devstack.nova_conf) == before


def test_clean_keeps_filters_the_operator_added(devstack: DevStack) -> None:
    devstack.nova_conf.write_text(
        NOVA_CONF_TEXT.replace(
            '[filter_scheduler]\n',
            '[filter_scheduler]\n'
            'available_filters = nova.scheduler.filters.all_filters\n'
            'available_filters = mycloud.filters.all_filters\n'))
    devstack.run('stack', 'post-config')
    devstack.run('clean')
    nova = nova_view(devstack.nova_conf)
    assert nova.filter_scheduler.available_filters == [
        'nova.scheduler.filters.all_filters', 'mycloud.filters.all_filters']
    assert nova.filter_scheduler.enabled_filters == (
        DEVSTACK_FILTERS.split(','))


def test_stack_swaps_the_super_conductor_for_ours(
        tmp_path: pathlib.Path) -> None:
    devstack = DevStack(
        tmp_path, DISCOVERY_FEDERATION_PEERS='192.0.2.20, 192.0.2.30:7600')
    devstack.stack()
    conductor = conductor_view(devstack.nova_conf)
    opts = conductor.discovery_conductor
    # This node's seed first: the conductor listens on the first it binds.
    assert opts.federation_transport_url == (
        'p2p://10.0.0.5:7590,192.0.2.20:7590,192.0.2.30:7600/')
    url = oslo_messaging.TransportURL.parse(
        cfg.ConfigOpts(), opts.federation_transport_url)
    assert url.transport == 'p2p'
    assert [(host.hostname, host.port) for host in url.hosts] == [
        ('10.0.0.5', 7590), ('192.0.2.20', 7590), ('192.0.2.30', 7600)]
    assert opts.membership_url == (
        'file://' + str(devstack.state_dir) + '/membership')
    assert conductor.discovery.pop_name == 'par1'
    assert conductor.conductor.workers == 1
    p2p = conductor.oslo_messaging_p2p
    assert p2p.deployment_key_file == str(devstack.conf_dir /
                                          'deployment.key')
    assert p2p.advertise_host == '10.0.0.5'

    ours = (f'{devstack.bin_dir}/discovery-conductor --config-file '
            f'{devstack.nova_conf}')
    assert devstack.running() == {
        'discovery-agent': (f'{devstack.bin_dir}/discovery-agent '
                            f'--config-file {devstack.agent_conf}'),
        'discovery-conductor': ours,
        # The cell conductor stays nova's.
        'n-cond-cell1': devstack_conductors(devstack)['n-cond-cell1'],
    }
    # lib/nova started nova-conductor first; extra stopped it for ours.
    calls = devstack.calls()
    assert calls.index(['stop_process', 'n-super-cond']) < calls.index(
        ['run_process', 'discovery-conductor', ours])


def test_singleconductor_swaps_n_cond(tmp_path: pathlib.Path) -> None:
    devstack = DevStack(tmp_path, CELLSV2_SETUP='singleconductor')
    devstack.stack()
    running = devstack.running()
    assert 'n-cond' not in running
    assert running['discovery-conductor'] == (
        f'{devstack.bin_dir}/discovery-conductor --config-file '
        f'{devstack.nova_conf}')
    assert conductor_view(devstack.nova_conf).discovery_conductor \
        .federation_transport_url == 'p2p://10.0.0.5:7590/'


@pytest.mark.parametrize('local_conf, membership', [
    ({'ENABLED_SERVICES': 'key,n-cond,etcd3'},
     'etcd3+http://10.0.0.5:2379'),
    ({'ENABLED_SERVICES': 'key,n-cond,etcd3', 'ETCD_PORT': '2399'},
     'etcd3+http://10.0.0.5:2399'),
    ({'DISCOVERY_MEMBERSHIP_URL': 'etcd3+http://192.0.2.10:2379'},
     'etcd3+http://192.0.2.10:2379'),
])
def test_conductor_membership_follows_the_agents(
        tmp_path: pathlib.Path, local_conf: dict[str, str],
        membership: str) -> None:
    devstack = DevStack(tmp_path, **local_conf)
    devstack.run('stack', 'post-config')
    assert conductor_view(devstack.nova_conf).discovery_conductor \
        .membership_url == membership
    assert agent_view(devstack.agent_conf).discovery_overlay \
        .membership_url == membership


@pytest.mark.parametrize('local_conf', [
    {'DISCOVERY_CONDUCTOR': 'False'},
    {'DISABLED_SERVICES': 'discovery-conductor'},
])
def test_conductor_turned_off_leaves_nova_conductor_alone(
        tmp_path: pathlib.Path, local_conf: dict[str, str]) -> None:
    devstack = DevStack(tmp_path, **local_conf)
    devstack.stack()
    conf = settings(devstack.nova_conf)
    assert 'discovery_conductor' not in conf
    assert 'oslo_messaging_p2p' not in conf
    assert conf['conductor'] == {'workers': '2'}
    running = devstack.running()
    assert 'discovery-conductor' not in running
    assert running.items() >= devstack_conductors(devstack).items()


def test_node_without_nova_conductor_gets_no_conductor(
        tmp_path: pathlib.Path) -> None:
    # A node whose PoP runs its conductors elsewhere.
    devstack = DevStack(tmp_path, ENABLED_SERVICES='n-cpu,placement-client')
    devstack.stack()
    assert 'discovery_conductor' not in settings(devstack.nova_conf)
    assert set(devstack.running()) == {'discovery-agent'}
    assert ['stop_process', 'n-super-cond'] not in devstack.calls()


def test_unstack_stops_ours_and_restack_without_plugin_runs_nova(
        devstack: DevStack) -> None:
    devstack.stack()
    devstack.unstack()
    assert devstack.running() == {}
    assert devstack.calls()[-4:] == [
        ['stop_process', 'discovery-conductor'],
        ['stop_process', 'discovery-agent'],
        ['stop_process', 'n-super-cond'],
        ['stop_process', 'n-cond-cell1']]
    # unstack leaves the configuration for the next stack.
    assert 'discovery_conductor' in settings(devstack.nova_conf)

    devstack.clean()
    assert settings(devstack.nova_conf) == settings(
        _written(devstack.root / 'expected.conf', NOVA_CONF_TEXT))
    # stack.sh without the plugin: lib/nova alone, in a fresh shell.
    script = (f'set -o errexit; source {RUN_PHASE.parent}/functions; '
              f'source {RUN_PHASE.parent}/nova; start_nova_conductor')
    subprocess.run(['bash', '-c', script], env=devstack.env, check=True,
                   capture_output=True, timeout=60)
    assert devstack.running() == devstack_conductors(devstack)


@pytest.mark.parametrize('local_conf, expected', [
    ({}, {'pops': 'RegionOne', 'entry_pop': 'RegionOne'}),
    ({'REGION_NAME': 'par1', 'DISCOVERY_TEMPEST_POPS': 'par1,fra1,nyc1'},
     {'pops': 'par1,fra1,nyc1', 'entry_pop': 'par1', 'far_pop': 'nyc1'}),
    ({'REGION_NAME': 'fra1', 'DISCOVERY_TEMPEST_POPS': 'par1, fra1',
      'DISCOVERY_TEMPEST_FAR_POP': 'par1'},
     {'pops': 'par1,fra1', 'entry_pop': 'fra1', 'far_pop': 'par1'}),
])
def test_test_config_describes_the_pops_to_tempest(
        tmp_path: pathlib.Path, local_conf: dict[str, str],
        expected: dict[str, str]) -> None:
    tempest_conf = tmp_path / 'tempest.conf'
    devstack = DevStack(
        tmp_path, ENABLED_SERVICES='key,n-cond,tempest',
        TEMPEST_CONFIG=str(tempest_conf), **local_conf)
    devstack.stack()
    assert settings(tempest_conf) == {'discovery': expected}
    devstack.clean()
    assert settings(tempest_conf) == {}


def test_test_config_needs_tempest(tmp_path: pathlib.Path) -> None:
    tempest_conf = tmp_path / 'tempest.conf'
    devstack = DevStack(tmp_path, TEMPEST_CONFIG=str(tempest_conf))
    devstack.stack()
    assert not tempest_conf.exists()


@pytest.mark.parametrize('local_conf, message', [
    ({'DISCOVERY_TEMPEST_POPS': 'par1,fra1'},
     "DISCOVERY_TEMPEST_POPS must list this node's region "
     "REGION_NAME=RegionOne (got 'par1,fra1')"),
    ({'REGION_NAME': 'par1', 'DISCOVERY_TEMPEST_POPS': 'par1,fra1',
      'DISCOVERY_TEMPEST_FAR_POP': 'nyc1'},
     'DISCOVERY_TEMPEST_FAR_POP must be one of DISCOVERY_TEMPEST_POPS '
     "other than REGION_NAME=par1 (got 'nyc1', PoPs 'par1,fra1')"),
])
def test_bad_tempest_settings_stop_with_a_clear_error(
        tmp_path: pathlib.Path, local_conf: dict[str, str],
        message: str) -> None:
    devstack = DevStack(
        tmp_path, ENABLED_SERVICES='key,n-cond,tempest',
        TEMPEST_CONFIG=str(tmp_path / 'tempest.conf'), **local_conf)
    done = devstack.run('stack', 'test-config', check=False)
    assert done.returncode != 0
    assert message in done.stderr


def test_devstack_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which('shellcheck')
    if shellcheck is None:
        pytest.skip('shellcheck is not installed '
                    '(apt-get install shellcheck, or tools/bootstrap.sh '
                    'as root)')
    scripts = [DEVSTACK_DIR / 'plugin.sh', DEVSTACK_DIR / 'settings',
               DEVSTACK_DIR / 'lib' / 'discovery-nova',
               RUN_PHASE, RUN_SCRIPT, RUN_PHASE.parent / 'functions',
               RUN_PHASE.parent / 'nova']
    done = subprocess.run(
        [shellcheck, '--external-sources', '--shell=bash',
         *map(str, scripts)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout


def _written(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def test_ini_stand_ins_edit_files_as_devstack_does(
        tmp_path: pathlib.Path) -> None:
    """The stand-ins' semantics the plugin relies on, on a real file."""
    conf = tmp_path / 'x.conf'
    conf.write_text('[a]\nkey = 1\n\n[b]\nkey = 2\nother=3\n')
    script = f"""
        set -o errexit -o nounset
        source {RUN_PHASE.parent}/functions
        iniset {conf} b key 20
        iniset {conf} b new 'with spaces'
        iniset {conf} c key 30
        iniadd {conf} a multi one
        iniadd {conf} a multi two three
        inidelete {conf} a key
        echo "get=$(iniget {conf} b other)"
        echo "missing=$(iniget {conf} b nothing)"
        echo "multi=$(iniget_multiline {conf} a multi)"
        ini_has_option {conf} c key && echo has-c-key
        ini_has_option {conf} a key || echo no-a-key
    """
    done = subprocess.run(['bash', '-c', script], capture_output=True,
                          text=True, check=True, timeout=60)
    assert done.stdout.splitlines() == [
        'get=3', 'missing=', 'multi=one two three', 'has-c-key', 'no-a-key']
    assert conf.read_text() == (
        '[a]\nmulti = one\nmulti = two\nmulti = three\n\n'
        '[b]\nnew = with spaces\nkey = 20\nother=3\n\n[c]\nkey = 30\n')


def test_service_stand_ins_keep_units_as_devstack_does(
        tmp_path: pathlib.Path) -> None:
    """run_process, stop_process and enable_service, as the plugin uses
    them: a disabled service is never run, a running unit keeps its
    command until stopped, stop_process disables what it stops."""
    devstack = DevStack(tmp_path, ENABLED_SERVICES='a,b',
                        DISABLED_SERVICES='c')
    script = f"""
        set -o errexit -o nounset
        source {RUN_PHASE.parent}/functions
        enable_service c d
        echo "enabled=$ENABLED_SERVICES"
        run_process a "/bin/a --first"
        run_process a "/bin/a --second"
        run_process b "/bin/b"
        run_process c "/bin/c"
        stop_process b
        stop_process c
        run_process d "/bin/d"
        disable_service d
        stop_process d
        ( run_process a "relative/a" ) || echo refused-relative
    """
    done = subprocess.run(['bash', '-c', script], env=devstack.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['enabled=a,b,d', 'refused-relative']
    assert 'Attempt to enable_service c when it has been disabled' in (
        done.stderr)
    # a still runs its first command: systemctl start leaves it alone.
    assert devstack.running() == {'a': '/bin/a --first', 'd': '/bin/d'}
    unit = devstack.systemd_dir / 'devstack@a.service'
    assert unit.read_text() == '\n[Service]\nExecStart = /bin/a --second\n'


@pytest.mark.functional
def test_p2p_moves_devstack_cells_to_one_mesh_per_vhost(
        tmp_path: pathlib.Path) -> None:
    """DevStack's superconductor layout, with nova-manage and a real DB.

    The API database (SQLite) is mapped as DevStack's init_nova maps it
    before post-config: cell0 without transport, cell1 on its own RabbitMQ
    virtual host. After post-config the top level and cell1 are two p2p
    meshes, in the files and in the cell mappings nova-api reads.
    """
    nova_bin = pathlib.Path(sys.executable).parent
    if not (nova_bin / 'nova-manage').exists():
        pytest.skip('nova-manage is not installed beside ' + sys.executable)
    db = {name: f'sqlite:///{tmp_path}/{name}.db'
          for name in ('nova_api', 'nova_cell0', 'nova_cell1')}
    devstack = DevStack(tmp_path, DISCOVERY_TRANSPORT='p2p',
                        ENABLED_SERVICES='key,n-api,n-cond,n-sch,n-cpu',
                        NOVA_BIN_DIR=str(nova_bin))
    cell_url = RABBIT_URL + 'nova_cell1'
    devstack.nova_conf.write_text(
        NOVA_CONF_TEXT.replace(
            'mysql+pymysql://root:secret@127.0.0.1/nova_api', db['nova_api'])
        + f'\n[database]\nconnection = {db["nova_cell0"]}\n')
    cell1_conf = devstack.nova_conf.parent / 'nova_cell1.conf'
    cell1_conf.write_text(f'[DEFAULT]\ntransport_url = {cell_url}\n\n'
                          f'[database]\nconnection = {db["nova_cell1"]}\n')
    devstack.nova_cpu_conf.write_text(
        NOVA_CPU_CONF_TEXT.replace(RABBIT_URL, cell_url))
    manage = [str(nova_bin / 'nova-manage'), '--config-file',
              str(devstack.nova_conf)]
    for command in (['api_db', 'sync'],
                    ['cell_v2', 'map_cell0', '--database_connection',
                     db['nova_cell0']],
                    ['--config-file', str(cell1_conf), 'cell_v2',
                     'create_cell', '--name', 'cell1']):
        subprocess.run(manage + command, check=True, capture_output=True,
                       timeout=120)

    devstack.run('stack', 'post-config')

    top, cell = 'p2p://10.0.0.5:7490/', 'p2p://10.0.0.5:7491/'
    assert settings(devstack.nova_conf)['DEFAULT']['transport_url'] == top
    for path in (cell1_conf, devstack.nova_cpu_conf):
        assert settings(path)['DEFAULT']['transport_url'] == cell, path
    with contextlib.closing(sqlite3.connect(tmp_path / 'nova_api.db')) as api:
        mappings = sorted(api.execute(
            'SELECT name, transport_url, database_connection '
            'FROM cell_mappings'))
    assert mappings == [('cell0', 'none:///', db['nova_cell0']),
                        ('cell1', cell, db['nova_cell1'])]

    devstack.run('clean')
    assert settings(cell1_conf)['DEFAULT']['transport_url'] == cell_url
    assert settings(devstack.nova_cpu_conf)['DEFAULT'][
        'transport_url'] == cell_url


@pytest.mark.functional
def test_the_started_agent_runs_with_the_written_configuration(
        tmp_path: pathlib.Path) -> None:
    """What run_process was given, run for real on loopback."""
    port = free_tcp_udp_port()
    devstack = DevStack(
        tmp_path, HOST_IP='127.0.0.1', SERVICE_HOST='127.0.0.1',
        DISCOVERY_AGENT_LISTEN_HOST='127.0.0.1',
        DISCOVERY_AGENT_PORT=str(port),
        DEVSTACK_STUB_BIN_DIR=str(pathlib.Path(sys.executable).parent))
    devstack.stack()
    [command] = [call[2] for call in devstack.calls()
                 if call[:2] == ['run_process', 'discovery-agent']]
    argv = shlex.split(command)
    log = tmp_path / 'agent.log'
    with log.open('w') as out:
        agent = subprocess.Popen(argv, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            answer = subprocess.run(argv + ['--query', 'status'],
                                    capture_output=True, text=True,
                                    timeout=30)
            if answer.returncode == 0 or time.monotonic() > deadline:
                break
            assert agent.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        assert answer.returncode == 0, answer.stderr[-2000:]
        status = json.loads(answer.stdout)
        assert status['name'] == 'par1'
        assert status['address'] == f'127.0.0.1:{port}'
        assert status['members'] == ['par1']
    finally:
        agent.terminate()
        agent.wait(timeout=30)


#: A conductor of no PoP, run with one PoP's nova.conf: joins the PoPs'
#: membership group to see who is in it, then calls another PoP's
#: conductor over the federation transport, as a conductor would.
FEDERATION_PROBE = """
from nova import monkey_patch
monkey_patch.patch(backend='threading')

import json
import sys
import time
import uuid

from nova import config
from nova import context
import nova.conf

import discovery_nova.conf
from discovery_nova.conductor import federation
from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.tooz_membership import ToozMembership

CONF = nova.conf.CONF
config.parse_args(['probe', '--config-file', sys.argv[1]])
discovery_nova.conf.validate(CONF)
opts = CONF.discovery_conductor
ring = ToozMembership(opts.membership_url, group=opts.membership_group,
                      member=Member.create('probe'), heartbeat_interval=1,
                      timeout=10)
ring.start()
deadline = time.monotonic() + 30
while True:
    ring.poll()
    members = sorted(set(ring.members()) - {'probe'})
    if len(members) >= 2 or time.monotonic() > deadline:
        break
    time.sleep(0.5)
ring.stop()
link = federation.Federation(CONF, 'probe', opts.federation_transport_url)
try:
    answer = link.call(context.get_admin_context(), sys.argv[2], 'where',
                       30, uuid=str(uuid.uuid4()))
finally:
    link.stop()
print(json.dumps({'members': members, 'where': answer}))
"""


def _free_ports(count: int) -> list[int]:
    return [free_tcp_port() for _ in range(count)]


@pytest.mark.functional
def test_two_pops_conductors_meet_with_the_written_configuration(
        tmp_path: pathlib.Path) -> None:
    """Two DevStack nodes on loopback, stacked with the plugin: the
    discovery-conductor command each would run, run for real.

    Each node has its own API and cell databases (SQLite, made by
    nova-manage as DevStack's init_nova makes them) and its Nova on the
    brokerless transport, so no RabbitMQ is needed. Both conductors join
    the membership group and answer the other PoPs over the federation
    transport written by post-config.
    """
    venv_bin = pathlib.Path(sys.executable).parent
    manage = venv_bin / 'nova-manage'
    if not manage.exists():
        pytest.skip('nova-manage is not installed beside ' + sys.executable)
    template = tmp_path / 'template'
    template.mkdir()
    template_conf = _written(template / 'nova.conf', (
        f'[api_database]\nconnection = sqlite:///{template}/api.db\n'
        f'[database]\nconnection = sqlite:///{template}/cell.db\n'))
    for command in (['api_db', 'sync'], ['db', 'sync', '--local_cell']):
        subprocess.run([str(manage), '--config-file', str(template_conf),
                        *command], check=True, capture_output=True,
                       timeout=300)

    fed_ports = _free_ports(2)
    p2p_ports = _free_ports(2)
    pops = {}
    for index, pop in enumerate(('par1', 'fra1')):
        node = tmp_path / pop
        devstack = DevStack(
            node, HOST_IP='127.0.0.1', SERVICE_HOST='127.0.0.1',
            DISCOVERY_POP_NAME=pop, DISCOVERY_TRANSPORT='p2p',
            DISCOVERY_P2P_PORT=str(p2p_ports[index]),
            DISCOVERY_FEDERATION_PORT=str(fed_ports[index]),
            DISCOVERY_FEDERATION_PEERS=f'127.0.0.1:{fed_ports[1 - index]}',
            DISCOVERY_MEMBERSHIP_URL=f'file://{tmp_path}/membership',
            DEVSTACK_STUB_BIN_DIR=str(venv_bin))
        for name in ('api.db', 'cell.db'):
            shutil.copy(template / name, node / name)
        # What DevStack's nova.conf has besides (placement is not needed
        # to start: the conductor warns and goes on without it).
        devstack.nova_conf.write_text(
            NOVA_CONF_TEXT.replace(
                'mysql+pymysql://root:secret@127.0.0.1/nova_api',
                f'sqlite:///{node}/api.db')
            + f'\n[database]\nconnection = sqlite:///{node}/cell.db\n'
            '\n[placement]\nauth_type = none\n'
            'endpoint_override = http://127.0.0.1:9/placement\n')
        subprocess.run(
            [str(manage), '--config-file', str(devstack.nova_conf),
             'cell_v2', 'create_cell', '--name', 'cell1',
             '--transport-url', 'none:///',
             '--database_connection', f'sqlite:///{node}/cell.db'],
            check=True, capture_output=True, timeout=120)
        devstack.stack()
        pops[pop] = devstack

    processes = {}
    try:
        for pop, devstack in pops.items():
            argv = shlex.split(devstack.running()['discovery-conductor'])
            log = devstack.root / 'conductor.log'
            with log.open('w') as out:
                processes[pop] = subprocess.Popen(
                    argv, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + 120
        for pop, process in processes.items():
            log = pops[pop].root / 'conductor.log'
            joined = f'PoP {pop} conductor joined the federation'
            while joined not in log.read_text():
                assert process.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)

        probe = subprocess.run(
            [sys.executable, '-c', FEDERATION_PROBE,
             str(pops['par1'].nova_conf), 'fra1'],
            capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr[-3000:]
        answer = json.loads(probe.stdout.splitlines()[-1])
        assert answer == {'members': ['fra1', 'par1'], 'where': None}
        # Each conductor listens on its own seed of the federation URL.
        for pop, port in zip(pops, fed_ports, strict=True):
            assert f'listening on 127.0.0.1:{port}' in (
                pops[pop].root / 'conductor.log').read_text()
    finally:
        for process in processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
