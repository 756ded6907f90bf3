"""What our plugins keep per request and between requests.

Each host is read once per request (its aggregates and its servers);
groups of hosts, RTT estimates and per-group weights are shared between
requests as long as the very objects they were worked out from are the
ones a request sees. These tests hold each of those to what reading the
hosts afresh gives, and check that a changed aggregate, PoP or option is
not answered from what was kept.
"""

import types

from nova.scheduler import weights

from discovery_nova import scheduler
from discovery_nova.locality.pop import KEY_POP
from discovery_nova.locality.ranking import proximity_score
from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.scheduler import request as request_mod
from discovery_nova.scheduler.image_weigher import ImageLocalityWeigher
from discovery_nova.scheduler.image_weigher import hosts_holding
from discovery_nova.scheduler.request import HostIndex
from discovery_nova.scheduler.request import locality_request
from discovery_nova.scheduler.request import per_group
from tests.unit.scheduler.fakes import FakeAggregate
from tests.unit.scheduler.fakes import FakeHostState
from tests.unit.scheduler.fakes import instance
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import spec

IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
OTHER = 'a2459075-d96c-40d5-893e-577ff92e721c'


def aggregate(descriptor, **extra):
    metadata = descriptor.to_metadata()
    metadata.update(extra)
    return FakeAggregate(descriptor.name, metadata, [])


def plugin(classes, name):
    return next(cls() for cls in classes if cls.__name__ == name)


def test_groups_are_those_of_each_hosts_own_aggregates():
    """Hosts in one aggregate each (the fast path) and hosts in several or
    none (the general one) get the group of exactly their aggregates."""
    par, fra = aggregate(pop('par1', 0)), aggregate(pop('fra1', 10))
    other = FakeAggregate('ssd', {'x': '1'}, [])
    single = [FakeHostState('a', [par]), FakeHostState('b', [fra]),
              FakeHostState('c', [par])]
    mixed = [FakeHostState('d', [par]), FakeHostState('e', [other, fra]),
             FakeHostState('f', []), FakeHostState('g', [fra, other]),
             FakeHostState('h', [par])]
    for hosts in (single, mixed):
        known = HostIndex().learn(hosts)
        assert [g.aggregates for g in known.groups] == [
            tuple(h.aggregates) for h in hosts]
        assert [g.name for g in known.groups] == [
            next((a.name for a in h.aggregates if KEY_POP in a.metadata),
                 None) for h in hosts]
        # Hosts in the same aggregates share one group.
        assert len(known.distinct()) == len({tuple(h.aggregates)
                                              for h in hosts})
    assert HostIndex().learn(single).groups[0] is HostIndex().learn(
        [single[2]]).groups[0]


def test_a_replaced_aggregate_makes_a_new_group():
    """HostManager replaces an aggregate object when it changes: the new
    object, same id and name, gets its own group and PoP, for hosts in it
    alone and for hosts in it and others."""
    old = aggregate(pop('par1', 0, tags=frozenset({'green'})))
    other = FakeAggregate('ssd', {}, [])
    before = HostIndex().learn([FakeHostState('a', [old]),
                                FakeHostState('b', [old, other])])
    new = FakeAggregate('par1', pop('par1', 40).to_metadata(), [], id=old.id)
    after = HostIndex().learn([FakeHostState('a', [new]),
                               FakeHostState('b', [new, other])])
    for was, now in zip(before.groups, after.groups, strict=True):
        assert was is not now
        assert was.pop.tags == {'green'} and now.pop.tags == frozenset()
        assert now.aggregates[0] is new


def test_servers_are_the_hosts_own_dicts():
    """A server nova adds to a host's instances dict after the request
    first read the host is seen by the image weigher of that request."""
    par = aggregate(pop('par1', 0))
    hosts = [FakeHostState('a', [par]), FakeHostState('b', [par])]
    request_spec = spec({'pop': 'par1'}, image=IMAGE, image_size=1)
    filter_ = plugin(scheduler.all_filters(), 'PopFilter')
    passed = filter_.filter_all(hosts, request_spec)
    assert passed == hosts
    running = instance(IMAGE)
    hosts[1].instances[running.uuid] = running
    got = ImageLocalityWeigher().weigh_objects(
        [weights.WeighedHost(h, 0.0) for h in passed], request_spec)
    assert got == [1.0, 2.0]


