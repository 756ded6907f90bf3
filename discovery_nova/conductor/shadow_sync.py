"""Keep the origin's records of remote servers in step, both ways.

One pass every ``[discovery_conductor] sync_interval`` seconds:
- copies the state of each forwarded server (vm/task/power state, launch
  time) from the PoP it runs at into its record here;
- carries a deletion made here to that PoP, and one made there back here;
- builds again elsewhere the servers of a PoP that left the membership
  (``rebuild_on_pop_failure``), nearest healthy PoP first, this one
  included;
- offers to the other PoPs, nearest first, a build nova left in BUILD
  for good (its compute failed it and could not give its claim back to
  reschedule it: no host, no task, and nothing will change), and puts it
  in ERROR, with a fault naming every PoP tried, when none takes it;
- reconciles the servers other PoPs forwarded to this one: a server whose
  origin says it now runs elsewhere (this PoP was down while it was
  rebuilt) or no longer exists is deleted here, so a PoP that comes back
  leaves no duplicate.

Beside it, while servers forwarded from here are still building, one
thread per PoP running some waits at that PoP (a long poll of ``describe``)
for one of them to be built or to fail, and copies its state at once: the
origin shows a server ACTIVE about when it is ACTIVE where it runs (plus
the trip back), not up to a whole ``sync_interval`` later.
"""

import threading
import time

from nova import block_device
from nova import context as nova_context
from nova import exception
from nova import objects
from nova.compute import api as compute_api
from nova.compute import power_state
from nova.compute import utils as compute_utils
from nova.compute import vm_states
import nova.conf
from oslo_log import log as logging
from oslo_utils import timeutils

