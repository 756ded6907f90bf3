"""The locality view of one scheduling request, shared by our plugins.

Every filter and weigher of discovery-nova needs the same things: the
request's hints parsed and checked, the PoP directory, the reference point
and the PoPs of servers named by affinity hints. They are worked out once
per request (the RequestSpec object nova-scheduler hands to each plugin in
turn) and kept in a cache that holds them as long as that object lives.

The same goes for what they derive from hosts: each host is read once per
request to find its group (the hosts in the same aggregates, hence in the
same PoP), and the PoP, the RTT estimate from the reference and the weight
multipliers are worked out once per group or PoP, whichever plugin asks
first. The plugins then spread them over the hosts with C-level ``map``:
at 10,000 hosts, reading the large HostState objects is what costs.

A malformed hint raises ``NoValidHost`` whose reason names the hint, the
value and the expected form: nova-scheduler passes NoValidHost back to the
conductor as an expected outcome, which records it as the server's fault
(``openstack server show`` shows it) without a traceback in the scheduler.
"""

import collections
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
_HOST = operator.attrgetter('host')
_INSTANCES = operator.attrgetter('instances')
_NAME = operator.attrgetter('name')


class HostGroup:
    """Hosts in the same aggregates, hence in the same PoP.

    Everything our plugins derive from a host (its PoP, the multipliers
    aggregate metadata may override) depends only on its aggregates, so it
    is worked out once per group; a request over 10,000 hosts in 1,000
    PoPs does that work 1,000 times, not 10,000 times per plugin.
    """

    __slots__ = ('host_state', 'aggregates', 'pop', 'name')

    def __init__(self, host_state, aggregates: Sequence):
        #: The first host seen in the group, for nova's per-host helpers
        #: (they read only its aggregates).
        self.host_state = host_state
        #: The aggregates of every host of the group, as they were read.
        self.aggregates = aggregates
        self.pop: PopDescriptor | None = pop_of_aggregates(aggregates)
        self.name: str | None = (self.pop.name if self.pop is not None
                                 else None)


