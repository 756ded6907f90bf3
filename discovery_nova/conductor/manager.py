"""The conductor manager of ``discovery-conductor``.

nova's ConductorManager (the ``conductor`` topic's local methods) with our
ComputeTaskManager as its ``compute_task`` endpoint; at start it joins the
PoP membership, serves the federation topic and starts the record sync
and the pass that keeps its servers' records on the overlay's ring (woken
as soon as a compute saves a server ACTIVE through this conductor).
"""

from nova import objects
from nova.compute import vm_states
from nova.conductor import manager as nova_manager
import nova.conf
from oslo_log import log as logging

from discovery_nova.conductor import compute_task
from discovery_nova.conductor import endpoint
from discovery_nova.conductor import federation
from discovery_nova.conductor import liveness
from discovery_nova.conductor import neighbours
from discovery_nova.conductor import placement_index
from discovery_nova.conductor import shadow_sync
from discovery_nova.overlay.client import AgentUnavailable

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


class DiscoveryConductorManager(nova_manager.ConductorManager):
    """ConductorManager that forwards what this PoP cannot place."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.compute_task_mgr = compute_task.ForwardingComputeTaskManager()
        self.additional_endpoints = [self.compute_task_mgr]
        self.federation = None
        self.liveness = None
        self.sync = None
        self.index = None

    def pre_start_hook(self, service_ref):
        super().pre_start_hook(service_ref)
        self.start_federation()

    def start_federation(self) -> None:
        opts = CONF.discovery_conductor
        pop = CONF.discovery.pop_name
        if not opts.federation_transport_url or not pop:
            LOG.warning("No [discovery_conductor] federation_transport_url "
                        "or [discovery] pop_name: this PoP neither forwards "
                        "nor accepts builds")
            return
        rtts = {name: float(ms)
                for name, ms in (opts.emulated_rtt_ms or {}).items()}
        self.federation = federation.Federation(
            CONF, pop, opts.federation_transport_url, rtts)
        self.liveness = liveness.PopLiveness(
            opts.membership_url or CONF.discovery_overlay.membership_url,
            opts.membership_group, pop,
            CONF.discovery_overlay.membership_heartbeat_interval,
            CONF.discovery_overlay.membership_timeout)
        self.liveness.start()
        self.federation.serve(endpoint.FederationEndpoint(
            self.compute_task_mgr))
        self.compute_task_mgr.federation = self.federation
        self.compute_task_mgr.liveness = self.liveness
        self.sync = shadow_sync.ShadowSync(self.compute_task_mgr)
        self.sync.start()
        self.index = placement_index.start(self.compute_task_mgr, self.sync)
        self.compute_task_mgr.neighbours = neighbours.SpiralNeighbours(
            _agent_client_or_none(),
            ttl=CONF.discovery_scheduler.pop_refresh_interval)
        LOG.info("PoP %(pop)s conductor joined the federation",
                 {'pop': pop})

    def object_action(self, context, objinst, objmethod, args, kwargs):
        """nova's; a server of this PoP a compute has just saved ACTIVE
        (its build is done) has its ring records published at once."""
        built = (objmethod == 'save' and
                 isinstance(objinst, objects.Instance) and
                 'vm_state' in objinst.obj_what_changed() and
                 objinst.obj_attr_is_set('vm_state') and
                 objinst.vm_state == vm_states.ACTIVE)
        answer = super().object_action(context, objinst, objmethod, args,
                                       kwargs)
        if built and self.index is not None:
            self.index.wake()
        return answer

    def cleanup_host(self):
        for part in (self.index, self.sync, self.federation,
                     self.liveness):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:
                    LOG.warning("Stopping %(part)s failed: %(err)s",
                                {'part': type(part).__name__, 'err': exc})
        super().cleanup_host()


def _agent_client_or_none():
    """This PoP's overlay agent client, None without one (or with an
    unreadable key, which placement_index reports at its own start)."""
    try:
        return placement_index.agent_client()
    except AgentUnavailable:
        return None
