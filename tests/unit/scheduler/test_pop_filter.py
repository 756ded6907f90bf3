"""PopFilter: pop, avoid_pop and pop_tag."""

from nova import exception
import pytest

from discovery_nova.scheduler.pop_filter import PopFilter
from tests.unit.scheduler.fakes import FakeHostState
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import pops_of
from tests.unit.scheduler.fakes import spec

PAR = pop('par1', 0, tags=frozenset({'country:FR'}))
FRA = pop('fra1', 10, tags=frozenset({'country:DE', 'renewable'}))
AMS = pop('ams1', 12, tags=frozenset({'country:NL'}))
LOOSE = FakeHostState('loose', [])


def run(hints, hosts=None):
    hosts = hosts if hosts is not None else hosts_for(PAR, FRA, AMS)
    return PopFilter().filter_all(hosts, spec(hints))


def test_no_hint_passes_everything():
    hosts = hosts_for(PAR, FRA) + [LOOSE]
    assert run({}, hosts) == hosts


def test_pop_list():
    assert pops_of(run({'pop': 'fra1,ams1'})) == {'fra1', 'ams1'}
    assert pops_of(run({'pop': ['par1', 'ams1']})) == {'par1', 'ams1'}


def test_avoid_pop_keeps_hosts_in_no_pop():
    passed = run({'avoid_pop': 'par1'}, hosts_for(PAR, FRA) + [LOOSE])
    assert [h.host for h in passed] == ['fra1-c1', 'fra1-c2', 'loose']


def test_pop_tag_full_and_key_only():
    assert pops_of(run({'pop_tag': 'country:DE'})) == {'fra1'}
    assert pops_of(run({'pop_tag': 'renewable'})) == {'fra1'}
    assert pops_of(run({'pop_tag': 'country'})) == {'par1', 'fra1', 'ams1'}
    assert run({'pop_tag': 'country:US'}) == []


def test_host_in_no_pop_fails_positive_constraints():
    assert run({'pop': 'par1'}, hosts_for(PAR) + [LOOSE]) != []
    assert LOOSE not in run({'pop': 'par1'}, hosts_for(PAR) + [LOOSE])
    assert LOOSE not in run({'pop_tag': 'country'}, hosts_for(PAR) + [LOOSE])


def test_unknown_pop_is_a_fault_not_a_crash():
    with pytest.raises(exception.NoValidHost) as info:
        run({'pop': 'nowhere'})
    message = info.value.format_message()
    assert 'scheduler hint pop=nowhere is invalid' in message
    assert 'names of known PoPs (ams1, fra1, par1)' in message


def test_unsatisfiable_is_logged(caplog):
    caplog.set_level('INFO')
    assert run({'pop': 'par1', 'pop_tag': 'country:DE'}) == []
    assert 'PopFilter removed all 6 hosts' in caplog.text
    assert 'pop=par1 pop_tag=country:DE' in caplog.text


def test_rebuild_is_not_filtered():
    assert PopFilter.RUN_ON_REBUILD is False
    hosts = hosts_for(PAR)
    assert PopFilter().filter_all(hosts, spec({'pop': 'fra1'},
                                              rebuild=True)) == hosts


def test_host_passes_agrees_with_filter_all():
    hosts = hosts_for(PAR, FRA)
    request = spec({'avoid_pop': 'par1'})
    assert [PopFilter().host_passes(h, request) for h in hosts] == [
        False, False, True, True]
