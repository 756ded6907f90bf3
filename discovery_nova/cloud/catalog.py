"""Keystone content of the local cloud: regions, catalog and service users.

``keystone-manage bootstrap`` creates the admin user and the identity
service in the first region; everything else is created here through the
identity API, as an operator would with ``openstack region create`` and
friends, but in one process instead of dozens of CLI calls.
"""

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from oslo_log import log as logging

from discovery_nova.cloud.settings import CloudSettings

LOG = logging.getLogger(__name__)

SERVICE_USERS = ('nova', 'placement', 'glance')
#: (service type, service name, description) of each catalog entry.
SERVICES = (
    ('compute', 'nova', 'Compute of one PoP'),
    ('placement', 'placement', 'Placement of one PoP'),
    ('image', 'glance', 'Image service shared by all PoPs'),
    ('network', 'neutron', 'Empty network API: PoPs offer no networking'),
)


def admin_session(settings: CloudSettings,
                  timeout: float = 60.0) -> ks_session.Session:
    auth = v3.Password(auth_url=settings.keystone_url, username='admin',
                       password=settings.admin_password,
                       project_name='admin', user_domain_id='default',
                       project_domain_id='default')
    return ks_session.Session(auth=auth, timeout=timeout)


class Identity:
    """Idempotent create-or-get calls on the identity API v3."""

    def __init__(self, settings: CloudSettings, sess=None):
        self.base = settings.keystone_url
        self.session = sess or admin_session(settings)

    def _find(self, collection: str, **query) -> dict | None:
        resp = self.session.get('%s/%s' % (self.base, collection),
                                params=query)
        items = resp.json()[collection]
        return items[0] if items else None

    def create(self, collection: str, key: str, body: dict) -> dict:
        resp = self.session.post('%s/%s' % (self.base, collection),
                                 json={key: body})
        return resp.json()[key]

    def ensure(self, collection: str, key: str, query: dict,
               body: dict) -> dict:
        found = self._find(collection, **query)
        return found if found else self.create(collection, key, body)

    def ensure_region(self, region: str) -> None:
        try:
            self.session.get('%s/regions/%s' % (self.base, region))
        except ks_exc.NotFound:
            self.create('regions', 'region', {'id': region})

    def grant(self, project_id: str, user_id: str, role_id: str) -> None:
        self.session.put('%s/projects/%s/users/%s/roles/%s'
                         % (self.base, project_id, user_id, role_id))


def register_cloud(settings: CloudSettings) -> None:
    """Create regions, services, endpoints and service users."""
    identity = Identity(settings)
    regions = [pop.name for pop in settings.layout.pops]
    for region in regions:
        identity.ensure_region(region)
    identity_service = identity.ensure(
        'services', 'service', {'type': 'identity'},
        {'type': 'identity', 'name': 'keystone'})
    services = {'identity': identity_service['id']}
    for stype, name, description in SERVICES:
        services[stype] = identity.ensure(
            'services', 'service', {'type': stype},
            {'type': stype, 'name': name, 'description': description,
             'enabled': True})['id']
    existing = {(ep['service_id'], ep['region_id'], ep['interface'])
                for ep in identity.session.get(
                    '%s/endpoints' % identity.base).json()['endpoints']}
    for pop in settings.layout.pops:
        urls = {
            'identity': settings.keystone_url,
            'compute': settings.nova_url(pop),
            'placement': settings.placement_url(pop),
            'image': settings.glance_url,
            'network': settings.network_url,
        }
        for stype, url in urls.items():
            for interface in ('public', 'internal'):
                if (services[stype], pop.name, interface) in existing:
                    continue
                identity.create(
                    'endpoints', 'endpoint',
                    {'service_id': services[stype], 'region_id': pop.name,
                     'interface': interface, 'url': url, 'enabled': True})
    service_project = identity.ensure(
        'projects', 'project', {'name': 'service'},
        {'name': 'service', 'domain_id': 'default',
         'description': 'Service users of the PoPs'})
    roles = {name: identity.ensure('roles', 'role', {'name': name},
                                   {'name': name})['id']
             for name in ('admin', 'service')}
    for user in SERVICE_USERS:
        found = identity.ensure(
            'users', 'user', {'name': user, 'domain_id': 'default'},
            {'name': user, 'domain_id': 'default',
             'password': settings.service_password, 'enabled': True})
        for role_id in roles.values():
            identity.grant(service_project['id'], found['id'], role_id)
    LOG.info("registered %(n)d regions in keystone", {'n': len(regions)})
