"""Locality hints observed through a real, in-process Nova.

Four PoPs are host aggregates (and availability zones) named after real
PlanetLab nodes of the shipped RTT matrix, each with two fake-driver
computes that hold one server each; their coordinates are fitted to the
matrix and written by ``AggregateSync`` through the compute API with
openstacksdk, as the overlay agent does. Every check boots servers with
``os:scheduler_hints`` and reads where they landed (or their fault) from
the API. Expected placements come from the measured matrix, so a test
fails if the coordinates rank PoPs differently from the measurements.
"""

import pytest

import discovery_nova.conf  # noqa: F401 (registers our options on CONF)
from discovery_nova.locality.fit import fit_coordinates
from discovery_nova.locality.pop import KEY_COORD
from discovery_nova.locality.pop import KEY_POP
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.scheduler.aggregates import DIRECTORY
from discovery_nova.scheduler.sync import AggregateSync
from discovery_nova.sim.topology import PlanetLabTopology
from tests.functional import nova_base

pytestmark = pytest.mark.functional

#: PoP name -> (PlanetLab node index, tags). pl000 is where requests enter;
#: pl406 ~10 ms, pl240 ~40 ms, pl366 ~90 ms away from it (measured).
POPS = {
    'pl000': (0, ('country:FR',)),
    'pl406': (406, ('country:FR',)),
    'pl240': (240, ('country:DE',)),
    'pl366': (366, ('country:US',)),
}
ENTRY = 'pl000'
CLIENT_NET = '198.51.100.0/24'
CLIENT_POP = 'pl406'
HOSTS_PER_POP = 2

_TOPOLOGY = None


def topology() -> PlanetLabTopology:
    global _TOPOLOGY
    if _TOPOLOGY is None:
        _TOPOLOGY = PlanetLabTopology()
    return _TOPOLOGY


def measured_rtt(a: str, b: str) -> float:
    return topology().rtt(POPS[a][0], POPS[b][0])


