"""The options: listed for the generator, sample in step, bounds enforced."""

import os
import subprocess
import sys
import textwrap

from oslo_config import cfg
import pytest

from discovery_nova import conf as dn_conf
from discovery_nova.conf import aggregates
from discovery_nova.conf import opts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
GENERATOR_CONF = os.path.join(
    REPO, 'etc', 'discovery-nova', 'discovery-nova-config-generator.conf')
SAMPLE = os.path.join(REPO, 'etc', 'discovery-nova',
                      'discovery-nova.conf.sample')


#: keystoneauth's options of ``[discovery_aggregates]``: its help, and
#: the auth plugin's options registered only when the plugin is loaded.
KEYSTONEAUTH = {o.dest for o in aggregates.keystoneauth_opts()}
AUTH_PLUGIN = {o.dest for o in aggregates.auth_plugin_opts()}


def test_list_opts_names_every_registered_group():
    listed = {getattr(g, 'name', g): {o.dest for o in group_opts}
              for g, group_opts in opts.list_opts()}
    assert 'discovery' in listed and 'discovery_overlay' in listed
    assert {'publish_interval', 'auth_type', 'auth_url', 'valid_interfaces',
            'timeout'} <= listed['discovery_aggregates']
    conf = cfg.ConfigOpts()
    dn_conf.register_opts(conf)
    for group, names in listed.items():
        for name in names:
            if group == aggregates.GROUP and name in AUTH_PLUGIN:
                continue
            assert name in conf[group], (group, name)
    assert conf.discovery_aggregates.service_type == 'compute'


def test_registering_twice_on_one_conf_is_harmless():
    """Nova services and test processes register on one global CONF from
    several modules: a second registration must change nothing."""
    conf = cfg.ConfigOpts()
    dn_conf.register_opts(conf)
    dn_conf.register_opts(conf)
    conf([])
    assert conf.discovery_aggregates.version is None


def test_every_option_has_nova_style_help():
    for group, group_opts in opts.list_opts():
        for opt in group_opts:
            if group.name == aggregates.GROUP and opt.dest in KEYSTONEAUTH:
                continue
            assert opt.help and len(opt.help.strip()) > 20, opt.dest
            assert 'Possible values' in opt.help, (
                'option %s.%s lacks "Possible values"' % (group, opt.dest))


def test_generated_sample_is_in_step_with_the_code(tmp_path):
    out = tmp_path / 'sample.conf'
    subprocess.run(
        [sys.executable, '-m', 'oslo_config.generator',
         '--config-file', GENERATOR_CONF, '--output-file', str(out)],
        check=True, cwd=REPO)
    with open(SAMPLE) as committed:
        assert out.read_text() == committed.read(), (
            'etc/discovery-nova/discovery-nova.conf.sample is stale: run '
            'oslo-config-generator --config-file %s' % GENERATOR_CONF)


def _conf_with(tmp_path, text):
    path = tmp_path / 'test.conf'
    path.write_text(textwrap.dedent(text))
    conf = cfg.ConfigOpts()
    dn_conf.register_opts(conf)
    conf(['--config-file', str(path)], project='discovery-nova')
    return conf


@pytest.mark.parametrize('group,option,value', [
    ('discovery_overlay', 'vivaldi_cc', '5'),
    ('discovery_overlay', 'listen_port', '70000'),
    ('discovery_overlay', 'max_message_bytes', '12'),
    ('discovery_overlay', 'probe_interval', '-1'),
    ('discovery', 'pop_name', 'bad name!'),
    ('discovery', 'pop_pue', '0.9'),
    ('discovery_aggregates', 'publish_interval', '0'),
])
def test_out_of_range_value_fails_at_start_naming_the_option(
        tmp_path, group, option, value):
    conf = _conf_with(tmp_path, '[%s]\n%s = %s\n' % (group, option, value))
    with pytest.raises(cfg.ConfigFileValueError) as err:
        dn_conf.validate(conf)
    assert option in str(err.value)


def test_valid_configuration_passes_validation(tmp_path):
    conf = _conf_with(tmp_path, '''
        [discovery]
        pop_name = paris-1
        [discovery_overlay]
        vivaldi_cc = 0.5
        listen_port = 7391
        ''')
    dn_conf.validate(conf)
    assert conf.discovery_overlay.vivaldi_cc == 0.5
    assert conf.discovery.pop_name == 'paris-1'


def test_overrides_do_not_leak_between_config_objects():
    first, second = cfg.ConfigOpts(), cfg.ConfigOpts()
    dn_conf.register_opts(first)
    dn_conf.register_opts(second)
    for group, group_opts in opts.list_opts():
        name = group.name
        opt = next(o for o in group_opts if o.default is not None)
        first.set_override(opt.dest, opt.default, group=name)
        first.clear_override(opt.dest, group=name)
        first.set_override(opt.dest, None, group=name)
        assert second[name][opt.dest] == opt.default, (name, opt.dest)