def test_hosts_holding_maps_servers_to_their_hosts():
    servers = [{}, {}, {}, {}, {}]
    for host, ref in ((1, OTHER), (1, IMAGE), (3, None), (4, IMAGE),
                      (4, IMAGE), (4, OTHER)):
        server = instance(ref)
        servers[host][server.uuid] = server
    assert hosts_holding(servers, IMAGE) == [1, 4]
    assert hosts_holding(servers, OTHER) == [1, 4]
    assert hosts_holding(servers, 'elsewhere') == []
    assert hosts_holding([], IMAGE) == []
    # Mappings other than dicts are read too.
    proxies = [types.MappingProxyType(s) for s in servers]
    assert hosts_holding(proxies, IMAGE) == [1, 4]
    assert hosts_holding(servers[:2] + proxies[2:], IMAGE) == [1, 4]


def test_hosts_not_seen_before_bring_their_multipliers():
    """A weigher given hosts the filters never saw learns them, and the
    aggregate metadata of their groups is looked at."""
    par = aggregate(pop('par1', 0))
    fra = aggregate(pop('fra1', 10), energy_weight_multiplier='4')
    seen = [FakeHostState('a', [par]), FakeHostState('b', [par])]
    request_spec = spec({'pop': 'par1'})
    filter_ = plugin(scheduler.all_filters(), 'PopFilter')
    assert filter_.filter_all(seen, request_spec) == seen
    weigher = plugin(scheduler.all_weighers(), 'EnergyWeigher')
    weigher.weigh_objects([weights.WeighedHost(h, 0.0) for h in seen],
                          request_spec)
    assert [weigher.weight_multiplier(h) for h in seen] == [1.0, 1.0]
    hosts = seen + [FakeHostState('c', [fra])]
    weigher.weigh_objects([weights.WeighedHost(h, 0.0) for h in hosts],
                          request_spec)
    assert [weigher.weight_multiplier(h) for h in hosts] == [1.0, 1.0, 4.0]


def test_a_filter_passing_every_host_hands_them_all_on():
    par, fra = aggregate(pop('par1', 0)), aggregate(pop('fra1', 10))
    hosts = [FakeHostState('a', [par]), FakeHostState('b', [fra])]
    filter_ = plugin(scheduler.all_filters(), 'PopFilter')
    request_spec = spec({'pop': ['par1', 'fra1']})
    assert filter_.filter_all(hosts, request_spec) == hosts
    assert filter_.filter_all(hosts[::-1], request_spec) == hosts[::-1]
    assert filter_.filter_all(hosts, spec({'pop': 'fra1'})) == hosts[1:]


def test_estimates_are_kept_per_descriptor():
    near, far = pop('p0', 0), pop('p1', 30)
    moved = pop('p1', 60)       # p1 again, after its aggregate changed
    hosts = [FakeHostState('a', [aggregate(near)])]
    first = locality_request(spec({}), hosts)
    first_ref = Reference.of_pop(near, 'near=p0')
    request = type(first)(first.hints, first.directory, first_ref, None,
                          frozenset(), 1.0, 1.0)
    assert request.estimate(far) == estimate_rtt(first_ref, far)
    # The same name, another descriptor: estimated afresh.
    assert request.estimate(moved) == estimate_rtt(first_ref, moved)
    assert request.estimate(moved).rtt_ms > request.estimate(far).rtt_ms


def test_per_group_are_kept_per_key_and_group():
    par, fra = aggregate(pop('par1', 0)), aggregate(pop('fra1', 10))
    known = HostIndex().learn([FakeHostState('a', [par]),
                               FakeHostState('b', [fra])])
    calls = []
    base = {'par1': 10.0, 'fra1': 20.0}

    def weigher(offset):
        def weigh(group):
            calls.append(group.name)
            return base[group.name] + offset
        return weigh

    key = ('test', object())
    table = per_group(key, known.distinct(), weigher(0))
    assert [table[g] for g in known.groups] == [10.0, 20.0]
    again = per_group(key, known.distinct(), weigher(1))
    assert again is table and len(calls) == 2
    assert [again[g] for g in known.groups] == [10.0, 20.0]
    # Another key is weighed on its own.
    other = per_group(('test', object()), known.distinct(), weigher(2))
    assert [other[g] for g in known.groups] == [12.0, 22.0]
    # A new group (a replaced aggregate) is weighed, the others are not.
    new = HostIndex().learn([FakeHostState('a', [aggregate(pop('par1', 5))]),
                             FakeHostState('b', [fra])])
    del calls[:]
    table = per_group(key, new.distinct(), weigher(3))
    assert [table[g] for g in new.groups] == [13.0, 20.0]
    assert calls == ['par1']
    # Unhashable keys still weigh, without keeping anything.
    fresh = per_group(('test', {}), known.distinct(), weigher(4))
    assert [fresh[g] for g in known.groups] == [14.0, 24.0]
    fresh = per_group(('test', {}), known.distinct(), weigher(5))
    assert [fresh[g] for g in known.groups] == [15.0, 25.0]


