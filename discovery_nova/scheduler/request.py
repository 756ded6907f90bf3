"""The locality view of one scheduling request, shared by our plugins.

Every filter and weigher of discovery-nova needs the same things: the
request's hints parsed and checked, the PoP directory, the reference point
and the PoPs of servers named by affinity hints. They are worked out once
per request (the RequestSpec object nova-scheduler hands to each plugin in
turn) and kept in a cache that holds them as long as that object lives.

The same goes for what they derive from hosts: each host is read once per
request (its aggregates, to find its group, the hosts in the same
aggregates, hence in the same PoP; and its servers), and the weight
multipliers are worked out once per group, whichever plugin asks first.
The plugins then spread their answers over the hosts with C-level ``map``:
at 10,000 hosts, reading the large HostState objects is what costs.

What depends only on frozen values is also kept between requests, each
entry tied to the very objects it was worked out from, so that a change
(nova's HostManager makes a new aggregate object when an aggregate
changes) is worked out afresh: the group of a set of aggregate objects,
the RTT estimate from a reference point to a PoP descriptor, and a
plugin's answer for a group given what it reads of the request
(``per_group``). Nothing read from a host is kept beyond its request.

A malformed hint raises ``NoValidHost`` whose reason names the hint, the
value and the expected form: nova-scheduler passes NoValidHost back to the
conductor as an expected outcome, which records it as the server's fault
(``openstack server show`` shows it) without a traceback in the scheduler.
"""

import collections
from collections.abc import Callable
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import itertools
import operator
import threading
import weakref

from nova import exception
from oslo_log import log as logging

import discovery_nova.conf
from discovery_nova.locality import hints as hints_mod
from discovery_nova.locality.hints import HintError
from discovery_nova.locality.hints import LocalityHints
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.locality.reference import resolve_reference
from discovery_nova.locality.rtt import Reference
from discovery_nova.locality.rtt import RttEstimate
from discovery_nova.locality.rtt import estimate_rtt
from discovery_nova.scheduler.aggregates import DIRECTORY
from discovery_nova.scheduler.aggregates import PopDirectory
from discovery_nova.scheduler.aggregates import pop_of_aggregates

CONF = discovery_nova.conf.CONF
LOG = logging.getLogger(__name__)

_AGGREGATES = operator.attrgetter('aggregates')
_FIRST = operator.itemgetter(0)
_HOST = operator.attrgetter('host')
_INSTANCES = operator.attrgetter('instances')
_NAME = operator.attrgetter('name')
_OBJ = operator.attrgetter('obj')
_SECOND = operator.itemgetter(1)


class HostGroup:
    """Hosts in the same aggregates, hence in the same PoP.

    Everything our plugins derive from a host (its PoP, the multipliers
    aggregate metadata may override) depends only on its aggregates, so it
    is worked out once per group; a request over 10,000 hosts in 1,000
    PoPs does that work 1,000 times, not 10,000 times per plugin.

    A group depends on nothing but the aggregate objects it is made of,
    which it holds: it is shared by every request whose hosts are in those
    very objects (see ``_GROUPS_BY_AGGREGATE``).
    """

    __slots__ = ('aggregates', 'pop', 'name', 'as_host')

    def __init__(self, aggregates: tuple):
        #: The aggregates of every host of the group, as they were read.
        self.aggregates = aggregates
        self.pop: PopDescriptor | None = pop_of_aggregates(aggregates)
        self.name: str | None = (self.pop.name if self.pop is not None
                                 else None)
        #: What nova's per-host helpers read of a host of the group (its
        #: aggregates), for ``utils.get_weight_multiplier``.
        self.as_host = _Aggregated(list(aggregates))


class _Aggregated:
    """A host as nova's aggregate helpers read it: its aggregates."""

    __slots__ = ('aggregates',)

    def __init__(self, aggregates: list):
        self.aggregates = aggregates


