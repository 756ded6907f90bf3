"""Publish where this PoP's servers run into the overlay's ring records.

One pass every ``[discovery_conductor] sync_interval`` seconds (and one
as soon as a server of this PoP goes ACTIVE: ``wake``), beside the shadow
sync, through this PoP's overlay agent (``[discovery_overlay]``
listen address and deployment key, as the agent reads them):

- every server this PoP keeps the record of gets ``server:<uuid>`` (see
  ``ring_records``): its own servers (where it runs: here) and the
  records of servers it forwarded (where it runs: the other PoP); a
  server forwarded here is published by its origin, not here;
- a server running here also gets its rebuild spec, and the PoP's index
  lists them, so another PoP can rebuild them if this one dies
  (``takeover``);
- a deleted server's record is marked deleted;
- a record published only when it changed, and every one again each
  ``REFRESH_PASSES`` passes (a record lost with too many ring nodes comes
  back).

A server is published only once the ring agrees this PoP keeps its record:
no record yet, or one naming this PoP. A record naming another live PoP
means the server was rebuilt there while this PoP was away: the copy here
is handed to the shadow sync's reconcile, as a server forwarded here by
that PoP would be, which deletes it once that PoP confirms it runs there.
"""

import threading
import time

from nova import context as nova_context
from nova import objects
from nova.compute import vm_states
import nova.conf
from oslo_log import log as logging
from oslo_serialization import jsonutils
from oslo_utils import timeutils

from discovery_nova.conductor import records
from discovery_nova.conductor import ring_records
from discovery_nova.conductor import shadow_sync
from discovery_nova.conductor.portable import portable
from discovery_nova.overlay.client import AgentClient
from discovery_nova.overlay.client import AgentUnavailable
from discovery_nova.overlay.client import read_key_file

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Every this many passes, every record is checked and published again.
REFRESH_PASSES = 30
#: Seconds a pass asked for by ``wake`` waits, so that the servers of a
#: burst of builds going ACTIVE together are published in one pass.
WAKE_DELAY = 0.5
SYSMETA_REBUILT_FROM = ring_records.SYSMETA_REBUILT_FROM
NATIVE = 'native'
FORWARDED = 'forwarded'
def kind_of(pop: str, metadata: dict, system_metadata: dict) -> str | None:
    """Which records this PoP keeps for a server of its cell: ``native``
    (it runs here, asked here or rebuilt here), ``forwarded`` (this PoP's
    record of a server running elsewhere), None (forwarded here by another
    PoP, which keeps its record)."""
    if records.SYSMETA_FORWARDED in system_metadata:
        return FORWARDED
    if metadata.get(records.META_ORIGIN) in (None, pop):
        return NATIVE
    return None


def agent_client(conf=CONF) -> AgentClient | None:
    """The client of this PoP's agent, from ``[discovery_overlay]``; None
    when no deployment key is configured (no overlay here)."""
    group = conf.discovery_overlay
    if group.deployment_key:
        key = group.deployment_key.encode('utf-8')
    elif group.deployment_key_file:
        key = read_key_file(group.deployment_key_file)
    else:
        return None
    host = group.advertise_host or group.listen_host
    return AgentClient.from_address(
        '%s:%d' % (host if ':' not in host else '[%s]' % host,
                   group.listen_port), key,
        timeout=max(4 * group.request_timeout, 5.0),
        name='%s-conductor' % conf.discovery.pop_name)


def rebuild_spec(cctxt, instance) -> dict:
    """What building ``instance`` again at another PoP needs, as JSON:
    what ``ShadowSync._rebuild_elsewhere`` reads from the origin's
    database, reset as a new build (so it only changes when the server
    does, not with its state)."""
    full = objects.Instance.get_by_uuid(
        cctxt, instance.uuid, expected_attrs=shadow_sync.PORTABLE_ATTRS)
    copy = shadow_sync.as_new_build(full)
    copy.updated_at = None
    copy.metadata = {k: v for k, v in full.metadata.items()
                     if k not in (records.META_POP, records.META_ORIGIN)}
    copy.system_metadata = {
        k: v for k, v in full.system_metadata.items()
        if k not in (records.SYSMETA_FORWARDED, records.SYSMETA_NETWORKS,
                     SYSMETA_REBUILT_FROM)}
    spec = shadow_sync.stored_spec_for_rebuild(
        objects.RequestSpec.get_by_instance_uuid(cctxt, instance.uuid))
    image = (objects.base.obj_to_primitive(spec.image)
             if spec.obj_attr_is_set('image') and spec.image else {})
    # As the RPC serializer sends them: time stamps become ISO strings,
    # which the objects' fields parse back.
    return jsonutils.to_primitive({
        'instance': copy.obj_to_primitive(),
        'spec': portable(spec).obj_to_primitive(),
        'image': image, 'image_ref': full.image_ref,
        'networks': records.networks_of(full)}, convert_instances=True)