def test_a_full_table_is_replaced_not_emptied(monkeypatch):
    """A request holding a table keeps its weights when another request
    finds the table full."""
    monkeypatch.setattr(request_mod, '_GROUPS_LIMIT', 2)
    aggregates = [aggregate(pop('p%d' % i, i)) for i in range(3)]
    first = HostIndex().learn([FakeHostState('a', aggregates[:1]),
                               FakeHostState('b', aggregates[1:2])])
    key = ('test', object())
    held = per_group(key, first.distinct(), lambda g: 1.0)
    more = HostIndex().learn([FakeHostState('c', aggregates[2:])])
    table = per_group(key, more.distinct(), lambda g: 2.0)
    assert table is not held
    assert [held[g] for g in first.groups] == [1.0, 1.0]
    assert [table[g] for g in more.groups] == [2.0]


def test_proximity_scores_follow_the_reference():
    """Two requests from different entry PoPs weigh by their own
    reference, the second one's weights not taken from the first's."""
    descriptors = [pop('p0', 0), pop('p1', 30), pop('p2', 80)]
    hosts = [FakeHostState(d.name, [aggregate(d)]) for d in descriptors]
    hosts.append(FakeHostState('loose', []))
    weigher = plugin(scheduler.all_weighers(), 'ProximityWeigher')
    for entry in ('p0', 'p2', 'p0'):
        request_spec = spec({'near': entry})
        got = weigher.weigh_objects(
            [weights.WeighedHost(h, 0.0) for h in hosts], request_spec)
        reference = Reference.of_pop(
            next(d for d in descriptors if d.name == entry))
        expected = [proximity_score(estimate_rtt(reference, d))
                    for d in descriptors]
        assert got == expected + [min(expected)]


def test_the_hosts_a_filter_keeps_keep_their_servers():
    """After a filter removed hosts, each kept host is weighed by its own
    servers."""
    par, fra = aggregate(pop('par1', 0)), aggregate(pop('fra1', 10))
    hosts = [FakeHostState('a', [par]), FakeHostState('b', [fra]),
             FakeHostState('c', [par]), FakeHostState('d', [fra])]
    for host, ref in ((1, IMAGE), (2, IMAGE), (3, OTHER)):
        server = instance(ref)
        hosts[host].instances[server.uuid] = server
    request_spec = spec({'pop': 'par1'}, image=IMAGE, image_size=1)
    filter_ = plugin(scheduler.all_filters(), 'PopFilter')
    passed = filter_.filter_all(hosts, request_spec)
    assert passed == [hosts[0], hosts[2]]
    weigher = ImageLocalityWeigher()
    got = weigher.weigh_objects(
        [weights.WeighedHost(h, 0.0) for h in passed], request_spec)
    assert got == [1.0, 2.0]
    assert [weigher.weight_multiplier(h) for h in passed] == [1.0, 1.0]


def test_filter_verdicts_follow_each_requests_hints():
    """Requests over the same hosts (the same groups) with other hints, or
    another reference point, decide by their own."""
    descriptors = [pop('p0', 0, tags=frozenset({'green'})), pop('p1', 30),
                   pop('p2', 80, tags=frozenset({'green'}))]
    hosts = [FakeHostState(d.name, [aggregate(d)]) for d in descriptors]
    hosts.append(FakeHostState('loose', []))
    filters = scheduler.all_filters()
    pop_filter = plugin(filters, 'PopFilter')
    rtt_filter = plugin(filters, 'MaxRttFilter')
    affinity = plugin(filters, 'PopAffinityFilter')

    def names(filter_, hints):
        return [h.host for h in filter_.filter_all(hosts, spec(hints))]

    for _ in range(2):
        assert names(pop_filter, {'pop': 'p0'}) == ['p0']
        assert names(pop_filter, {'pop': 'p1'}) == ['p1']
        assert names(pop_filter, {'avoid_pop': 'p1'}) == [
            'p0', 'p2', 'loose']
        assert names(pop_filter, {'pop_tag': 'green'}) == ['p0', 'p2']
        assert names(pop_filter, {'avoid_pop': 'p1',
                                  'pop_tag': 'green'}) == ['p0', 'p2']
        assert names(rtt_filter, {'near': 'p0', 'max_rtt_ms': '50'}) == [
            'p0', 'p1']
        assert names(rtt_filter, {'near': 'p2', 'max_rtt_ms': '50'}) == [
            'p2']
        assert names(rtt_filter, {'near': 'p2', 'max_rtt_ms': '60'}) == [
            'p1', 'p2']
        for host, anchor in ((0, 'p0'), (1, 'p1')):
            server = instance()
            hosts[host].instances[server.uuid] = server
            assert anchor not in names(
                affinity, {'different_pop_from': server.uuid})
            assert names(affinity, {'same_pop_as': server.uuid}) == [anchor]
            del hosts[host].instances[server.uuid]
