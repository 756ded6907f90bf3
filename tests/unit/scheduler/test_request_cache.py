"""Per-request caches decide as host-by-host evaluation does.

Our plugins find each host's group once per request, decide once per PoP
and hand nova's handlers the results host by host. These properties hold
them to an oracle that reads every host afresh, for random hosts,
aggregates (PoPs, malformed PoPs, multiplier overrides), servers, hints
and entry PoPs, and across a change of aggregates between two requests
made the way nova's HostManager makes it (new aggregate objects, new
lists on the host states).
"""

import itertools

from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from nova import exception
from nova import weights as nova_weights
from nova.scheduler import filters
from nova.scheduler import utils
from nova.scheduler import weights
from nova.scheduler.weights import HostWeightHandler

from discovery_nova import scheduler
from discovery_nova.conf import CONF
from discovery_nova.locality import hints as hints_mod
from discovery_nova.locality.hints import HintError
from discovery_nova.locality.pop import KEY_POP
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.pop import PopMetadataError
from discovery_nova.locality.ranking import proximity_score
from discovery_nova.locality.reference import resolve_reference
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.scheduler.aggregates import PopDirectory
from discovery_nova.scheduler.base import floor_unknown
from discovery_nova.scheduler.energy_weigher import non_renewable_per_it_energy
from discovery_nova.scheduler.request import LocalityRequest
from discovery_nova.scheduler.request import prefix_table
from tests.unit.scheduler.fakes import FakeAggregate
from tests.unit.scheduler.fakes import FakeHostState
from tests.unit.scheduler.fakes import instance
from tests.unit.scheduler.fakes import pop
from tests.unit.scheduler.fakes import spec

IMAGE = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
OTHER = 'a2459075-d96c-40d5-893e-577ff92e721c'
OPTIONS = {'EnergyWeigher': 'energy_weight_multiplier',
           'ImageLocalityWeigher': 'image_locality_weight_multiplier',
           'ProximityWeigher': 'proximity_weight_multiplier'}
TAGS = ('country:FR', 'country:DE', 'green')


# The oracle: every host read afresh, nothing kept between hosts.

def pop_of(host) -> PopDescriptor | None:
    """The first PoP aggregate of the host, read from its metadata."""
    for aggregate in host.aggregates:
        if KEY_POP in aggregate.metadata:
            try:
                return PopDescriptor.from_metadata(aggregate.metadata)
            except PopMetadataError:
                continue
    return None


def holds(host, image) -> bool:
    return any(server.obj_attr_is_set('image_ref') and
               server.image_ref == image
               for server in host.instances.values())


def oracle_view(hosts, request_spec) -> LocalityRequest:
    """The request's view worked out from the hosts, or HintError."""
    raw = {k: v for k, v in request_spec.scheduler_hints.items()
           if k in hints_mod.HINT_NAMES}
    hints = hints_mod.parse_hints(raw)
    pops, host_pops = {}, {}
    for host in hosts:
        descriptor = pop_of(host)
        if descriptor is not None:
            pops.setdefault(descriptor.name, descriptor)
            host_pops[host.host] = descriptor.name
    hints_mod.check_known_pops(hints, pops)
    reference = resolve_reference(hints, pops, host_pops, prefix_table(),
                                  CONF.discovery.pop_name)

    def server_pops(hint, servers):
        found = set()
        for server in servers:
            if server == request_spec.instance_uuid:
                continue
            running = [h for h in hosts if server in h.instances]
            if not running:
                raise HintError(hint, server, 'the UUID of an existing '
                                'server of this project')
            descriptor = pop_of(running[-1])
            if descriptor is not None:
                found.add(descriptor.name)
        return frozenset(found)

    same = (server_pops(hints_mod.SAME_POP_AS, hints.same_pop_as)
            if hints.same_pop_as else None)
    different = (server_pops(hints_mod.DIFFERENT_POP_FROM,
                             hints.different_pop_from)
                 if hints.different_pop_from else frozenset())
    opts = CONF.discovery_scheduler
    return LocalityRequest(hints, PopDirectory(pops, host_pops), reference,
                           same, different, opts.rtt_error_weight,
                           opts.max_trusted_error)


def oracle_filtered(view, hosts) -> list:
    for filter_ in (cls() for cls in scheduler.all_filters()):
        if filter_.applies(view):
            hosts = [h for h in hosts if filter_.pop_passes(view, pop_of(h))]
    return hosts


