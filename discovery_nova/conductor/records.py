"""What the origin PoP keeps of a forwarded build, and the trail of tries.

A server that runs at another PoP keeps a record at the PoP the user asked
(its *origin*), in the origin's own cell, so that ``openstack server list``
and ``show`` there list it: no host (nothing of it runs here), the PoP it
runs at as availability zone and as ``discovery_pop`` metadata. Every PoP
tried is an instance action of its own, "forward to <PoP> (~<RTT> ms)",
whose event says why it declined: ``openstack server event list`` shows
the path, ``server event show`` the reasons.
"""

import copy
import dataclasses
import json

from nova import context as nova_context
from nova import exception
from nova import objects
from nova.compute import instance_actions
from nova.compute import vm_states
from nova.conductor import manager as nova_manager
import nova.conf
from oslo_context import context as oslo_context
from oslo_log import log as logging

from discovery_nova.conductor.candidates import Candidate
from discovery_nova.conductor.candidates import Plan

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Instance metadata (user-visible) and system metadata keys.
META_POP = 'discovery_pop'
META_ORIGIN = 'discovery_origin'
SYSMETA_FORWARDED = 'discovery_forwarded_to'
SYSMETA_NETWORKS = 'discovery_networks'
#: Set on a build every host of this PoP failed (why), for the record pass
#: to offer it to the other PoPs.
SYSMETA_FAILED = 'discovery_failed_here'
EVENT_NAME = 'discovery_forward'


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One PoP tried for one instance, and its answer."""

    candidate: Candidate
    accepted: bool
    reason: str

    def action_name(self) -> str:
        if self.candidate.local:
            return 'schedule at %s' % self.candidate.describe()
        return 'forward to %s' % self.candidate.describe()


def summary(plan: Plan, attempts: list[Attempt]) -> str:
    """The fault of an instance no PoP took: each PoP and its answer."""
    if not attempts:
        return ('no PoP satisfies the request\'s hints (reference: %s)'
                % plan.reference)
    parts = ['%s: %s' % (a.candidate.describe(), a.reason or 'declined')
             for a in attempts]
    return ('No PoP could place the server; tried %d (nearest first from '
            '%s): %s' % (len(attempts), plan.reference, '; '.join(parts)))


def local_cell(context):
    """The cell this PoP's instances live in (the first non-cell0)."""
    for cell in objects.CellMappingList.get_all(context):
        if not cell.is_cell0():
            return cell
    raise exception.CellMappingNotFound(uuid='(any non-cell0 cell)')


def cell_context(context, cell):
    """A copy of ``context`` targeted at ``cell``, for as long as the
    caller keeps it: what nova's ``target_cell`` yields, without its
    with-block. A record pass keeps its cell context across calls to
    this PoP's scheduler, which targets cells itself; nova's in-process
    test harness serializes ``target_cell`` blocks with a lock, and such
    a call made inside one would wait for it forever."""
    cctxt = copy.copy(context)
    nova_context.set_target_cell(cctxt, cell)
    return cctxt


def find_row(cctxt, uuid: str):
    """The instance ``uuid`` of the targeted cell, deleted or not; None
    when the cell never had it."""
    try:
        return objects.Instance.get_by_uuid(
            cctxt.elevated(read_deleted='yes'), uuid)
    except exception.InstanceNotFound:
        return None


def record_trail(cctxt, uuid: str, attempts: list[Attempt],
                 last_request_id: str | None = None) -> None:
    """One instance action per PoP tried, each with its event; the last
    one under ``last_request_id`` if given (the request a build at this
    PoP then runs under, whose compute events join that action)."""
    for number, attempt in enumerate(attempts, 1):
        actx = copy.copy(cctxt)
        actx.request_id = (last_request_id if last_request_id and
                           number == len(attempts) else
                           oslo_context.generate_request_id())
        objects.InstanceAction.action_start(
            actx, uuid, attempt.action_name(), want_result=False)
        objects.InstanceActionEvent.event_start(
            actx, uuid, EVENT_NAME, want_result=False, host=CONF.host)
        if attempt.accepted:
            objects.InstanceActionEvent.event_finish(
                actx, uuid, EVENT_NAME, want_result=False)
        else:
            objects.InstanceActionEvent.event_finish_with_failure(
                actx, uuid, EVENT_NAME,
                exc_val='declined: %s' % (attempt.reason or 'no reason'),
                exc_tb='declined by %s' % attempt.candidate.pop,
                want_result=False)
        objects.InstanceAction.action_finish(actx, uuid, want_result=False)


