"""``discovery-agent`` refuses a configuration it cannot run with.

Each case calls ``main`` in-process with a configuration file and checks
the exit status and the one-line error on stderr.
"""

import socket

from oslo_config import cfg
import pytest

from discovery_nova.cmd import agent as cmd
import discovery_nova.conf
from tests.ports import free_tcp_udp_port

KEY = 'a-deployment-key-of-enough-length'


def _conf(tmp_path, extra: str = '', key: str | None = KEY,
          port: int | None = None) -> str:
    if port is None:
        port = free_tcp_udp_port()
    lines = ['[discovery]', 'pop_name = pop-a', '[discovery_overlay]',
             'listen_host = 127.0.0.1', 'listen_port = %d' % port,
             'membership_url = file://%s' % (tmp_path / 'members'),
             'state_path = %s' % tmp_path]
    if key is not None:
        lines.append('deployment_key = %s' % key)
    path = tmp_path / 'agent.conf'
    path.write_text('\n'.join(lines) + '\n' + extra + '\n')
    return str(path)


def _run(capsys, *argv: str) -> tuple[int, str]:
    status = cmd.main(list(argv))
    err = capsys.readouterr().err.strip()
    return status, err


def test_missing_key(tmp_path, capsys):
    status, err = _run(capsys, '--config-file', _conf(tmp_path, key=None))
    assert status == 2
    assert err.count('\n') == 0
    assert 'deployment_key' in err and 'not set' in err


def test_short_key(tmp_path, capsys):
    status, err = _run(capsys, '--config-file', _conf(tmp_path, key='short'))
    assert status == 2
    assert 'at least 16' in err and 'deployment_key' in err


def test_key_file(tmp_path, capsys):
    missing = tmp_path / 'nope.key'
    conf = _conf(tmp_path, key=None,
                 extra='deployment_key_file = %s' % missing)
    status, err = _run(capsys, '--config-file', conf)
    assert status == 2
    assert str(missing) in err and 'cannot read' in err
    (tmp_path / 'good.key').write_text('  %s\n' % KEY)
    conf = _conf(tmp_path, key=None,
                 extra='deployment_key_file = %s' % (tmp_path / 'good.key'))

    conf_obj = cfg.ConfigOpts()
    discovery_nova.conf.register_opts(conf_obj)
    conf_obj.register_cli_opts(cmd.cli_opts)
    conf_obj(['--config-file', conf])
    assert cmd.build_params(conf_obj).key == KEY.encode()


def test_out_of_range_option(tmp_path, capsys):
    conf = _conf(tmp_path, extra='probe_interval = -1')
    status, err = _run(capsys, '--config-file', conf)
    assert status == 2
    assert 'probe_interval' in err


def test_bad_membership_url(tmp_path, capsys):
    conf = _conf(tmp_path, extra='membership_url = not-a-url')
    status, err = _run(capsys, '--config-file', conf)
    assert status == 1
    assert err.startswith('discovery-agent: error: ')
    assert 'not-a-url' in err
    assert err.count('\n') == 0


