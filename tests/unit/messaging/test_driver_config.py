"""The driver's options: own group, listed, and clear errors when wrong."""

from oslo_config import cfg
import oslo_messaging
from oslo_messaging import conffixture
import pytest

from discovery_nova.conf import opts
from discovery_nova.messaging import driver

URL = 'p2p://127.0.0.1:1/'


def _conf(**p2p) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project='p2p-unit')
    conffixture.ConfFixture(conf)
    if p2p:
        from discovery_nova.conf import messaging
        messaging.register_opts(conf)
        for name, value in p2p.items():
            conf.set_override(name, value, group='oslo_messaging_p2p')
    return conf


def test_group_is_listed_for_the_config_generator():
    groups = {getattr(g, 'name', g): {o.dest for o in group_opts}
              for g, group_opts in opts.list_opts()}
    assert {'deployment_key', 'max_connections', 'registration_ttl',
            'auth_mode'} <= groups['oslo_messaging_p2p']


def test_driver_registers_its_group_on_the_conf_it_is_given():
    conf = _conf()
    with pytest.raises(driver.P2PConfigurationError,
                       match='deployment_key'):
        oslo_messaging.get_rpc_transport(conf, url=URL)
    assert 'oslo_messaging_p2p' in conf


def test_short_key_is_refused():
    with pytest.raises(driver.P2PConfigurationError, match='16'):
        oslo_messaging.get_rpc_transport(_conf(deployment_key='short'),
                                         url=URL)


def test_key_file_is_read(tmp_path):
    path = tmp_path / 'key'
    path.write_text('  a-long-enough-deployment-key \n')
    transport = oslo_messaging.get_rpc_transport(
        _conf(deployment_key_file=str(path)), url=URL)
    assert transport._driver._key == b'a-long-enough-deployment-key'
    transport.cleanup()


def test_tls_without_files_names_what_is_missing():
    with pytest.raises(driver.P2PConfigurationError,
                       match='ssl_ca_file, ssl_cert_file, ssl_key_file'):
        oslo_messaging.get_rpc_transport(
            _conf(deployment_key='k' * 20, auth_mode='tls'), url=URL)


def test_url_without_hosts_is_refused():
    with pytest.raises(driver.P2PConfigurationError, match='seed'):
        oslo_messaging.get_rpc_transport(
            _conf(deployment_key='k' * 20), url='p2p:///')


def test_ttl_shorter_than_two_heartbeats_is_refused():
    transport = oslo_messaging.get_rpc_transport(
        _conf(deployment_key='k' * 20, heartbeat_interval=1.0,
              registration_ttl=1.5), url=URL)
    with pytest.raises(driver.P2PConfigurationError,
                       match='registration_ttl'):
        transport._driver.send(oslo_messaging.Target(topic='t'), {}, {})
    transport.cleanup()


def test_overrides_stay_on_their_own_configuration():
    one = _conf(max_connections=5)
    other = _conf(deployment_key='k' * 20)
    assert one.oslo_messaging_p2p.max_connections == 5
    assert other.oslo_messaging_p2p.max_connections == 32
    assert other.oslo_messaging_p2p.deployment_key == 'k' * 20
    assert one.oslo_messaging_p2p.deployment_key is None