#: Groups by the aggregate objects they are made of: by the aggregate for
#: hosts in exactly one (most hosts: their PoP's), by the tuple of them
#: otherwise. Aggregates hash and compare by identity (nova's, like any
#: VersionedObject without __eq__), and a group holds its aggregates, so an
#: entry is found only for those very objects: HostManager replaces an
#: aggregate object when the aggregate changes (as ``describe_aggregate``
#: relies on), and a changed aggregate makes new groups. The size bound
#: keeps groups of replaced aggregates from piling up.
_GROUPS_BY_AGGREGATE: dict[object, HostGroup] = {}
_GROUPS_BY_AGGREGATES: dict[tuple, HostGroup] = {}
_GROUPS_LIMIT = 8192


def _group_of_one(aggregate) -> HostGroup:
    return _remember_group(_GROUPS_BY_AGGREGATE, aggregate, (aggregate,))


def _group_of_many(aggregates: tuple) -> HostGroup:
    return _remember_group(_GROUPS_BY_AGGREGATES, aggregates, aggregates)


def _remember_group(table: dict, key, aggregates: tuple) -> HostGroup:
    group = HostGroup(aggregates)
    if len(table) >= _GROUPS_LIMIT:
        table.clear()
    table[key] = group
    return group


#: What a plugin's answer for a group depends on besides the group's PoP
#: (the reference point, hints, an option), compared by value -> group ->
#: answer (a weight, a filter's verdict). Both the descriptor and what the
#: key holds are frozen and a group holds its aggregates, so an entry is
#: the answer for that very group for good; a changed aggregate makes new
#: groups, answered afresh. Tables are replaced, never cleared, when they
#: grow too large: a request answering from one keeps a whole table.
_PER_GROUP: dict[tuple, dict[HostGroup, object]] = {}
_PER_GROUP_LIMIT = 64


def per_group(key: tuple, groups: Collection[HostGroup],
              work: Callable[[HostGroup], object]) -> dict[HostGroup, object]:
    """A table holding ``work(group)`` of each of ``groups``.

    ``work`` must depend on nothing but the group's PoP descriptor and
    ``key``; its results are kept for the next requests with an equal key,
    which work out only the groups not seen before.
    """
    try:
        table = _PER_GROUP.get(key)
    except TypeError:       # a key with an unhashable part: no sharing
        return {group: work(group) for group in groups}
    if table is None:
        if len(_PER_GROUP) >= _PER_GROUP_LIMIT:
            _PER_GROUP.clear()
        table = _PER_GROUP.setdefault(key, {})
    missing = groups - table.keys()
    if missing:
        if len(table) + len(missing) > _GROUPS_LIMIT:
            table = _PER_GROUP[key] = {}
            missing = groups
        table.update({group: work(group) for group in missing})
    return table


class HostList:
    """What one request knows of a list of hosts, in the list's order.

    ``groups[i]`` is the group of ``hosts[i]`` and ``servers[i]`` its
    ``instances`` dict (server UUID -> Instance): the very dict object the
    HostState held when the request first read it, so servers nova adds to
    or removes from that dict later are seen; each host is read once per
    request, by the first plugin that gets it.
    """

    __slots__ = ('hosts', 'groups', '_servers', '_distinct')

    def __init__(self, hosts: tuple, groups: tuple[HostGroup, ...],
                 servers: tuple[Mapping, ...] | Callable[[], tuple]):
        self.hosts = hosts
        self.groups = groups
        #: The servers, or what works them out when first asked for.
        self._servers = servers
        self._distinct: Collection[HostGroup] | None = None

    @property
    def servers(self) -> tuple[Mapping, ...]:
        if callable(self._servers):
            self._servers = self._servers()
        return self._servers

    def distinct(self) -> Collection[HostGroup]:
        """The groups of the hosts, each once, in order of first host."""
        if self._distinct is None:
            self._distinct = dict.fromkeys(self.groups).keys()
        return self._distinct

    def __len__(self) -> int:
        return len(self.hosts)


