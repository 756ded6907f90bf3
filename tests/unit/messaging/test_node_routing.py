"""How a peer hands messages to its mesh: at once over an idle link, in a
task otherwise, and never out of the order they were routed in.

The mesh is replaced by a stand-in that says whether a direct link is up
and records how each message left; the node's routing code is the real
one, run in an asyncio loop as in its network thread.
"""

import asyncio

from discovery_nova.messaging import mesh as mesh_mod
from discovery_nova.messaging import node as node_mod

PEER = 'peer-b'
KEY = ('rpc', 'nova', 'compute', 'host1')


class Directory:
    def nodes_for(self, key):
        return [PEER] if key[:3] == KEY[:3] else []


class Mesh:
    """One peer whose link is first being opened, then up and idle."""

    def __init__(self) -> None:
        self.directory = Directory()
        self.link_up = False
        self.opened = asyncio.Event()
        self.sent: list[tuple[str, int]] = []

    def deliver_now(self, dst, body):
        if not self.link_up:
            return None
        self.sent.append(('now', body['n']))
        return True

    async def deliver(self, dst, body):
        await self.opened.wait()
        self.link_up = True
        self.sent.append(('task', body['n']))
        return True

    def spawn(self, coro):
        return asyncio.get_running_loop().create_task(coro)


def make_node() -> node_mod.Node:
    settings = mesh_mod.MeshSettings(
        name='peer-a', key=b'k' * 32, max_bytes=1 << 20,
        connect_timeout=1.0, idle_timeout=60.0, max_connections=8,
        min_neighbours=2, max_hops=4, heartbeat_interval=1.0,
        registration_ttl=5.0)
    node = node_mod.Node(settings, [], False, ('127.0.0.1', 0), None,
                         undelivered_hold=5.0, notification_backlog=10)
    node._mesh = Mesh()
    return node


def cast(n: int) -> dict:
    return {'k': 'q', 'x': 'nova', 'tp': 'compute', 's': 'host1',
            'f': False, 'p': '{}', 'id': None, 'cm': None, 'n': n}


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_messages_routed_while_a_link_opens_keep_their_order():
    async def scenario(node):
        mesh = node._mesh
        node._route_rpc(cast(0), float('inf'))   # no link: a task opens it
        await settle()
        # The link comes up; the first message's task has not sent yet
        # when the next ones are routed: they must not overtake it.
        mesh.opened.set()
        mesh.link_up = True
        node._route_rpc(cast(1), float('inf'))
        node._route_reply(PEER, cast(2))
        await settle()
        # All sent, nothing waits: the next message leaves at once.
        node._route_rpc(cast(3), float('inf'))
        return mesh.sent

    sent = asyncio.run(scenario(make_node()))
    assert [n for _, n in sent] == [0, 1, 2, 3]
    assert sent[-1] == ('now', 3)


def test_a_message_over_an_idle_link_leaves_without_a_task():
    async def scenario(node):
        node._mesh.link_up = True
        node._route_rpc(cast(0), float('inf'))
        node._route_reply(PEER, cast(1))
        # Sent before the loop ran anything else.
        return list(node._mesh.sent), len(asyncio.all_tasks())

    sent, tasks = asyncio.run(scenario(make_node()))
    assert sent == [('now', 0), ('now', 1)]
    assert tasks == 1  # the scenario itself


def test_fanout_to_an_unlinked_peer_goes_through_a_task():
    async def scenario(node):
        body = dict(cast(0), f=True, s=None)
        node._route_rpc(body, float('inf'))
        assert node._mesh.sent == []
        node._mesh.opened.set()
        await settle()
        return node._mesh.sent

    assert asyncio.run(scenario(make_node())) == [('task', 0)]
