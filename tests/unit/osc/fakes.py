"""A fake keystone and per-region compute and placement APIs over HTTP.

The discovery commands talk HTTP through keystoneauth; these fakes answer
at that level (requests-mock), with JSON shaped like nova's and
placement's, so the client, the commands and openstackclient itself run
for real. Each region ``r`` serves compute at ``http://r.test/compute``
and placement at ``http://r.test/placement``.
"""

import itertools
import re
from urllib import parse

from keystoneauth1 import fixture
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
import requests

KEYSTONE = 'http://keystone.test/v3'
TOKEN = 'fake-token'
_IDS = itertools.count(1)


def compute_url(region: str) -> str:
    return 'http://%s.test/compute' % region


def placement_url(region: str) -> str:
    return 'http://%s.test/placement' % region


def aggregate(name: str, metadata: dict, hosts=(), zone=None) -> dict:
    """An aggregate as GET /os-aggregates shows it."""
    return {'id': next(_IDS), 'name': name,
            'availability_zone': zone, 'hosts': list(hosts),
            'metadata': dict(metadata)}


def compute_service(host: str, state: str = 'up') -> dict:
    return {'binary': 'nova-compute', 'host': host, 'state': state,
            'status': 'enabled', 'zone': 'nova'}


def server(server_id: str, name: str, status: str = 'ACTIVE',
           host: str | None = None, metadata: dict | None = None,
           zone: str | None = None) -> dict:
    found = {'id': server_id, 'name': name, 'status': status,
             'metadata': dict(metadata or {}),
             'OS-EXT-AZ:availability_zone': zone}
    if host is not None:
        found['OS-EXT-SRV-ATTR:host'] = host
    return found


# Hand-computed: Vivaldi distance is |a - b| + both heights.
# pl1 (0, 0; 1) -> pl3 (0, 10; 0.5): 10 + 1.5 = 11.5 ms
# pl1 (0, 0; 1) -> pl2 (30, 40; 1): 50 + 2 = 52 ms
AGGREGATES = [
    aggregate('pop-pl2', {'discovery_pop': 'pl2',
                          'discovery_coord': '30.0,40.0;1.0',
                          'discovery_error': '0.2',
                          'discovery_client_rtt:192.0.2.0_24': '12.25',
                          'discovery_free_vcpus': '12',
                          'discovery_free_ram_mb': '2048'}),
    aggregate('pop-pl1', {'discovery_pop': 'pl1',
                          'discovery_coord': '0.0,0.0;1.0',
                          'discovery_error': '0.1',
                          'discovery_tags': 'renewable,country:FR'},
              hosts=['pl1-cmp2', 'pl1-cmp1'], zone='pl1'),
    aggregate('pop-pl3', {'discovery_pop': 'pl3',
                          'discovery_coord': '0.0,10.0;0.5',
                          'discovery_error': '0.3'}),
    aggregate('ssd', {'ssd': 'true'}, hosts=['pl1-cmp1']),
]


class FakeCloud:
    """Regions with a catalog and the API answers a test sets up."""

    def __init__(self, mocker, regions, placement_regions=None):
        self.mocker = mocker
        self.regions = list(regions)
        self.placement_regions = list(
            self.regions if placement_regions is None else placement_regions)
        self.servers = {r: [] for r in self.regions}
        token = fixture.V3Token(project_id='p1', project_name='admin',
                                user_id='u1', user_name='admin')
        compute = token.add_service('compute', 'nova')
        for region in self.regions:
            compute.add_standard_endpoints(
                public=compute_url(region), internal=compute_url(region),
                region=region)
        placement = token.add_service('placement', 'placement')
        for region in self.placement_regions:
            placement.add_standard_endpoints(
                public=placement_url(region), region=region)
        identity = token.add_service('identity', 'keystone')
        identity.add_standard_endpoints(public=KEYSTONE, region=regions[0])
        mocker.post(KEYSTONE + '/auth/tokens', json=token,
                    headers={'X-Subject-Token': TOKEN})
        mocker.get(KEYSTONE, json=fixture.V3Discovery(KEYSTONE))
        for region in self.regions:
            base = compute_url(region)
            mocker.get(re.compile(re.escape(base) + '/servers/[^/?]+$'),
                       status_code=404,
                       json={'itemNotFound': {'code': 404,
                                              'message': 'not found'}})
            mocker.get(base + '/servers/detail',
                       json=lambda request, context, region=region:
                       self._servers_named(region, request))

    def session(self) -> ks_session.Session:
        auth = v3.Password(auth_url=KEYSTONE, username='admin',
                           password='secret', project_name='admin',
                           user_domain_id='default',
                           project_domain_id='default')
        return ks_session.Session(auth=auth)

    def _servers_named(self, region, request):
        query = parse.parse_qs(parse.urlsplit(request.url).query)
        pattern = re.compile(query['name'][0])
        return {'servers': [s for s in self.servers[region]
                            if pattern.search(s['name'])]}

    def set_aggregates(self, region, aggregates):
        self.mocker.get(compute_url(region) + '/os-aggregates',
                        json={'aggregates': list(aggregates)})

    def set_services(self, region, services):
        self.mocker.get(compute_url(region) + '/os-services',
                        json={'services': list(services)})

    def set_hypervisors(self, region, hypervisors):
        self.mocker.get(compute_url(region) + '/os-hypervisors/detail',
                        json={'hypervisors': list(hypervisors)})

    def set_provider(self, region, provider, inventories, usages):
        base = '%s/resource_providers/%s' % (placement_url(region), provider)
        self.mocker.get(base + '/inventories',
                        json={'inventories': inventories,
                              'resource_provider_generation': 1})
        self.mocker.get(base + '/usages',
                        json={'usages': usages,
                              'resource_provider_generation': 1})

    def add_server(self, region, found):
        self.servers[region].append(found)
        self.mocker.get('%s/servers/%s' % (compute_url(region), found['id']),
                        json={'server': found})

    def forbid(self, region, path):
        self.mocker.get(
            compute_url(region) + path, status_code=403,
            json={'forbidden': {'code': 403, 'message': 'Policy doesn\'t '
                                'allow it to be performed.'}})

    def unreachable(self, region):
        self.mocker.get(re.compile(re.escape(compute_url(region)) + '.*'),
                        exc=requests.exceptions.ConnectionError(
                            'Connection refused'))