class HostIndex:
    """The group and servers of each host of one request, read once.

    Plugins mostly get a list they have seen before: nova hands each filter
    a copy of what the previous one returned, and each weigher the hosts
    the filters left. Such a list is recognised by comparing its elements'
    identities with a remembered list's, which reads no HostState; other
    lists look each host up by identity.
    """

    #: Lists remembered per request: one per plugin call is enough.
    SEEN = 8

    def __init__(self):
        #: Every group of the hosts read so far.
        self._groups: dict[HostGroup, None] = {}
        #: HostState -> (its group, its servers) (HostStates hash by
        #: identity); filled from ``_unindexed`` when a list is not
        #: recognised.
        self._by_host: dict[object, tuple[HostGroup, Mapping]] = {}
        #: Lists learned but not yet in ``_by_host``: most requests never
        #: need that dict.
        self._unindexed: list[HostList] = []
        #: The lists seen last, newest last.
        self._seen: collections.deque[HostList] = collections.deque(
            maxlen=self.SEEN)
        self._metadata_keys: frozenset[str] | None = None

    def listing(self, host_states: Sequence) -> HostList:
        """The groups and servers of ``host_states``, in order."""
        count = len(host_states)
        for known in reversed(self._seen):
            if len(known.hosts) == count and all(map(
                    operator.is_, known.hosts, host_states)):
                return known
        if self._unindexed:
            for known in self._unindexed:
                self._by_host.update(zip(
                    known.hosts, zip(known.groups, known.servers,
                                     strict=True), strict=True))
            self._unindexed.clear()
        found = list(map(self._by_host.get, host_states))
        if None in found:
            return self.learn(host_states)
        return self._keep(HostList(tuple(host_states),
                                   tuple(map(_FIRST, found)),
                                   tuple(map(_SECOND, found))))

    def groups_of(self, host_states: Sequence) -> Sequence[HostGroup]:
        """The group of each host, in order."""
        return self.listing(host_states).groups

    def weighed(self, weighed_objs: Sequence) -> HostList | None:
        """The remembered list of the hosts of ``weighed_objs`` (nova's
        WeighedObjects, each host in its ``obj``), None if none is.

        Each ``obj`` is compared with the remembered host, without making
        a list of them.
        """
        count = len(weighed_objs)
        for known in reversed(self._seen):
            if len(known.hosts) == count and all(map(
                    operator.is_, known.hosts, map(_OBJ, weighed_objs))):
                return known
        return None

    def groups(self) -> Iterable[HostGroup]:
        """Every group of the hosts read so far, each once."""
        return self._groups.keys()

    def subset(self, hosts: HostList, kept: Sequence[bool]) -> HostList:
        """The hosts of ``hosts`` whose ``kept`` is true, remembered: the
        next plugin gets them."""
        return self._keep(HostList(
            tuple(itertools.compress(hosts.hosts, kept)),
            tuple(itertools.compress(hosts.groups, kept)),
            # Only the image weigher asks, and only of the last list.
            lambda: tuple(itertools.compress(hosts.servers, kept))))

    def _keep(self, hosts: HostList) -> HostList:
        self._seen.append(hosts)
        return hosts

    def metadata_keys(self) -> frozenset[str]:
        """Every metadata key of the aggregates of the hosts seen so far.

        A weight multiplier no aggregate overrides is the configured one
        for every host, found without a look at each group.
        """
        if self._metadata_keys is None:
            aggregates = {id(a): a for group in self._groups
                          for a in group.aggregates}
            keys: set[str] = set()
            for aggregate in aggregates.values():
                keys.update(aggregate.metadata)
            self._metadata_keys = frozenset(keys)
        return self._metadata_keys

    def learn(self, host_states: Sequence) -> HostList:
        """The group and servers of each host, read from the host."""
        # Reading each HostState is what costs here (they are large and
        # scattered in memory): once per host and request, in C-level
        # passes, the second right after the first while the host is still
        # in the CPU's cache; Python code runs once per set of aggregates
        # not seen before.
        hosts = tuple(host_states)
        lists = list(map(_AGGREGATES, hosts))
        servers = tuple(map(_INSTANCES, hosts))
        if list(map(len, lists)).count(1) == len(lists):
            # Every host in exactly one aggregate: keyed by it.
            keys = list(map(_FIRST, lists))
            table, make = _GROUPS_BY_AGGREGATE, _group_of_one
        else:
            keys = list(map(tuple, lists))
            table, make = _GROUPS_BY_AGGREGATES, _group_of_many
        groups = list(map(table.get, keys))
        if None in groups:
            new = {key: make(key) for key in set(itertools.compress(
                keys, map(operator.is_, groups, itertools.repeat(None))))}
            groups = list(map(new.get, keys, groups))
        known = HostList(hosts, tuple(groups), servers)
        distinct = known.distinct()
        if distinct - self._groups.keys():
            self._groups.update(dict.fromkeys(distinct))
            self._metadata_keys = None
        self._unindexed.append(known)
        return self._keep(known)