class PlacementIndex:
    """The periodic pass of one conductor (see the module docstring)."""

    def __init__(self, task_manager, sync, client: AgentClient,
                 takeover=None):
        self.manager = task_manager
        self.sync = sync
        self.records = ring_records.RingRecords(client)
        self.pop_name = task_manager.pop_name
        #: Optional part that rebuilds the servers of dead PoPs.
        self.takeover = takeover
        #: What a server's rebuild spec is read with (the cell database).
        self.spec_of = rebuild_spec
        #: uuid -> last record published (without its time stamp).
        self._published: dict[str, dict] = {}
        #: uuid -> the spec pointer and updated_at it was made from.
        self._specs: dict[str, tuple] = {}
        #: Servers whose record this PoP keeps (confirmed on the ring).
        self._held: set[str] = set()
        #: Copies handed to the reconcile (logged once).
        self._reconciling: set[str] = set()
        self._index: list[str] | None = None
        self._index_pages = 0
        self._passes = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Publish soon, not at the next ``sync_interval`` pass: a server
        just went ACTIVE here, and until its rebuild spec is on the ring
        it cannot be rebuilt should this PoP die."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='discovery-placement-index')
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _next_pass(self, due: float) -> bool:
        """Wait for the pass due at ``due`` (monotonic) or for ``wake``;
        whether the whole pass (takeover included) is due."""
        woken = self._wake.wait(max(0.0, due - time.monotonic()))
        if woken and not self._stop.is_set():
            self._stop.wait(WAKE_DELAY)
        self._wake.clear()
        return time.monotonic() >= due

    def _run(self) -> None:
        agent_down = False
        due = time.monotonic() + CONF.discovery_conductor.sync_interval
        while not self._stop.is_set():
            full = self._next_pass(due)
            if self._stop.is_set():
                return
            if full:
                due = time.monotonic() + \
                    CONF.discovery_conductor.sync_interval
            try:
                self.run_once(takeover=full)
            except AgentUnavailable as exc:
                # Said once per outage, not at every pass.
                (LOG.debug if agent_down else LOG.warning)(
                    "Server records not published: %s", exc)
                agent_down = True
                continue
            except Exception:
                LOG.exception("Server record pass failed")
            if agent_down:
                LOG.info("Server records published again")
                agent_down = False

    # -- one pass ------------------------------------------------------------

    def run_once(self, takeover: bool = True) -> None:
        """Publish this PoP's records; then, unless told not to (a pass
        asked for by ``wake``), take over what dead PoPs left."""
        context = nova_context.get_admin_context()
        alive = self.manager.liveness.alive()
        cell = records.local_cell(context)
        with nova_context.target_cell(context, cell) as cctxt:
            self.publish(cctxt, shadow_sync._instances(cctxt), alive)
        if takeover and self.takeover is not None:
            self.takeover.run_once(context, alive)

    def publish(self, cctxt, instances, alive: set[str]) -> None:
        """Bring the ring's records in step with ``instances`` (every
        live server of this PoP's cell)."""
        refresh = self._passes % REFRESH_PASSES == 0
        self._passes += 1
        mine = {}
        for instance in instances:
            kind = kind_of(self.pop_name, instance.metadata,
                           instance.system_metadata)
            if kind is not None:
                mine[instance.uuid] = (instance, kind)
        if self._index is None:
            self._forget_deleted_while_away(mine)
        for uuid, (instance, kind) in mine.items():
            try:
                if (uuid not in self._held or refresh) and \
                        not self._confirm(cctxt, instance, alive):
                    continue
                self._publish(cctxt, instance, kind, refresh)
            except AgentUnavailable:
                raise  # the pass is over: nothing can be written
            except Exception:
                # One server's failure must not stop the others'.
                LOG.exception("Publishing the record of %s failed", uuid)
        for uuid in sorted(self._held - set(mine)):
            self._mark_deleted(uuid)
        self._publish_index(sorted(
            u for u, (_, kind) in mine.items()
            if kind == NATIVE and u in self._held), refresh)

    def _confirm(self, cctxt, instance, alive: set[str]) -> bool:
        """Whether this PoP keeps the record of ``instance``: none yet on
        the ring, or it names this PoP (or a dead PoP this copy was
        rebuilt from). A record of another live PoP hands the copy here
        to the reconcile."""
        uuid = instance.uuid
        found = self.records.server(uuid)
        holder = found.value.get('holder') if found.found else None
        rebuilt_from = instance.system_metadata.get(SYSMETA_REBUILT_FROM)
        if holder in (None, self.pop_name) or (
                holder == rebuilt_from and holder not in alive):
            self._held.add(uuid)
            return True
        self._held.discard(uuid)
        self._published.pop(uuid, None)
        if holder in alive:
            if uuid not in self._reconciling:
                LOG.info("The ring says %(holder)s keeps the record of "
                         "%(uuid)s (%(value)s); reconciling the copy here",
                         {'holder': holder, 'uuid': uuid,
                          'value': found.value})
                self._reconciling.add(uuid)
            copy = instance.obj_clone()
            copy.metadata = dict(copy.metadata,
                                 **{records.META_ORIGIN: holder})
            self.sync._reconcile_guests(cctxt, [copy], alive)
        return False

    def _publish(self, cctxt, instance, kind: str, refresh: bool) -> None:
        uuid = instance.uuid
        sysmeta = instance.system_metadata
        record = {
            'pop': (sysmeta[records.SYSMETA_FORWARDED] if kind == FORWARDED
                    else self.pop_name),
            'holder': self.pop_name,
            'origin': instance.metadata.get(records.META_ORIGIN,
                                            self.pop_name),
            'state': instance.vm_state,
            'host': instance.host,
            'name': (instance.display_name or '')[:64],
        }
        if sysmeta.get(SYSMETA_REBUILT_FROM):
            record['rebuilt_from'] = sysmeta[SYSMETA_REBUILT_FROM]
        if kind == NATIVE:
            record['spec'] = self._spec_pointer(cctxt, instance, refresh)
        if not refresh and self._published.get(uuid) == record:
            return
        self.records.put_server(uuid, dict(
            record, updated=timeutils.utcnow().isoformat()))
        self._published[uuid] = record
        LOG.debug("Published the record of %(uuid)s: %(rec)s",
                  {'uuid': uuid, 'rec': record})

    def _spec_pointer(self, cctxt, instance, refresh: bool):
        """The rebuild spec's pointer, written again when the server
        changed (and at each refresh)."""
        stamp = instance.updated_at
        known = self._specs.get(instance.uuid)
        if known is not None and known[1] == stamp and not refresh:
            return known[0]
        if instance.vm_state == vm_states.BUILDING and known is None:
            # Written once the build is done: fields still change.
            return None
        pointer = self.records.put_spec(instance.uuid,
                                        self.spec_of(cctxt, instance))
        self._specs[instance.uuid] = (pointer, stamp)
        return pointer

    def _mark_deleted(self, uuid: str) -> None:
        last = self._published.get(uuid) or {}
        self.records.put_server(uuid, {
            'pop': last.get('pop'), 'holder': self.pop_name,
            'origin': last.get('origin', self.pop_name), 'deleted': True,
            'updated': timeutils.utcnow().isoformat()})
        LOG.info("Marked the record of %s deleted", uuid)
        self._held.discard(uuid)
        self._published.pop(uuid, None)
        self._specs.pop(uuid, None)

    def _forget_deleted_while_away(self, mine: dict) -> None:
        """At the first pass: servers of our last index that are gone from
        the cell (deleted while this conductor was down) are marked
        deleted, if the ring still says this PoP keeps them."""
        listed = self.records.pop_index(self.pop_name) or []
        self._index_pages = -(-len(listed) // ring_records.PAGE_SIZE)
        for uuid in listed:
            if uuid in mine:
                continue
            found = self.records.server(uuid)
            if found.found and found.value.get('holder') == self.pop_name \
                    and not found.value.get('deleted'):
                self._published[uuid] = found.value
                self._mark_deleted(uuid)
        self._index = []

    def _publish_index(self, uuids: list[str], refresh: bool) -> None:
        if uuids == self._index and not refresh:
            return
        self._index_pages = self.records.put_pop_index(
            self.pop_name, uuids, self._index_pages)
        self._index = uuids


def start(task_manager, sync) -> PlacementIndex | None:
    """The pass of this conductor, started; None without an overlay."""
    try:
        client = agent_client()
    except AgentUnavailable as exc:
        LOG.warning("Server records are not kept on the ring: %s", exc)
        return None
    if client is None:
        LOG.warning("No [discovery_overlay] deployment_key(_file): server "
                    "records are not kept on the ring")
        return None
    from discovery_nova.conductor import takeover

    index = PlacementIndex(task_manager, sync, client,
                           takeover.Takeover(task_manager, sync,
                                             ring_records.RingRecords(
                                                 client)))
    index.start()
    LOG.info("Server records of %(pop)s kept on the ring through the agent "
             "at %(host)s:%(port)d", {'pop': task_manager.pop_name,
                                      'host': client.host,
                                      'port': client.port})
    return index
