"""What our filters and weighers share: per-PoP decisions, parsed once.

Hosts of one PoP are judged alike, so a filter decides once per PoP and
looks the verdict up for each host; the per-host cost is finding the host's
PoP (a cached lookup over its aggregates) plus one dict probe.
"""

import abc
from collections.abc import Sequence

from nova.scheduler import filters
from nova.scheduler import utils
from nova.scheduler import weights
from oslo_log import log as logging

import discovery_nova.conf
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.scheduler.request import LocalityRequest
from discovery_nova.scheduler.request import locality_request
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
        verdicts: dict[str | None, bool] = {}
        seen: dict[str, PopDescriptor] = {}
        passed = []
        for host_state, pop in zip(host_states,
                                   request.pops_of(host_states),
                                   strict=True):
            name = pop.name if pop is not None else None
            verdict = verdicts.get(name)
            if verdict is None:
                verdict = verdicts[name] = self.pop_passes(request, pop)
                if pop is not None:
                    seen[name] = pop
            if verdict:
                passed.append(host_state)
        if host_states and not passed:
            LOG.info("%(filter)s removed all %(count)d hosts for instance "
                     "%(uuid)s: %(why)s",
                     {'filter': self.__class__.__name__,
                      'count': len(host_states),
                      'uuid': getattr(spec_obj, 'instance_uuid', None),
                      'why': self.explain(request, list(seen.values()))})
        return passed

    def host_passes(self, host_state, spec_obj):
        return bool(self.filter_all([host_state], spec_obj))


class LocalityWeigher(weights.BaseHostWeigher):
    """Base of weighers that read the request's locality view."""

    #: Option of [discovery_scheduler], also the aggregate metadata key
    #: that overrides it for the hosts of an aggregate.
    multiplier_option = ''

    def __init__(self):
        prefix_table()

    def weight_multiplier(self, host_state):
        return utils.get_weight_multiplier(
            host_state, self.multiplier_option,
            getattr(CONF.discovery_scheduler, self.multiplier_option))

    @abc.abstractmethod
    def weigh_hosts(self, request: LocalityRequest, host_states: list,
                    spec_obj) -> list[float]:
        """One weight per host, higher is better."""

    def weigh_objects(self, weighed_obj_list, weight_properties):
        host_states = [weighed.obj for weighed in weighed_obj_list]
        request = locality_request(weight_properties, host_states)
        return self.weigh_hosts(request, host_states, weight_properties)

    def _weigh_object(self, obj, weight_properties):
        request = locality_request(weight_properties, [obj])
        return self.weigh_hosts(request, [obj], weight_properties)[0]


def floor_unknown(weights_: list[float]) -> list[float]:
    """Give hosts weighed -inf (nothing known) the lowest known weight."""
    known = [w for w in weights_ if w != float('-inf')]
    low = min(known) if known else 0.0
    return [low if w == float('-inf') else w for w in weights_]