def oracle_raw_weights(name, view, hosts, image, size) -> list[float]:
    pops = [pop_of(h) for h in hosts]
    if name == 'EnergyWeigher':
        default = CONF.discovery_scheduler.default_pue
        return [-non_renewable_per_it_energy(p, default) for p in pops]
    if name == 'ProximityWeigher':
        if view.reference is None:
            return [0.0] * len(hosts)
        return floor_unknown([
            float('-inf') if p is None else
            proximity_score(estimate_rtt(view.reference, p)) for p in pops])
    if image is None:
        return [0.0] * len(hosts)
    size = size or 1      # an image of unknown size counts as 1 byte
    held = [holds(h, image) for h in hosts]
    in_pop = {name for name, p in view.directory.pops.items()
              if image in p.images}
    in_pop.update(p.name for p, h in zip(pops, held, strict=True)
                  if h and p is not None)
    return [float(size * ((p is not None and p.name in in_pop) + h))
            for p, h in zip(pops, held, strict=True)]


def oracle_ranking(view, hosts, image, size) -> list[tuple[str, float]]:
    """Nova's weight handler written out host by host."""
    totals = dict.fromkeys(hosts, 0.0)
    for cls in scheduler.all_weighers():
        name = cls.__name__
        option = OPTIONS[name]
        raw = oracle_raw_weights(name, view, hosts, image, size)
        for host, weight in zip(hosts, list(nova_weights.normalize(raw)),
                                strict=True):
            totals[host] += utils.get_weight_multiplier(
                host, option,
                getattr(CONF.discovery_scheduler, option)) * weight
    return [(h.host, totals[h]) for h in sorted(
        hosts, key=totals.__getitem__, reverse=True)]


# The plugins as nova-scheduler runs them.

def through_nova(hosts, request_spec):
    passed = filters.HostFilterHandler().get_filtered_objects(
        [cls() for cls in scheduler.all_filters()], hosts, request_spec, 0)
    if len(passed) <= 1:
        # nova's weight handler does not weigh fewer than two hosts.
        return passed, [(h.host, 0.0) for h in passed]
    ranked = HostWeightHandler().get_weighed_objects(
        [cls() for cls in scheduler.all_weighers()], passed, request_spec)
    return passed, [(w.obj.host, w.weight) for w in ranked]


def check(hosts, hints, image, size):
    request_spec = spec(hints, image=image, image_size=size)
    try:
        view = oracle_view(hosts, request_spec)
    except HintError as exc:
        try:
            through_nova(hosts, request_spec)
        except exception.NoValidHost as refused:
            assert str(exc) in str(refused)
            return
        raise AssertionError('expected NoValidHost: %s' % exc) from None
    passed, ranked = through_nova(hosts, request_spec)
    expected = oracle_filtered(view, hosts)
    assert [h.host for h in passed] == [h.host for h in expected]
    if len(expected) > 1:
        # Exactly nova's sums: the same floats in the same order.
        assert ranked == oracle_ranking(view, expected, image, size)


# Random worlds.

@st.composite
def worlds(draw):
    count = draw(st.integers(1, 4))
    descriptors = [pop('p%d' % i, draw(st.integers(0, 100)),
                       draw(st.integers(0, 100)),
                       error=draw(st.sampled_from([0.01, 0.3, 1.5])),
                       tags=frozenset(draw(st.sets(st.sampled_from(TAGS)))),
                       renewable_share=draw(st.one_of(
                           st.none(), st.floats(0, 1))),
                       pue=draw(st.one_of(st.none(), st.floats(1, 2))),
                       images=draw(st.sampled_from(
                           [frozenset(), frozenset({IMAGE})])))
                   for i in range(count)]
    aggregates = [FakeAggregate(d.name, d.to_metadata(), [])
                  for d in descriptors]
    aggregates.append(FakeAggregate('broken', {KEY_POP: 'not a name!'}, []))
    for k in range(2):
        overrides = draw(st.dictionaries(
            st.sampled_from(sorted(OPTIONS.values())),
            st.sampled_from(['2', '0.5', '-1', 'x']), max_size=3))
        aggregates.append(FakeAggregate('over%d' % k, overrides, []))
    hosts = []
    for i in range(draw(st.integers(1, 20))):
        host = FakeHostState('h%d' % i, host_aggregates(draw, aggregates,
                                                       count))
        for ref in draw(st.lists(st.sampled_from([IMAGE, OTHER, None]),
                                 max_size=2)):
            server = instance(ref)
            host.instances[server.uuid] = server
        hosts.append(host)
    return descriptors, aggregates, hosts


def host_aggregates(draw, aggregates, pops: int) -> list:
    """Mostly a PoP first, then any others, in any order."""
    chosen = draw(st.lists(st.sampled_from(aggregates), max_size=3,
                           unique_by=id))
    if draw(st.sampled_from([True] * 5 + [False])):
        home = aggregates[draw(st.integers(0, pops - 1))]
        chosen = [home] + [a for a in chosen if a is not home]
    return chosen


