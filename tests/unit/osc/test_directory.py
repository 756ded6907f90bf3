"""PoPs from aggregate JSON, the local PoP, ranking, capacity, health and
the output columns."""

import math

import pytest

from discovery_nova.osc import columns
from discovery_nova.osc import directory
from tests.unit.osc.fakes import AGGREGATES
from tests.unit.osc.fakes import aggregate
from tests.unit.osc.fakes import compute_service


def test_pops_are_the_aggregates_with_a_pop_key():
    pops, warnings = directory.read_pops(AGGREGATES)
    assert sorted(pops) == ['pl1', 'pl2', 'pl3']
    assert warnings == []
    pl1 = pops['pl1']
    assert pl1.aggregate == 'pop-pl1'
    assert pl1.availability_zone == 'pl1'
    assert pl1.hosts == ('pl1-cmp1', 'pl1-cmp2')
    assert pl1.descriptor.coordinate.vec == (0.0, 0.0)
    assert pl1.descriptor.tags == frozenset({'renewable', 'country:FR'})
    assert pops['pl2'].descriptor.free_vcpus == 12


def test_bad_metadata_is_skipped_with_a_warning_naming_it():
    bad = aggregate('pop-broken', {'discovery_pop': 'pl9',
                                   'discovery_coord': 'north-east'})
    pops, warnings = directory.read_pops(AGGREGATES + [bad])
    assert 'pl9' not in pops
    assert len(warnings) == 1
    assert 'pop-broken' in warnings[0]
    assert 'discovery_coord' in warnings[0]
    assert 'north-east' in warnings[0]


def test_a_pop_described_twice_keeps_the_aggregate_with_hosts():
    meta = {'discovery_pop': 'pl1', 'discovery_coord': '1.0,1.0;0.0'}
    first = aggregate('pl1-metadata-only', meta)
    second = aggregate('pl1-own', meta, hosts=['h1'])
    pops, warnings = directory.read_pops([first, second])
    assert pops['pl1'].aggregate == 'pl1-own'
    assert 'pl1-metadata-only' in warnings[0]
    pops, warnings = directory.read_pops([second, first])
    assert pops['pl1'].aggregate == 'pl1-own'


def test_local_pop_is_named_after_the_region():
    pops, _ = directory.read_pops(AGGREGATES)
    assert directory.local_pop(pops, 'pl2').name == 'pl2'


def test_else_the_only_pop_with_hosts():
    pops, _ = directory.read_pops(AGGREGATES)
    assert directory.local_pop(pops, 'RegionOne').name == 'pl1'


def test_no_local_pop_says_why():
    pops, _ = directory.read_pops(AGGREGATES)
    pops = {n: e for n, e in pops.items() if n != 'pl1'}
    with pytest.raises(directory.NoLocalPop) as exc:
        directory.local_pop(pops, 'RegionOne')
    assert 'RegionOne' in str(exc.value)
    assert 'pl2, pl3' in str(exc.value)
    with pytest.raises(directory.NoLocalPop) as exc:
        directory.local_pop({}, 'RegionOne')
    assert 'no PoP aggregates' in str(exc.value)
    assert 'discovery_pop' in str(exc.value)


def test_rank_orders_by_estimated_rtt_from_the_local_pop():
    pops, _ = directory.read_pops(AGGREGATES)
    ranked = directory.rank(pops['pl1'], pops.values())
    assert [e.name for e, _ in ranked] == ['pl1', 'pl3', 'pl2']
    rtts = [est.rtt_ms for _, est in ranked]
    assert rtts == pytest.approx([0.0, 11.5, 52.0])
    errors = [est.error for _, est in ranked]
    assert errors == pytest.approx([0.0, math.hypot(0.1, 0.3),
                                    math.hypot(0.1, 0.2)])


def test_pops_without_coordinates_rank_last():
    pops, _ = directory.read_pops(AGGREGATES + [
        aggregate('pop-pl0', {'discovery_pop': 'pl0'})])
    ranked = directory.rank(pops['pl1'], pops.values())
    assert ranked[-1][0].name == 'pl0'
    assert math.isinf(ranked[-1][1].rtt_ms)


