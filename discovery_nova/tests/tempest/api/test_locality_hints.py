"""Locality hints honoured: a server asked near a PoP is built there."""

from tempest.lib import decorators

from discovery_nova.tests.tempest import base


class LocalityHintsTest(base.DiscoveryApiTest):
    """``near=<PoP>`` at the entry PoP builds the server at that PoP.

    The entry PoP keeps the server's record: the server is shown, listed
    and deleted there, and it runs at the far PoP.
    """

    @decorators.attr(type='smoke')
    @decorators.idempotent_id('e6d05f3d-311e-4f55-b6ff-9f27ba701ffc')
    def test_near_hint_builds_the_server_at_that_pop(self):
        far = self.pops.far
        server = self.boot(hints={'near': far})[0]
        self.assertRunsAt(server, far)
        self.assertForwardedTo(server['id'], far)

    @decorators.idempotent_id('4afcd829-8aba-4e3c-8ba1-bf96a98d104c')
    def test_delete_at_the_entry_pop_deletes_it_where_it_runs(self):
        far = self.pops.far
        server = self.boot(hints={'near': far})[0]
        self.assertEqual(far, server[base.AZ])
        self.entry_client.delete_server(server['id'])
        self.wait_gone_at(self.pops.entry, server['id'])
        self.wait_gone_at(far, server['id'])
