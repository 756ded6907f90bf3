"""RTTs PoPs measured to client prefixes: metadata, reference, ranking.

A ``near_ip`` client sits somewhere behind the PoP its prefix maps to; the
PoPs that measured its prefix (``discovery_client_rtt:<CIDR>``) are ranked
and bounded by those measurements, by the scheduler's plugins and by the
conductor's plan alike.
"""

import ipaddress
import math
import re

from hypothesis import given
from hypothesis import strategies as st
import pytest

from discovery_nova.conductor import candidates
from discovery_nova.locality import pop as pop_mod
from discovery_nova.locality.hints import parse_hints
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.pop import PopMetadataError
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.locality.ranking import rank_pops
from discovery_nova.locality.reference import client_measurements
from discovery_nova.locality.reference import resolve_reference
from discovery_nova.locality.rtt import MEASURED_ERROR
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.scheduler.proximity_weigher import ProximityWeigher
from discovery_nova.scheduler.rtt_filter import MaxRttFilter
from discovery_nova.scheduler.sync import AggregateSync
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import pops_of
from tests.unit.scheduler.fakes import spec
from tests.unit.scheduler.test_sync import InMemoryCompute

#: What nova's API accepts as an aggregate metadata key.
NOVA_KEY = re.compile(r'^[a-zA-Z0-9-_:. ]{1,255}$')

v4 = st.builds(lambda a, n: ipaddress.ip_network((a, n), strict=False),
               st.integers(0, 2**32 - 1), st.integers(0, 32))
v6 = st.builds(lambda a, n: ipaddress.ip_network((a, n), strict=False),
               st.integers(0, 2**128 - 1), st.integers(0, 128))
rtts = st.floats(0, 1e4, allow_nan=False)


@given(st.dictionaries(st.one_of(v4, v6).map(str), rtts, max_size=40))
def test_client_rtts_round_trip_through_metadata_nova_accepts(measured):
    descriptor = pop('fra1', 3, client_rtt=measured)
    metadata = descriptor.to_metadata()
    assert all(NOVA_KEY.match(key) for key in metadata)
    assert all(len(value) <= 255 for value in metadata.values())
    assert PopDescriptor.from_metadata(metadata).client_rtt == measured


@pytest.mark.parametrize('key,value', [
    ('discovery_client_rtt:192.0.2.1_24', '4'),      # host bits set
    ('discovery_client_rtt:192.0.2.0-24', '4'),      # no "_length"
    ('discovery_client_rtt:192.0.2.0_33', '4'),
    ('discovery_client_rtt:2001:DB8::_32', '4'),     # not canonical
    ('discovery_client_rtt:192.0.2.0_24', '-1'),
    ('discovery_client_rtt:192.0.2.0_24', 'inf'),
    ('discovery_client_rtt:192.0.2.0_24', 'fast'),
])
def test_bad_client_rtt_names_key_value_and_form(key, value):
    with pytest.raises(PopMetadataError) as info:
        PopDescriptor.from_metadata({pop_mod.KEY_POP: 'fra1', key: value})
    assert info.value.key == key
    assert repr(value) in str(info.value)
    assert 'discovery_client_rtt:192.0.2.0_24' in str(info.value)


def test_sync_removes_the_client_rtt_of_a_prefix_no_longer_measured():
    compute = InMemoryCompute()
    sync = AggregateSync(compute)
    both = {'192.0.2.0/24': 4.5, '2001:db8::/32': 9.0}
    sync.sync(pop('fra1', 0, client_rtt=both))
    assert compute.store[1].metadata[
        'discovery_client_rtt:2001:db8::_32'] == '9.0'
    result = sync.sync(pop('fra1', 0, client_rtt={'192.0.2.0/24': 5.0}))
    assert result.metadata_set == {
        'discovery_client_rtt:192.0.2.0_24': '5.0',
        'discovery_client_rtt:2001:db8::_32': None}
    # Keys that are not ours stay.
    compute.store[1].metadata['discovery_client_rttx'] = 'admin'
    compute.store[1].metadata['ssd'] = 'true'
    sync.sync(pop('fra1', 0))
    assert 'discovery_client_rtt:192.0.2.0_24' not in compute.store[1].metadata
    assert compute.store[1].metadata['ssd'] == 'true'


# On a line, x = RTT in ms between PoPs. The client of 192.0.2.0/24 maps to
# par1 but sits 12 ms behind it, towards fra1 (10 ms from par1), which
# measured 3 ms; waw1 measured nothing.
TABLE = PrefixTable.parse(['192.0.2.0/24=par1', '198.51.100.0/24=fra1'])
PAR = pop('par1', 0, error=0.0, client_rtt={'192.0.2.0/24': 12.0})
FRA = pop('fra1', 10, error=0.1,
          client_rtt={'192.0.2.0/24': 3.0, '198.51.100.0/24': 1.0})
WAW = pop('waw1', 30, error=0.1)
NYC = pop('nyc1', 80, error=0.1, client_rtt={'198.51.100.0/24': 2.0})
POPS = {p.name: p for p in (PAR, FRA, WAW, NYC)}