def test_placement_free_applies_reserved_and_allocation_ratio():
    providers = [
        ({'VCPU': {'total': 8, 'reserved': 0, 'allocation_ratio': 4.0},
          'MEMORY_MB': {'total': 4096, 'reserved': 512,
                        'allocation_ratio': 1.0},
          'DISK_GB': {'total': 100, 'reserved': 0, 'allocation_ratio': 1.0}},
         {'VCPU': 3, 'MEMORY_MB': 1024, 'DISK_GB': 10}),
        ({'VCPU': {'total': 4, 'reserved': 0, 'allocation_ratio': 2.0},
          'MEMORY_MB': {'total': 2048, 'reserved': 0,
                        'allocation_ratio': 1.5}},
         {}),
    ]
    free = directory.placement_free(providers)
    # (8 * 4 - 3) + 4 * 2 = 37; (4096 - 512 - 1024) + 2048 * 1.5 = 5632
    assert (free.vcpus, free.ram_mb, free.source) == (37, 5632, 'placement')


def test_placement_free_is_never_negative():
    free = directory.placement_free([
        ({'VCPU': {'total': 2, 'reserved': 0, 'allocation_ratio': 1.0}},
         {'VCPU': 5})])
    assert free.vcpus == 0
    assert free.ram_mb == 0


def test_hypervisor_free_and_missing_fields():
    free = directory.hypervisor_free([
        {'vcpus': 4, 'vcpus_used': 1, 'free_ram_mb': 1000},
        {'vcpus': 2, 'vcpus_used': 2, 'free_ram_mb': 24}])
    assert (free.vcpus, free.ram_mb, free.source) == (3, 1024,
                                                      'hypervisors')
    # Microversion 2.88 and later dropped the usage fields.
    assert directory.hypervisor_free([{'id': 'x'}]) is \
        directory.UNKNOWN_CAPACITY


def test_hypervisors_of_a_pop_are_its_aggregate_hosts():
    pops, _ = directory.read_pops(AGGREGATES)
    hypervisors = [{'id': 'a', 'service': {'host': 'pl1-cmp1'}},
                   {'id': 'b', 'service': {'host': 'other'}}]
    assert [h['id'] for h in directory.hypervisors_of(
        pops['pl1'], hypervisors)] == ['a']
    # A PoP aggregate without hosts stands for the whole region.
    assert len(directory.hypervisors_of(pops['pl2'], hypervisors)) == 2


def test_metadata_free():
    pops, _ = directory.read_pops(AGGREGATES)
    free = directory.metadata_free(pops['pl2'])
    assert (free.vcpus, free.ram_mb, free.source) == (12, 2048, 'metadata')
    assert directory.metadata_free(pops['pl3']) is \
        directory.UNKNOWN_CAPACITY


def test_health_counts_up_computes():
    assert directory.health([compute_service('a'),
                             compute_service('b', 'down'),
                             compute_service('c')]) == '2/3 up'
    assert directory.health([]) == '0/0 up'


def test_columns_are_readable_in_tables_and_plain_for_machines():
    rtt = columns.MillisecondsColumn(11.53)
    assert (rtt.human_readable(), rtt.machine_readable()) == ('11.5', 11.53)
    unknown = columns.MillisecondsColumn(math.inf)
    assert (unknown.human_readable(), unknown.machine_readable()) == (
        '-', None)
    assert columns.CountColumn(None).human_readable() == '-'
    assert columns.CountColumn(7).machine_readable() == 7
    assert columns.NumberColumn(None).human_readable() == '-'
    assert columns.NumberColumn(1.25).human_readable() == '1.25'
    assert sorted([unknown, rtt, columns.MillisecondsColumn(0.0)]) == [
        columns.MillisecondsColumn(0.0), rtt, unknown]
    pops, _ = directory.read_pops(AGGREGATES)
    coord = columns.CoordinateColumn(pops['pl2'].descriptor.coordinate)
    assert coord.human_readable() == '30.0, 40.0; h 1.0'
    assert coord.machine_readable() == {'vector': [30.0, 40.0],
                                        'height': 1.0}
    tags = columns.TagsColumn(pops['pl1'].descriptor.tags)
    assert tags.machine_readable() == ['country:FR', 'renewable']
    path = columns.PathColumn([('pl1', 'not found'), ('pl2', 'found')])
    assert path.human_readable() == '1. pl1: not found\n2. pl2: found'
    assert path.machine_readable()[1] == {'region': 'pl2',
                                          'answer': 'found'}
