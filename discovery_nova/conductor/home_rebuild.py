"""Build a forwarded server again at its origin, when the PoP running it
died and the origin is now the best PoP for it.

The origin keeps a record of every server it forwarded: a row of its own
cell under the server's UUID, with no host (``records.record_forwarded``).
That row cannot be offered to the origin as a new build (the UUID is taken
here, by the row itself), so it is turned into a local build instead, the
way nova's conductor starts one: the scheduler chooses and claims a host,
the row gets the host's availability zone and loses the marks of a
forwarded server, its root disk mapping is written (a forwarded server has
none here), and the chosen compute is asked to build it. From then on it
is a server of this PoP like any other: the record sync no longer mirrors
it, the ring records name this PoP, and the dead PoP's copy, if it comes
back, is removed by that PoP's reconcile (``owner_of`` here answers this
PoP).
"""

import copy

from nova import exception
from nova import objects
from nova.compute import power_state
from nova.compute import task_states
from nova.compute import vm_states
import nova.conf
from nova.scheduler import utils as scheduler_utils
from oslo_context import context as oslo_context
from oslo_log import log as logging

from discovery_nova.conductor import records
from discovery_nova.conductor import ring_records

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: What the build at the compute reads from the row (loaded at once, so
#: that nothing is lazy-loaded half-way through the reset).
ATTRS = ['metadata', 'system_metadata', 'flavor', 'info_cache',
         'security_groups', 'pci_requests', 'numa_topology']


def _root_disk(cctxt, uuid: str, image_ref: str):
    """The row's block device mappings, the image's root disk written
    first when there are none (a forwarded server's record has none)."""
    from discovery_nova.conductor import shadow_sync

    bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(cctxt, uuid)
    if len(bdms):
        return bdms
    bdm = shadow_sync.image_bdm(image_ref, uuid)
    bdm._context = cctxt
    bdm.update_or_create()
    return objects.BlockDeviceMappingList.get_by_instance_uuid(cctxt, uuid)


def build_at_origin(manager, cctxt, shadow, spec, image: dict, networks,
                    dead: str, candidate, trail: list) -> tuple[bool, str]:
    """Build ``shadow`` (forwarded from here to ``dead``) at this PoP.

    Returns whether it was started here and why not (the reason the
    server's event list shows). A scheduling failure is a decline, as for
    any PoP; anything failing after the claim releases it. When it is
    started, ``trail`` (the PoPs tried before, ``candidate`` being this
    one) is recorded first, this PoP's action under the request the build
    runs under: the compute's events join it (recorded after the build
    started, they would join nothing, and nova fails a build whose event
    it cannot finish).
    """
    uuid = shadow.uuid
    host_lists, reason = manager._try_local(cctxt, spec, [uuid])
    if host_lists is None:
        return False, reason
    host_list = host_lists[0]
    host = host_list.pop(0)
    bctxt = copy.copy(cctxt)
    bctxt.request_id = oslo_context.generate_request_id()
    try:
        instance = objects.Instance.get_by_uuid(cctxt, uuid,
                                                expected_attrs=ATTRS)
        if instance.host or instance.node:
            # (A record of a remote server has neither: this is for
            # safety; nova wants the node's id cleared with the node.)
            instance.host = None
            instance.node = None
            instance.compute_id = None
        instance.launched_on = None
        instance.launched_at = None
        instance.vm_state = vm_states.BUILDING
        instance.task_state = task_states.SCHEDULING
        instance.power_state = power_state.NOSTATE
        instance.availability_zone = host.availability_zone if \
            'availability_zone' in host else manager.pop_name
        instance.metadata = {k: v for k, v in instance.metadata.items()
                             if k != records.META_POP}
        # (The networks it asked for stay: ``records.networks_of``.)
        sysmeta = {k: v for k, v in instance.system_metadata.items()
                   if k != records.SYSMETA_FORWARDED}
        sysmeta[ring_records.SYSMETA_REBUILT_FROM] = dead
        instance.system_metadata = sysmeta
        # A delete under way (task "deleting") wins: nothing is built.
        instance.save(expected_task_state=[None])
        bdms = _root_disk(cctxt, uuid, instance.image_ref)
        filter_props = spec.to_legacy_filter_properties_dict()
        scheduler_utils.populate_retry(filter_props, uuid)
        scheduler_utils.populate_filter_properties(filter_props, host)
        scheduler_utils.fill_provider_mapping(spec, host)
        records.record_trail(cctxt, uuid, trail + [records.Attempt(
            candidate, True, 'placed on %s' % host.service_host)],
            last_request_id=bctxt.request_id)
        groups = spec.security_groups if \
            spec.obj_attr_is_set('security_groups') and \
            spec.security_groups else []
        manager.compute_rpcapi.build_and_run_instance(
            bctxt, instance=instance, image=image, request_spec=spec,
            filter_properties=filter_props, admin_password=None,
            injected_files=[], requested_networks=networks,
            security_groups=[g.identifier for g in groups],
            block_device_mapping=bdms, host=host.service_host,
            node=host.nodename, limits=host.limits, host_list=host_list,
            accel_uuids=[])
    except (exception.InstanceNotFound,
            exception.UnexpectedTaskStateError) as exc:
        manager.release_claim(cctxt, uuid)
        return False, 'deleted meanwhile (%s)' % type(exc).__name__
    except Exception as exc:
        LOG.exception("Building %(uuid)s again at its origin failed",
                      {'uuid': uuid})
        manager.release_claim(cctxt, uuid)
        return False, '%s at %s: %s' % (type(exc).__name__,
                                         manager.pop_name, exc)
    LOG.warning("PoP %(dead)s left: %(uuid)s, forwarded there from here, "
                "is built here again on host %(host)s",
                {'dead': dead, 'uuid': uuid, 'host': host.service_host})
    return True, 'placed on %s' % host.service_host
