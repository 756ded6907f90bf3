"""Base classes of the discovery tests: PoPs, clients per PoP, servers.

Each PoP is a keystone region, so talking to a PoP is using tempest's
compute clients with that region (``<manager>.compute.<Client>(region=)``);
the entry PoP is where every server is created. Servers are booted with
``networks='none'`` (compute microversion 2.37), as discovery-nova PoPs
need not offer networking, and each is deleted at the end of its test.
"""

from oslo_log import log as logging
from tempest import config
from tempest.api.compute import base as compute_base
from tempest.common import waiters
from tempest.lib import exceptions as lib_exc
from tempest.lib.common.utils import data_utils
from tempest.lib.common.utils import test_utils
from tempest.scenario import manager as scenario_manager

from discovery_nova.tests.tempest import pops as pops_mod

CONF = config.CONF
LOG = logging.getLogger(__name__)

#: Server attribute with the PoP (availability zone) a server runs at.
AZ = 'OS-EXT-AZ:availability_zone'
#: Server metadata the conductors write on a server built at another PoP.
META_POP = 'discovery_pop'
META_ORIGIN = 'discovery_origin'
#: Compute microversion of the tests: ``networks='none'`` needs 2.37.
MICROVERSION = '2.37'


class DiscoveryTestMixin:
    """PoPs, per-PoP clients and server helpers for a tempest test class.

    Needs admin credentials when ``[discovery]`` leaves the PoPs to be
    read from the entry PoP's host aggregates; placement and hypervisor
    figures need them anyway.
    """

    credentials = ['primary', 'admin']

    @classmethod
    def skip_checks(cls):
        super().skip_checks()
        if not CONF.service_available.discovery:
            raise cls.skipException(
                'discovery-nova is not enabled: [service_available] '
                'discovery = False')

    @classmethod
    def resource_setup(cls):
        super().resource_setup()
        cls.pops = cls.read_pops()
        if cls.pops.far is None:
            raise cls.skipException(
                'only one PoP (%s): the discovery tests need two or more'
                % cls.pops.entry)
        cls.entry_client = cls.servers_client_at(cls.pops.entry)

    @classmethod
    def read_pops(cls) -> pops_mod.Pops:
        entry = (CONF.discovery.entry_pop or CONF.compute.region
                 or CONF.identity.region)
        if not entry:
            raise lib_exc.InvalidConfiguration(
                'no entry PoP: expected [discovery] entry_pop, [compute] '
                'region or [identity] region to name a region')

        def aggregates():
            client = cls.os_admin.compute.AggregatesClient(region=entry)
            return client.list_aggregates()['aggregates']

        found = pops_mod.choose(entry, CONF.discovery.pops,
                                CONF.discovery.far_pop, aggregates)
        LOG.info("PoPs: entry %(entry)s, far %(far)s, all %(all)s",
                 {'entry': found.entry, 'far': found.far,
                  'all': ', '.join(found.names)})
        return found

    @classmethod
    def servers_client_at(cls, region: str, manager=None):
        """A servers client of ``manager`` (default primary) at a PoP."""
        manager = manager or cls.os_primary
        return manager.compute.ServersClient(
            region=region, enable_instance_password=(
                CONF.compute_feature_enabled.enable_instance_password))

    # -- servers --------------------------------------------------------

    def boot(self, hints: dict | None = None, wait_until: str = 'ACTIVE',
             count: int = 1) -> list[dict]:
        """Servers created at the entry PoP, deleted when the test ends.

        ``count`` > 1 is one multiple-create request. Returns the servers
        as shown once they reached ``wait_until``.
        """
        client = self.entry_client
        name = data_utils.rand_name(prefix=CONF.resource_name_prefix,
                                    name=self.__class__.__name__)
        kwargs = {}
        if hints:
            kwargs['scheduler_hints'] = hints
        if count > 1:
            kwargs.update(min_count=count, max_count=count)
        body = client.create_server(
            name=name, imageRef=CONF.compute.image_ref,
            flavorRef=CONF.compute.flavor_ref, networks='none', **kwargs)
        if count > 1:
            ids = [s['id'] for s in client.list_servers()['servers']
                   if s['name'].startswith(name)]
        else:
            ids = [body['server']['id']]
        for server_id in ids:
            self.addCleanup(waiters.wait_for_server_termination, client,
                            server_id, ignore_error=wait_until == 'ERROR')
        for server_id in ids:
            self.addCleanup(test_utils.call_and_ignore_notfound_exc,
                            client.delete_server, server_id)
        self.assertEqual(count, len(ids),
                         'servers named %s-* after asking for %d'
                         % (name, count))
        return [waiters.wait_for_server_status(
            client, server_id, wait_until,
            raise_on_error=wait_until != 'ERROR') for server_id in ids]

    def action_names(self, server_id: str) -> list[str]:
        """The instance actions of a server at the entry PoP."""
        actions = self.entry_client.list_instance_actions(server_id)
        return [a['action'] for a in actions['instanceActions']]

    def assertForwardedTo(self, server_id: str, pop: str) -> None:
        """The entry PoP recorded forwarding the build to ``pop``."""
        names = self.action_names(server_id)
        wanted = 'forward to %s' % pop
        self.assertTrue(
            any(n == wanted or n.startswith(wanted + ' ') for n in names),
            'no "%s" instance action on server %s; its actions: %s'
            % (wanted, server_id, names))

    def assertRunsAt(self, server: dict, pop: str) -> None:
        """Shown at the entry PoP as running at ``pop``, built from it."""
        self.assertEqual('ACTIVE', server['status'])
        self.assertEqual(pop, server[AZ])
        metadata = server.get('metadata') or {}
        self.assertEqual(pop, metadata.get(META_POP), metadata)
        self.assertEqual(self.pops.entry, metadata.get(META_ORIGIN),
                         metadata)
        remote = self.servers_client_at(pop).show_server(
            server['id'])['server']
        self.assertEqual('ACTIVE', remote['status'])
        self.assertEqual(pop, remote[AZ])

    def wait_gone_at(self, pop: str, server_id: str) -> None:
        """Wait ``[discovery] forward_timeout`` for a server to leave."""
        client = self.servers_client_at(pop)

        def gone():
            try:
                client.show_server(server_id)
            except lib_exc.NotFound:
                return True
            return False

        timeout = CONF.discovery.forward_timeout
        self.assertTrue(
            test_utils.call_until_true(gone, timeout,
                                       CONF.compute.build_interval),
            'server %s still at %s %ds after it was deleted at %s'
            % (server_id, pop, timeout, self.pops.entry))


class DiscoveryApiTest(DiscoveryTestMixin,
                       compute_base.BaseV2ComputeTest):
    """Base of the API tests: tempest's compute API test class."""

    min_microversion = MICROVERSION


class DiscoveryScenarioTest(DiscoveryTestMixin,
                            scenario_manager.ScenarioTest):
    """Base of the scenario tests: tempest's scenario test class."""

    compute_min_microversion = MICROVERSION