def record_attempts_at_home(context, uuid: str,
                            attempts: list[Attempt]) -> None:
    """The trail of an instance that ended up at this PoP."""
    if len(attempts) < 2:
        return  # placed here at the first try: nothing to tell
    with nova_context.target_cell(context, local_cell(context)) as cctxt:
        record_trail(cctxt, uuid, attempts)


def record_attempts_in_cell0(context, uuid: str,
                             attempts: list[Attempt]) -> None:
    """The trail of an instance no PoP took (buried in cell0)."""
    cell0 = objects.CellMapping.get_by_uuid(context,
                                            objects.CellMapping.CELL0_UUID)
    with nova_context.target_cell(context, cell0) as cctxt:
        record_trail(cctxt, uuid, attempts)


def networks_record(requested_networks) -> str:
    """The requested networks, small enough for system metadata (255).

    Kept so that the server can be built again elsewhere if its PoP dies.
    """
    if requested_networks is None:
        return 'auto'
    if requested_networks.no_allocate:
        return 'none'
    if requested_networks.auto_allocate:
        return 'auto'
    text = json.dumps([[r.network_id, r.port_id]
                       for r in requested_networks.objects])
    return text if len(text) <= 255 else 'auto'


def networks_of(instance) -> str:
    """The networks of a server in the form ``networks_record`` keeps
    them, for building it again elsewhere: the networks of its ports (new
    ports are made there); without ports, the networks its build asked
    for (``SYSMETA_NETWORKS``, written when it was built); else none."""
    nets = []
    for vif in (instance.info_cache.network_info
                if instance.info_cache else None) or []:
        net = (vif.get('network') or {}).get('id')
        if net and [net, None] not in nets:
            nets.append([net, None])
    if not nets:
        return instance.system_metadata.get(SYSMETA_NETWORKS) or 'none'
    text = json.dumps(nets)
    return text if len(text) <= 255 else 'auto'


def networks_from_record(text: str | None):
    if text == 'none':
        return objects.NetworkRequestList(
            objects=[objects.NetworkRequest(network_id='none')])
    if not text or text == 'auto':
        return objects.NetworkRequestList(
            objects=[objects.NetworkRequest(network_id='auto')])
    return objects.NetworkRequestList(objects=[
        objects.NetworkRequest(network_id=net, port_id=port)
        for net, port in json.loads(text)])


def record_forwarded(manager, context, build_request, request_spec, pop,
                     host, attempts, requested_networks, tags) -> None:
    """Turn the build request into this PoP's record of a remote server.

    As nova does for a local build (instance in the cell, mapping to the
    cell, build request removed), but with no host and the remote PoP as
    availability zone. If the user deleted the build request meanwhile the
    remote server is deleted too.
    """
    uuid = request_spec.instance_uuid
    cell = local_cell(context)
    instance = build_request.get_new_instance(context)
    instance.host = None
    instance.node = None
    instance.availability_zone = pop
    instance.vm_state = vm_states.BUILDING
    instance.metadata = dict(instance.metadata or {},
                             **{META_POP: pop,
                                META_ORIGIN: manager.pop_name})
    instance.system_metadata = dict(
        instance.system_metadata or {},
        **{SYSMETA_FORWARDED: pop,
           SYSMETA_NETWORKS: networks_record(requested_networks)})
    try:
        objects.BuildRequest.get_by_instance_uuid(context, uuid)
    except exception.BuildRequestNotFound:
        LOG.info("Build request of %(uuid)s deleted while it was "
                 "forwarded to %(pop)s; deleting it there",
                 {'uuid': uuid, 'pop': pop})
        delete_remote(manager, context, pop, [uuid])
        return
    with nova_manager.obj_target_cell(instance, cell) as cctxt:
        instance.create()
        objects.InstanceAction.action_start(
            cctxt, uuid, instance_actions.CREATE, want_result=False)
        instance_tags = manager._create_tags(cctxt, uuid, tags)
        record_trail(cctxt, uuid, attempts)
    manager._map_instance_to_cell(context, instance, cell)
    if not manager._delete_build_request(
            context, build_request, instance, cell, [], instance_tags):
        delete_remote(manager, context, pop, [uuid])
        return
    LOG.info("Instance %(uuid)s runs at PoP %(pop)s (host %(host)s); "
             "recorded here", {'uuid': uuid, 'pop': pop, 'host': host})


def delete_remote(manager, context, pop: str, uuids: list[str]) -> bool:
    """Ask ``pop`` to delete ``uuids``; False when it could not be asked."""
    try:
        manager.federation.call(
            context, pop, 'delete_servers',
            CONF.discovery_conductor.call_timeout, uuids=uuids)
    except Exception as exc:
        LOG.warning("Could not ask %(pop)s to delete %(uuids)s: %(err)s",
                    {'pop': pop, 'uuids': uuids, 'err': exc})
        return False
    return True
