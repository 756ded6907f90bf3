"""What one PoP's conductor answers to the others (federation topic).

- ``offer_build``: take a build another PoP could not place, or decline;
- ``describe``: the state of servers running here (and the fault of one
  that failed), for their origin, at once or when one of them changed;
- ``delete_servers``: delete servers here at their origin's request;
- ``owner_of``: where this PoP (as origin) says a server should run;
- ``where``: whether a server is here, and where it runs if forwarded.
"""

import time

from nova import context as nova_context
from nova import exception
from nova import objects
from nova.compute import api as compute_api
from nova.compute import vm_states
import nova.conf
from oslo_log import log as logging
import oslo_messaging as messaging

from discovery_nova.conductor import federation
from discovery_nova.conductor import records

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
#: The longest a ``describe`` may be held waiting for a change (s).
MAX_WAIT = 10.0


class FederationEndpoint:
    """The RPC methods of the ``discovery_conductor`` topic."""

    target = messaging.Target(version=federation.VERSION)

    def __init__(self, task_manager):
        self.manager = task_manager
        self.compute_api = compute_api.API()
        self._cell = None

    def _cell_context(self, context):
        if self._cell is None:  # read once: a PoP's cell does not change
            self._cell = records.local_cell(context)
        return nova_context.target_cell(context, self._cell)

    def offer_build(self, context, instance, request_spec, image,
                    admin_password, injected_files, requested_networks,
                    block_device_mapping, tags, origin):
        return self.manager.accept_offer(
            context, instance, request_spec, image, admin_password,
            injected_files, requested_networks, block_device_mapping, tags,
            origin)

    def describe(self, context, uuids, wait=0.0):
        """The state of ``uuids`` here. With ``wait`` (seconds, at most
        MAX_WAIT), answer only once one of them is no longer building, or
        when ``wait`` is over: a long poll, through which their origin
        learns of a finished build about when it happens."""
        deadline = time.monotonic() + min(max(float(wait or 0), 0.0),
                                          MAX_WAIT)
        while True:
            found = self._states(uuids)
            if time.monotonic() >= deadline or any(
                    not state.get('missing') and
                    state.get('vm_state') != vm_states.BUILDING
                    for state in found.values()):
                return found
            time.sleep(CONF.discovery_conductor.building_poll_interval)

    def _states(self, uuids):
        found = {}
        admin = nova_context.get_admin_context()
        with self._cell_context(admin) as cctxt:
            for instance in objects.InstanceList.get_by_filters(
                    cctxt, {'uuid': list(uuids), 'deleted': False},
                    expected_attrs=['fault']):
                found[instance.uuid] = {
                    'vm_state': instance.vm_state,
                    'task_state': instance.task_state,
                    'power_state': instance.power_state,
                    'host': instance.host,
                    'launched_at': (instance.launched_at.isoformat()
                                    if instance.launched_at else None),
                    'fault': (instance.fault.message
                              if instance.fault else None)}
        for uuid in uuids:
            if uuid not in found:
                # Still being scheduled here: not missing.
                try:
                    objects.BuildRequest.get_by_instance_uuid(admin, uuid)
                    found[uuid] = {'vm_state': 'building',
                                   'task_state': 'scheduling',
                                   'power_state': 0}
                except exception.BuildRequestNotFound:
                    found[uuid] = {'missing': True}
        return found

    def delete_servers(self, context, uuids):
        admin = nova_context.get_admin_context()
        deleted = []
        with self._cell_context(admin) as cctxt:
            for instance in objects.InstanceList.get_by_filters(
                    cctxt, {'uuid': list(uuids), 'deleted': False}):
                try:
                    self.compute_api.delete(cctxt, instance)
                    deleted.append(instance.uuid)
                except exception.InstanceNotFound:
                    pass
        LOG.info("Deleted %(uuids)s at their origin's request",
                 {'uuids': deleted})
        return deleted

    def owner_of(self, context, uuids):
        """For servers this PoP is the origin of: the PoP each should run
        at; ``deleted`` when deleted here, or refused here (in cell0) while
        the PoP asking built it after all (an offer whose answer came after
        ``forward_timeout``), or gone without a trace; ``unknown`` while
        it is still being placed."""
        answer = {}
        admin = nova_context.get_admin_context(read_deleted='yes')
        with self._cell_context(admin) as cctxt:
            for instance in objects.InstanceList.get_by_filters(
                    cctxt, {'uuid': list(uuids)},
                    expected_attrs=['system_metadata']):
                if instance.deleted:
                    answer[instance.uuid] = 'deleted'
                else:
                    answer[instance.uuid] = instance.system_metadata.get(
                        records.SYSMETA_FORWARDED, self.manager.pop_name)
        for uuid in uuids:
            if uuid not in answer:
                answer[uuid] = self._not_in_cell(admin, uuid)
        return answer

    @staticmethod
    def _not_in_cell(context, uuid: str) -> str:
        try:
            objects.BuildRequest.get_by_instance_uuid(context, uuid)
            return 'unknown'  # still being placed
        except exception.BuildRequestNotFound:
            pass
        try:
            mapping = objects.InstanceMapping.get_by_instance_uuid(context,
                                                                  uuid)
        except exception.InstanceMappingNotFound:
            return 'deleted'
        if mapping.cell_mapping is not None and \
                mapping.cell_mapping.is_cell0():
            return 'deleted'
        return 'unknown'

    def where(self, context, uuid):
        admin = nova_context.get_admin_context()
        with self._cell_context(admin) as cctxt:
            try:
                instance = objects.Instance.get_by_uuid(
                    cctxt, uuid, expected_attrs=['system_metadata'])
            except exception.InstanceNotFound:
                return None
        return {'pop': instance.system_metadata.get(
                    records.SYSMETA_FORWARDED, self.manager.pop_name),
                'recorded_at': self.manager.pop_name,
                'host': instance.host, 'vm_state': instance.vm_state}
