"""The origin PoP's own part in rebuilds, through a real, in-process Nova.

discovery-conductor runs as this Nova's conductor (PoP ``pa``, one
fake-driver compute with room for two servers), with nova-api, the
scheduler and placement. The other PoPs (``pb``, ``pc``) exist as PoP
aggregates with coordinates; their conductors are stood in for at the
federation boundary (``Peers``: what ``offer_build`` and ``describe``
answer), which is all the origin's code sees of them. Shown here:

* a server forwarded to ``pb`` comes back home when ``pb`` dies and ``pa``
  has room again: the origin's record becomes a local build, scheduled,
  claimed and built by this Nova;
* a build nova abandons here (its compute failed it, then could not give
  its claim back to placement, as sqlite placement did under the boot
  storm), or one every host here failed, is offered to the other PoPs and
  recorded as forwarded to the one that takes it; when none does, it
  ends in ERROR with a fault that names every PoP tried.
"""

import threading
import time
from unittest import mock

from nova import context as nova_context
from nova import exception
import pytest

from discovery_nova.conductor import records
from discovery_nova.conductor import shadow_sync
import discovery_nova.conf  # noqa: F401 (registers our options on CONF)
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.scheduler.aggregates import DIRECTORY
from discovery_nova.scheduler.sync import AggregateSync
from tests.functional import nova_base

pytestmark = pytest.mark.functional

HOST = 'pa-c1'
#: PoP -> coordinate (ms): pb is pa's nearest neighbour, pc farther.
POPS = {'pa': (0.0, 0.0), 'pb': (10.0, 0.0), 'pc': (60.0, 0.0)}


class Liveness:
    """The conductors' membership, as the test says it is."""

    def __init__(self, alive):
        self.live = set(alive)

    def alive(self):
        return set(self.live)


class Peers:
    """The other PoPs' conductors at the federation boundary: each offer
    is answered by ``accepts`` (PoP -> accepted?); servers accepted are
    described ACTIVE."""

    def __init__(self, accepts):
        self.accepts = dict(accepts)
        self.offers = []
        self.running = {}
        self.lock = threading.Lock()

    def before_stop(self, callback):
        pass

    def call(self, context, pop, method, timeout, **kwargs):
        with self.lock:
            if method == 'offer_build':
                uuid = kwargs['instance'].uuid
                self.offers.append((pop, uuid))
                if not self.accepts.get(pop):
                    return {'accepted': False,
                            'reason': 'no valid host at %s' % pop}
                self.running[uuid] = pop
                return {'accepted': True, 'host': '%s-c1' % pop,
                        'reason': 'placed on %s-c1' % pop}
            if method == 'describe':
                return {uuid: {'vm_state': 'active', 'task_state': None,
                               'power_state': 1,
                               'launched_at': '2026-11-22T00:00:00Z'}
                        for uuid in kwargs['uuids']
                        if self.running.get(uuid) == pop}
            if method == 'owner_of':
                return {}
            if method == 'delete_servers':
                for uuid in kwargs['uuids']:
                    self.running.pop(uuid, None)
                return None
        raise AssertionError('unexpected call %s to %s' % (method, pop))


