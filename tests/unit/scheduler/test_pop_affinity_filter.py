"""PopAffinityFilter: same_pop_as / different_pop_from."""

from nova import exception
import pytest

from discovery_nova.scheduler.pop_affinity_filter import PopAffinityFilter
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import instance
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import pops_of
from tests.unit.scheduler.fakes import spec

PAR, FRA, AMS = pop('par1', 0), pop('fra1', 10), pop('ams1', 12)


@pytest.fixture
def world():
    hosts = hosts_for(PAR, FRA, AMS)
    web = instance()
    db = instance()
    hosts[0].instances[web.uuid] = web      # par1-c1
    hosts[3].instances[db.uuid] = db        # fra1-c2
    return hosts, web.uuid, db.uuid


def run(hosts, hints, **kwargs):
    return PopAffinityFilter().filter_all(hosts, spec(hints, **kwargs))


def test_same_pop_as(world):
    hosts, web, db = world
    assert pops_of(run(hosts, {'same_pop_as': web})) == {'par1'}
    # Both on one PoP cannot be: web and db are in different PoPs.
    assert run(hosts, {'same_pop_as': [web, db]}) == []


def test_different_pop_from_spreads(world):
    hosts, web, db = world
    assert pops_of(run(hosts, {'different_pop_from': web})) == {
        'fra1', 'ams1'}
    assert pops_of(run(hosts, {'different_pop_from': '%s,%s' % (web, db)
                               })) == {'ams1'}


def test_own_uuid_is_ignored(world):
    # A migrating server listed in its own hint must not exclude itself.
    hosts, web, _ = world
    assert run(hosts, {'different_pop_from': web},
               instance_uuid=web) == hosts


def test_unknown_server_is_a_fault(world):
    hosts, _, _ = world
    missing = '6f1f3b5c-0000-4000-8000-000000000009'
    with pytest.raises(exception.NoValidHost) as info:
        run(hosts, {'same_pop_as': missing})
    assert ('same_pop_as=%s is invalid: expected the UUID of an existing '
            'server' % missing) in info.value.format_message()


def test_rebuild_keeps_the_host(world):
    hosts, web, _ = world
    assert PopAffinityFilter.RUN_ON_REBUILD is False
    assert run(hosts, {'different_pop_from': web}, rebuild=True) == hosts
