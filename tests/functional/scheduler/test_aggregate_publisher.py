"""The overlay agent's aggregate publisher against a real, in-process Nova.

Two real overlay agents (loopback, in-process membership, emulated RTTs)
measure each other; the publisher of agent ``par1`` writes what its agent
knows into par1's host aggregate, and fra1's aggregate as fra1's membership
record places it, through Nova's compute API with openstacksdk, as
``discovery-agent`` does. Nova's own versioned
notifications (``aggregate.update_metadata.end``) tell when the aggregate's
metadata was written, so "nothing changed, nothing written" is observed on
Nova's side, not taken from the publisher's word.
"""

import asyncio
import socket

import pytest

import discovery_nova.conf  # noqa: F401 (registers our options on CONF)
from discovery_nova.locality import pop as pop_mod
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.overlay.agent import AgentParams
from discovery_nova.overlay.agent import OverlayAgent
from discovery_nova.overlay.client_probe import ClientTarget
from discovery_nova.overlay.local_membership import LocalHub
from discovery_nova.overlay.local_membership import LocalMembership
from discovery_nova.overlay.spiral import SpiralParams
from discovery_nova.scheduler.aggregate_publisher import AggregatePublisher
from discovery_nova.scheduler.aggregate_publisher import PopIdentity
from discovery_nova.scheduler.aggregate_publisher import describe_other
from tests.functional import nova_base
from tests.ports import free_tcp_udp_port

pytestmark = pytest.mark.functional

KEY = b'functional-deployment-key'
CLIENT_NET = '192.0.2.0/24'
CLIENT_KEY = pop_mod.client_rtt_key(CLIENT_NET)
UPDATED = 'aggregate.update_metadata.end'


def _agent(name: str, hub: LocalHub, rtts: dict[str, float],
           client_port: int) -> OverlayAgent:
    params = AgentParams(
        name=name, key=KEY, listen_port=free_tcp_udp_port(),
        probe_interval=0.02, probe_timeout=0.5, request_timeout=1.0,
        spiral=SpiralParams(near_set_size=4, spiral_k=2, hop_timeout=0.5),
        spiral_refresh_interval=0.3, membership_heartbeat_interval=0.05,
        membership_timeout=0.5, restart_backoff=0.01,
        restart_backoff_max=0.05, emulated_rtt_ms=rtts,
        client_probes=(ClientTarget(CLIENT_NET, 'par1', '127.0.0.1',
                                    client_port),),
        client_probe_interval=0.1)
    membership = LocalMembership(
        'g', heartbeat_interval=params.membership_heartbeat_interval,
        timeout=params.membership_timeout, hub=hub)
    return OverlayAgent(params, membership=membership)


async def _until(check, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError('condition not met in %.1f s' % timeout)


class AggregatePublisherTest(nova_base.NovaFunctionalTestCase):
    """A running agent's view reaches its PoP aggregate, and only changes
    are written."""

    def _setup_services(self):
        self.flags(notification_format='versioned', group='notifications')
        super()._setup_services()

    def _aggregate(self, name: str = 'par1') -> dict:
        (aggregate,) = [a for a in self.admin_api.api_get(
            '/os-aggregates').body['aggregates'] if a['name'] == name]
        return aggregate

    def _writes(self) -> int:
        return sum(1 for n in self.notifier.versioned_notifications
                   if n['event_type'] == UPDATED)

    def test_agent_view_published_and_refreshed(self):
        # The client prefix's probe target: nothing listens there yet.
        listener = socket.socket()
        listener.bind(('127.0.0.1', 0))
        client_port = listener.getsockname()[1]
        self.addCleanup(listener.close)
        identity = PopIdentity('par1', frozenset({'country:FR'}),
                               renewable_share=0.7)
        publisher = AggregatePublisher(self.openstacksdk(), identity,
                                       interval=0.2)
        asyncio.run(asyncio.wait_for(
            self._scenario(publisher, listener, client_port), 60))

    async def _scenario(self, publisher, listener, client_port):
        hub = LocalHub()
        par1 = _agent('par1', hub, {'fra1': 10.0}, client_port)
        fra1 = _agent('fra1', hub, {'par1': 10.0}, client_port)
        for agent in (par1, fra1):
            await agent.start()
        try:
            await _until(lambda: 'fra1' in par1.locality_view().measured_rtt)
            # The publisher's loop publishes, on its own thread, what the
            # agent's view was when the interval came.
            views = []

            def view_now():
                views.append(par1.locality_view())
                return views[-1]
            task = asyncio.create_task(publisher.run(view_now))
            # A whole publication: this PoP's aggregate, then the others'.
            await _until(lambda: 'fra1' in publisher.published_others)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

            aggregate = self._aggregate()
            self.assertEqual(['compute'], aggregate['hosts'])
            self.assertEqual('par1', aggregate['availability_zone'])
            shown = PopDescriptor.from_metadata(aggregate['metadata'])
            # What Nova shows is the agent's coordinate, error and RTTs,
            # rounded to 0.01 ms.
            self.assertEqual(1, len(views))
            view = views[0]
            self.assertEqual(shown, publisher.published)
            self.assertEqual(len(view.coordinate.vec),
                             len(shown.coordinate.vec))
            for published, measured in zip(
                    shown.coordinate.vec + (shown.coordinate.height,),
                    view.coordinate.vec + (view.coordinate.height,),
                    strict=True):
                self.assertAlmostEqual(measured, published, delta=0.005)
            self.assertAlmostEqual(view.error, shown.error, delta=0.0005)
            self.assertEqual(frozenset({'country:FR'}), shown.tags)
            self.assertEqual(0.7, shown.renewable_share)
            self.assertIn('fra1', shown.measured_rtt)
            self.assertGreaterEqual(shown.measured_rtt['fra1'], 10.0)
            self.assertEqual({}, shown.client_rtt)
            # The other PoP, as its membership record places it: an
            # aggregate without hosts, its coordinate, error and tags.
            other = self._aggregate('fra1')
            self.assertEqual([], other['hosts'])
            self.assertEqual('fra1', other['availability_zone'])
            self.assertEqual(
                describe_other('fra1', view.others['fra1']),
                PopDescriptor.from_metadata(other['metadata']))

            loop = asyncio.get_running_loop()
            # The same view again: Nova sees no metadata write.
            view = par1.locality_view()
            await loop.run_in_executor(None, publisher.publish, view)
            writes = self._writes()
            result = await loop.run_in_executor(None, publisher.publish,
                                                view)
            self.assertFalse(result.changed)
            self.assertEqual(writes, self._writes())

            # The client prefix starts answering: the agent measures it,
            # and the next publication writes it, and only what changed.
            listener.listen()
            await _until(lambda: CLIENT_NET in par1.locality_view()
                         .client_rtt)
            result = await loop.run_in_executor(
                None, publisher.publish, par1.locality_view())
            self.assertIn(CLIENT_KEY, result.metadata_set)
            self.assertEqual(writes + 1, self._writes())
            metadata = self._aggregate()['metadata']
            self.assertLess(float(metadata[CLIENT_KEY]), 100.0)
            self.assertEqual('0.7', metadata[pop_mod.KEY_RENEWABLE])
        finally:
            for agent in (par1, fra1):
                await agent.stop()