def reference(address='192.0.2.77', pops=POPS):
    hints = parse_hints({'near_ip': address})
    return resolve_reference(hints, pops, {}, TABLE, 'nyc1')


def test_measurements_of_the_longest_prefix_only():
    assert client_measurements(POPS, TABLE, ipaddress.ip_address(
        '192.0.2.1')) == {'par1': 12.0, 'fra1': 3.0}
    assert client_measurements(POPS, TABLE, ipaddress.ip_address(
        '198.51.100.1')) == {'fra1': 1.0, 'nyc1': 2.0}
    assert client_measurements(POPS, TABLE, ipaddress.ip_address(
        '203.0.113.1')) == {}


def test_reference_is_the_mapped_pop_plus_every_measurement():
    ref = reference()
    assert ref.pop_name == 'par1'
    assert ref.client_measured == {'par1': 12.0, 'fra1': 3.0}
    assert 'measured by 2 PoPs' in ref.source
    # Without measurements: the mapped PoP, as before.
    bare = {name: PopDescriptor(p.name, p.coordinate, p.error)
            for name, p in POPS.items()}
    ref = reference(pops=bare)
    assert ref.pop_name == 'par1' and not ref.client_measured
    assert estimate_rtt(ref, bare['par1']).rtt_ms == 0


def test_measured_pops_by_measurement_others_behind_the_mapped_pop():
    ref = reference()
    assert estimate_rtt(ref, FRA).rtt_ms == 3.0
    assert estimate_rtt(ref, FRA).error == MEASURED_ERROR
    assert estimate_rtt(ref, PAR).rtt_ms == 12.0
    # waw1: 30 ms from par1 by coordinates, plus the 12 ms to the client.
    assert estimate_rtt(ref, WAW).rtt_ms == 42.0
    assert [p.name for p, _ in rank_pops(ref, POPS.values())] == [
        'fra1', 'par1', 'waw1', 'nyc1']


@given(mapped=st.floats(0, 200), others=st.dictionaries(
    st.sampled_from(['fra1', 'waw1', 'nyc1']), st.floats(0, 200)),
    xs=st.lists(st.floats(-300, 300), min_size=4, max_size=4))
def test_measurements_rank_exactly_and_unmeasured_never_undercut_the_leg(
        mapped, others, xs):
    pops = {}
    for name, x in zip(('par1', 'fra1', 'waw1', 'nyc1'), xs, strict=True):
        measured = ({'192.0.2.0/24': mapped} if name == 'par1'
                    else {'192.0.2.0/24': others[name]}
                    if name in others else {})
        pops[name] = pop(name, x, error=0.1, client_rtt=measured)
    ref = reference(pops=pops)
    for name, descriptor in pops.items():
        estimate = estimate_rtt(ref, descriptor)
        if name == 'par1' or name in others:
            assert estimate.rtt_ms == (mapped if name == 'par1'
                                       else others[name])
        else:
            # The client is behind par1: no PoP it did not measure looks
            # nearer than par1's own measurement.
            assert estimate.rtt_ms >= mapped
    ranked = [e.rtt_ms for _, e in rank_pops(ref, pops.values())]
    assert ranked == sorted(ranked)


def test_scheduler_plugins_use_the_measurements(clean_state):
    clean_state.set_override('client_prefixes',
                             ['192.0.2.0/24=par1', '198.51.100.0/24=fra1'],
                             group='discovery_scheduler')
    clean_state.set_override('pop_name', 'nyc1', group='discovery')
    hosts = hosts_for(PAR, FRA, WAW, NYC)
    # fra1 measured 3 ms (bound 3.15 ms with the measured error), par1
    # 12 ms; by the mapped PoP's coordinate alone par1 would be 0 ms.
    kept = MaxRttFilter().filter_all(hosts, spec({'near_ip': '192.0.2.9',
                                                  'max_rtt_ms': '5'}))
    assert pops_of(kept) == {'fra1'}
    kept = MaxRttFilter().filter_all(hosts, spec({'near_ip': '192.0.2.9',
                                                  'max_rtt_ms': '13'}))
    assert pops_of(kept) == {'fra1', 'par1'}
    from nova.scheduler import weights
    weighed = [weights.WeighedHost(h, 0.0) for h in hosts]
    got = ProximityWeigher().weigh_objects(
        weighed, spec({'near_ip': '192.0.2.9'}))
    by_pop = dict(zip((h.host.rsplit('-', 1)[0] for h in hosts), got,
                      strict=False))
    assert by_pop['fra1'] == -math.log(4.0)
    assert by_pop['par1'] == -math.log(13.0)
    assert by_pop['fra1'] > by_pop['par1'] > by_pop['waw1']


def test_conductor_plan_ranks_alike():
    plan = candidates.plan({'near_ip': ['192.0.2.9']}, 'nyc1', POPS, TABLE)
    assert [c.pop for c in plan.candidates] == ['fra1', 'par1', 'waw1',
                                                 'nyc1']
    assert plan.candidates[0].rtt_ms == 3.0
    plan = candidates.plan({'near_ip': ['192.0.2.9'], 'max_rtt_ms': ['5']},
                           'nyc1', POPS, TABLE)
    assert [c.pop for c in plan.candidates] == ['fra1']