@dataclasses.dataclass(frozen=True)
class LocalityRequest:
    """What our plugins need to know about one request."""

    hints: LocalityHints
    directory: PopDirectory
    reference: Reference | None
    #: PoPs of the servers of ``same_pop_as``; None when not given.
    same_pops: frozenset[str] | None
    #: PoPs of the servers of ``different_pop_from``.
    different_pops: frozenset[str]
    #: [discovery_scheduler] rtt_error_weight and max_trusted_error, read
    #: once per request rather than once per PoP.
    rtt_error_weight: float
    max_trusted_error: float
    #: The group of each host, filled as plugins ask: a request goes
    #: through several plugins, each needing the PoP of every host.
    index: HostIndex = dataclasses.field(
        default_factory=HostIndex, compare=False, repr=False)
    #: (multiplier option, its configured value) -> group -> multiplier,
    #: filled by the weighers.
    multipliers: dict[tuple[str, float], dict[HostGroup, float]] = (
        dataclasses.field(default_factory=dict, compare=False, repr=False))
    #: PoP name -> (descriptor, its estimated RTT from the reference),
    #: shared by MaxRttFilter and ProximityWeigher. Between requests their
    #: answers per group are kept instead (``per_group``, keyed by the
    #: reference), so later requests rarely estimate at all.
    estimates: dict[str, tuple[PopDescriptor, RttEstimate]] = (
        dataclasses.field(default_factory=dict, compare=False, repr=False))

    def estimate(self, pop: PopDescriptor) -> RttEstimate:
        """Estimated RTT from the reference (which must be set) to ``pop``.
        """
        entry = self.estimates.get(pop.name)
        if entry is not None and entry[0] is pop:
            return entry[1]
        estimate = estimate_rtt(self.reference, pop)
        self.estimates[pop.name] = (pop, estimate)
        return estimate

    def groups_of(self, host_states: Sequence) -> Sequence[HostGroup]:
        """The group of each host, in order."""
        return self.index.groups_of(host_states)

    def hosts(self, host_states: Sequence) -> HostList:
        """The groups and servers of ``host_states``, in order."""
        return self.index.listing(host_states)


_PREFIXES: tuple[tuple[str, ...], PrefixTable] | None = None
#: RequestSpec -> (its hints when the view was built, the view).
_CACHE: 'weakref.WeakKeyDictionary[object, tuple[dict, LocalityRequest]]' = (
    weakref.WeakKeyDictionary())
_LOCK = threading.Lock()


def prefix_table() -> PrefixTable:
    """The client prefix table of the configuration, parsed once."""
    global _PREFIXES
    items = tuple(CONF.discovery_scheduler.client_prefixes or ())
    if _PREFIXES is None or _PREFIXES[0] != items:
        _PREFIXES = (items, PrefixTable.parse(items))
    return _PREFIXES[1]


def cached_request(spec_obj) -> LocalityRequest | None:
    """The request's locality view if it was built for these hints."""
    entry = _CACHE.get(spec_obj)
    if entry is not None and entry[0] == _raw_hints(spec_obj):
        return entry[1]
    return None


def locality_request(spec_obj, host_states: Sequence) -> LocalityRequest:
    """The request's locality view; NoValidHost if a hint is malformed."""
    raw = _raw_hints(spec_obj)
    entry = _CACHE.get(spec_obj)
    if entry is not None and entry[0] == raw:
        return entry[1]
    try:
        request = _build(spec_obj, raw, host_states)
    except HintError as exc:
        LOG.info("Request for instance %(uuid)s refused: %(err)s",
                 {'uuid': getattr(spec_obj, 'instance_uuid', None),
                  'err': exc})
        raise exception.NoValidHost(reason=str(exc)) from None
    with _LOCK:
        _CACHE[spec_obj] = (raw, request)
    return request


def _raw_hints(spec_obj) -> dict:
    if (not spec_obj.obj_attr_is_set('scheduler_hints') or
            spec_obj.scheduler_hints is None):
        return {}
    return {k: v for k, v in spec_obj.scheduler_hints.items()
            if k in hints_mod.HINT_NAMES}


