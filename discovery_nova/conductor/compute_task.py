"""Nova's ComputeTaskManager, with builds forwarded to other PoPs.

``schedule_and_build_instances`` is where nova-conductor asks the scheduler
for hosts and, on NoValidHost, buries the instances in cell0. Here the
request's PoPs are ranked first (``candidates.plan``); the local PoP is
tried in its turn through nova's own code path, and a remote PoP through
``offer_build`` on its conductor, until one accepts. Only when every PoP
declined (or the deadline passed) is the instance buried, with a fault that
lists each PoP tried and why. Everything else (rebuild, migrate, unshelve)
is nova's code unchanged.

The offers run in a pool of our own (``offers``), never in the RPC thread
that received the build: nova's RPC threads stay free for the computes'
conductor calls however slow the other PoPs answer.
"""

import threading
import time

from nova import context as nova_context
from nova import exception
from nova import objects
from nova.compute import utils as compute_utils
from nova.compute import vm_states
from nova.conductor import manager as nova_manager
import nova.conf
from nova.db.main import api as nova_db
from oslo_log import log as logging
import oslo_messaging as messaging

from discovery_nova.conductor import candidates as candidates_mod
from discovery_nova.conductor import offers
from discovery_nova.conductor import records
from discovery_nova.conductor.portable import portable
from discovery_nova.locality import hints as hints_mod
from discovery_nova.locality.hints import HintError
from discovery_nova.locality.reference import client_measurements

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF


def note_networks(instance, requested_networks) -> None:
    """Keep in ``instance`` the networks its build asks for: nova keeps
    them nowhere, and building it again at another PoP (after a failed
    build, or when its PoP died) needs them (``records.networks_of``)."""
    instance.system_metadata = dict(
        instance.system_metadata or {},
        **{records.SYSMETA_NETWORKS: records.networks_record(
            requested_networks)})


