"""The locality view of one scheduling request, shared by our plugins.

Every filter and weigher of discovery-nova needs the same things: the
request's hints parsed and checked, the PoP directory, the reference point
and the PoPs of servers named by affinity hints. They are worked out once
per request (the RequestSpec object nova-scheduler hands to each plugin in
turn) and kept in a cache that holds them as long as that object lives.

A malformed hint raises ``NoValidHost`` whose reason names the hint, the
value and the expected form: nova-scheduler passes NoValidHost back to the
conductor as an expected outcome, which records it as the server's fault
(``openstack server show`` shows it) without a traceback in the scheduler.
"""

from collections.abc import Sequence
import dataclasses
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
from discovery_nova.scheduler.aggregates import DIRECTORY
from discovery_nova.scheduler.aggregates import PopDirectory
from discovery_nova.scheduler.aggregates import pop_of_host

CONF = discovery_nova.conf.CONF
LOG = logging.getLogger(__name__)


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
    #: id(HostState) -> its PoP, filled as plugins ask: a request goes
    #: through several plugins, each needing the PoP of every host.
    host_pops: dict[int, PopDescriptor | None] = dataclasses.field(
        default_factory=dict, compare=False, repr=False)

    def pops_of(self, host_states: Sequence) -> list[PopDescriptor | None]:
        """The PoP of each host (None: in no PoP), in order."""
        known = self.host_pops
        out = []
        for host_state in host_states:
            key = id(host_state)
            pop = known.get(key, _MISSING)
            if pop is _MISSING:
                pop = known[key] = pop_of_host(host_state)
            out.append(pop)
        return out


_MISSING = object()


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
    host_pops: dict[int, PopDescriptor | None] = {}
    if context is not None:
        directory = DIRECTORY.get(
            context, CONF.discovery_scheduler.pop_refresh_interval)
    else:
        descriptors = [pop_of_host(h) for h in host_states]
        host_pops.update(zip(map(id, host_states), descriptors,
                             strict=True))
        directory = PopDirectory.from_host_states(host_states, descriptors)
    hints_mod.check_known_pops(hints, directory.pops)
    reference = resolve_reference(hints, directory.pops, directory.host_pops,
                                  prefix_table(), CONF.discovery.pop_name)
    same = None
    if hints.same_pop_as:
        same = _server_pops(spec_obj, hints_mod.SAME_POP_AS,
                            hints.same_pop_as, directory, host_states)
    different = frozenset()
    if hints.different_pop_from:
        different = _server_pops(spec_obj, hints_mod.DIFFERENT_POP_FROM,
                                 hints.different_pop_from, directory,
                                 host_states)
    return LocalityRequest(hints, directory, reference, same, different,
                           host_pops)


def _server_pops(spec_obj, hint: str, servers: Sequence[str],
                 directory: PopDirectory,
                 host_states: Sequence) -> frozenset[str]:
    """PoPs the named servers run in; HintError for unknown servers."""
    own = getattr(spec_obj, 'instance_uuid', None)
    servers = [s for s in servers if s != own]
    context = _context(spec_obj)
    if context is not None:
        hosts = _server_hosts_from_db(context, hint, servers)
    else:
        hosts = _server_hosts_from_states(hint, servers, host_states)
    pops = set()
    for server, host in hosts.items():
        pop = directory.host_pops.get(host)
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


def _server_hosts_from_states(hint: str, servers: Sequence[str],
                              host_states: Sequence) -> dict[str, str]:
    hosts = {}
    wanted = set(servers)
    for host_state in host_states:
        for server in wanted.intersection(host_state.instances):
            hosts[server] = host_state.host
    for server in servers:
        if server not in hosts:
            raise HintError(hint, server, 'the UUID of an existing server '
                            'of this project')
    return hosts