from discovery_nova.conductor import candidates as candidates_mod
from discovery_nova.conductor import home_rebuild
from discovery_nova.conductor import records
from discovery_nova.conductor.portable import portable
from discovery_nova.locality.hints import HintError

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: What a record must carry to be built again at another PoP (nothing
#: may be left to lazy-load there: the object has no database at its
#: destination).
PORTABLE_ATTRS = ['flavor', 'metadata', 'system_metadata', 'info_cache',
                  'security_groups', 'pci_requests', 'numa_topology',
                  'keypairs', 'trusted_certs', 'device_metadata',
                  'vcpu_model', 'resources']
#: Seconds a server forwarded here must exist (and at least twice
#: ``forward_timeout``) before its origin's word can make this PoP delete it
#: (see ``_reconcile_guests``).
GUEST_MIN_AGE = 60
#: Fields copied from the running server into the origin's record.
MIRRORED = ('vm_state', 'task_state', 'power_state')
#: Seconds after its last build attempt failed that a build still without
#: host nor task counts as abandoned by nova (see ``_fail_stuck_builds``);
#: one marked ``SYSMETA_FAILED`` (every host here failed it) counts at once.
STUCK_BUILD_AGE = 60
#: The instance action event of a compute's build attempt.
BUILD_EVENT = 'compute__do_build_and_run_instance'
#: Seconds the PoP running servers forwarded from here may hold a poll
#: before answering that none of them changed.
LONG_POLL = 1.0


def _instances(cctxt, **filters):
    filters.setdefault('deleted', False)
    return objects.InstanceList.get_by_filters(
        cctxt, filters, expected_attrs=['metadata', 'system_metadata'])


def _age(moment) -> float:
    """Seconds since ``moment`` (naive UTC or timezone-aware)."""
    return (timeutils.utcnow() -
            timeutils.normalize_time(moment)).total_seconds()



#: Fields of a server that belong to its old build and database, not to
#: the build of it somewhere else.
NOT_PORTABLE = ('id', 'ec2_ids', 'fault', 'services', 'pci_devices',
                'migration_context', 'tags')


def as_new_build(instance):
    """A portable copy of ``instance`` reset to a build that has not
    started: no host or node, BUILDING, no task or power state."""
    copy = portable(instance, drop=NOT_PORTABLE)
    copy.host = None
    copy.node = None
    copy.launched_on = None
    copy.launched_at = None
    copy.vm_state = vm_states.BUILDING
    copy.task_state = None
    copy.power_state = power_state.NOSTATE
    return copy

def image_bdm(image_ref: str, uuid: str):
    """The root disk of an image-booted server, as nova-api makes it.

    Complete (every field set) since the object travels to another PoP,
    where nothing can be lazy-loaded.
    """
    bdm = objects.BlockDeviceMapping(
        instance_uuid=uuid, **block_device.create_image_bdm(image_ref))
    for name, field in objects.BlockDeviceMapping.fields.items():
        if name in ('id', 'instance', 'created_at', 'updated_at',
                    'deleted_at', 'deleted') or bdm.obj_attr_is_set(name):
            continue
        if field.nullable:
            setattr(bdm, name, None)
    bdm.no_device = False
    return bdm


def stored_spec_for_rebuild(spec):
    """A request spec read back from the database, ready to schedule.

    Fields nova never stores (requested resources, request-level
    parameters, destinations) are reset as nova does before it schedules
    a stored spec again.
    """
    spec.requested_resources = []
    if not spec.obj_attr_is_set('request_level_params') or \
            spec.request_level_params is None:
        spec.request_level_params = objects.RequestLevelParams()
    spec.requested_destination = None
    spec.ignore_hosts = None
    spec.reset_forced_destinations()
    spec.num_instances = 1
    return spec


class ShadowSync:
    """The periodic pass of one conductor (see the module docstring)."""

    def __init__(self, task_manager):
        self.manager = task_manager
        self.compute_api = compute_api.API()
        #: uuid -> PoP of the records seen at the last pass.
        self._known: dict[str, str] = {}
        #: uuid -> PoP of deletions not yet carried over.
        self._pending_deletes: dict[str, str] = {}
        #: uuid -> PoP of servers forwarded from here since the last pass
        #: began (under ``_watch_lock``): a record made and deleted between
        #: two passes was never in ``_known``, yet its delete must travel.
        self._forwarded_lately: dict[str, str] = {}
        #: PoPs seen alive at least once, so a PoP is never taken for
        #: dead before its conductor was ever heard of.
        self._seen_alive: set[str] = set()
        #: uuid -> the live PoPs when its rebuild last failed.
        self._failed_rebuilds: dict[str, frozenset] = {}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: uuid -> (PoP, when watched): forwarded from here, building.
        self._watched: dict[str, tuple[str, float]] = {}
        self._watch_lock = threading.Lock()
        self._wake = threading.Event()
        #: One reading-and-copying of remote states at a time, so that an
        #: older state read by one pass never overwrites a newer one.
        self._mirror_lock = threading.Lock()
        self._quick: threading.Thread | None = None
        #: PoP -> the thread waiting there for its servers to be built.
        self._pollers: dict[str, threading.Thread] = {}
        self._cell = None
        task_manager.shadow_sync = self

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='discovery-shadow-sync')
        self._thread.start()
        self._quick = threading.Thread(target=self._run_quick, daemon=True,
                                       name='discovery-building-poll')
        self._quick.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._watch_lock:
            pollers = list(self._pollers.values())
        for thread in [self._thread, self._quick] + pollers:
            if thread is not None:
                thread.join(timeout=10)

    # -- the quick poll of servers still building elsewhere ---------------

    def watch(self, uuid: str, pop: str) -> None:
        """Poll ``uuid`` (forwarded to ``pop``) until it is built."""
        with self._watch_lock:
            self._watched[uuid] = (pop, time.monotonic())
            self._forwarded_lately[uuid] = pop
        self._wake.set()

    def watched(self) -> dict[str, str]:
        with self._watch_lock:
            return {uuid: pop for uuid, (pop, _) in self._watched.items()}

    def _unwatch(self, uuids, before: float | None = None) -> None:
        """Stop polling ``uuids`` (only those watched before ``before``)."""
        with self._watch_lock:
            for uuid in uuids:
                found = self._watched.get(uuid)
                if found is not None and (before is None or
                                          found[1] < before):
                    del self._watched[uuid]

    def _run_quick(self) -> None:
        """Start a poller for each PoP running watched servers."""
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            pops = set(self.watched().values())
            with self._watch_lock:
                for pop in pops - set(self._pollers):
                    thread = threading.Thread(
                        target=self._poll_pop, args=(pop,), daemon=True,
                        name='discovery-building-poll-%s' % pop)
                    self._pollers[pop] = thread
                    thread.start()

    def _poll_pop(self, pop: str) -> None:
        """Wait at ``pop`` for its watched servers to be built, copy their
        state here, until none is left; then this thread ends."""
        context = nova_context.get_admin_context()
        while not self._stop.is_set():
            with self._watch_lock:
                uuids = [uuid for uuid, (where, _) in self._watched.items()
                         if where == pop]
                if not uuids:
                    # Under the lock: a server watched from now on finds
                    # no poller of this PoP, and _run_quick starts one.
                    del self._pollers[pop]
                    return
            if pop not in self.manager.liveness.alive():
                # The full pass takes care of a PoP that left.
                self._stop.wait(CONF.discovery_conductor.sync_interval)
                continue
            try:
                if self._cell is None:
                    self._cell = records.local_cell(context)
                with nova_context.target_cell(context, self._cell) as cctxt:
                    self.poll_building(cctxt, pop, uuids)
            except Exception as exc:
                LOG.warning("Polling %(n)d servers building at %(pop)s "
                            "failed: %(err)s",
                            {'n': len(uuids), 'pop': pop, 'err': exc})
                self._stop.wait(CONF.discovery_conductor.sync_interval)

    def poll_building(self, cctxt, pop: str, uuids: list[str]) -> None:
        """Ask ``pop`` to answer as soon as one of ``uuids`` is built (or
        failed), within LONG_POLL seconds, and copy what changed here."""
        states = self.manager.federation.call(
            cctxt, pop, 'describe',
            CONF.discovery_conductor.call_timeout + LONG_POLL,
            long_poll=True, uuids=uuids, wait=LONG_POLL)
        with self._mirror_lock:
            self._copy_built(cctxt, pop, uuids, states)

    def _copy_built(self, cctxt, pop: str, uuids: list[str],
                    states: dict) -> None:
        for uuid in uuids:
            state = states.get(uuid) or {'missing': True}
            if state.get('missing') or \
                    state.get('vm_state') == vm_states.BUILDING:
                continue
            try:
                shadow = objects.Instance.get_by_uuid(
                    cctxt, uuid, expected_attrs=['system_metadata'])
            except exception.InstanceNotFound:
                self._unwatch([uuid])
                continue
            if shadow.system_metadata.get(records.SYSMETA_FORWARDED) == pop:
                try:
                    self._copy_state(shadow, state, pop)
                except exception.InstanceNotFound:
                    pass  # deleted meanwhile
            self._unwatch([uuid])

    def _run(self) -> None:
        while not self._stop.wait(CONF.discovery_conductor.sync_interval):
            try:
                self.run_once()
            except Exception:
                LOG.exception("Shadow record sync pass failed")

    # -- one pass ----------------------------------------------------------

    def run_once(self) -> None:
        started = time.monotonic()
        context = nova_context.get_admin_context()
        cell = records.local_cell(context)
        alive = self.manager.liveness.alive()
        self._seen_alive |= alive
        cctxt = records.cell_context(context, cell)
        # Taken before the records are read: each of these is either read
        # below or gone (deleted, or moved home) before the read.
        with self._watch_lock:
            lately, self._forwarded_lately = self._forwarded_lately, {}
        everything = _instances(cctxt)
        shadows = [i for i in everything
                   if records.SYSMETA_FORWARDED in i.system_metadata]
        # Watched, but no longer a building record of a server
        # forwarded from here (deleted meanwhile): no more polling.
        building = {i.uuid for i in shadows
                    if i.vm_state == vm_states.BUILDING}
        self._unwatch(set(self.watched()) - building, before=started)
        guests = [i for i in everything
                  if i.metadata.get(records.META_ORIGIN) not in
                  (None, self.manager.pop_name)
                  and records.SYSMETA_FORWARDED not in
                  i.system_metadata]
        self._carry_deletes(cctxt, {i.uuid for i in shadows}, lately)
        by_pop: dict[str, list] = {}
        for shadow in shadows:
            by_pop.setdefault(shadow.system_metadata[
                records.SYSMETA_FORWARDED], []).append(shadow)
        for pop, group in by_pop.items():
            if pop in alive:
                self._mirror(cctxt, pop, group)
            elif self._known_dead(pop):
                self._pop_failed(cctxt, pop, group)
            else:
                for shadow in group:
                    self._known[shadow.uuid] = pop
        self._fail_stuck_builds(cctxt, everything)
        self._reconcile_guests(cctxt, guests, alive)

    def _carry_deletes(self, cctxt, present: set[str],
                       lately: dict[str, str]) -> None:
        """Ask the PoP of each forwarded server no longer recorded here
        to delete it: those seen at the last pass and those forwarded
        since it began."""
        for uuid, pop in {**lately, **self._known}.items():
            if uuid not in present:
                self._pending_deletes[uuid] = pop
        for uuid, pop in list(self._pending_deletes.items()):
            instance = records.find_row(cctxt, uuid)
            if instance is not None and not instance.deleted:
                del self._pending_deletes[uuid]  # moved, not deleted
                continue
            if records.delete_remote(self.manager, cctxt, pop, [uuid]):
                LOG.info("Deleted %(uuid)s at %(pop)s, as it was deleted "
                         "here", {'uuid': uuid, 'pop': pop})
                del self._pending_deletes[uuid]
        self._known = {}

    def _mirror(self, cctxt, pop: str, shadows: list) -> None:
        with self._mirror_lock:
            self._mirror_locked(cctxt, pop, shadows)

    def _mirror_locked(self, cctxt, pop: str, shadows: list) -> None:
        try:
            states = self.manager.federation.call(
                cctxt, pop, 'describe',
                CONF.discovery_conductor.call_timeout,
                uuids=[s.uuid for s in shadows])
        except Exception as exc:
            LOG.warning("Could not read the state of %(n)d servers at "
                        "%(pop)s: %(err)s",
                        {'n': len(shadows), 'pop': pop, 'err': exc})
            for shadow in shadows:
                self._known[shadow.uuid] = pop
            return
        for shadow in shadows:
            state = states.get(shadow.uuid) or {'missing': True}
            if state.get('missing'):
                if shadow.vm_state == vm_states.BUILDING:
                    self._known[shadow.uuid] = pop
                    continue  # not yet created there
                LOG.info("%(uuid)s no longer exists at %(pop)s; deleting "
                         "its record here", {'uuid': shadow.uuid,
                                             'pop': pop})
                self.compute_api.delete(cctxt, shadow)
                continue
            self._known[shadow.uuid] = pop
            try:
                self._copy_state(shadow, state, pop)
            except exception.InstanceNotFound:
                continue  # deleted meanwhile: carried over next pass
            if shadow.vm_state == vm_states.BUILDING:
                self.watch(shadow.uuid, pop)  # e.g. after a restart
            else:
                self._unwatch([shadow.uuid])

    @staticmethod
    def _copy_state(shadow, state: dict, pop: str) -> None:
        """Copy what ``describe`` said of a server into its record here;
        a server failed there gets its fault here too."""
        failed = shadow.vm_state != vm_states.ERROR and \
            state.get('vm_state') == vm_states.ERROR
        changed = False
        for field in MIRRORED:
            if getattr(shadow, field) != state.get(field):
                setattr(shadow, field, state.get(field))
                changed = True
        launched = state.get('launched_at')
        if launched and shadow.launched_at is None:
            shadow.launched_at = timeutils.parse_isotime(launched)
            changed = True
        if changed:
            shadow.save()
        if failed and state.get('fault'):
            objects.InstanceFault(
                context=shadow._context, instance_uuid=shadow.uuid,
                code=500, message=state['fault'][:255],
                details='as recorded at PoP %s, where it was built' % pop,
                host=CONF.host).create()

    # -- builds nova abandoned ----------------------------------------------

    def _fail_stuck_builds(self, cctxt, instances: list) -> None:
        """Another PoP, or ERROR with a fault, for the builds nova
        abandoned in BUILD.

        When a compute fails a build and then cannot give its claim back
        to placement, nova neither reschedules nor fails the instance: it
        stays building, without host nor task, for good. Such a build whose
        last attempt ended in error a while ago is offered to the other
        PoPs if it was asked here (``_offer_abandoned``); one forwarded
        here by another PoP, or one no PoP takes, is failed here, where
        the user sees it (and its origin, through the mirror, if
        forwarded).
        """
        for instance in instances:
            if instance.vm_state != vm_states.BUILDING or instance.host \
                    or instance.task_state is not None \
                    or records.SYSMETA_FORWARDED in instance.system_metadata:
                continue
            failed = instance.system_metadata.get(records.SYSMETA_FAILED)
            if failed is None:
                if _age(instance.updated_at or instance.created_at) < \
                        STUCK_BUILD_AGE:
                    continue
                host = self._failed_build_host(cctxt, instance.uuid)
                if host is None:
                    continue
                failed = 'build at %s failed, not rescheduled by nova' % host
            reason = ('%s (see the compute\'s log)' % failed)
            fault = exception.BuildAbortException(
                instance_uuid=instance.uuid, reason=reason)
            self.manager.release_claim(cctxt, instance.uuid)
            if instance.metadata.get(records.META_ORIGIN) in (
                    None, self.manager.pop_name):
                taker, fault = self._offer_abandoned(cctxt, instance,
                                                     failed, fault)
                if fault is None:
                    continue  # built elsewhere now, or offered later
            LOG.warning("Build of %(uuid)s abandoned by nova: %(why)s; "
                        "setting it to ERROR",
                        {'uuid': instance.uuid, 'why': fault})
            instance.vm_state = vm_states.ERROR
            instance.save()
            compute_utils.add_instance_fault_from_exc(cctxt, instance, fault)

    def _offer_abandoned(self, cctxt, instance, failure: str, fault):
        """Offer a build nova abandoned here (``failure`` says how) to the
        other PoPs, nearest first from its hints' reference.

        Returns the PoP that took it and None (its record here is turned
        into that of a server forwarded there); or None and the fault to
        fail it with: ``fault`` when it cannot be offered, else one that
        names every PoP tried and its answer; or None and None when a PoP
        answered busy: it is offered again at a later pass (building here
        meanwhile).
        """
        if self.manager.federation is None or self.manager.liveness is None:
            return None, fault
        try:
            spec, plan = self._plan_offers(cctxt, instance.uuid)
        except HintError as exc:
            return None, exception.BuildAbortException(
                instance_uuid=instance.uuid, reason=str(exc))
        local = [c for c in plan.candidates if c.local] or [
            candidates_mod.Candidate(self.manager.pop_name, 0.0, 0.0,
                                     True)]
        attempts = [records.Attempt(local[0], False, failure)]
        asked = records.networks_of(instance)
        networks = records.networks_from_record(asked)
        taker, busy = self._offer_around(
            cctxt, instance, spec, plan, attempts, networks,
            lambda candidate, image: None,
            'Offering the abandoned build of')
        if taker is None:
            if busy:
                LOG.info("Abandoned build of %(uuid)s: %(busy)s busy, "
                         "offering it again at the next pass",
                         {'uuid': instance.uuid, 'busy': ', '.join(busy)})
                return None, None
            records.record_trail(cctxt, instance.uuid, attempts)
            return None, exception.NoValidHost(
                reason=records.summary(plan, attempts))
        instance.availability_zone = taker  # (host and node are None)
        instance.task_state = None
        instance.metadata = dict(instance.metadata, **{
            records.META_POP: taker,
            records.META_ORIGIN: self.manager.pop_name})
        sysmeta = dict(instance.system_metadata, **{
            records.SYSMETA_FORWARDED: taker,
            records.SYSMETA_NETWORKS: asked})
        sysmeta.pop(records.SYSMETA_FAILED, None)
        instance.system_metadata = sysmeta
        instance.save()
        records.record_trail(cctxt, instance.uuid, attempts)
        self.watch(instance.uuid, taker)
        LOG.warning("Build of %(uuid)s failed here (%(why)s); %(pop)s "
                    "builds it instead", {'uuid': instance.uuid,
                                          'why': failure, 'pop': taker})
        return taker, None

    @staticmethod
    def _failed_build_host(cctxt, uuid: str) -> str | None:
        """The host of the last build attempt of ``uuid`` if it ended in
        error at least STUCK_BUILD_AGE ago, else None."""
        for action in objects.InstanceActionList.get_by_instance_uuid(
                cctxt, uuid):
            if action.action != 'create':
                continue
            builds = [e for e in objects.InstanceActionEventList.
                      get_by_action(cctxt, action.id)
                      if e.event == BUILD_EVENT]
            if not builds:
                return None
            last = max(builds, key=lambda e: (e.start_time, e.id))
            if last.finish_time is not None and last.result == 'Error' \
                    and _age(last.finish_time) >= STUCK_BUILD_AGE:
                return last.host or 'its compute'
            return None
        return None

    # -- a PoP died ----------------------------------------------------------

    def _known_dead(self, pop: str) -> bool:
        """A PoP not in the membership counts as dead once it was seen
        leaving, or once this conductor has listened longer than a few
        membership timeouts (it may have died while we were down)."""
        if pop in self._seen_alive:
            return True
        grace = 3 * CONF.discovery_overlay.membership_timeout
        return time.monotonic() - self._started > grace

    def _pop_failed(self, cctxt, dead: str, shadows: list) -> None:
        alive = frozenset(self.manager.liveness.alive())
        pending = [s for s in shadows
                   if self._failed_rebuilds.get(s.uuid) != alive]
        if pending:
            LOG.warning("PoP %(dead)s is not in the membership: %(n)d "
                        "server(s) it ran for this PoP to rebuild elsewhere",
                        {'dead': dead, 'n': len(pending)})
        for shadow in shadows:
            if self._failed_rebuilds.get(shadow.uuid) == alive:
                # Tried with these very PoPs already: wait for a change.
                self._known[shadow.uuid] = dead
                continue
            if not CONF.discovery_conductor.rebuild_on_pop_failure:
                if shadow.vm_state != vm_states.ERROR:
                    shadow.vm_state = vm_states.ERROR
                    shadow.save()
                self._known[shadow.uuid] = dead
                continue
            new_pop, again = self._rebuild_elsewhere(cctxt, shadow, dead)
            if new_pop != self.manager.pop_name:
                # (Built here, it is no longer a record of a remote server.)
                self._known[shadow.uuid] = new_pop or dead
            if new_pop is None and not again:
                self._failed_rebuilds[shadow.uuid] = alive
            else:
                self._failed_rebuilds.pop(shadow.uuid, None)

    def _plan_offers(self, cctxt, uuid: str, dead: str | None = None):
        """The stored request spec of ``uuid`` and its ranked PoPs: every
        live PoP but ``dead`` when its PoP died (the neighbourhood that
        chose it is gone), else as a new build of it would rank them
        (``rank``). Raises HintError."""
        from discovery_nova.scheduler import aggregates
        from discovery_nova.scheduler.request import prefix_table

        spec = stored_spec_for_rebuild(
            objects.RequestSpec.get_by_instance_uuid(cctxt, uuid))
        directory = aggregates.DIRECTORY.get(cctxt, 0)
        hints = dict(spec.scheduler_hints or {})
        if dead is None:
            return spec, self.manager.rank(hints, directory.pops)
        plan = candidates_mod.plan(
            hints, self.manager.pop_name, directory.pops, prefix_table(),
            CONF.discovery_scheduler.rtt_error_weight,
            CONF.discovery_scheduler.max_trusted_error,
            alive=self.manager.liveness.alive() - {dead})
        return spec, plan

    def _offer_around(self, cctxt, row, spec, plan, attempts: list,
                      networks, here, label: str):
        """Offer ``row`` (a server of this cell) as a new build to the PoPs
        of ``plan`` in turn; ``here(candidate)`` answers for this PoP
        (None: skip it). Returns the PoP that took it or None, and the
        PoPs that were busy; ``attempts`` grows by each answer."""
        full = objects.Instance.get_by_uuid(cctxt, row.uuid,
                                            expected_attrs=PORTABLE_ATTRS)
        instance = as_new_build(full)
        instance.metadata = {k: v for k, v in row.metadata.items()
                             if k != records.META_POP}
        instance.system_metadata = {
            k: v for k, v in row.system_metadata.items()
            if k not in (records.SYSMETA_FORWARDED,
                         records.SYSMETA_NETWORKS)}
        image = objects.base.obj_to_primitive(spec.image) \
            if spec.obj_attr_is_set('image') and spec.image else {}
        bdms = objects.BlockDeviceMappingList(
            objects=[image_bdm(row.image_ref, row.uuid)])
        LOG.info("%(what)s %(uuid)s: candidates %(pops)s",
                 {'what': label, 'uuid': row.uuid,
                  'pops': ', '.join(c.describe() for c in plan.candidates)})
        busy = []
        for candidate in plan.candidates:
            if candidate.local:
                answer = here(candidate, image)
                if answer is None:
                    continue
                accepted, reason = answer
                attempts.append(records.Attempt(candidate, accepted,
                                                reason))
                if accepted:
                    return candidate.pop, busy
                continue
            answer = self.manager._offer_instance(
                cctxt, candidate.pop, instance, spec, image, networks, bdms)
            if answer.get('busy'):
                busy.append(candidate.pop)
                continue
            accepted = bool(answer.get('accepted'))
            attempts.append(records.Attempt(candidate, accepted,
                                            answer.get('reason', '')))
            if accepted:
                return candidate.pop, busy
        return None, busy

    def _rebuild_elsewhere(self, cctxt, shadow,
                           dead: str) -> tuple[str | None, bool]:
        """Offer ``shadow`` to the nearest healthy PoPs: the taker (or
        None), and whether to try again at the next pass (a PoP was busy).

        This PoP (its origin) is one of them, in its rank: there the
        record itself becomes a local build (``home_rebuild``), since
        its UUID is taken here.
        """
        try:
            spec, plan = self._plan_offers(cctxt, shadow.uuid, dead)
        except HintError as exc:
            LOG.warning("Cannot rebuild %(uuid)s: %(err)s",
                        {'uuid': shadow.uuid, 'err': exc})
            return None, False
        networks = records.networks_from_record(
            shadow.system_metadata.get(records.SYSMETA_NETWORKS))
        attempts = [records.Attempt(
            candidates_mod.Candidate(dead, float('inf'), float('inf'),
                                     False), False,
            'PoP %s left the membership; rebuilding elsewhere' % dead)]

        def here(candidate, image):
            return home_rebuild.build_at_origin(
                self.manager, cctxt, shadow, spec, image, networks, dead,
                candidate, list(attempts))

        taker, busy = self._offer_around(
            cctxt, shadow, spec, plan, attempts, networks, here,
            'Rebuilding, from dead PoP %s,' % dead)
        if taker == self.manager.pop_name:
            return taker, False  # (its trail recorded by build_at_origin)
        if taker is not None:
            shadow.availability_zone = taker
            shadow.metadata = dict(shadow.metadata, **{
                records.META_POP: taker})
            shadow.system_metadata = dict(shadow.system_metadata, **{
                records.SYSMETA_FORWARDED: taker})
            shadow.vm_state = vm_states.BUILDING
            shadow.task_state = None
            shadow.save()
            records.record_trail(cctxt, shadow.uuid, attempts)
            LOG.warning("PoP %(dead)s left: %(uuid)s rebuilt at "
                        "%(pop)s", {'dead': dead, 'uuid': shadow.uuid,
                                    'pop': taker})
            return taker, False
        if busy:
            LOG.info("Rebuilding %(uuid)s of %(dead)s: %(busy)s busy, "
                     "trying again at the next pass",
                     {'uuid': shadow.uuid, 'dead': dead,
                      'busy': ', '.join(busy)})
            return None, True
        LOG.warning("Could not rebuild %(uuid)s of %(dead)s: %(why)s",
                    {'uuid': shadow.uuid, 'dead': dead,
                     'why': records.summary(plan, attempts)})
        shadow.vm_state = vm_states.ERROR
        shadow.save()
        records.record_trail(cctxt, shadow.uuid, attempts)
        return None, False

    # -- servers other PoPs forwarded here ------------------------------------

    def _reconcile_guests(self, cctxt, guests: list, alive: set) -> None:
        by_origin: dict[str, list] = {}
        for guest in guests:
            by_origin.setdefault(guest.metadata[records.META_ORIGIN],
                                 []).append(guest)
        for origin, group in by_origin.items():
            if origin not in alive:
                continue
            try:
                owners = self.manager.federation.call(
                    cctxt, origin, 'owner_of',
                    CONF.discovery_conductor.call_timeout,
                    uuids=[g.uuid for g in group])
            except Exception as exc:
                LOG.debug("Could not reconcile with %(pop)s: %(err)s",
                          {'pop': origin, 'err': exc})
                continue
            for guest in group:
                owner = owners.get(guest.uuid, 'unknown')
                if owner == self.manager.pop_name or owner == 'unknown':
                    continue
                # The origin records where a server went only once that
                # PoP accepted it: for a moment it still names the PoP it
                # left (dead). Only a live other PoP, or a delete, counts;
                # and a guest younger than a few passes is left alone.
                if owner != 'deleted' and owner not in alive:
                    continue
                min_age = max(GUEST_MIN_AGE,
                              2 * CONF.discovery_conductor.forward_timeout)
                if guest.created_at and _age(guest.created_at) < min_age:
                    continue
                if owner == 'deleted':
                    LOG.info("%(uuid)s was deleted at its origin "
                             "%(origin)s; deleting it here",
                             {'uuid': guest.uuid, 'origin': origin})
                else:
                    LOG.warning("%(uuid)s runs at %(owner)s now (origin "
                                "%(origin)s says); deleting the copy here",
                                {'uuid': guest.uuid, 'owner': owner,
                                 'origin': origin})
                self.compute_api.delete(cctxt, guest)
