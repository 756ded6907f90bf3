"""Hint parsing, PoP name checks and reference point resolution."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
import pytest

from discovery_nova.locality import hints as hints_mod
from discovery_nova.locality.hints import HintError
from discovery_nova.locality.hints import parse_hints
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.locality.reference import resolve_reference
from tests.unit.scheduler.fakes import pop

SERVER = '6f1f3b5c-0000-4000-8000-000000000001'


def test_every_hint_parsed_to_typed_values():
    hints = parse_hints({
        'near_ip': ['2001:db8::7'], 'max_rtt_ms': ['20.5'],
        'pop': ['a,b', 'c'], 'avoid_pop': 'c', 'pop_tag': 'country:FR',
        'same_pop_as': SERVER.upper(), 'different_pop_from': [SERVER],
        'other_plugin_hint': ['whatever']})
    assert hints.near_ip == ipaddress.ip_address('2001:db8::7')
    assert hints.max_rtt_ms == 20.5
    assert hints.pops == {'a', 'b', 'c'}
    assert hints.avoid_pops == {'c'}
    assert hints.pop_tags == {'country:FR'}
    assert hints.same_pop_as == (SERVER,)
    assert hints.different_pop_from == (SERVER,)


def test_no_hints():
    assert parse_hints({}).empty
    assert parse_hints({'same_host': ['x']}).empty


@pytest.mark.parametrize('raw,hint,expected', [
    ({'max_rtt_ms': 'abc'}, 'max_rtt_ms', 'a number of milliseconds'),
    ({'max_rtt_ms': '-5'}, 'max_rtt_ms', 'a number of milliseconds > 0'),
    ({'max_rtt_ms': '0'}, 'max_rtt_ms', 'a number of milliseconds > 0'),
    ({'max_rtt_ms': 'inf'}, 'max_rtt_ms', 'a number of milliseconds'),
    ({'max_rtt_ms': ['5', '6']}, 'max_rtt_ms', 'a single value'),
    ({'near_ip': '300.1.1.1'}, 'near_ip', 'an IPv4 or IPv6 address'),
    ({'near': 'a b'}, 'near', 'the name of a PoP or of a compute host'),
    ({'near': 'a', 'near_ip': '10.0.0.1'}, 'near_ip', 'at most one of'),
    ({'pop': 'a,,b'}, 'pop', 'a comma-separated list without empty'),
    ({'pop': 'a/b'}, 'pop', 'PoP names'),
    ({'avoid_pop': 'a', 'pop': 'a'}, 'avoid_pop', 'to leave at least one'),
    ({'pop_tag': 'a tag'}, 'pop_tag', 'tags such as'),
    ({'same_pop_as': 'web-1'}, 'same_pop_as', 'server UUIDs'),
    ({'different_pop_from': '%s,x' % SERVER}, 'different_pop_from',
     'server UUIDs'),
])
def test_malformed_hint_names_hint_value_and_expected_form(raw, hint,
                                                           expected):
    with pytest.raises(HintError) as info:
        parse_hints(raw)
    error = info.value
    assert error.hint == hint
    assert str(error).startswith('scheduler hint %s=' % hint)
    assert 'expected ' + expected in str(error)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_max_rtt_accepts_exactly_positive_finite_bounds(value):
    text = repr(value)
    if 0 < value <= hints_mod.MAX_RTT_LIMIT_MS:
        assert parse_hints({'max_rtt_ms': text}).max_rtt_ms == value
    else:
        with pytest.raises(HintError):
            parse_hints({'max_rtt_ms': text})


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_hint_error(text):
    for name in hints_mod.HINT_NAMES:
        try:
            parse_hints({name: [text]})
        except HintError as exc:
            assert exc.hint in hints_mod.HINT_NAMES


def test_unknown_pop_names_known_ones():
    hints = parse_hints({'avoid_pop': 'par1,nowhere'})
    with pytest.raises(HintError) as info:
        hints_mod.check_known_pops(hints, ['par1', 'fra1'])
    assert 'unknown: nowhere' in str(info.value)
    assert 'fra1, par1' in str(info.value)
    hints_mod.check_known_pops(parse_hints({'pop': 'fra1'}), ['fra1'])


class TestReference:
    pops = {'par1': pop('par1', 0), 'fra1': pop('fra1', 10)}
    host_pops = {'cmp7': 'fra1'}
    table = PrefixTable.parse(['192.0.2.0/24=fra1', '198.51.100.0/24=gone'])

    def resolve(self, raw, entry='par1'):
        return resolve_reference(parse_hints(raw), self.pops, self.host_pops,
                                 self.table, entry)

    def test_near_pop_and_near_host(self):
        assert self.resolve({'near': 'fra1'}).pop_name == 'fra1'
        reference = self.resolve({'near': 'cmp7'})
        assert reference.pop_name == 'fra1'
        assert reference.source == 'near=cmp7'

    def test_unknown_near_is_an_error(self):
        with pytest.raises(HintError) as info:
            self.resolve({'near': 'cmp9'})
        assert 'a known PoP (fra1, par1) or a compute host' in str(
            info.value)

    def test_near_ip_and_its_fallback_to_the_entry_pop(self):
        assert self.resolve({'near_ip': '192.0.2.9'}).pop_name == 'fra1'
        # Uncovered address, or a prefix of a PoP that no longer exists.
        assert self.resolve({'near_ip': '203.0.113.1'}).pop_name == 'par1'
        assert self.resolve({'near_ip': '198.51.100.1'}).pop_name == 'par1'

    def test_no_hint_no_entry(self):
        assert self.resolve({}).pop_name == 'par1'
        assert self.resolve({}, entry=None) is None
        assert self.resolve({}, entry='elsewhere') is None

    def test_max_rtt_needs_a_reference(self):
        with pytest.raises(HintError) as info:
            self.resolve({'max_rtt_ms': '10'}, entry=None)
        assert info.value.hint == 'max_rtt_ms'
        assert 'a reference point' in str(info.value)