def draw_hints(draw, descriptors, hosts) -> dict:
    """Each hint in about one request of four, so that most requests
    leave several hosts to weigh; now and then one that is refused."""
    names = [d.name for d in descriptors]
    servers = [s for h in hosts for s in h.instances]

    def given() -> bool:
        return draw(st.sampled_from([False, False, False, True]))

    hints = {}
    if given():
        hints['near'] = draw(st.sampled_from(
            names * 4 + [h.host for h in hosts][:3] + ['nowhere']))
    if given():
        hints['max_rtt_ms'] = draw(st.sampled_from(['5', '20', '60', '200']))
    if given():
        hints['pop'] = draw(st.lists(st.sampled_from(names), min_size=1,
                                     max_size=2, unique=True))
    if given():
        hints['avoid_pop'] = draw(st.sampled_from(names))
    if given():
        hints['pop_tag'] = draw(st.sampled_from(['country', *TAGS]))
    if servers and given():
        hints['same_pop_as'] = draw(st.sampled_from(servers))
    if servers and given():
        hints['different_pop_from'] = draw(st.sampled_from(servers))
    return hints


def change_aggregates(draw, descriptors, aggregates, hosts) -> None:
    """What nova's HostManager does when aggregates change: a changed
    aggregate is a new object, and each host state gets a new list."""
    moved = draw(st.sampled_from(range(len(descriptors))))
    replacement = FakeAggregate(descriptors[moved].name, dict(
        pop(descriptors[moved].name, draw(st.integers(0, 100)),
            tags=frozenset(draw(st.sets(st.sampled_from(TAGS)))),
            pue=1.9).to_metadata()), [])
    replacement.metadata['energy_weight_multiplier'] = draw(
        st.sampled_from(['3', '1']))
    old = aggregates[moved]
    for host in hosts:
        if draw(st.booleans()):
            host.aggregates = host_aggregates(draw, aggregates,
                                              len(descriptors))
        host.aggregates = [replacement if a is old else a
                           for a in host.aggregates]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(st.data())
def test_plugins_decide_as_host_by_host(data):
    descriptors, aggregates, hosts = data.draw(worlds())
    entry = data.draw(st.sampled_from(
        [None] + [d.name for d in descriptors]))
    CONF.set_override('pop_name', entry, group='discovery')
    image = data.draw(st.sampled_from([IMAGE, None]))
    size = data.draw(st.sampled_from([None, 2 ** 30]))
    check(hosts, draw_hints(data.draw, descriptors, hosts), image, size)
    # A second request after the aggregates changed sees the change.
    change_aggregates(data.draw, descriptors, aggregates, hosts)
    check(hosts, draw_hints(data.draw, descriptors, hosts), image, size)


def test_a_request_seen_twice_keeps_its_view(clean_state):
    """Within one request (nova passes the same RequestSpec for each of
    its instances) the view is the one the request started with; the next
    request, a new RequestSpec, sees aggregates as they are then."""
    clean_state.set_override('pop_name', 'p0', group='discovery')
    near, far = pop('p0', 0), pop('p1', 90)
    aggregates = [FakeAggregate(d.name, d.to_metadata(), [])
                  for d in (near, far)]
    hosts = [FakeHostState('h%d' % i, [aggregates[i % 2]]) for i in range(4)]
    first = spec({'max_rtt_ms': '30'})
    filter_ = next(cls() for cls in scheduler.all_filters()
                   if cls.__name__ == 'MaxRttFilter')
    assert [h.host for h in filter_.filter_all(hosts, first)] == ['h0', 'h2']
    moved = FakeAggregate('p1', pop('p1', 10).to_metadata(), [])
    for host in hosts:
        host.aggregates = [moved if a is aggregates[1] else a
                           for a in host.aggregates]
    assert [h.host for h in filter_.filter_all(hosts, first)] == ['h0', 'h2']
    assert [h.host for h in filter_.filter_all(
        hosts, spec({'max_rtt_ms': '30'}))] == ['h0', 'h1', 'h2', 'h3']


def test_lists_not_seen_before_are_looked_up_host_by_host(clean_state):
    """Hosts in an order no plugin returned still get their own groups."""
    clean_state.set_override('pop_name', 'p0', group='discovery')
    descriptors = [pop('p0', 0, pue=1.1), pop('p1', 50, pue=1.7)]
    aggregates = [FakeAggregate(d.name, d.to_metadata(), [])
                  for d in descriptors]
    hosts = [FakeHostState('h%d' % i, [aggregates[i % 2]]) for i in range(6)]
    request_spec = spec({})
    weigher = next(cls() for cls in scheduler.all_weighers()
                   if cls.__name__ == 'EnergyWeigher')
    forward = weigher.weigh_objects(
        [weights.WeighedHost(h, 0.0) for h in hosts], request_spec)
    shuffled = list(itertools.chain(hosts[::2], hosts[1::2]))
    backward = weigher.weigh_objects(
        [weights.WeighedHost(h, 0.0) for h in shuffled], request_spec)
    assert dict(zip(hosts, forward, strict=True)) == dict(
        zip(shuffled, backward, strict=True))
    assert len(set(forward)) == 2
