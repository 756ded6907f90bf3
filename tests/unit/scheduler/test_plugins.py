"""Loading: entry points, all_filters/all_weighers, the nova.conf snippet."""

import os

from nova.scheduler import filters as nova_filters
from nova.scheduler import weights as nova_weights
from oslo_config import cfg
import pytest
import stevedore

from discovery_nova import scheduler
import discovery_nova.conf
from discovery_nova.conf import opts

SNIPPET = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'etc',
                       'nova', 'nova.conf.d', 'discovery-scheduler.conf')


def test_entry_points_list_every_class():
    filters = stevedore.ExtensionManager(scheduler.FILTERS_NAMESPACE)
    weighers = stevedore.ExtensionManager(scheduler.WEIGHERS_NAMESPACE)
    assert sorted(filters.names()) == ['max_rtt', 'pop', 'pop_affinity']
    assert sorted(weighers.names()) == ['energy', 'image_locality',
                                        'proximity']
    assert {e.plugin.__name__ for e in filters} == {
        'MaxRttFilter', 'PopFilter', 'PopAffinityFilter'}


def test_all_functions_load_through_nova():
    names = [c.__name__ for c in nova_filters.HostFilterHandler(
    ).get_matching_classes(['discovery_nova.scheduler.all_filters'])]
    assert names == ['MaxRttFilter', 'PopFilter', 'PopAffinityFilter']
    names = [c.__name__ for c in nova_weights.HostWeightHandler(
    ).get_matching_classes(['discovery_nova.scheduler.all_weighers'])]
    assert names == ['EnergyWeigher', 'ImageLocalityWeigher',
                     'ProximityWeigher']


@pytest.mark.parametrize('cls', scheduler.all_filters())
def test_run_on_rebuild_is_set_by_each_filter(cls):
    assert 'RUN_ON_REBUILD' in vars(cls)


def test_snippet_enables_every_plugin():
    conf = cfg.ConfigOpts()
    import nova.conf.scheduler
    nova.conf.scheduler.register_opts(conf)
    discovery_nova.conf.register_opts(conf)
    conf(['--config-file', SNIPPET], project='nova',
         default_config_files=[])
    enabled = set(conf.filter_scheduler.enabled_filters)
    assert {c.__name__ for c in scheduler.all_filters()} <= enabled
    assert ('discovery_nova.scheduler.all_filters' in
            conf.filter_scheduler.available_filters)
    assert ('discovery_nova.scheduler.all_weighers' in
            conf.filter_scheduler.weight_classes)


def test_options_are_listed_for_the_generator():
    groups = {getattr(g, 'name', g): o for g, o in opts.list_opts()}
    names = {o.name for o in groups['discovery_scheduler']}
    assert {'client_prefixes', 'rtt_error_weight', 'max_trusted_error',
            'proximity_weight_multiplier', 'energy_weight_multiplier',
            'image_locality_weight_multiplier', 'default_pue',
            'pop_refresh_interval'} == names


def test_bad_prefix_table_stops_the_scheduler_at_start(clean_state):
    from discovery_nova.locality.prefixes import PrefixTableError
    from discovery_nova.scheduler.proximity_weigher import ProximityWeigher

    clean_state.set_override('client_prefixes', ['10.0.0.0/8'],
                             group='discovery_scheduler')
    for cls in (ProximityWeigher, *scheduler.all_filters()):
        with pytest.raises(PrefixTableError, match='expected CIDR=PoP'):
            cls()
