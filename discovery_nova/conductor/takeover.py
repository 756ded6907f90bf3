"""A dead PoP's own servers, rebuilt from its records on the ring.

The shadow sync rebuilds the servers a PoP *forwarded* to a dead one (their
origin's database has what it needs). A server asked and built at the dead
PoP had its only database there; its ring records (``ring_records``:
where it ran, its rebuild spec, the PoP's index) outlive it.

When a PoP has left both the conductors' membership and the overlay's ring
(a conductor that restarts leaves only the first) for
``membership_timeout`` seconds, every conductor ranks the live PoPs by
estimated RTT from the dead one's coordinates (``candidates.plan`` with no
hints, ties by name): the first alone takes over. It reads the dead PoP's
index and, for every server whose record that PoP still keeps, offers the
server to the live PoPs that satisfy its hints, nearest first (the same
ranking as a new build from the dead PoP). The PoP that accepts builds it
as its own (its origin, marked ``discovery_rebuilt_from``) and from then on
keeps its record; the record is rewritten at once to name it. A PoP that
comes back finds its servers' records naming a live PoP and lets the
reconcile delete its copies (``placement_index``): no duplicate.
"""

import time

from nova import objects
import nova.conf
from nova.objects import base as objects_base
from oslo_log import log as logging
import oslo_messaging as messaging
from oslo_utils import timeutils

from discovery_nova.conductor import candidates as candidates_mod
from discovery_nova.conductor import records
from discovery_nova.conductor import ring_records
from discovery_nova.conductor import shadow_sync
from discovery_nova.conductor.portable import portable
from discovery_nova.locality.hints import HintError
from discovery_nova.overlay.client import AgentUnavailable

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
SYSMETA_REBUILT_FROM = ring_records.SYSMETA_REBUILT_FROM
#: ``_rebuild``'s answer when a PoP asked to be offered the server later.
BUSY = 'busy'


def successor_of(dead: str, pops, alive, prefixes=None) -> str | None:
    """The live PoP that takes over ``dead``: the nearest to it by
    coordinates, as every conductor computes it; None when none is
    alive."""
    from discovery_nova.scheduler.request import prefix_table

    if dead not in pops:
        return None
    try:
        plan = candidates_mod.plan({}, dead, pops,
                                   prefixes or prefix_table(),
                                   alive=set(alive) - {dead})
    except HintError:
        return None
    ranked = sorted(plan.candidates, key=lambda c: (c.rtt_ms, c.pop))
    return ranked[0].pop if ranked else None


