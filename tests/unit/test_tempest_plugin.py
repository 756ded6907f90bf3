"""The tempest plugin's own logic: where its tests are, its options, which
PoPs it picks and how many servers it counts a PoP still takes.

The tests themselves need a cloud: tests/e2e/test_tempest_plugin.py runs
them with tempest against the local one.
"""

import os

from oslo_config import cfg
import pytest
from tempest.lib import exceptions as lib_exc

from discovery_nova.tests.tempest import capacity
from discovery_nova.tests.tempest import plugin
from discovery_nova.tests.tempest import pops


def _aggregate(name, coord, hosts=()):
    return {'name': 'pop-%s' % name, 'availability_zone': name,
            'hosts': list(hosts),
            'metadata': {'discovery_pop': name, 'discovery_coord': coord}}


#: Seen from pl1: pl2 is 10 ms away, pl3 50 ms, pl4 30 ms.
AGGREGATES = [
    _aggregate('pl1', '0.0,0.0;0.0', hosts=['pl1-cmp1']),
    _aggregate('pl2', '10.0,0.0;0.0'),
    _aggregate('pl3', '0.0,50.0;0.0'),
    _aggregate('pl4', '0.0,30.0;0.0'),
    {'name': 'not-a-pop', 'hosts': [], 'metadata': {}},
]


def _never():
    raise AssertionError('the aggregates were read though not needed')


def test_load_tests_points_at_the_package_and_its_top_level():
    test_dir, top_level = plugin.DiscoveryTempestPlugin().load_tests()
    assert os.path.isdir(os.path.join(test_dir, 'api'))
    assert os.path.isdir(os.path.join(test_dir, 'scenario'))
    relative = os.path.relpath(test_dir, top_level)
    assert relative.split(os.sep) == ['discovery_nova', 'tests', 'tempest']


def test_options_register_with_their_defaults():
    conf = cfg.ConfigOpts()
    instance = plugin.DiscoveryTempestPlugin()
    instance.register_opts(conf)
    conf([])
    assert conf.service_available.discovery is True
    assert conf.discovery.pops == []
    assert conf.discovery.entry_pop is None
    assert conf.discovery.far_pop is None
    assert conf.discovery.forward_timeout == 300
    groups = dict(instance.get_opt_lists())
    assert {o.name for o in groups['discovery']} == {
        'pops', 'entry_pop', 'far_pop', 'forward_timeout',
        'overflow_max_servers'}
    assert [o.name for o in groups['service_available']] == ['discovery']


def test_far_pop_is_the_farthest_the_entry_pop_knows():
    chosen = pops.choose('pl1', [], None, lambda: AGGREGATES)
    assert chosen.entry == 'pl1'
    assert chosen.far == 'pl3'
    assert chosen.names == ('pl1', 'pl2', 'pl4', 'pl3')


def test_far_pop_is_among_the_configured_pops():
    chosen = pops.choose('pl1', ['pl1', 'pl2', 'pl4'], None,
                         lambda: AGGREGATES)
    assert chosen.far == 'pl4'
    assert chosen.names == ('pl1', 'pl2', 'pl4')


def test_configured_pops_and_far_pop_need_no_aggregates():
    chosen = pops.choose('pl2', ['pl1', 'pl2'], 'pl1', _never)
    assert (chosen.entry, chosen.far, chosen.names) == (
        'pl2', 'pl1', ('pl1', 'pl2'))


def test_a_single_pop_has_no_far_pop():
    chosen = pops.choose('pl1', ['pl1'], None, lambda: AGGREGATES[:1])
    assert chosen.far is None


@pytest.mark.parametrize('entry,names,far,words', [
    ('pl9', ['pl1', 'pl2'], 'pl1',
     ['entry_pop pl9', 'pl1, pl2']),
    ('pl1', ['pl1', 'pl2'], 'pl1',
     ['far_pop pl1', 'other than the entry PoP pl1', 'pl2']),
    ('pl1', ['pl1', 'pl2'], 'pl7', ['far_pop pl7', 'pl2']),
    ('pl1', ['pl1', 'pl8'], None,
     ['pl8', 'known to the nova of pl1', 'far_pop']),
])
def test_bad_pop_options_say_what_is_expected(entry, names, far, words):
    with pytest.raises(lib_exc.InvalidConfiguration) as caught:
        pops.choose(entry, names, far, lambda: AGGREGATES)
    for word in words:
        assert word in str(caught.value)


def test_an_entry_pop_without_pop_aggregates_is_a_configuration_error():
    with pytest.raises(lib_exc.InvalidConfiguration) as caught:
        pops.choose('pl1', [], None, lambda: [])
    assert 'entry_pop pl1' in str(caught.value)
    assert 'discovery_pop' in str(caught.value)


FLAVOR = {'vcpus': 1, 'ram': 512, 'disk': 1, 'swap': '',
          'OS-FLV-EXT-DATA:ephemeral': 0}


def _inventory(total, reserved=0, ratio=1.0, max_unit=None):
    return {'total': total, 'reserved': reserved, 'allocation_ratio': ratio,
            'min_unit': 1, 'max_unit': max_unit or total, 'step_size': 1}


def _compute(vcpus=4, ram=4096, ram_reserved=0, cpu_ratio=1.0):
    return {'VCPU': _inventory(vcpus, ratio=cpu_ratio),
            'MEMORY_MB': _inventory(ram, reserved=ram_reserved),
            'DISK_GB': _inventory(100)}


def test_flavor_resources_count_ephemeral_and_swap_as_disk():
    assert capacity.flavor_resources(FLAVOR) == {
        'VCPU': 1, 'MEMORY_MB': 512, 'DISK_GB': 1}
    assert capacity.flavor_resources(dict(
        FLAVOR, swap=1500, **{'OS-FLV-EXT-DATA:ephemeral': 2}))[
            'DISK_GB'] == 5


def test_the_scarcest_resource_of_each_provider_decides():
    # Two 4-vCPU computes: eight one-vCPU servers, as in the local cloud.
    assert capacity.servers_that_fit(FLAVOR, [(_compute(), {})] * 2) == 8
    # 4096 - 1024 reserved MB hold six 512 MB servers, 16 vCPUs more.
    assert capacity.servers_that_fit(FLAVOR, [(_compute(
        ram_reserved=1024, cpu_ratio=4.0), {})]) == 6


def test_usage_is_subtracted_per_provider():
    providers = [(_compute(), {'VCPU': 3, 'MEMORY_MB': 1536}),
                 (_compute(), {'VCPU': 4, 'MEMORY_MB': 2048})]
    assert capacity.servers_that_fit(FLAVOR, providers) == 1


def test_providers_that_cannot_take_the_flavor_count_nothing():
    no_disk = {'VCPU': _inventory(4), 'MEMORY_MB': _inventory(4096)}
    small_units = dict(_compute(), VCPU=_inventory(4, max_unit=1))
    assert capacity.servers_that_fit(FLAVOR, [(no_disk, {})]) == 0
    assert capacity.servers_that_fit(dict(FLAVOR, vcpus=2),
                                     [(small_units, {})]) == 0
