"""What our filters and weighers share: per-PoP decisions, parsed once.

Hosts in the same aggregates are judged alike, so a plugin decides once
per group of them (see ``request.HostGroup``) and spreads the verdicts or
weights over the hosts with ``map``; the per-host cost is finding the
host's group, once per request, then C-level lookups.

Nova's weight handler asks ``weight_multiplier(host_state)`` of every host
right after ``weigh_objects``; the weighers work the multipliers out per
group while weighing and hand them back in that order.
"""

import abc
from collections.abc import Iterable
from collections.abc import Sequence
import operator
import threading

from nova.scheduler import filters
from nova.scheduler import utils
from nova.scheduler import weights
from oslo_log import log as logging

import discovery_nova.conf
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.scheduler.request import HostGroup
from discovery_nova.scheduler.request import HostList
from discovery_nova.scheduler.request import LocalityRequest
from discovery_nova.scheduler.request import cached_request
from discovery_nova.scheduler.request import locality_request
from discovery_nova.scheduler.request import per_group
from discovery_nova.scheduler.request import prefix_table

CONF = discovery_nova.conf.CONF
LOG = logging.getLogger(__name__)


class LocalityFilter(filters.BaseHostFilter, metaclass=abc.ABCMeta):
    """Base of filters that judge a host by the PoP it is in."""

    # The PoPs and the hints do not change between the instances of one
    # request; nova passes the hosts that passed for the first instance on.
    run_filter_once_per_request = True

    def __init__(self):
        # A malformed client prefix table stops nova-scheduler at start-up
        # with the table's error, not at the first near_ip request.
        prefix_table()

    @abc.abstractmethod
    def applies(self, request: LocalityRequest) -> bool:
        """Whether the request has a hint this filter acts on."""

    @abc.abstractmethod
    def pop_passes(self, request: LocalityRequest,
                   pop: PopDescriptor | None) -> bool:
        """Whether hosts of ``pop`` (None: in no PoP) pass."""

    def verdict_key(self, request: LocalityRequest) -> tuple | None:
        """Everything ``pop_passes`` reads of the request, compared by
        value: the verdicts of each group are then kept for the next
        requests with an equal key. None (the default) decides afresh in
        each request."""
        return None

    @abc.abstractmethod
    def explain(self, request: LocalityRequest,
                pops: Sequence[PopDescriptor]) -> str:
        """Why no host passed, for the log an admin reads."""

    def filter_all(self, filter_obj_list, spec_obj):
        host_states = list(filter_obj_list)
        if not self.RUN_ON_REBUILD and utils.request_is_rebuild(spec_obj):
            return host_states
        request = locality_request(spec_obj, host_states)
        if not self.applies(request):
            return host_states
        known = request.hosts(host_states)
        distinct = known.distinct()
        key = self.verdict_key(request)

        def decide(group: HostGroup) -> bool:
            return self.pop_passes(request, group.pop)

        if key is None:
            verdicts = {group: decide(group) for group in distinct}
        else:
            verdicts = per_group((type(self), *key), distinct, decide)
        if all(map(verdicts.__getitem__, distinct)):
            # Every host passes; the index knows this list already.
            return host_states
        # The next plugin gets these hosts: their groups are known.
        passed = list(request.index.subset(
            known, list(map(verdicts.__getitem__, known.groups))).hosts)
        if host_states and not passed:
            LOG.info("%(filter)s removed all %(count)d hosts for instance "
                     "%(uuid)s: %(why)s",
                     {'filter': self.__class__.__name__,
                      'count': len(host_states),
                      'uuid': getattr(spec_obj, 'instance_uuid', None),
                      'why': self.explain(request, _pops(distinct))})
        return passed

    def host_passes(self, host_state, spec_obj):
        return bool(self.filter_all([host_state], spec_obj))


def _pops(groups: Iterable[HostGroup]) -> list[PopDescriptor]:
    """The PoPs of ``groups``, the first descriptor of each name."""
    pops: dict[str, PopDescriptor] = {}
    for group in groups:
        if group.pop is not None:
            pops.setdefault(group.name, group.pop)
    return list(pops.values())


_OBJ = operator.attrgetter('obj')


class _Multipliers(threading.local):
    """(host, multiplier) pairs of this thread's last weigh_objects."""

    def __init__(self):
        self.pending = iter(())


class LocalityWeigher(weights.BaseHostWeigher):
    """Base of weighers that read the request's locality view."""

    #: Option of [discovery_scheduler], also the aggregate metadata key
    #: that overrides it for the hosts of an aggregate.
    multiplier_option = ''

    def __init__(self):
        prefix_table()
        self._multipliers = _Multipliers()

    def configured_multiplier(self) -> float:
        """The multiplier of [discovery_scheduler], before any aggregate
        metadata overrides it."""
        return getattr(CONF.discovery_scheduler, self.multiplier_option)

    def weight_multiplier(self, host_state):
        # Nova's handler asks for the hosts weigh_objects was given, in
        # their order: answer from the pairs prepared there. Any other call
        # (another host, another order) drops them and asks nova's helper.
        pair = next(self._multipliers.pending, None)
        if pair is not None and pair[0] is host_state:
            return pair[1]
        self._multipliers.pending = iter(())
        return utils.get_weight_multiplier(
            host_state, self.multiplier_option, self.configured_multiplier())

    def group_multipliers(self, request: LocalityRequest,
                          hosts: HostList) -> list[float]:
        """The multiplier of each host, from nova's helper once per group.

        nova's ``get_weight_multiplier`` reads only the host's aggregates,
        which all hosts of a group share, and returns the configured value
        as it is when none of them has the option in its metadata: most
        groups, often all hosts, are answered so without calling it.
        """
        option = self.multiplier_option
        default = self.configured_multiplier()
        groups = hosts.groups
        if option not in request.index.metadata_keys():
            return [default] * len(groups)
        known = request.multipliers.setdefault((option, default), {})
        for group in hosts.distinct() - known.keys():
            for aggregate in group.aggregates:
                if option in aggregate.metadata:
                    known[group] = utils.get_weight_multiplier(
                        group.as_host, option, default)
                    break
            else:
                known[group] = default
        return list(map(known.__getitem__, groups))

    @abc.abstractmethod
    def weigh_hosts(self, request: LocalityRequest, hosts: HostList,
                    spec_obj) -> list[float]:
        """One weight per host of ``hosts.hosts``, higher is better."""

    def weigh_objects(self, weighed_obj_list, weight_properties):
        # Mostly the request is known and its filters (or the weigher
        # before) left exactly these hosts.
        request = cached_request(weight_properties)
        hosts = (request.index.weighed(weighed_obj_list)
                 if request is not None else None)
        if hosts is None:
            host_states = list(map(_OBJ, weighed_obj_list))
            request = locality_request(weight_properties, host_states)
            hosts = request.hosts(host_states)
        weights_ = self.weigh_hosts(request, hosts, weight_properties)
        self._multipliers.pending = zip(
            hosts.hosts, self.group_multipliers(request, hosts),
            strict=True)
        return weights_

    def _weigh_object(self, obj, weight_properties):
        request = locality_request(weight_properties, [obj])
        return self.weigh_hosts(request, request.hosts([obj]),
                                weight_properties)[0]


def floor_unknown(weights_: list[float]) -> list[float]:
    """Give hosts weighed -inf (nothing known) the lowest known weight."""
    known = [w for w in weights_ if w != float('-inf')]
    low = min(known) if known else 0.0
    return [low if w == float('-inf') else w for w in weights_]
