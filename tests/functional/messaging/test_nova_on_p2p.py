"""Real Nova services on ``transport_url = p2p://``: boot, list, delete.

Nova's in-process harness (``tests.functional.nova_base``) normally runs
every service on oslo.messaging's fake transport. Here the fake is taken
away: the cell mappings and ``transport_url`` point at a p2p deployment,
``nova.rpc`` is initialised on it, and casts stay casts. API, conductor and
scheduler share this process's peer; the compute service gets a peer of its
own (its own ``ConfigOpts``, port and asyncio thread), so everything between
the controllers and the compute (``build_and_run_instance``,
``terminate_instance``, the scheduler's instance-info fanout) crosses real,
authenticated TCP connections, with Nova's real context serializer. The
harness monkey-patches eventlet, so this
also runs the driver under Nova's eventlet executor.
"""

import fixtures
from nova import conf as nova_conf
from nova import context as nova_context
from nova import rpc
import oslo_messaging
import pytest

from discovery_nova.conf import messaging as messaging_conf
from tests.functional import nova_base
from tests.functional.messaging import p2p_env

pytestmark = pytest.mark.functional

CONF = nova_conf.CONF
#: nova.rpc functions before the harness's fixtures replace them (the
#: RPCFixture collapses every URL onto the fake bus; CellDatabases wraps
#: servers and clients in a serializer that smuggles in-process database
#: handles through the context, which no real transport can carry).
REAL_RPC = {name: getattr(rpc, name)
            for name in ('create_transport', 'get_server', 'get_client')}


class NovaOnP2PTest(nova_base.NovaFunctionalTestCase):
    """Boot, list and delete a server with every RPC on the p2p driver."""

    CAST_AS_CALL = False

    def _setup_services(self):
        self.p2p_url = p2p_env.url_for(p2p_env.free_port())
        messaging_conf.register_opts(CONF)
        settings = dict(p2p_env.FAST, listen_host='127.0.0.1',
                        deployment_key=p2p_env.KEY)
        for name, value in settings.items():
            self.flags(**{name: value, 'group': 'oslo_messaging_p2p'})
        for cell in self.cell_mappings.values():
            cell.transport_url = self.p2p_url
            cell.save()
        self.flags(transport_url=self.p2p_url)
        rpc.cleanup()
        for name, function in REAL_RPC.items():
            self.useFixture(fixtures.MonkeyPatch('nova.rpc.' + name,
                                                 function))
        rpc.init(CONF)
        self.addCleanup(self._cleanup_cell_transports)
        assert type(rpc.TRANSPORT._driver).__name__ == 'P2PDriver'
        self.controller_node = rpc.TRANSPORT._driver.node
        super()._setup_services()

    @staticmethod
    def _cleanup_cell_transports():
        """Release the transports nova cached per cell (rpc.cleanup does
        not), so this test's peers stop with it."""
        for _, mq_connection in nova_context.CELL_CACHE.values():
            if mq_connection is not None:
                mq_connection.cleanup()

    def _start_compute(self, host, cell_name=None):
        compute_conf = p2p_env.make_conf()
        compute_conf.set_override('control_exchange', CONF.control_exchange)
        transport = oslo_messaging.get_rpc_transport(
            compute_conf, url=self.p2p_url,
            allowed_remote_exmods=rpc.get_allowed_exmods())
        self.addCleanup(transport.cleanup)
        self.compute_node = transport._driver.node
        with fixtures.MonkeyPatch('nova.rpc.TRANSPORT', transport):
            return super()._start_compute(host, cell_name=cell_name)

    def test_boot_list_delete_server(self):
        assert self.compute_node.name != self.controller_node.name
        before = self.compute_node.stats_snapshot()['messages_in']

        server = self._create_server(name='on-p2p', networks='none')
        assert server['status'] == 'ACTIVE'
        assert server['OS-EXT-SRV-ATTR:host'] == 'compute'

        listed = self.api.get_servers()
        assert [s['id'] for s in listed] == [server['id']]

        self._delete_server(server)
        assert self.api.get_servers() == []

        # The compute's work arrived over the network, not in-process.
        compute_stats = self.compute_node.stats_snapshot()
        assert compute_stats['messages_in'] > before
        assert self.controller_node.stats_snapshot()['messages_in'] > 0
        assert compute_stats['wire_rejected_auth'] == 0
