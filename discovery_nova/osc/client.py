"""The compute and placement APIs of every PoP, as the discovery commands
use them.

Each PoP is one keystone region with its own nova and placement, so one
keystoneauth session (the one openstackclient authenticated) reaches them
all: an Adapter per region and service type. Failures come back as
``RegionError`` naming the region and what went wrong, so that a command
can either stop with it (the current region) or report it and go on (a
remote PoP that is down).
"""

import re
from urllib import parse

from keystoneauth1 import adapter
from keystoneauth1 import exceptions as ks_exc
from osc_lib import exceptions

#: 2.53: hypervisor and service ids are UUIDs (a hypervisor's id is its
#: placement resource provider), and hypervisors still report their usage
#: (dropped in 2.88).
COMPUTE_MICROVERSION = '2.53'
PLACEMENT_MICROVERSION = '1.0'
#: Seconds one request may take when openstackclient sets no --timeout:
#: a PoP that does not answer must not hang the whole command.
REQUEST_TIMEOUT = 15.0


class RegionError(exceptions.CommandError):
    """A region's API gave no usable answer."""

    def __init__(self, region: str, reason: str):
        self.region = region
        self.reason = reason
        super().__init__('region %s: %s' % (region, reason))


class AdminRequired(RegionError):
    """The API refused the call: by default policy it needs the admin role.
    """


class Client:
    """Read-only calls on the compute and placement APIs of any region.

    :param session: an authenticated keystoneauth session.
    :param region_name: the current region (``--os-region-name``); when
        None and the catalog has compute in a single region, that one.
    :param interface: endpoint interface of the catalog (public, ...).
    """

    def __init__(self, session, region_name: str | None = None,
                 interface: str | None = 'public',
                 timeout: float = REQUEST_TIMEOUT):
        self.session = session
        self._region_name = region_name
        self.interface = interface or 'public'
        self.timeout = timeout

    # The catalog -----------------------------------------------------------

    def regions(self, service_type: str = 'compute') -> list[str]:
        """Regions whose catalog has ``service_type``, sorted by name."""
        access = self.session.auth.get_access(self.session)
        catalog = access.service_catalog
        if catalog is None:
            return []
        found = catalog.get_endpoints_data(service_type=service_type,
                                           interface=self.interface)
        return sorted({ep.region_name for eps in found.values()
                       for ep in eps if ep.region_name})

    @property
    def region_name(self) -> str:
        """The current region: the PoP the commands look from."""
        if self._region_name:
            return self._region_name
        regions = self.regions()
        if len(regions) == 1:
            return regions[0]
        raise exceptions.CommandError(
            'no region given: pass --os-region-name (or set OS_REGION_NAME '
            'or region_name in clouds.yaml) to one of the regions with a '
            'compute endpoint: %s' % (', '.join(regions) or 'none'))

    # Requests --------------------------------------------------------------

    def _adapter(self, service_type: str, region: str) -> adapter.Adapter:
        microversion = (COMPUTE_MICROVERSION if service_type == 'compute'
                        else PLACEMENT_MICROVERSION)
        return adapter.Adapter(self.session, service_type=service_type,
                               region_name=region, interface=self.interface,
                               default_microversion=microversion)

    def _get(self, service_type: str, region: str, url: str,
             what: str, policy: str | None = None,
             params: dict | None = None, missing_ok: bool = False):
        """GET ``url``; its JSON, or None when missing and ``missing_ok``.
        """
        kwargs = {}
        if getattr(self.session, 'timeout', None) is None:
            kwargs['timeout'] = self.timeout
        try:
            resp = self._adapter(service_type, region).get(
                url, params=params, **kwargs)
        except ks_exc.EndpointNotFound:
            raise RegionError(region, 'the catalog has no %s endpoint '
                              '(interface %s) in this region'
                              % (service_type, self.interface)) from None
        except ks_exc.Forbidden:
            raise AdminRequired(region, (
                '%s is forbidden: it needs the admin role by default '
                'policy (%s); use admin credentials or ask an operator'
                % (what, policy or service_type))) from None
        except ks_exc.NotFound:
            if missing_ok:
                return None
            raise RegionError(region, '%s: not found (%s %s)'
                              % (what, service_type, url)) from None
        except ks_exc.HttpError as exc:
            raise RegionError(region, '%s failed: HTTP %s %s'
                              % (what, exc.http_status,
                                 exc.message or '')) from None
        except ks_exc.ConnectionError as exc:
            raise RegionError(region, '%s: %s API unreachable (%s)'
                              % (what, service_type, exc)) from None
        try:
            return resp.json()
        except ValueError:
            raise RegionError(region, '%s: the %s API answered HTTP %s '
                              'without JSON' % (what, service_type,
                                                resp.status_code)) from None

    # Compute ---------------------------------------------------------------

    def aggregates(self, region: str) -> list[dict]:
        """Every host aggregate of the region's nova."""
        body = self._get('compute', region, '/os-aggregates',
                         'reading host aggregates',
                         'os_compute_api:os-aggregates:index')
        return body.get('aggregates', [])

    def compute_services(self, region: str) -> list[dict]:
        """The nova-compute services of the region."""
        body = self._get('compute', region, '/os-services',
                         'listing compute services',
                         'os_compute_api:os-services:list',
                         params={'binary': 'nova-compute'})
        return [s for s in body.get('services', [])
                if s.get('binary') == 'nova-compute']

    def hypervisors(self, region: str) -> list[dict]:
        """Hypervisors with their service host and usage."""
        body = self._get('compute', region, '/os-hypervisors/detail',
                         'listing hypervisors',
                         'os_compute_api:os-hypervisors:list-detail')
        return body.get('hypervisors', [])

    def server(self, region: str, server_id: str) -> dict | None:
        """The server with this id in the region, or None."""
        body = self._get('compute', region,
                         '/servers/%s' % parse.quote(server_id, safe=''),
                         'showing server %s' % server_id,
                         'os_compute_api:servers:show', missing_ok=True)
        return None if body is None else body.get('server')

    def servers_named(self, region: str, name: str) -> list[dict]:
        """Servers of the project whose name is exactly ``name``."""
        # nova matches ``name`` as a regular expression.
        body = self._get('compute', region, '/servers/detail',
                         'listing servers named %s' % name,
                         'os_compute_api:servers:detail',
                         params={'name': '^%s$' % re.escape(name)})
        return [s for s in body.get('servers', []) if s.get('name') == name]

    # Placement -------------------------------------------------------------

    def provider_usage(self, region: str,
                       provider: str) -> tuple[dict, dict]:
        """(inventories, usages) of a resource provider, by resource class.
        """
        base = '/resource_providers/%s' % provider
        inventories = self._get('placement', region, base + '/inventories',
                                'reading inventories of provider %s'
                                % provider,
                                'placement:resource_providers:'
                                'inventories:list')
        usages = self._get('placement', region, base + '/usages',
                           'reading usages of provider %s' % provider,
                           'placement:resource_providers:usages')
        return (inventories.get('inventories', {}),
                usages.get('usages', {}))
