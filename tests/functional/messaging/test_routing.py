"""Bounded connections: peers past their bound relay instead of connecting.

Eight peers in this process, each with ``max_connections = 2``: a client
cannot hold a link to every server, so some calls are relayed; all of them
still succeed.
"""

import oslo_messaging
import pytest

from tests.functional.messaging import p2p_env
from tests.functional.messaging.test_contract import Deployment

pytestmark = pytest.mark.functional

BOUND = {'max_connections': 2, 'min_neighbours': 1}


class _Echo:
    def __init__(self, name: str) -> None:
        self.name = name

    def echo(self, ctxt, value):
        return [self.name, value]


def test_calls_are_relayed_when_connections_are_bounded():
    dep = Deployment()
    try:
        names = ['r%d' % i for i in range(6)]
        transports = []
        for name in names:
            transport = dep.transport(**BOUND)
            server = oslo_messaging.get_rpc_server(
                transport, oslo_messaging.Target(topic='t', server=name),
                [_Echo(name)], executor='threading')
            server.start()
            dep.servers.append(server)
            transports.append(transport)
        client_transport = dep.transport(**BOUND)
        client = oslo_messaging.get_rpc_client(
            client_transport, oslo_messaging.Target(topic='t'), timeout=5)
        directory = client_transport._driver.node._mesh.directory
        p2p_env.wait_for(lambda: all(
            directory.nodes_for(('rpc', p2p_env.EXCHANGE, 't', n))
            for n in names), timeout=20)
        for round_ in range(5):
            for name in names:
                try:
                    assert client.prepare(server=name).call(
                        {}, 'echo', value=round_) == [name, round_]
                except oslo_messaging.MessagingTimeout:
                    for t in transports + [client_transport]:
                        print(t._driver.node.stats_snapshot())
                    raise
        stats = [t._driver.node.stats_snapshot()
                 for t in transports + [client_transport]]
        assert sum(s['relayed'] for s in stats) > 0
        # Replies and neighbours may push inbound links past the bound for
        # a moment; once idle, every peer is back within it.
        p2p_env.wait_for(lambda: all(
            t._driver.node.stats_snapshot()['connections'] <= 2
            for t in transports + [client_transport]), timeout=10)
        assert client.prepare(server='r3').call({}, 'echo', value=9) == [
            'r3', 9]
    finally:
        dep.close()
