"""The DevStack plugin, run phase by phase without a DevStack checkout.

Each phase runs in bash as DevStack runs it (``settings`` then
``plugin.sh MODE PHASE``) against the stand-ins of DevStack's functions in
``tests/devstack_stubs/``: their ini functions really edit the files, their
service and install functions record what was asked. The resulting
``nova.conf`` is read with nova's own scheduler options and the agent's
file with this project's options, so a value nova or the agent would
misread fails here.
"""

import configparser
import contextlib
import json
import os
import pathlib
import shlex
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import time

from nova.conf import scheduler as nova_scheduler_conf
from oslo_config import cfg
from oslo_log import log as logging
import oslo_messaging
import pytest

import discovery_nova.conf

REPO = pathlib.Path(__file__).resolve().parents[2]
RUN_PHASE = REPO / 'tests' / 'devstack_stubs' / 'run-phase'
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
            'STACK_USER': subprocess.run(
                ['id', '-un'], capture_output=True, text=True,
                check=True).stdout.strip(),
            'ENABLE_DEBUG_LOG_LEVEL': 'True',
            # Without n-api: its cell mappings need a database, which
            # only the test that brings one enables.
            'ENABLED_SERVICES': 'key,n-cond,n-sch,n-cpu,placement-api',
            'DEVSTACK_STUB_LOG': str(self.log),
            'DEVSTACK_STUB_BIN_DIR': str(self.bin_dir),
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

    def stack(self) -> None:
        for phase in ('install', 'post-config', 'extra'):
            self.run('stack', phase)

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
    # rabbit (the default) leaves DevStack's transport alone.
    assert nova.transport_url == RABBIT_URL
    assert 'oslo_messaging_p2p' not in settings(devstack.nova_conf)


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
    assert not any(call[0] == 'stop_process' for call in devstack.calls())
    devstack.run('unstack')
    assert devstack.calls()[-1] == ['stop_process', 'discovery-agent']
    # unstack stops; the configuration stays for the next stack.
    assert devstack.agent_conf.exists()


def test_phases_do_nothing_when_the_service_is_disabled(
        tmp_path: pathlib.Path) -> None:
    devstack = DevStack(tmp_path)
    # settings enables discovery-agent; local.conf's disable_service runs
    # after it in DevStack, which is what this stands for.
    script = (f'source {RUN_PHASE.parent}/functions; '
              f'source {DEVSTACK_DIR}/settings; '
              'ENABLED_SERVICES=${ENABLED_SERVICES/discovery-agent/}; '
              f'source {DEVSTACK_DIR}/plugin.sh stack post-config')
    subprocess.run(['bash', '-c', script], env=devstack.env, check=True,
                   capture_output=True, timeout=60)
    assert not devstack.agent_conf.exists()
    assert settings(devstack.nova_conf) == settings(
        _written(tmp_path / 'expected.conf', NOVA_CONF_TEXT))


@pytest.mark.parametrize('transport', ['rabbit', 'p2p'])
def test_clean_undoes_configuration(tmp_path: pathlib.Path,
                                    transport: str) -> None:
    devstack = DevStack(tmp_path, DISCOVERY_TRANSPORT=transport)
    before = {path: settings(path)
              for path in (devstack.nova_conf, devstack.nova_cpu_conf)}
    devstack.stack()
    assert settings(devstack.nova_conf) != before[devstack.nova_conf]
    devstack.run('unstack')
    devstack.run('clean')
    for path, expected in before.items():
        assert settings(path) == expected, path
    assert not devstack.conf_dir.exists()
    assert not devstack.state_dir.exists()


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


def test_devstack_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which('shellcheck')
    if shellcheck is None:
        pytest.skip('shellcheck is not installed '
                    '(apt-get install shellcheck, or tools/bootstrap.sh '
                    'as root)')
    scripts = [DEVSTACK_DIR / 'plugin.sh', DEVSTACK_DIR / 'settings',
               DEVSTACK_DIR / 'lib' / 'discovery-nova',
               RUN_PHASE, RUN_PHASE.parent / 'functions']
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
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
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