def _context(spec_obj):
    return getattr(spec_obj, '_context', None)


def _build(spec_obj, raw: dict, host_states: Sequence) -> LocalityRequest:
    hints = hints_mod.parse_hints(raw)
    context = _context(spec_obj)
    index = HostIndex()
    known = None
    if context is not None:
        directory = DIRECTORY.get(
            context, CONF.discovery_scheduler.pop_refresh_interval)
    else:
        known = index.learn(host_states)
        hosts, groups = known.hosts, known.groups
        directory = PopDirectory.from_hosts(
            lambda: map(_HOST, hosts), list(map(_NAME, groups)),
            (group.pop for group in index.groups()
             if group.pop is not None))
    hints_mod.check_known_pops(hints, directory.pops)
    reference = resolve_reference(hints, directory.pops, directory.host_pops,
                                  prefix_table(), CONF.discovery.pop_name)
    same = None
    if hints.same_pop_as:
        same = _server_pops(spec_obj, hints_mod.SAME_POP_AS,
                            hints.same_pop_as, directory, known)
    different = frozenset()
    if hints.different_pop_from:
        different = _server_pops(spec_obj, hints_mod.DIFFERENT_POP_FROM,
                                 hints.different_pop_from, directory, known)
    opts = CONF.discovery_scheduler
    return LocalityRequest(hints, directory, reference, same, different,
                           opts.rtt_error_weight, opts.max_trusted_error,
                           index)


def _server_pops(spec_obj, hint: str, servers: Sequence[str],
                 directory: PopDirectory,
                 known: HostList | None) -> frozenset[str]:
    """PoPs the named servers run in; HintError for unknown servers.

    With a context the servers' hosts come from the database and their
    PoPs from the directory; without, from the hosts of the request, as
    ``known`` read them.
    """
    own = getattr(spec_obj, 'instance_uuid', None)
    servers = [s for s in servers if s != own]
    context = _context(spec_obj)
    if context is not None:
        where = {server: (host, directory.host_pops.get(host))
                 for server, host in _server_hosts_from_db(
                     context, hint, servers).items()}
    else:
        where = _server_places_from_states(hint, servers, known)
    pops = set()
    for server, (host, pop) in where.items():
        if pop is None:
            LOG.info("Server %(server)s of hint %(hint)s runs on "
                     "%(host)s, which is in no PoP aggregate",
                     {'server': server, 'hint': hint, 'host': host})
            continue
        pops.add(pop)
    return frozenset(pops)


def _server_hosts_from_db(context, hint: str,
                          servers: Sequence[str]) -> dict[str, str]:
    from nova import context as nova_context
    from nova import objects

    hosts = {}
    for server in servers:
        try:
            mapping = objects.InstanceMapping.get_by_instance_uuid(
                context, server)
            if mapping.cell_mapping is None:
                raise exception.InstanceNotFound(instance_id=server)
            with nova_context.target_cell(
                    context, mapping.cell_mapping) as cell_context:
                instance = objects.Instance.get_by_uuid(
                    cell_context, server, expected_attrs=[])
        except (exception.InstanceMappingNotFound,
                exception.InstanceNotFound):
            instance = None
        if instance is None or (
                context.project_id is not None and
                instance.project_id != context.project_id):
            raise HintError(hint, server, 'the UUID of an existing server '
                            'of this project')
        if not instance.host:
            raise HintError(hint, server, 'a server that runs on a host; '
                            'this one has not been placed yet')
        hosts[server] = instance.host
    return hosts


def _server_places_from_states(
        hint: str, servers: Sequence[str],
        known: HostList) -> dict[str, tuple[str, str | None]]:
    """Server -> (its host's name, its host's PoP or None)."""
    places = {}
    running = known.servers
    for server in dict.fromkeys(servers):
        # One dict lookup per host, without Python code per host; a
        # server listed by several hosts is taken to run on the last.
        on = list(itertools.compress(range(len(running)), map(
            operator.contains, running, itertools.repeat(server))))
        if not on:
            raise HintError(hint, server, 'the UUID of an existing server '
                            'of this project')
        places[server] = (known.hosts[on[-1]].host,
                          known.groups[on[-1]].name)
    return places
