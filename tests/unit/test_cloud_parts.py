"""The local cloud's parts that need no OpenStack service running."""

import io
import json
import os
from pathlib import Path
import socket
import sqlite3
import time

import numpy as np
from oslo_db.sqlalchemy import engines
import pytest
import sqlalchemy as sa
import yaml

from discovery_nova.cloud import config_files
from discovery_nova.cloud import launcher
from discovery_nova.cloud import layout as layout_mod
from discovery_nova.cloud import null_network
from discovery_nova.cloud import sqlite_locking
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import ProcessRecord
from discovery_nova.cloud.supervisor import ServiceSpec
from discovery_nova.cloud.supervisor import Supervisor
from discovery_nova.cloud.supervisor import group_members
from discovery_nova.cloud.supervisor import is_alive
from discovery_nova.sim.topology import MatrixTopology


def _three_clusters() -> np.ndarray:
    """9 nodes in 3 tight clusters 100 ms apart, plus one broken node."""
    size = 10
    rtt = np.full((size, size), 100.0)
    for start in (0, 3, 6):
        rtt[start:start + 3, start:start + 3] = 5.0
    rtt[9, :] = rtt[:, 9] = 3000.0
    np.fill_diagonal(rtt, 0.0)
    return rtt


def test_choose_nodes_spreads_over_clusters_and_skips_broken_nodes():
    chosen = layout_mod.choose_nodes(_three_clusters(), 3)
    assert sorted(node // 3 for node in chosen) == [0, 1, 2]
    assert 9 not in chosen


def test_layout_ports_and_names():
    topo = MatrixTopology(_three_clusters(),
                          ['n%d' % i for i in range(10)])
    layout = layout_mod.make_layout(2, 30000, ['n4', 'n0'], topology=topo)
    assert [p.name for p in layout.pops] == ['n4', 'n0']
    assert layout.keystone_port == 30000
    assert layout.pops[1].nova_api_port == 30020
    assert len(set(layout.ports().values())) == len(layout.ports())


@pytest.mark.parametrize('count,base,names,message', [
    (0, 30000, None, '--pops must be between'),
    (2, 65520, None, 'leaves no room'),
    (2, 30000, ['n1', 'n1'], 'must be distinct'),
    (2, 30000, ['n1', 'nope'], "'nope' is not a node"),
    (1, 30000, ['bad name'], 'is not valid'),
])
def test_layout_errors_name_the_problem(count, base, names, message):
    topo = MatrixTopology(_three_clusters(),
                          ['n%d' % i for i in range(10)])
    with pytest.raises(layout_mod.LayoutError, match=message):
        layout_mod.make_layout(count, base, names, topology=topo)


def test_taken_ports_names_the_busy_service():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        sock.listen()
        port = sock.getsockname()[1]
        topo = MatrixTopology(_three_clusters(),
                              ['n%d' % i for i in range(10)])
        layout = layout_mod.make_layout(1, port - 2, ['n0'], topology=topo)
        assert layout_mod.taken_ports(layout) == {'network': port}


def _settings(tmp_path: Path, **kw) -> CloudSettings:
    topo = MatrixTopology(_three_clusters(),
                          ['n%d' % i for i in range(10)])
    layout = layout_mod.make_layout(2, 31000, ['n0', 'n3'], topology=topo)
    return CloudSettings(state_dir=tmp_path, layout=layout, **kw)


def _ini(path: Path) -> dict:
    import configparser
    parser = configparser.RawConfigParser(default_section='-')
    parser.read(path)
    return {s: dict(parser[s]) for s in parser.sections()}


def test_nova_conf_per_pop_and_per_compute(tmp_path):
    extra = tmp_path / 'filters.conf'
    extra.write_text('[filter_scheduler]\nenabled_filters = ComputeFilter\n')
    settings = _settings(tmp_path, nova_conf_extra=[extra],
                         transport='rabbit', conductor='nova')
    pop = settings.layout.pops[1]
    paths = config_files.render_nova(settings, pop)
    nova = _ini(paths['nova'])
    assert nova['DEFAULT']['transport_url'] == \
        'rabbit://guest:guest@127.0.0.1:5672/dn31000-n3'
    assert nova['placement']['region_name'] == 'n3'
    assert nova['discovery']['pop_name'] == 'n3'
    assert nova['api_database']['connection'].startswith('sqlite:///')
    hosts = settings.compute_hosts(pop)
    assert len(hosts) == 2
    states = {_ini(paths[h])['DEFAULT']['state_path'] for h in hosts}
    assert len(states) == 2
    assert all(Path(state).is_dir() for state in states)
    copied = sorted(paths['conf_d'].glob('*.conf'))
    assert [p.name for p in copied] == ['00-discovery-scheduler.conf',
                                        '01-filters.conf']
    assert copied[1].read_text() == extra.read_text()
    assert 'discovery_conductor' not in nova
    assert oct(paths['nova'].stat().st_mode & 0o777) == '0o600'


def test_server_databases_and_p2p_transport(tmp_path):
    settings = _settings(tmp_path, database='mysql', transport='p2p')
    pop = settings.layout.pops[0]
    dbs = config_files.pop_databases(settings, pop)
    assert dbs['nova_cell1'] == ('mysql+pymysql://root@127.0.0.1:3306/'
                                 'dn31000_n0_nova_cell1?charset=utf8')
    assert config_files.transport_url(settings, pop) == \
        'p2p://127.0.0.1:31012/'
    sections = config_files.nova_conf_sections(settings, pop)
    assert sections['oslo_messaging_p2p']['deployment_key_file'] == \
        tmp_path / 'p2p-deployment.key'


def test_a_broken_nova_snippet_is_refused_by_name(tmp_path):
    bad = tmp_path / 'bad.conf'
    bad.write_text('enabled_filters = x\n')
    with pytest.raises(ValueError, match='bad.conf is not an INI file'):
        config_files.read_nova_snippet(bad)


def test_settings_round_trip(tmp_path):
    settings = _settings(tmp_path, database='postgresql', computes_per_pop=3)
    settings.save()
    again = CloudSettings.load(tmp_path)
    assert again == settings


def _call(app, method: str, path: str) -> tuple[str, dict]:
    environ = {'REQUEST_METHOD': method, 'PATH_INFO': path,
               'wsgi.input': io.BytesIO()}
    status = []
    body = b''.join(app(environ, lambda s, h: status.append(s)))
    return status[0], json.loads(body)


def test_null_network_is_an_empty_neutron():
    status, body = _call(null_network.application, 'GET', '/v2.0/ports')
    assert (status, body) == ('200 OK', {'ports': []})
    status, body = _call(null_network.application, 'GET',
                         '/v2.0/networks.json')
    assert body == {'networks': []}
    status, _ = _call(null_network.application, 'GET', '/v2.0/ports/abc')
    assert status.startswith('404')
    status, body = _call(null_network.application, 'POST', '/v2.0/ports')
    assert status.startswith('403')
    assert '--nic none' in body['NeutronError']['message']


def test_supervisor_stops_the_whole_process_group(tmp_path):
    sup = Supervisor(tmp_path / 'run', tmp_path / 'logs')
    spec = ServiceSpec(name='pop/forker', argv=[
        '/bin/sh', '-c', 'sleep 120 & echo started; sleep 120'])
    record = sup.start(spec)
    deadline = time.monotonic() + 10
    while len(group_members(record.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(group_members(record.pid)) >= 2
    assert is_alive(record)
    assert list(sup.alive()) == ['pop/forker']
    assert sup.stop_all(timeout=5) == []
    assert group_members(record.pid) == []
    assert not list((tmp_path / 'run').glob('*.pid'))
    assert 'started' in (tmp_path / 'logs' / 'pop.forker.log').read_text()


def test_a_reused_pid_is_not_ours():
    me = ProcessRecord(name='x', pid=os.getpid(), start_ticks=1, argv=[],
                       log='')
    assert not is_alive(me)


def test_clouds_yaml_keeps_other_clouds(tmp_path):
    path = tmp_path / 'clouds.yaml'
    path.write_text(yaml.safe_dump({'clouds': {'other': {'a': 1},
                                               'discovery': {'old': 1}}}))
    launcher.write_clouds_yaml(path, {'auth': {'username': 'admin'}})
    data = yaml.safe_load(path.read_text())
    assert data['clouds']['other'] == {'a': 1}
    assert data['clouds']['discovery'] == {'auth': {'username': 'admin'}}
    path.write_text('clouds: [unclosed')
    with pytest.raises(launcher.CloudError, match='not valid YAML'):
        launcher.write_clouds_yaml(path, {})


def test_sqlite_transactions_take_the_write_lock_up_front(tmp_path):
    path = tmp_path / 'x.sqlite'
    engine = engines.create_engine('sqlite:///%s' % path)
    with engine.begin() as conn:
        conn.execute(sa.text('CREATE TABLE t (x INTEGER)'))
    sqlite_locking.install()
    try:
        with engine.begin() as conn:
            conn.execute(sa.text('SELECT * FROM t')).fetchall()
            other = sqlite3.connect(path, timeout=0.1)
            with pytest.raises(sqlite3.OperationalError, match='locked'):
                other.execute('INSERT INTO t VALUES (1)')
            other.close()
            conn.execute(sa.text('INSERT INTO t VALUES (2)'))
    finally:
        sqlite_locking.uninstall()
    with sqlite3.connect(path) as check:
        assert check.execute('SELECT x FROM t').fetchall() == [(2,)]
    engine.dispose()


def test_cli_reports_a_missing_cloud(tmp_path, capsys):
    from discovery_nova.cloud import cli
    assert cli.main(['cloud', '--state-dir', str(tmp_path), 'status']) == 1
    assert 'no cloud in' in capsys.readouterr().err


def test_discovery_conductor_and_compute_size(tmp_path):
    """The default cloud: our conductor meets the others over p2p, with the
    matrix RTTs as emulated delay; computes cut down to the asked size."""
    settings = _settings(tmp_path, compute_vcpus=4, compute_ram_mb=4096)
    assert (settings.transport, settings.conductor) == ('p2p', 'discovery')
    a, b = settings.layout.pops
    paths = config_files.render_nova(settings, a)
    nova = _ini(paths['nova'])
    fed = nova['discovery_conductor']
    assert fed['federation_transport_url'] == 'p2p://127.0.0.1:%d,' \
        '127.0.0.1:%d/' % (a.federation_port, b.federation_port)
    assert fed['membership_url'] == 'file://%s' % (tmp_path / 'membership')
    name, delay = fed['emulated_rtt_ms'].split(':')
    assert name == b.name and float(delay) > 0
    compute = _ini(paths[settings.compute_hosts(a)[0]])['DEFAULT']
    assert int(compute['reserved_host_cpus']) == \
        config_files.FAKE_HOST_VCPUS - 4
    assert int(compute['reserved_host_memory_mb']) == \
        config_files.FAKE_HOST_RAM_MB - 4096
    snippet = (paths['conf_d'] / '00-discovery-scheduler.conf').read_text()
    assert 'available_filters = discovery_nova.scheduler.all_filters' in \
        snippet
    assert 'PopFilter,MaxRttFilter,PopAffinityFilter' in snippet


def test_a_password_starting_with_a_dash_reaches_keystone_whole(
        tmp_path, monkeypatch):
    """secrets.token_urlsafe may start a password with "-": passed as a
    separate argument, keystone-manage took it for an option and the
    whole cloud failed to start (seen once in a test run)."""
    settings = _settings(tmp_path, admin_password='-Ab3dEf_ghIj')
    ran = []
    monkeypatch.setattr(launcher, 'run_tool',
                        lambda argv, log, **kw: ran.append(argv))
    monkeypatch.setattr(launcher.services, 'find_program',
                        lambda settings, name: name)
    launcher.setup_keystone(settings)
    bootstrap = [argv for argv in ran if 'bootstrap' in argv][0]
    assert '--bootstrap-password=-Ab3dEf_ghIj' in bootstrap
    assert '-Ab3dEf_ghIj' not in bootstrap