def test_port_in_use(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, err = _run(capsys, '--config-file',
                           _conf(tmp_path, port=port))
    assert status == 1
    assert 'cannot listen on 127.0.0.1:%d' % port in err


def test_bad_emulated_rtt_file(tmp_path, capsys):
    table = tmp_path / 'rtt.json'
    table.write_text('{"pop-b": -3}')
    status, err = _run(capsys, '--config-file', _conf(tmp_path),
                       '--emulated-rtt-file', str(table))
    assert status == 2
    assert 'emulated-rtt-file' in err and 'RTTs in ms' in err


@pytest.mark.parametrize('extra,option', [
    ('membership_heartbeat_interval = 5\nmembership_timeout = 2',
     'membership_timeout'),
    ('restart_backoff = 5\nrestart_backoff_max = 1', 'restart_backoff_max'),
])
def test_inconsistent_options(tmp_path, capsys, extra, option):
    status, err = _run(capsys, '--config-file', _conf(tmp_path, extra=extra))
    assert status == 2
    assert option in err


def test_query_without_a_running_agent(tmp_path, capsys):
    status, err = _run(capsys, '--config-file', _conf(tmp_path),
                       '--query', 'status')
    assert status == 1
    assert err.startswith('discovery-agent: error: query status to '
                          '127.0.0.1:')
    assert err.count('\n') == 0


@pytest.mark.parametrize('args', ['not json', '[1]', '{"type": "x"}'])
def test_query_args_must_be_a_json_object(tmp_path, capsys, args):
    status, err = _run(capsys, '--config-file', _conf(tmp_path),
                       '--query', 'nearest', '--query-args', args)
    assert status == 2
    assert '--query-args' in err


def test_unknown_query_kind(tmp_path, capsys):
    status, err = _run(capsys, '--config-file', _conf(tmp_path), '--query',
                       'explode')
    assert status == 2
    assert '--query' in err and 'explode' in err


PREFIXES = ('[discovery_scheduler]\n'
            'client_prefixes = 192.0.2.0/24=pop-a,2001:db8::/32=pop-b\n'
            '[discovery_overlay]\n')


@pytest.mark.parametrize('probes,expected', [
    ('192.0.2.0/24=192.0.2.53', 'expected host:port'),
    ('192.0.2.0/24=192.0.2.53:99999', 'port from 1 to 65535'),
    ('192.0.2.0/25=192.0.2.53:53',
     'is not a prefix of [discovery_scheduler] client_prefixes'),
])
def test_bad_client_probe_target(tmp_path, capsys, probes, expected):
    conf = _conf(tmp_path, extra=PREFIXES + 'client_probes = ' + probes)
    status, err = _run(capsys, '--config-file', conf)
    assert status == 2
    assert '[discovery_overlay] client_probes' in err
    assert expected in err
    assert err.count('\n') == 0


def test_client_probes_carry_the_pop_of_their_prefix(tmp_path):
    conf = _conf(tmp_path, extra=PREFIXES + 'client_probes = '
                 '192.0.2.0/24=192.0.2.53:53,2001:db8::/32=[2001:db8::1]:443')
    conf_obj = cfg.ConfigOpts()
    discovery_nova.conf.register_opts(conf_obj)
    conf_obj.register_cli_opts(cmd.cli_opts)
    conf_obj(['--config-file', conf])
    params = cmd.build_params(conf_obj)
    assert [(t.prefix, t.pop, t.host, t.port)
            for t in params.client_probes] == [
        ('192.0.2.0/24', 'pop-a', '192.0.2.53', 53),
        ('2001:db8::/32', 'pop-b', '2001:db8::1', 443)]
    assert params.client_probe_pops == 8


PUBLISHER = '''[discovery_aggregates]
auth_type = password
auth_url = http://keystone.example:5000/v3
username = discovery
password = secret
user_domain_name = Default
project_name = service
project_domain_name = Default
region_name = par1
'''


@pytest.mark.parametrize('extra,expected', [
    ('[discovery_aggregates]\npublish_interval = 0\n', 'publish_interval'),
    ('[discovery_aggregates]\nauth_type = no-such-plugin\n',
     'no-such-plugin'),
    ('[discovery_aggregates]\nauth_type = password\n', 'auth_url'),
    (PUBLISHER.replace('[discovery_aggregates]',
                       '[discovery]\npop_tags = bad tag\n'
                       '[discovery_aggregates]'), 'pop_tags'),
])
def test_unusable_publisher_options(tmp_path, capsys, extra, expected):
    status, err = _run(capsys, '--config-file', _conf(tmp_path, extra))
    assert status == 2
    assert len(err.splitlines()) == 1 and expected in err, err


def _parsed(tmp_path, extra: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    discovery_nova.conf.register_opts(conf)
    conf(['--config-file', _conf(tmp_path, extra)])
    return conf


def test_publisher_is_off_without_auth_type(tmp_path):
    assert cmd.build_publisher(_parsed(tmp_path, ''), 'pop-a') is None


def test_publisher_connection_from_the_keystoneauth_options(tmp_path):
    conf = _parsed(tmp_path, PUBLISHER + 'valid_interfaces = internal\n'
                   '[discovery]\npop_pue = 1.3\n')
    publisher = cmd.build_publisher(conf, 'pop-a')
    assert publisher.interval == 60.0
    assert publisher.identity.pue == 1.3
    conn = publisher.connection
    region = conn.config
    assert region.get_region_name('compute') == 'par1'
    assert region.get_interface('compute') == ['internal']
    assert region.get_service_type('compute') == 'compute'
    # No timeout configured: a hung API still lets the agent stop.
    assert conn.session.timeout == 30.0
    assert conn.session.auth.auth_url == 'http://keystone.example:5000/v3'
