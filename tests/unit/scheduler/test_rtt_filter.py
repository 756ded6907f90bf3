"""MaxRttFilter: admits PoPs surely within the bound."""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from nova import exception
import pytest

from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.scheduler.pop_filter import PopFilter
from discovery_nova.scheduler.rtt_filter import MaxRttFilter
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import pops_of
from tests.unit.scheduler.fakes import spec

# On a line, x = RTT in ms from par1.
PAR = pop('par1', 0, error=0.0)
FRA = pop('fra1', 10, error=0.1)
WAW = pop('waw1', 30, error=0.1)
NYC = pop('nyc1', 80, error=0.1)
ALL = (PAR, FRA, WAW, NYC)


def run(hints, conf_entry='par1', pops=ALL):
    from discovery_nova.conf import CONF
    CONF.set_override('pop_name', conf_entry, group='discovery')
    return MaxRttFilter().filter_all(hosts_for(*pops), spec(hints))


def test_bound_is_widened_by_the_error():
    # fra1: 10 ms, pair error 0.1 -> trusted to stay under 11 ms.
    assert pops_of(run({'max_rtt_ms': '11'})) == {'par1', 'fra1'}
    assert pops_of(run({'max_rtt_ms': '10.5'})) == {'par1'}


def test_error_weight_zero_trusts_estimates(clean_state):
    clean_state.set_override('rtt_error_weight', 0.0,
                             group='discovery_scheduler')
    assert pops_of(run({'max_rtt_ms': '10'})) == {'par1', 'fra1'}


def test_untrusted_pop_is_excluded(clean_state):
    shaky = pop('shaky', 1, error=2.0)
    assert pops_of(run({'max_rtt_ms': '50'}, pops=ALL + (shaky,))) == {
        'par1', 'fra1', 'waw1'}


def test_reference_from_near():
    assert pops_of(run({'max_rtt_ms': '25', 'near': 'nyc1'})) == {'nyc1'}
    assert pops_of(run({'max_rtt_ms': '25', 'near': 'waw1-c2'})) == {
        'fra1', 'waw1'}


def test_without_reference_the_hint_is_malformed():
    with pytest.raises(exception.NoValidHost) as info:
        run({'max_rtt_ms': '25'}, conf_entry=None)
    assert 'max_rtt_ms=25.0 is invalid: expected a reference point' in (
        info.value.format_message())


def test_unsatisfiable_names_nearest_candidates(caplog):
    # As in nova-scheduler: an earlier filter removed the hosts of nyc1,
    # MaxRttFilter sees the others only.
    caplog.set_level('INFO')
    request = spec({'max_rtt_ms': '5', 'near': 'nyc1', 'avoid_pop': 'nyc1'})
    hosts = PopFilter().filter_all(hosts_for(*ALL), request)
    assert pops_of(hosts) == {'par1', 'fra1', 'waw1'}
    assert MaxRttFilter().filter_all(hosts, request) == []
    assert 'no candidate PoP is within max_rtt_ms=5 of near=nyc1' in (
        caplog.text)
    assert 'waw1 50.0 ms, 0.14, 57.1 ms, fra1 70.0 ms' in caplog.text


@settings(max_examples=40, deadline=None)
@given(bound=st.floats(0.5, 200), xs=st.lists(st.floats(0, 150),
                                              min_size=1, max_size=6))
def test_admits_exactly_pops_within_bound(bound, xs):
    pops = [PAR] + [pop('p%d' % i, x, error=0.05) for i, x in enumerate(xs)]
    passed = pops_of(run({'max_rtt_ms': repr(bound)}, pops=pops))
    reference = Reference.of_pop(PAR)
    expected = {p.name for p in pops
                if estimate_rtt(reference, p).upper(1.0) <= bound}
    assert passed == expected