class Takeover:
    """The takeover part of one conductor's record pass."""

    def __init__(self, task_manager, sync, ring: ring_records.RingRecords):
        self.manager = task_manager
        self.sync = sync
        self.ring = ring
        self.pop_name = task_manager.pop_name
        #: PoP -> when this conductor first saw it gone.
        self._gone_since: dict[str, float] = {}
        #: dead PoP -> the live PoPs when all its servers were handled.
        self._done: dict[str, frozenset] = {}
        #: uuid -> the live PoPs when its rebuild last failed.
        self._failed: dict[str, frozenset] = {}
        # A cache of its own: this pass reads the directory from start-up
        # on, and the shared cache must not keep a directory read while
        # the PoP aggregates are still being created (the builds' plans
        # would miss PoPs until it expires).
        from discovery_nova.scheduler import aggregates
        self._directory = aggregates.DirectoryCache()

    def run_once(self, context, alive: set[str]) -> None:
        directory = self._directory.get(
            context, CONF.discovery_scheduler.pop_refresh_interval)
        now = time.monotonic()
        grace = CONF.discovery_overlay.membership_timeout
        ring_members = None
        for pop in directory.pops:
            if pop in alive:
                self._gone_since.pop(pop, None)
                self._done.pop(pop, None)
                continue
            if not self.sync._known_dead(pop):
                continue
            if ring_members is None:
                ring_members = set(self.ring.client.status()['members'])
            if pop in ring_members:
                # Its conductor is away (restarting, say) but the PoP's
                # agent still runs: the PoP is not dead.
                self._gone_since.pop(pop, None)
                continue
            since = self._gone_since.setdefault(pop, now)
            if now - since < grace:
                continue
            frozen = frozenset(alive)
            if self._done.get(pop) == frozen:
                continue
            if successor_of(pop, directory.pops, alive) != self.pop_name:
                continue
            if self._take_over(context, pop, directory.pops, alive):
                self._done[pop] = frozen

    def _take_over(self, context, dead: str, pops, alive) -> bool:
        """Rebuild what ``dead`` kept; True when nothing is left to try
        with these live PoPs."""
        if not CONF.discovery_conductor.rebuild_on_pop_failure:
            return True
        try:
            uuids = self.ring.pop_index(dead)
        except (AgentUnavailable, ring_records.RecordError) as exc:
            LOG.warning("Cannot read the index of dead PoP %(pop)s yet: "
                        "%(err)s", {'pop': dead, 'err': exc})
            return False
        if not uuids:
            return True
        frozen = frozenset(alive)
        complete = True
        for uuid in uuids:
            if self._failed.get(uuid) == frozen:
                continue
            try:
                found = self.ring.server(uuid)
            except (AgentUnavailable, ring_records.RecordError) as exc:
                LOG.warning("Cannot read the record of %(uuid)s: %(err)s",
                            {'uuid': uuid, 'err': exc})
                complete = False
                continue
            record = found.value if found.found else None
            if (record is None or record.get('deleted') or
                    record.get('holder') != dead or
                    record.get('pop') != dead):
                continue  # deleted, or already someone else's
            LOG.warning("PoP %(dead)s left: taking over %(uuid)s, which "
                        "ran there", {'dead': dead, 'uuid': uuid})
            new_pop = self._rebuild(context, uuid, record, dead, pops, alive)
            if new_pop is BUSY:
                complete = False  # asked to come back: next pass
            elif new_pop is None:
                self._failed[uuid] = frozen
            else:
                self._failed.pop(uuid, None)
        return complete

    def _rebuild(self, context, uuid: str, record: dict, dead: str, pops,
                 alive) -> str | None:
        """Offer the server to the live PoPs nearest to its hints'
        reference (or to the dead PoP); the PoP that took it, ``BUSY``
        when none did but one asked to be offered it later, or None."""
        from discovery_nova.scheduler.request import prefix_table

        try:
            spec_data = self.ring.spec(uuid, record.get('spec'))
        except (AgentUnavailable, ring_records.RecordError) as exc:
            LOG.warning("Cannot rebuild %(uuid)s of %(dead)s: %(err)s",
                        {'uuid': uuid, 'dead': dead, 'err': exc})
            return None
        spec = objects.RequestSpec.obj_from_primitive(spec_data['spec'])
        try:
            plan = candidates_mod.plan(
                dict(spec.scheduler_hints or {}), dead, pops,
                prefix_table(), CONF.discovery_scheduler.rtt_error_weight,
                CONF.discovery_scheduler.max_trusted_error,
                alive=set(alive) - {dead})
        except HintError as exc:
            LOG.warning("Cannot rebuild %(uuid)s: %(err)s",
                        {'uuid': uuid, 'err': exc})
            return None
        LOG.info("Rebuilding %(uuid)s of %(dead)s: candidates %(pops)s",
                 {'uuid': uuid, 'dead': dead,
                  'pops': ', '.join(c.pop for c in plan.candidates)})
        busy = False
        for candidate in plan.candidates:
            answer = self._offer(context, candidate.pop, uuid, spec_data,
                                 dead)
            busy = busy or bool(answer.get('busy'))
            if answer.get('accepted'):
                self.ring.put_server(uuid, dict(
                    record, pop=candidate.pop, holder=candidate.pop,
                    origin=candidate.pop, state='building', host=None,
                    rebuilt_from=dead, taken_over_by=self.pop_name,
                    updated=timeutils.utcnow().isoformat()))
                LOG.warning("PoP %(dead)s left: %(uuid)s rebuilt at "
                            "%(pop)s", {'dead': dead, 'uuid': uuid,
                                        'pop': candidate.pop})
                return candidate.pop
            LOG.info("%(pop)s declined %(uuid)s: %(why)s",
                     {'pop': candidate.pop, 'uuid': uuid,
                      'why': answer.get('reason')})
        return BUSY if busy else None

    def _offer(self, context, pop: str, uuid: str, spec_data: dict,
               dead: str) -> dict:
        """Offer the server to ``pop`` as its own build (origin ``pop``)."""
        instance = portable(objects.Instance.obj_from_primitive(
            spec_data['instance']))
        instance.system_metadata = dict(instance.system_metadata or {}, **{
            SYSMETA_REBUILT_FROM: dead})
        spec = portable(objects.RequestSpec.obj_from_primitive(
            spec_data['spec']))
        networks = records.networks_from_record(spec_data.get('networks'))
        bdms = objects.BlockDeviceMappingList(objects=[
            shadow_sync.image_bdm(spec_data['image_ref'], uuid)])
        image = spec_data.get('image') or {}
        if pop == self.pop_name:
            # Built here: the objects need the context the federation's
            # deserializer would have given them, nested ones included.
            serializer = objects_base.NovaObjectSerializer()
            instance, spec, networks, bdms = (
                serializer.deserialize_entity(
                    context, serializer.serialize_entity(context, obj))
                for obj in (instance, spec, networks, bdms))
            return self.manager.accept_offer(
                context, instance, spec, image, None, [],
                networks, bdms, None, pop)
        timeout = CONF.discovery_conductor.forward_timeout
        try:
            return self.manager.federation.call(
                context, pop, 'offer_build', timeout,
                instance=instance, request_spec=spec, image=image,
                admin_password=None, injected_files=[],
                requested_networks=networks, block_device_mapping=bdms,
                tags=None, origin=pop)
        except messaging.MessagingTimeout:
            return {'accepted': False,
                    'reason': 'no answer within %.0f s' % timeout}
        except Exception as exc:
            LOG.warning("Offering %(uuid)s to %(pop)s failed: %(err)s",
                        {'uuid': uuid, 'pop': pop, 'err': exc})
            return {'accepted': False,
                    'reason': '%s: %s' % (type(exc).__name__, exc)}
