"""The conductor's ranking of PoPs for a build (candidates.plan)."""

import math

from hypothesis import given
from hypothesis import strategies as st
import pytest

from discovery_nova.conductor import candidates
from discovery_nova.locality.hints import HintError
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.overlay.coordinates import Coordinate


def _pop(name, x, y=0.0, tags=(), error=0.05):
    return PopDescriptor(name=name,
                         coordinate=Coordinate((x, y, 0.0), 0.01),
                         error=error, tags=frozenset(tags))


POPS = {p.name: p for p in (
    _pop('par', 0), _pop('fra', 10), _pop('nyc', 80, tags=['country:US']),
    _pop('sjc', 140, tags=['country:US']))}
NO_PREFIXES = PrefixTable.parse([])


def names(plan):
    return [c.pop for c in plan.candidates]


def test_no_hint_ranks_from_the_entry_pop():
    plan = candidates.plan({}, 'par', POPS, NO_PREFIXES)
    assert names(plan) == ['par', 'fra', 'nyc', 'sjc']
    assert plan.local_first
    assert plan.candidates[0].local and not plan.candidates[1].local


def test_near_a_remote_pop_puts_it_first():
    plan = candidates.plan({'near': 'nyc'}, 'par', POPS, NO_PREFIXES)
    assert names(plan) == ['nyc', 'sjc', 'fra', 'par']
    assert not plan.local_first
    assert plan.candidates[0].rtt_ms < plan.candidates[1].rtt_ms


def test_pop_filters_drop_pops():
    assert names(candidates.plan({'pop': 'nyc,sjc'}, 'par', POPS,
                                 NO_PREFIXES)) == ['nyc', 'sjc']
    assert names(candidates.plan({'avoid_pop': ['par']}, 'par', POPS,
                                 NO_PREFIXES)) == ['fra', 'nyc', 'sjc']
    assert names(candidates.plan({'pop_tag': 'country:US'}, 'par', POPS,
                                 NO_PREFIXES)) == ['nyc', 'sjc']


def test_max_rtt_keeps_only_pops_within_the_bound():
    plan = candidates.plan({'max_rtt_ms': '40'}, 'par', POPS, NO_PREFIXES)
    assert names(plan) == ['par', 'fra']


def test_unknown_and_malformed_hints_raise_like_the_scheduler():
    with pytest.raises(HintError, match='pop=lon'):
        candidates.plan({'pop': 'lon'}, 'par', POPS, NO_PREFIXES)
    with pytest.raises(HintError, match='max_rtt_ms=abc'):
        candidates.plan({'max_rtt_ms': 'abc'}, 'par', POPS, NO_PREFIXES)


def test_describe_says_where_and_how_far():
    plan = candidates.plan({'near': 'nyc'}, 'par', POPS, NO_PREFIXES)
    assert plan.candidates[0].describe() == 'nyc (~80 ms away)'
    assert plan.candidates[-1].describe() == 'par (this PoP)'
    unknown = candidates.Candidate('x', math.inf, math.inf, False)
    assert unknown.describe() == 'x (RTT unknown)'


@given(st.lists(st.floats(0, 300), min_size=1, max_size=12, unique=True),
       st.integers(0, 11))
def test_ranking_is_nearest_first_and_complete(xs, near_index):
    pops = {'p%d' % i: _pop('p%d' % i, x) for i, x in enumerate(xs)}
    near = 'p%d' % (near_index % len(xs))
    plan = candidates.plan({'near': near}, 'p0', pops, NO_PREFIXES)
    assert sorted(names(plan)) == sorted(pops)
    rtts = [c.rtt_ms for c in plan.candidates]
    assert rtts == sorted(rtts)
    assert plan.candidates[0].pop == near or rtts[0] == rtts[1]