class LocalitySchedulingTest(nova_base.NovaFunctionalTestCase):
    """Hints of discovery-nova through nova-api, conductor and scheduler."""

    def _setup_services(self):
        self.flags(compute_driver='fake.SmallFakeDriver',
                   cpu_allocation_ratio=1.0)
        self.flags(available_filters=[
            'nova.scheduler.filters.all_filters',
            'discovery_nova.scheduler.all_filters'],
            enabled_filters=[
            'ComputeFilter', 'ComputeCapabilitiesFilter',
            'ImagePropertiesFilter', 'ServerGroupAntiAffinityFilter',
            'ServerGroupAffinityFilter', 'PopFilter', 'MaxRttFilter',
            'PopAffinityFilter'],
            weight_classes=['nova.scheduler.weights.all_weighers',
                            'discovery_nova.scheduler.all_weighers'],
            group='filter_scheduler')
        self.flags(pop_name=ENTRY, group='discovery')
        self.flags(client_prefixes=['%s=%s' % (CLIENT_NET, CLIENT_POP)],
                   pop_refresh_interval=0, group='discovery_scheduler')
        DIRECTORY.clear()
        super()._setup_services()

    def _setup_compute_service(self):
        self.hosts = {}
        first = None
        for pop in POPS:
            for k in range(1, HOSTS_PER_POP + 1):
                host = '%s-c%d' % (pop, k)
                compute = self._start_compute(host)
                first = first or compute
                self.hosts[host] = pop
        return first

    def setUp(self):
        super().setUp()
        names = list(POPS)
        fitted = fit_coordinates(topology().rtt,
                                 [POPS[n][0] for n in names],
                                 rounds=2000, near_peers=3, seed=1)
        self.descriptors = {
            name: PopDescriptor(name, coord, error, frozenset(POPS[name][1]))
            for name, (coord, error) in zip(names, fitted, strict=True)}
        sync = AggregateSync(self.openstacksdk().compute)
        for name, descriptor in self.descriptors.items():
            result = sync.sync(descriptor, [h for h, p in self.hosts.items()
                                            if p == name])
            self.assertTrue(result.created)
            self.assertEqual(HOSTS_PER_POP, len(result.hosts_added))
        # A second sync of unchanged PoPs changes nothing.
        self.assertFalse(sync.sync(self.descriptors[ENTRY]).changed)
        # SmallFakeDriver hosts have 2 VCPUs: one server fills a host.
        self.flavor_id = self._create_flavor(memory_mb=512, vcpu=2, disk=1,
                                             ephemeral=0)

    # helpers

    def _boot(self, hints: dict, expected_state: str = 'ACTIVE') -> dict:
        body = self._build_server(flavor_id=self.flavor_id,
                                  networks='none')
        server = self.api.post_server({'server': body,
                                       'os:scheduler_hints': hints})
        return self._wait_for_state_change(server, expected_state)

    def _pop_of(self, server: dict) -> str:
        server = self.api.get_server(server['id'])
        host = server['OS-EXT-SRV-ATTR:host']
        self.assertEqual(self.hosts[host],
                         server['OS-EXT-AZ:availability_zone'])
        return self.hosts[host]

    def _fault(self, hints: dict) -> str:
        """The fault of a server that failed to schedule; it is deleted.

        Servers in ERROR count against the quota of 10 instances.
        """
        server = self._boot(hints, expected_state='ERROR')
        self._delete_server(server)
        return server['fault']['message']

    # tests

    def test_proximity(self):
        # The aggregate shows the PoP data to admins.
        aggregates = {a['name']: a for a in self.admin_api.api_get(
            '/os-aggregates').body['aggregates']}
        self.assertEqual('pl240', aggregates['pl240']['metadata'][KEY_POP])
        self.assertIn(KEY_COORD, aggregates['pl240']['metadata'])
        self.assertEqual('pl240', aggregates['pl240']['availability_zone'])

        # No hint: the PoP the request entered at; so does an address no
        # client prefix covers. That fills the entry PoP.
        self.assertEqual(ENTRY, self._pop_of(self._boot({})))
        self.assertEqual(ENTRY,
                         self._pop_of(self._boot({'near_ip': '192.0.2.1'})))
        # near=<PoP> and near=<host>.
        self.assertEqual('pl240', self._pop_of(self._boot({'near': 'pl240'})))
        self.assertEqual('pl366',
                         self._pop_of(self._boot({'near': 'pl366-c2'})))
        # near_ip through the client prefix table, until that PoP is full:
        # then the PoP nearest to it (by measurement) with room left.
        client = {'near_ip': '198.51.100.7'}
        self.assertEqual(CLIENT_POP, self._pop_of(self._boot(client)))
        self.assertEqual(CLIENT_POP, self._pop_of(self._boot(client)))
        with_room = [p for p in POPS if p not in (CLIENT_POP, ENTRY)]
        expected = min(with_room, key=lambda p: measured_rtt(CLIENT_POP, p))
        self.assertEqual(expected, self._pop_of(self._boot(client)))

    def test_filters(self):
        # Valid but unsatisfiable: NoValidHost, the reason in the log.
        message = self._fault({'max_rtt_ms': '5', 'avoid_pop': ENTRY})
        self.assertIn('No valid host was found', message)
        log = self.stdlog.logger.output
        self.assertIn('MaxRttFilter removed all', log)
        self.assertIn('no candidate PoP is within max_rtt_ms=5 of entry PoP '
                      'pl000', log)

        # max_rtt_ms admits exactly the PoPs measured within the bound.
        bound = 60
        admitted = {}
        for pop in POPS:
            hints = {'max_rtt_ms': str(bound), 'pop': pop}
            within = measured_rtt(ENTRY, pop) <= bound
            server = self._boot(hints, 'ACTIVE' if within else 'ERROR')
            if within:
                admitted[self._pop_of(server)] = server
            else:
                self.assertIn('No valid host', server['fault']['message'])
        self.assertEqual({p for p in POPS if measured_rtt(ENTRY, p) <= bound},
                         set(admitted))
        self.assertEqual({'pl000', 'pl406', 'pl240'}, set(admitted))

        # A cold migration runs the filters with the stored hints: the
        # server moves to the other host of its PoP, not to another PoP.
        moving = admitted[ENTRY]
        source = self.api.get_server(moving['id'])['OS-EXT-SRV-ATTR:host']
        migrated = self._confirm_resize(self._migrate_server(moving))
        self.assertNotEqual(source, migrated['OS-EXT-SRV-ATTR:host'])
        self.assertEqual(ENTRY, self._pop_of(migrated))

        # avoid_pop: the nearest other PoP; pop lists: the nearest listed
        # PoP with room; pop_tag keeps data in one country.
        self.assertEqual('pl406',
                         self._pop_of(self._boot({'avoid_pop': ENTRY})))
        listed = {'pop': 'pl366,pl240'}
        self.assertEqual('pl240', self._pop_of(self._boot(listed)))
        self.assertEqual('pl366', self._pop_of(self._boot(listed)))
        self.assertEqual('pl366',
                         self._pop_of(self._boot({'pop_tag': 'country:US'})))

    def test_pop_affinity_and_malformed_hints(self):
        first = self._boot({})
        second = self._boot({'different_pop_from': first['id']})
        third = self._boot({'different_pop_from': '%s,%s' % (first['id'],
                                                             second['id'])})
        pops = [self._pop_of(s) for s in (first, second, third)]
        self.assertEqual(3, len(set(pops)), pops)
        # The nearest PoPs to the entry PoP, in measured order.
        by_distance = sorted(POPS, key=lambda p: measured_rtt(ENTRY, p))
        self.assertEqual(by_distance[:3], pops)
        fourth = self._boot({'same_pop_as': second['id']})
        self.assertEqual(pops[1], self._pop_of(fourth))

        for hints, hint, value, expected in (
                ({'max_rtt_ms': 'abc'}, 'max_rtt_ms', 'abc',
                 'a number of milliseconds'),
                ({'max_rtt_ms': '-5'}, 'max_rtt_ms', '-5',
                 'a number of milliseconds > 0'),
                ({'pop': 'nowhere'}, 'pop', 'nowhere', 'names of known PoPs'),
                ({'near': 'no-such-host'}, 'near', 'no-such-host',
                 'a known PoP'),
                ({'same_pop_as': 'web-1'}, 'same_pop_as', 'web-1',
                 'server UUIDs'),
                ({'different_pop_from':
                  '6f1f3b5c-0000-4000-8000-000000000000'},
                 'different_pop_from', '6f1f3b5c-0000-4000-8000-000000000000',
                 'the UUID of an existing server')):
            message = self._fault(hints)
            self.assertIn('%s=%s' % (hint, value), message)
            self.assertIn('expected ' + expected, message)
        # The scheduler survived all of that and still places servers.
        self.assertEqual(pops[0], self._pop_of(self._boot({})))
