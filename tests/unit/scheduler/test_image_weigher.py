"""ImageLocalityWeigher: bytes not moved."""

from nova.scheduler import weights

from discovery_nova.scheduler.image_weigher import ImageLocalityWeigher
from tests.unit.scheduler.fakes import FakeHostState
from tests.unit.scheduler.fakes import hosts_for
from tests.unit.scheduler.fakes import instance
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import spec

IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
OTHER = 'a2459075-d96c-40d5-893e-577ff92e721c'
GIB = 2 ** 30


def weigh(hosts, request):
    weighed = [weights.WeighedHost(h, 0.0) for h in hosts]
    return ImageLocalityWeigher().weigh_objects(weighed, request)


def test_host_then_pop_then_nothing():
    hosts = hosts_for(pop('par1', 0), pop('fra1', 10),
                      pop('ams1', 12, images=frozenset({IMAGE})))
    running = instance(IMAGE)
    hosts[0].instances[running.uuid] = running      # par1-c1 runs it
    unrelated = instance(OTHER)
    hosts[2].instances[unrelated.uuid] = unrelated  # fra1-c1 runs another
    hosts.append(FakeHostState('loose', [], {running.uuid: running}))
    got = weigh(hosts, spec({}, image=IMAGE, image_size=GIB))
    assert got == [2 * GIB, GIB,       # par1: on the host, in the PoP
                   0, 0,               # fra1: nowhere
                   GIB, GIB,           # ams1: cached by the PoP
                   GIB]                # a host in no PoP that runs it


def test_unknown_size_still_orders():
    hosts = hosts_for(pop('par1', 0), per_pop=2)
    running = instance(IMAGE)
    hosts[1].instances[running.uuid] = running
    assert weigh(hosts, spec({}, image=IMAGE)) == [1.0, 2.0]


def test_no_image_weighs_nothing():
    hosts = hosts_for(pop('par1', 0))
    assert weigh(hosts, spec({})) == [0.0, 0.0]


def test_instances_without_image_ref_are_skipped():
    hosts = hosts_for(pop('par1', 0), per_pop=1)
    bare = instance()
    hosts[0].instances[bare.uuid] = bare
    assert weigh(hosts, spec({}, image=IMAGE)) == [0.0]
