"""Overflow: a full PoP sends the next server to another PoP, visibly."""

from tempest import config
from tempest.lib import decorators

from discovery_nova.tests.tempest import base
from discovery_nova.tests.tempest import capacity

CONF = config.CONF


class PopOverflowTest(base.DiscoveryScenarioTest):
    """Fill the entry PoP, then boot one server more.

    The entry PoP is filled with exactly as many ``[compute] flavor_ref``
    servers as its placement still admits; the next one must be built at
    another PoP, and the user keeps seeing (show, list) and deleting it
    at the entry PoP, where it was asked for.
    """

    def entry_free_slots(self, flavor: dict) -> int:
        client = self.os_admin.placement.ResourceProvidersClient(
            region=self.pops.entry)
        providers = []
        for rp in client.list_resource_providers()['resource_providers']:
            inventories = client.list_resource_provider_inventories(
                rp['uuid'])['inventories']
            usages = client.list_resource_provider_usages(
                rp['uuid'])['usages']
            providers.append((inventories, usages))
        return capacity.servers_that_fit(flavor, providers)

    def skip_unless_quota_allows(self, servers: int, flavor: dict) -> None:
        limits = self.os_primary.compute.LimitsClient(
            region=self.pops.entry).show_limits()['limits']['absolute']
        for what, each in (('Instances', 1), ('Cores', flavor['vcpus']),
                           ('RAMSize', flavor['ram'])):
            limit = limits['maxTotal%s' % what]
            used = limits['total%sUsed' % what.replace('Size', '')]
            if limit >= 0 and used + servers * each > limit:
                raise self.skipException(
                    'the project may not have %d servers more at %s: '
                    'quota maxTotal%s %d, %d used'
                    % (servers, self.pops.entry, what, limit, used))

    @decorators.attr(type='slow')
    @decorators.idempotent_id('6ae1aa17-d330-4fe5-81fa-bc3acd7ce887')
    def test_full_pop_overflows_and_the_server_stays_visible(self):
        entry = self.pops.entry
        flavors = self.os_primary.compute.FlavorsClient(region=entry)
        flavor = flavors.show_flavor(CONF.compute.flavor_ref)['flavor']
        free = self.entry_free_slots(flavor)
        if free > CONF.discovery.overflow_max_servers:
            raise self.skipException(
                'filling %s needs %d servers of flavor %s, more than '
                '[discovery] overflow_max_servers = %d'
                % (entry, free, flavor['name'],
                   CONF.discovery.overflow_max_servers))
        self.skip_unless_quota_allows(free + 1, flavor)

        if free:
            for server in self.boot(count=free):
                self.assertEqual(entry, server[base.AZ])
        self.assertEqual(0, self.entry_free_slots(flavor))

        server = self.boot()[0]
        landed = server[base.AZ]
        self.assertNotEqual(entry, landed)
        self.assertIn(landed, self.pops.names)
        self.assertRunsAt(server, landed)
        self.assertForwardedTo(server['id'], landed)

        listed = {s['id']: s for s in self.entry_client.list_servers(
            detail=True)['servers']}
        self.assertIn(server['id'], listed)
        self.assertEqual('ACTIVE', listed[server['id']]['status'])
        self.assertEqual(landed, listed[server['id']][base.AZ])

        self.entry_client.delete_server(server['id'])
        self.wait_gone_at(entry, server['id'])
        self.wait_gone_at(landed, server['id'])