class RebuildsAtTheOriginTest(nova_base.NovaFunctionalTestCase):

    def _setup_services(self):
        self.flags(compute_driver='fake.SmallFakeDriver',
                   cpu_allocation_ratio=1.0)
        self.flags(pop_name='pa', group='discovery')
        self.flags(pop_refresh_interval=0, group='discovery_scheduler')
        # A call nobody answers fails the test in seconds, not minutes.
        self.flags(rpc_response_timeout=20)
        DIRECTORY.clear()
        super()._setup_services()

    def _setup_conductor_service(self):
        return self.start_service(
            'conductor',
            manager='discovery_nova.conductor.manager.'
                    'DiscoveryConductorManager')

    def _setup_compute_service(self):
        return self._start_compute(HOST)

    def setUp(self):
        super().setUp()
        sync = AggregateSync(self.openstacksdk().compute)
        for name, (x, y) in POPS.items():
            sync.sync(PopDescriptor(name, Coordinate((x, y), 0.0), 0.05),
                      [HOST] if name == 'pa' else [])
        # SmallFakeDriver: 2 VCPUs, so two of these fill PoP pa.
        self.flavor_id = self._create_flavor(memory_mb=256, vcpu=1, disk=1,
                                             ephemeral=0)
        self.manager = self.conductor.manager.compute_task_mgr
        self.manager.liveness = Liveness(POPS)
        self.peers = Peers({'pb': True, 'pc': True})
        self.manager.federation = self.peers
        self.addCleanup(self.manager.stop_forwarding)
        self.sync = shadow_sync.ShadowSync(self.manager)

    # helpers

    def _boot(self, name, expected='ACTIVE'):
        body = self._build_server(name=name, flavor_id=self.flavor_id,
                                  networks='none')
        server = self.api.post_server({'server': body})
        return self._wait_for_state_change(server, expected)

    def _pass(self):
        """One record pass, in a thread of its own as in the conductor."""
        failed = []

        def run():
            try:
                self.sync.run_once()
            except Exception as exc:  # reported in the test's thread
                failed.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(60)
        self.assertFalse(thread.is_alive(), 'a record pass took over 60 s')
        if failed:
            raise failed[0]

    def _sync_until(self, server_id, done, what, passes=40):
        for _ in range(passes):
            self._pass()
            server = self.api.get_server(server_id)
            if done(server):
                return server
            self._wait_a_little()
        self.fail('after %d record passes, still not %s: %s'
                  % (passes, what, self.api.get_server(server_id)))

    @staticmethod
    def _wait_a_little():
        time.sleep(0.25)

    def _actions(self, server_id):
        return [a['action'] for a in self.api.get_instance_actions(
            server_id)]

    # tests

    def test_a_forwarded_server_comes_home_when_its_pop_dies(self):
        kept = self._boot('home-1')
        gone = self._boot('home-2')
        # pa is full: the third server goes to pa's nearest neighbour.
        body = self._build_server(name='roamer', flavor_id=self.flavor_id,
                                  networks='none')
        roamer = self.api.post_server({'server': body})
        roamer = self._sync_until(
            roamer['id'], lambda s: s['status'] == 'ACTIVE',
            'ACTIVE at pb')
        self.assertEqual('pb', roamer['OS-EXT-AZ:availability_zone'])
        self.assertEqual('pb', roamer['metadata']['discovery_pop'])
        self.assertIsNone(roamer['OS-EXT-SRV-ATTR:host'])
        self.assertEqual([('pb', roamer['id'])], self.peers.offers)

        # Room at home again; then pb dies.
        self._delete_server(gone)
        self.manager.liveness.live.discard('pb')
        roamer = self._sync_until(
            roamer['id'],
            lambda s: s['status'] == 'ACTIVE' and
            s['OS-EXT-SRV-ATTR:host'] == HOST,
            'ACTIVE on %s' % HOST)
        self.assertEqual('pa', roamer['OS-EXT-AZ:availability_zone'])
        self.assertNotIn('discovery_pop', roamer['metadata'])
        # Not offered to pc: the origin ranks first and took it.
        self.assertEqual([('pb', roamer['id'])], self.peers.offers)
        actions = self._actions(roamer['id'])
        self.assertIn('schedule at pa (this PoP)', actions)
        self.assertTrue(any(a.startswith('forward to pb') for a in actions),
                        actions)
        # A server of pa like the others: placement holds its claim on
        # pa's compute, and the origin says it runs here.
        usages = self._get_provider_usages(
            self._get_provider_uuid_by_host(HOST))
        self.assertEqual(2, usages['VCPU'])
        ctxt = nova_context.get_admin_context()
        with nova_context.target_cell(
                ctxt, records.local_cell(ctxt)) as cctxt:
            row = records.find_row(cctxt, roamer['id'])
            self.assertNotIn(records.SYSMETA_FORWARDED, row.system_metadata)
            self.assertEqual('pb', row.system_metadata[
                'discovery_rebuilt_from'])
        self._delete_server(kept)
        self._delete_server(roamer)

    def test_a_server_deleted_before_any_pass_saw_it_goes_where_it_ran(
            self):
        """Forwarded and deleted between two record passes: the next pass
        still carries the delete to the PoP it ran at."""
        self._boot('home-1')
        self._boot('home-2')
        body = self._build_server(name='brief', flavor_id=self.flavor_id,
                                  networks='none')
        brief = self.api.post_server({'server': body})
        for _ in range(80):
            found = self.api.get_server(brief['id'])
            if found['OS-EXT-AZ:availability_zone'] == 'pb':
                break
            self._wait_a_little()
        else:
            self.fail('not forwarded to pb: %s' % found)
        self.assertEqual({brief['id']: 'pb'}, self.peers.running)
        self._delete_server(found)
        self._pass()
        self.assertEqual({}, self.peers.running)

    def _abandon_next_build(self):
        """The compute fails the next build, then placement fails to take
        its claim back: nova leaves the server in BUILD, no host nor task
        (what sqlite placement's 'database is locked' did in the storm)."""
        compute = self.compute.manager
        spawn = compute.driver.spawn
        failed = []

        def failing_spawn(*args, **kwargs):
            if not failed:
                failed.append(True)
                raise exception.ComputeResourcesUnavailable(
                    reason='test: the hypervisor failed')
            return spawn(*args, **kwargs)

        delete = compute.reportclient.delete_allocation_for_instance
        refused = []

        def failing_delete(context, uuid, *args, **kwargs):
            if not refused:
                refused.append(uuid)
                raise exception.AllocationDeleteFailed(
                    consumer_uuid=uuid, error='test: database is locked')
            return delete(context, uuid, *args, **kwargs)

        self._patch(compute.driver, 'spawn', failing_spawn)
        self._patch(compute.reportclient,
                              'delete_allocation_for_instance',
                              failing_delete)

    def _patch(self, obj, name, new):
        patcher = mock.patch.object(obj, name, new)
        patcher.start()
        self.addCleanup(patcher.stop)

    def _abandoned(self, name):
        self._abandon_next_build()
        body = self._build_server(name=name, flavor_id=self.flavor_id,
                                  networks='none')
        server = self.api.post_server({'server': body})

        def abandoned():
            found = self.api.get_server(server['id'])
            return found['status'] == 'BUILD' and \
                found['OS-EXT-STS:task_state'] is None and \
                found['OS-EXT-SRV-ATTR:host'] is None and \
                'compute__do_build_and_run_instance' in str(
                    self.api.get_instance_action_details(
                        server['id'],
                        self.api.get_instance_actions(server['id'])[0][
                            'request_id']))
        for _ in range(80):
            if abandoned():
                return server
            self._wait_a_little()
        self.fail('nova did not abandon the build: %s'
                  % self.api.get_server(server['id']))

    def test_a_build_nova_abandons_is_offered_to_the_other_pops(self):
        with mock.patch.object(shadow_sync, 'STUCK_BUILD_AGE', 0):
            server = self._abandoned('stray')
            # pb declines, pc takes it.
            self.peers.accepts['pb'] = False
            server = self._sync_until(
                server['id'], lambda s: s['status'] == 'ACTIVE',
                'ACTIVE at pc')
        self.assertEqual('pc', server['OS-EXT-AZ:availability_zone'])
        self.assertEqual({'discovery_pop': 'pc', 'discovery_origin': 'pa'},
                         server['metadata'])
        self.assertEqual([('pb', server['id']), ('pc', server['id'])],
                         self.peers.offers)
        actions = self._actions(server['id'])
        self.assertIn('schedule at pa (this PoP)', actions)
        self.assertTrue(any(a.startswith('forward to pb') for a in actions))
        self.assertTrue(any(a.startswith('forward to pc') for a in actions))
        # Its claim here was released.
        usages = self._get_provider_usages(
            self._get_provider_uuid_by_host(HOST))
        self.assertEqual(0, usages['VCPU'])

        # No PoP takes the next one: ERROR, the fault naming them all.
        self.peers.accepts = {}
        with mock.patch.object(shadow_sync, 'STUCK_BUILD_AGE', 0):
            doomed = self._abandoned('doomed')
            doomed = self._sync_until(
                doomed['id'], lambda s: s['status'] == 'ERROR', 'ERROR')
        fault = doomed['fault']['message']
        for words in ('pa (this PoP): build at %s failed' % HOST,
                      'pb (~10 ms away): no valid host at pb',
                      'pc (~60 ms away): no valid host at pc'):
            self.assertIn(words, fault)

    def test_a_build_every_host_here_failed_goes_to_another_pop(self):
        """nova would put it in ERROR (no alternate host left to retry
        on): it is offered to the other PoPs instead."""
        def failing_spawn(*args, **kwargs):
            raise exception.ComputeResourcesUnavailable(
                reason='test: the hypervisor failed')

        self._patch(self.compute.manager.driver, 'spawn', failing_spawn)
        body = self._build_server(name='unlucky', flavor_id=self.flavor_id,
                                  networks='none')
        server = self.api.post_server({'server': body})
        server = self._sync_until(
            server['id'], lambda s: s['status'] == 'ACTIVE', 'ACTIVE at pb')
        self.assertEqual('pb', server['OS-EXT-AZ:availability_zone'])
        self.assertEqual([('pb', server['id'])], self.peers.offers)
        actions = self._actions(server['id'])
        self.assertIn('schedule at pa (this PoP)', actions)
        self.assertTrue(any(a.startswith('forward to pb') for a in actions))
        self.assertEqual(0, self._get_provider_usages(
            self._get_provider_uuid_by_host(HOST))['VCPU'])