class HostIndex:
    """The group of each host of one request, found once per host.

    Plugins mostly get a list they have seen before: nova hands each filter
    a copy of what the previous one returned, and each weigher the hosts
    the filters left. Such a list is recognised by comparing its elements'
    identities with a remembered list's, which reads no HostState; other
    lists look each host up by identity.
    """

    #: Lists remembered per request: one per plugin call is enough.
    SEEN = 8

    def __init__(self):
        #: The aggregates of a host, as a tuple -> its group. Aggregates
        #: hash and compare by identity (nova's, like any VersionedObject
        #: without __eq__): HostManager gives each HostState a new list of
        #: the aggregate objects it shares between hosts.
        self._by_aggregates: dict[tuple, HostGroup] = {}
        #: HostState -> its group (HostStates hash by identity too); filled
        #: from ``_unindexed`` when a list is not recognised.
        self._by_host: dict[object, HostGroup] = {}
        #: (hosts, groups) learned but not yet in ``_by_host``: most
        #: requests never need that dict.
        self._unindexed: list[tuple[tuple, tuple[HostGroup, ...]]] = []
        #: (hosts, their groups) of the lists seen last, newest last.
        self._seen: collections.deque[
            tuple[tuple, tuple[HostGroup, ...]]] = collections.deque(
                maxlen=self.SEEN)
        self._metadata_keys: frozenset[str] | None = None

    def groups_of(self, host_states: Sequence) -> Sequence[HostGroup]:
        """The group of each host, in order."""
        count = len(host_states)
        for hosts, groups in reversed(self._seen):
            if len(hosts) == count and all(map(operator.is_, hosts,
                                               host_states)):
                return groups
        if self._unindexed:
            for hosts, groups in self._unindexed:
                self._by_host.update(zip(hosts, groups, strict=True))
            self._unindexed.clear()
        found = tuple(map(self._by_host.get, host_states))
        if None in found:
            return self.learn(host_states)
        self.remember(host_states, found)
        return found

    def remember(self, host_states: Sequence,
                 groups: Sequence[HostGroup]) -> None:
        """Note that ``groups`` are the groups of ``host_states``."""
        self._seen.append((tuple(host_states), tuple(groups)))

    def metadata_keys(self) -> frozenset[str]:
        """Every metadata key of the aggregates of the hosts seen so far.

        A weight multiplier no aggregate overrides is the configured one
        for every host, found without a look at each group.
        """
        if self._metadata_keys is None:
            aggregates = {id(a): a for key in self._by_aggregates
                          for a in key}
            keys: set[str] = set()
            for aggregate in aggregates.values():
                keys.update(aggregate.metadata)
            self._metadata_keys = frozenset(keys)
        return self._metadata_keys

    def learn(self, host_states: Sequence) -> Sequence[HostGroup]:
        """The group of each host, read from its aggregates."""
        # Reading each HostState is what costs here (they are large and
        # scattered in memory): once per host and request, in C-level
        # passes; Python code runs once per new set of aggregates.
        by_aggregates = self._by_aggregates
        hosts = tuple(host_states)
        keys = list(map(tuple, map(_AGGREGATES, hosts)))
        # The first host of each set of aggregates (the last one written
        # wins, hence the reversed order).
        first = dict(zip(reversed(keys), reversed(hosts), strict=True))
        for key in first.keys() - by_aggregates.keys():
            by_aggregates[key] = HostGroup(first[key], key)
            self._metadata_keys = None
        groups = tuple(map(by_aggregates.__getitem__, keys))
        self._unindexed.append((hosts, groups))
        self._seen.append((hosts, groups))
        return groups


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
    #: PoP name -> estimated RTT from the reference, shared by MaxRttFilter
    #: and ProximityWeigher.
    estimates: dict[str, RttEstimate] = dataclasses.field(
        default_factory=dict, compare=False, repr=False)

    def estimate(self, pop: PopDescriptor) -> RttEstimate:
        """Estimated RTT from the reference (which must be set) to ``pop``.
        """
        estimate = self.estimates.get(pop.name)
        if estimate is None:
            estimate = self.estimates[pop.name] = estimate_rtt(
                self.reference, pop)
        return estimate

    def groups_of(self, host_states: Sequence) -> Sequence[HostGroup]:
        """The group of each host, in order."""
        return self.index.groups_of(host_states)


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
    groups = None
    if context is not None:
        directory = DIRECTORY.get(
            context, CONF.discovery_scheduler.pop_refresh_interval)
    else:
        groups = index.learn(host_states)
        hosts = tuple(host_states)
        directory = PopDirectory.from_hosts(
            lambda: map(_HOST, hosts), list(map(_NAME, groups)),
            (group.pop for group in dict.fromkeys(groups)
             if group.pop is not None))
    hints_mod.check_known_pops(hints, directory.pops)
    reference = resolve_reference(hints, directory.pops, directory.host_pops,
                                  prefix_table(), CONF.discovery.pop_name)
    same = None
    if hints.same_pop_as:
        same = _server_pops(spec_obj, hints_mod.SAME_POP_AS,
                            hints.same_pop_as, directory, host_states,
                            groups)
    different = frozenset()
    if hints.different_pop_from:
        different = _server_pops(spec_obj, hints_mod.DIFFERENT_POP_FROM,
                                 hints.different_pop_from, directory,
                                 host_states, groups)
    opts = CONF.discovery_scheduler
    return LocalityRequest(hints, directory, reference, same, different,
                           opts.rtt_error_weight, opts.max_trusted_error,
                           index)


def _server_pops(spec_obj, hint: str, servers: Sequence[str],
                 directory: PopDirectory, host_states: Sequence,
                 groups: Sequence[HostGroup] | None) -> frozenset[str]:
    """PoPs the named servers run in; HintError for unknown servers.

    With a context the servers' hosts come from the database and their
    PoPs from the directory; without, from the host states (``groups[i]``
    is the group of ``host_states[i]``).
    """
    own = getattr(spec_obj, 'instance_uuid', None)
    servers = [s for s in servers if s != own]
    context = _context(spec_obj)
    if context is not None:
        where = {server: (host, directory.host_pops.get(host))
                 for server, host in _server_hosts_from_db(
                     context, hint, servers).items()}
    else:
        where = _server_places_from_states(hint, servers, host_states,
                                           groups)
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
        hint: str, servers: Sequence[str], host_states: Sequence,
        groups: Sequence[HostGroup]) -> dict[str, tuple[str, str | None]]:
    """Server -> (its host's name, its host's PoP or None)."""
    places = {}
    running = list(map(_INSTANCES, host_states))
    for server in dict.fromkeys(servers):
        # One dict lookup per host, without Python code per host; a
        # server listed by several hosts is taken to run on the last.
        on = list(itertools.compress(range(len(running)), map(
            operator.contains, running, itertools.repeat(server))))
        if not on:
            raise HintError(hint, server, 'the UUID of an existing server '
                            'of this project')
        places[server] = (host_states[on[-1]].host, groups[on[-1]].name)
    return places