class ForwardingComputeTaskManager(nova_manager.ComputeTaskManager):
    """ComputeTaskManager whose builds may end at another PoP."""

    def __init__(self):
        super().__init__()
        self._federation = None
        self.liveness = None
        #: This PoP's spiral-search neighbours (``neighbours``), set with
        #: the federation; None ranks every live PoP of the directory.
        self.neighbours = None
        #: The record sync, told of each server forwarded from here.
        self.shadow_sync = None
        self.pop_name = CONF.discovery.pop_name
        self._precomputed: dict[tuple, list] = {}
        self._lock = threading.Lock()
        self._pool: offers.ForwardPool | None = None
        self._slots: offers.PopSlots | None = None
        self._gate: offers.AcceptGate | None = None

    @property
    def federation(self):
        """Set by DiscoveryConductorManager once the federation is up;
        the forwarding pool starts with it and stops before it."""
        return self._federation

    @federation.setter
    def federation(self, federation) -> None:
        self._federation = federation
        if federation is None or self._pool is not None:
            return
        opts = CONF.discovery_conductor
        self._slots = offers.PopSlots(opts.max_offers_per_pop)
        self._gate = offers.AcceptGate(opts.max_accepts_in_flight)
        self._pool = offers.ForwardPool(opts.forward_workers)
        federation.before_stop(self.stop_forwarding)

    def stop_forwarding(self) -> None:
        """Refuse the builds still waiting for a PoP (the conductor
        stops): each ends in ERROR with its fault, none stays building."""
        pool, self._pool = self._pool, None
        if pool is not None:
            left = pool.stop()
            if left:
                LOG.warning("Conductor stopping: %d build(s) waiting for "
                            "another PoP were refused", left)

    # -- scheduling, with results computed ahead -------------------------

    def _schedule_instances(self, context, request_spec,
                            instance_uuids=None, return_alternates=False):
        """nova's, unless this request was already scheduled by us."""
        with self._lock:
            found = self._precomputed.pop(tuple(instance_uuids or ()), None)
        if found is not None:
            return found
        return super()._schedule_instances(
            context, request_spec, instance_uuids, return_alternates)

    def release_claim(self, context, uuid: str) -> None:
        """Give back what placement holds for ``uuid``; a failure is
        logged, not raised (the caller is cleaning up already)."""
        try:
            self.report_client.delete_allocation_for_instance(
                context, uuid, force=True)
        except Exception as exc:
            LOG.warning("Could not release the allocations of %(uuid)s: "
                        "%(err)s", {'uuid': uuid, 'err': exc})

    def _try_local(self, context, request_spec, uuids):
        """Host lists for ``uuids`` here, or the reason there are none.

        Any failure of the scheduling counts as this PoP not placing them
        (nova buries the build on one; we try the other PoPs): e.g. the
        scheduler's claim failing on a placement conflict. What it may
        have claimed is released first.
        """
        try:
            host_lists = super()._schedule_instances(
                context, request_spec, uuids, return_alternates=True)
        except exception.NoValidHost as exc:
            return None, exc.format_message()
        except Exception as exc:
            LOG.warning("Scheduling %(uuids)s at %(pop)s failed: %(err)s",
                        {'uuids': uuids, 'pop': self.pop_name, 'err': exc})
            for uuid in uuids:
                self.release_claim(context, uuid)
            # Short: nova keeps 255 characters of the fault of a refused
            # build, which names every PoP's answer (the log has the rest).
            return None, 'scheduling failed: %s' % type(exc).__name__
        return host_lists, None

    def _build_here(self, context, host_lists, build_requests,
                    request_specs, *args, **kwargs):
        """nova's build path with ``host_lists`` already claimed."""
        uuids = tuple(spec.instance_uuid for spec in request_specs)
        with self._lock:
            self._precomputed[uuids] = host_lists
        try:
            nova_manager.ComputeTaskManager.schedule_and_build_instances(
                self, context, build_requests, request_specs, *args,
                **kwargs)
        finally:
            with self._lock:
                self._precomputed.pop(uuids, None)

    # -- a build every host here failed ----------------------------------

    def _cleanup_when_reschedule_fails(self, context, instance, exc,
                                       legacy_request_spec,
                                       requested_networks):
        """nova's, unless another PoP may take the build.

        When the computes here failed a build and no alternate host is
        left (``MaxRetriesExceeded``, or no host on a reschedule), nova
        puts it in ERROR. A build asked at this PoP is instead left as
        nova leaves a build it abandoned (building, no host nor task, its
        claim and ports released), marked ``SYSMETA_FAILED`` with why;
        the record pass then offers it to the other PoPs, nearest first, and
        fails it with a fault naming every PoP tried when none takes it
        (``ShadowSync._fail_stuck_builds``).
        """
        # (metadata may not have come with the compute's copy: loaded.)
        own = instance.metadata.get(records.META_ORIGIN) in (
            None, self.pop_name)
        if (self.federation is None or not own or not isinstance(
                exc, (exception.MaxRetriesExceeded,
                      exception.NoValidHost))):
            return super()._cleanup_when_reschedule_fails(
                context, instance, exc, legacy_request_spec,
                requested_networks)
        LOG.warning("No host of %(pop)s could build %(uuid)s (%(err)s); "
                    "it will be offered to the other PoPs",
                    {'pop': self.pop_name, 'uuid': instance.uuid,
                     'err': exc})
        self._cleanup_allocated_networks(context, instance,
                                         requested_networks)
        self.release_claim(context, instance.uuid)
        instance.vm_state = vm_states.BUILDING
        instance.task_state = None
        why = exc.format_message() if hasattr(exc, 'format_message') \
            else str(exc)
        instance.system_metadata = dict(instance.system_metadata, **{
            records.SYSMETA_FAILED: ('no host of %s could build it: %s'
                                     % (self.pop_name, why))[:255]})
        instance.save()
        compute_utils.add_instance_fault_from_exc(context, instance, exc)

    # -- the build entry point -------------------------------------------

    def _plan(self, request_spec):
        """Ranked candidate PoPs, None to leave it all to nova, or the
        HintError of a malformed hint."""
        if self.federation is None or self.liveness is None:
            return None
        from discovery_nova.scheduler import aggregates

        context = request_spec._context
        directory = aggregates.DIRECTORY.get(
            context, CONF.discovery_scheduler.pop_refresh_interval)
        hints = dict(request_spec.scheduler_hints or {}) if \
            request_spec.obj_attr_is_set('scheduler_hints') else {}
        try:
            return self.rank(hints, directory.pops)
        except HintError as exc:
            # Refused here rather than by the scheduler: a full PoP's
            # scheduler never reaches its filters (placement has no
            # candidates) and would fail it without naming the hint.
            LOG.info("Request for %(uuid)s refused: %(err)s",
                     {'uuid': request_spec.instance_uuid, 'err': exc})
            return exc

    def rank(self, hints: dict, pops) -> candidates_mod.Plan:
        """The live PoPs a build may go to, ranked for its hints: those
        the overlay's spiral search finds nearest to the build's reference
        point (``spiral_pops``) or, when none of them but this PoP is
        eligible for the hints, every live PoP of the directory. Raises
        HintError for a malformed hint."""
        from discovery_nova.scheduler.request import prefix_table

        def ranked(alive):
            return candidates_mod.plan(
                hints, self.pop_name, pops, prefix_table(),
                CONF.discovery_scheduler.rtt_error_weight,
                CONF.discovery_scheduler.max_trusted_error, alive=alive)

        alive = set(self.liveness.alive())
        near = self.spiral_pops(hints, pops)
        if near:
            plan = ranked(alive & (near | {self.pop_name}))
            if any(not c.local for c in plan.candidates):
                return plan
        return ranked(alive)

    def spiral_pops(self, hints: dict, pops) -> frozenset[str] | None:
        """The PoPs the overlay's spiral search finds nearest to a build's
        reference point: this PoP's own neighbours for a build without a
        reference hint (it overflows from here); for ``near`` (a PoP) or
        ``near_ip`` (mapped to a PoP), a search from here for the PoPs
        nearest to that PoP's coordinate, which includes it.

        None (rank every live PoP) without an agent or an answer from it,
        and for a build that names its PoPs (``pop=``): the user chose
        them, not the spiral.
        """
        from discovery_nova.scheduler.request import prefix_table

        if self.neighbours is None:
            return None
        # As nova stores them: each hint a list of strings.
        parsed = hints_mod.parse_hints(hints)
        if parsed.pops is not None:
            return None
        reference = None
        # PoPs that measured the RTT to a near_ip client's prefix: the
        # plan ranks them by it (resolve_reference), so they are searched.
        measured: frozenset[str] = frozenset()
        if parsed.near is not None:
            reference = parsed.near
            if reference not in pops:
                return None  # a host; or unknown, which the plan refuses
        elif parsed.near_ip is not None:
            reference = prefix_table().lookup(parsed.near_ip)
            measured = frozenset(client_measurements(
                pops, prefix_table(), parsed.near_ip))
        if reference is None or reference == self.pop_name:
            names = self.neighbours.names()
            return None if names is None else names | measured
        coordinate = pops[reference].coordinate if reference in pops \
            else None
        if coordinate is None:
            return None
        found = self.neighbours.near_point(reference, coordinate.to_wire())
        return None if found is None else found | {reference} | measured

    def schedule_and_build_instances(self, context, build_requests,
                                     request_specs, image, admin_password,
                                     injected_files, requested_networks,
                                     block_device_mapping, tags=None):
        build_args = (image, admin_password, injected_files,
                      requested_networks, block_device_mapping)
        for build_request in build_requests:
            note_networks(build_request.instance, requested_networks)
        plan = self._plan(request_specs[0])
        if isinstance(plan, HintError):
            self._bury_in_cell0(context, request_specs[0],
                                exception.NoValidHost(reason=str(plan)),
                                build_requests=build_requests,
                                block_device_mapping=block_device_mapping,
                                tags=tags)
            return None
        if plan is None or (plan.local_first and len(plan.candidates) == 1):
            return nova_manager.ComputeTaskManager.\
                schedule_and_build_instances(
                    self, context, build_requests, request_specs,
                    *build_args, tags=tags)
        uuids = [spec.instance_uuid for spec in request_specs]
        local_reason = None
        if plan.local_first:
            host_lists, local_reason = self._try_local(
                context, request_specs[0], uuids)
            if host_lists is not None:
                return self._build_here(context, host_lists, build_requests,
                                        request_specs, *build_args,
                                        tags=tags)
            LOG.info("No valid host at %(pop)s for %(uuids)s (%(why)s); "
                     "offering to other PoPs",
                     {'pop': self.pop_name, 'uuids': uuids,
                      'why': local_reason})
        deadline = time.monotonic() + \
            CONF.discovery_conductor.forward_deadline
        for build_request, request_spec in zip(build_requests,
                                               request_specs,
                                               strict=True):
            self._forward_later(context, plan, local_reason, build_request,
                                request_spec, build_args, tags, deadline)

    def _forward_later(self, context, plan, local_reason, build_request,
                       request_spec, build_args, tags,
                       deadline: float) -> None:
        """Hand one instance to the forwarding pool: its PoPs are tried
        there, nearest first, and this (RPC) thread returns at once."""
        (image, admin_password, injected_files, requested_networks,
         block_device_mapping) = build_args
        uuid = request_spec.instance_uuid

        def attempts(outcomes):
            return [records.Attempt(o.candidate, o.accepted, o.reason)
                    for o in outcomes]

        def try_local():
            host_lists, reason = self._try_local(context, request_spec,
                                                 [uuid])
            if host_lists is None:
                return False, reason
            self._build_here(context, host_lists, [build_request],
                             [request_spec], *build_args, tags=tags)
            return True, 'placed here'

        def offer(pop):
            return offers.Answer.from_wire(self._offer(
                context, pop, build_request, request_spec, image,
                admin_password, injected_files, requested_networks,
                block_device_mapping, tags))

        def accept(candidate, answer, outcomes):
            try:
                records.record_forwarded(
                    self, context, build_request, request_spec,
                    candidate.pop, answer.host, attempts(outcomes),
                    requested_networks, tags)
            except Exception as exc:
                # Its origin could not record it: the copy there goes,
                # and the user sees why here.
                LOG.exception("Recording %(uuid)s as running at %(pop)s "
                              "failed", {'uuid': uuid, 'pop': candidate.pop})
                records.delete_remote(self, context, candidate.pop, [uuid])
                why = 'accepted, but recording it at %s failed: %s: %s' % (
                    self.pop_name, type(exc).__name__, exc)
                refuse([offers.Outcome(candidate, False, why)
                        if o.candidate == candidate else o
                        for o in outcomes])
                return
            if self.shadow_sync is not None:
                self.shadow_sync.watch(uuid, candidate.pop)

        def placed_here(outcomes):
            records.record_attempts_at_home(context, uuid,
                                            attempts(outcomes))

        def refuse(outcomes):
            found = attempts(outcomes)
            reason = records.summary(plan, found)
            LOG.warning("Instance %(uuid)s placed nowhere: %(reason)s",
                        {'uuid': uuid, 'reason': reason})
            self._bury_in_cell0(context, request_spec,
                                exception.NoValidHost(reason=reason),
                                build_requests=[build_request],
                                block_device_mapping=block_device_mapping,
                                tags=tags)
            records.record_attempts_in_cell0(context, uuid, found)

        walk = offers.Walk(
            plan.candidates, try_local=try_local, offer=offer,
            accept=accept, placed_here=placed_here, refuse=refuse,
            slots=self._slots,
            max_remote=CONF.discovery_conductor.max_forward_attempts,
            deadline=deadline, local_reason=local_reason,
            label='instance %s' % uuid)
        pool = self._pool
        try:
            if pool is None:
                raise RuntimeError('no forwarding pool')
            pool.submit(walk)
        except RuntimeError:
            walk.abandon('the conductor is stopping')

    def _offer(self, context, pop, build_request, request_spec, image,
               admin_password, injected_files, requested_networks,
               block_device_mapping, tags) -> dict:
        """One remote PoP's answer for a new build."""
        spec = portable(request_spec)
        spec.num_instances = 1
        return self._offer_instance(
            context, pop, portable(build_request.instance), spec, image,
            requested_networks, block_device_mapping, tags=tags,
            admin_password=admin_password, injected_files=injected_files)

    def _offer_instance(self, context, pop, instance, request_spec, image,
                        requested_networks, block_device_mapping, tags=None,
                        admin_password=None, injected_files=None) -> dict:
        """Offer ``instance`` to ``pop``; a timeout or failure declines."""
        timeout = CONF.discovery_conductor.forward_timeout
        try:
            return self.federation.call(
                context, pop, 'offer_build', timeout,
                instance=instance, request_spec=portable(request_spec),
                image=image, admin_password=admin_password,
                injected_files=injected_files or [],
                requested_networks=requested_networks,
                block_device_mapping=block_device_mapping,
                tags=tags, origin=self.pop_name)
        except messaging.MessagingTimeout:
            return {'accepted': False,
                    'reason': 'no answer within %.0f s' % timeout}
        except Exception as exc:
            LOG.warning("Offering %(uuid)s to %(pop)s failed: %(err)s",
                        {'uuid': instance.uuid, 'pop': pop, 'err': exc})
            return {'accepted': False,
                    'reason': '%s: %s' % (type(exc).__name__, exc)}

    # -- the accepting side ----------------------------------------------

    def _known_here(self, context, uuid: str) -> bool:
        """Whether ``uuid`` is a live server (or a build) of this PoP.

        What an earlier offer of the same server left behind is cleared
        instead: a mapping without cell nor build request (a crash between
        its steps), or a deleted copy (a build that failed half-way, or a
        copy removed when the server moved on). nova keeps deleted rows,
        whose UUID would block a new copy, until they are archived; they
        are archived here as ``nova-manage db archive_deleted_rows`` does.
        """
        cell = records.local_cell(context)
        try:
            mapping = objects.InstanceMapping.get_by_instance_uuid(context,
                                                                  uuid)
        except exception.InstanceMappingNotFound:
            mapping = None
        if mapping is not None and mapping.cell_mapping is None:
            try:
                objects.BuildRequest.get_by_instance_uuid(context, uuid)
                return True
            except exception.BuildRequestNotFound:
                pass
        with nova_context.target_cell(context, cell) as cctxt:
            row = records.find_row(cctxt, uuid)
            if row is not None and not row.deleted:
                return True
            if row is not None:
                self._archive_deleted(cctxt, uuid)
        if mapping is not None:
            LOG.info("Removing the records of an earlier copy of %s", uuid)
            try:
                objects.RequestSpec.get_by_instance_uuid(context,
                                                         uuid).destroy()
            except exception.RequestSpecNotFound:
                pass
            mapping.destroy()
        return False

    @staticmethod
    def _archive_deleted(cctxt, uuid: str) -> None:
        """Archive deleted rows of this cell until ``uuid`` is among them."""
        LOG.info("Archiving the deleted rows of this cell to reuse %s", uuid)
        for _ in range(100):
            _, uuids, total = nova_db.archive_deleted_rows(
                cctxt, max_rows=1000)
            if uuid in uuids or not total:
                return

    def accept_offer(self, context, instance, request_spec, image,
                     admin_password, injected_files, requested_networks,
                     block_device_mapping, tags, origin) -> dict:
        """Build another PoP's instance here if this PoP has room.

        The instance gets this PoP's API records (instance mapping, build
        request, request spec) under its own UUID, then nova's scheduling;
        without a host everything is removed again and the answer says why.
        While ``max_accepts_in_flight`` offers are being taken here the
        answer is "busy" at once, with when to come back, so the origin
        neither waits ``forward_timeout`` nor counts this PoP as full.
        """
        gate = self._gate
        ticket = gate.try_enter() if gate is not None else None
        if gate is not None and ticket is None:
            retry = gate.retry_after()
            LOG.debug("Busy: %(uuid)s from %(origin)s told to come back "
                      "in %(retry).1f s", {'uuid': instance.uuid,
                                           'origin': origin, 'retry': retry})
            return {'accepted': False, 'busy': True, 'retry_after': retry,
                    'reason': 'busy'}
        try:
            return self._take_offer(
                context, instance, request_spec, image, admin_password,
                injected_files, requested_networks, block_device_mapping,
                tags, origin)
        finally:
            if ticket is not None:
                gate.leave(ticket)

    def _take_offer(self, context, instance, request_spec, image,
                    admin_password, injected_files, requested_networks,
                    block_device_mapping, tags, origin) -> dict:
        uuid = instance.uuid
        if self._known_here(context, uuid):
            return {'accepted': False,
                    'reason': 'instance %s is already known at %s'
                    % (uuid, self.pop_name)}
        instance.metadata = dict(instance.metadata or {},
                                 discovery_origin=origin,
                                 discovery_pop=self.pop_name)
        note_networks(instance, requested_networks)
        instance.availability_zone = None
        created = []

        def forget():
            for record in reversed(created):
                try:
                    record.destroy()
                except Exception as exc:  # keep removing the others
                    LOG.warning("Could not remove %(rec)s of declined "
                                "%(uuid)s: %(err)s",
                                {'rec': type(record).__name__,
                                 'uuid': uuid, 'err': exc})

        try:
            mapping = objects.InstanceMapping(
                context, instance_uuid=uuid, project_id=instance.project_id,
                user_id=instance.user_id, cell_mapping=None,
                queued_for_delete=False)
            mapping.create()
            created.append(mapping)
            build_request = objects.BuildRequest(
                context, instance=instance, instance_uuid=uuid,
                project_id=instance.project_id, user_id=instance.user_id,
                block_device_mappings=block_device_mapping
                or objects.BlockDeviceMappingList(),
                tags=tags or objects.TagList())
            build_request.create()
            created.append(build_request)
            request_spec.create()
            created.append(request_spec)
            host_lists, reason = self._try_local(context, request_spec,
                                                 [uuid])
        except Exception as exc:
            LOG.exception("Could not take %(uuid)s from %(origin)s",
                          {'uuid': uuid, 'origin': origin})
            forget()
            return {'accepted': False,
                    'reason': '%s at %s: %s' % (type(exc).__name__,
                                                self.pop_name, exc)}
        if host_lists is None:
            forget()
            return {'accepted': False, 'reason': reason}
        host = host_lists[0][0].service_host
        try:
            self._build_here(context, host_lists, [build_request],
                             [request_spec], image, admin_password,
                             injected_files, requested_networks,
                             block_device_mapping, tags=tags)
        except Exception as exc:
            LOG.exception("Building %(uuid)s from %(origin)s failed",
                          {'uuid': uuid, 'origin': origin})
            forget()
            self.report_client.delete_allocation_for_instance(
                context, uuid, force=True)
            return {'accepted': False,
                    'reason': '%s at %s: %s' % (type(exc).__name__,
                                                self.pop_name, exc)}
        LOG.info("Accepted %(uuid)s from %(origin)s on host %(host)s",
                 {'uuid': uuid, 'origin': origin, 'host': host})
        return {'accepted': True, 'host': host, 'reason': 'placed on %s'
                % host}
