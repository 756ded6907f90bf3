"""The aggregate publisher: what it writes, when it holds back, its loop.

The compute API is the in-memory one of ``test_sync`` plus the service list;
the functional test runs the same publisher against a real, in-process Nova.
"""

import asyncio
import dataclasses
import threading

from openstack import exceptions as sdk_exc
import pytest

from discovery_nova.locality import pop as pop_mod
from discovery_nova.overlay.agent import LocalityView
from discovery_nova.overlay.agent import PeerPlace
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.scheduler import aggregate_publisher as ap
from tests.unit.scheduler.test_sync import InMemoryCompute

IDENTITY = ap.PopIdentity('par1', frozenset({'country:FR'}), 0.8, 1.2)


@dataclasses.dataclass
class Service:
    host: str
    binary: str = 'nova-compute'


class ComputeWithServices(InMemoryCompute):
    def __init__(self, hosts=('cmp1', 'cmp2')):
        super().__init__()
        self.hosts = list(hosts)
        self.failures = 0

    def services(self, binary=None):
        self.calls.append('services')
        if self.failures:
            self.failures -= 1
            raise sdk_exc.HttpException('503 Service Unavailable')
        return [Service(h) for h in self.hosts if binary in (None,
                                                              'nova-compute')]


@dataclasses.dataclass
class Connection:
    compute: ComputeWithServices


def view(x=10.0, y=-3.0, error=0.2, rtt=None, clients=None):
    return LocalityView(Coordinate((x, y), 0.5), error,
                        {'fra1': 4.0} if rtt is None else rtt,
                        {'192.0.2.0/24': 12.0} if clients is None
                        else clients)


def test_describe_rounds_and_carries_the_configured_identity():
    d = ap.describe(IDENTITY, LocalityView(
        Coordinate((1.23456, -7.891011), 0.123456), 0.1234567,
        {'fra1': 4.5678}, {'192.0.2.0/24': 12.3456}))
    assert d.coordinate == Coordinate((1.23, -7.89), 0.12)
    assert d.error == 0.123
    assert d.measured_rtt == {'fra1': 4.57}
    assert d.client_rtt == {'192.0.2.0/24': 12.35}
    assert (d.name, d.tags, d.renewable_share, d.pue) == (
        'par1', frozenset({'country:FR'}), 0.8, 1.2)


def test_settle_holds_small_moves_and_takes_large_ones():
    old = ap.describe(IDENTITY, view())
    assert ap.settle(old, None) is old
    # 1.9 ms (1.5 in the plane + 0.4 in height): held, error and all.
    small = ap.describe(IDENTITY, LocalityView(
        Coordinate((11.5, -3.0), 0.9), 0.23, {'fra1': 4.0}, {}))
    settled = ap.settle(small, old)
    assert (settled.coordinate, settled.error) == (old.coordinate, 0.2)
    # 2.1 ms: both rewritten.
    moved = ap.describe(IDENTITY, view(x=12.1))
    settled = ap.settle(moved, old)
    assert settled.coordinate == moved.coordinate and settled.error == 0.2
    # The error alone moving by more than 0.05 rewrites the pair.
    unsure = ap.describe(IDENTITY, view(x=10.5, error=0.26))
    settled = ap.settle(unsure, old)
    assert (settled.coordinate, settled.error) == (unsure.coordinate, 0.26)


@pytest.mark.parametrize('before,after,kept', [
    (4.0, 4.45, True),     # under the 0.5 ms floor
    (4.0, 4.55, False),
    (40.0, 43.9, True),    # under 10 %
    (40.0, 44.1, False),
    (40.0, 36.1, True),
    (40.0, 35.9, False),
])
def test_settle_holds_rtts_within_ten_percent_or_half_a_ms(before, after,
                                                           kept):
    old = ap.describe(IDENTITY, view(rtt={'fra1': before},
                                     clients={'192.0.2.0/24': before}))
    new = ap.describe(IDENTITY, view(rtt={'fra1': after, 'ams1': 9.0},
                                     clients={'192.0.2.0/24': after}))
    settled = ap.settle(new, old)
    expected = before if kept else after
    assert settled.measured_rtt == {'fra1': expected, 'ams1': 9.0}
    assert settled.client_rtt == {'192.0.2.0/24': expected}


def test_publish_writes_once_then_only_what_moved():
    compute = ComputeWithServices()
    publisher = ap.AggregatePublisher(Connection(compute), IDENTITY, 60)
    first = publisher.publish(view())
    assert first.created and first.hosts_added == ['cmp1', 'cmp2']
    stored = compute.store[first.aggregate_id]
    assert stored.metadata[pop_mod.KEY_COORD] == '10.0,-3.0;0.5'
    assert stored.metadata[pop_mod.KEY_PUE] == '1.2'
    assert stored.metadata['discovery_client_rtt:192.0.2.0_24'] == '12.0'
    compute.calls.clear()
    # Jitter below the thresholds: two reads, no write.
    assert not publisher.publish(view(x=10.4, error=0.21,
                                      rtt={'fra1': 4.3})).changed
    assert compute.calls == ['services', 'list']
    # A new compute host and a new client prefix: exactly those.
    compute.hosts.append('cmp3')
    result = publisher.publish(view(clients={'192.0.2.0/24': 12.1,
                                             '198.51.100.0/24': 30.0}))
    assert result.hosts_added == ['cmp3']
    assert result.metadata_set == {
        'discovery_client_rtt:198.51.100.0_24': '30.0'}


def test_keys_the_agent_is_not_configured_for_are_left_alone():
    compute = ComputeWithServices()
    bare = ap.PopIdentity('par1')
    publisher = ap.AggregatePublisher(Connection(compute), bare, 60)
    aggregate_id = publisher.publish(view()).aggregate_id
    by_hand = {pop_mod.KEY_PUE: '1.4', pop_mod.KEY_TAGS: 'country:FR',
               pop_mod.KEY_IMAGES: 'img-1', pop_mod.KEY_FREE_VCPUS: '8'}
    compute.store[aggregate_id].metadata.update(by_hand)
    # The prefix the agent no longer measures goes; the rest stays.
    result = publisher.publish(view(clients={}))
    assert result.metadata_set == {
        'discovery_client_rtt:192.0.2.0_24': None}
    metadata = compute.store[aggregate_id].metadata
    assert {k: metadata[k] for k in by_hand} == by_hand
    # Configured, the agent's values replace the admin's.
    publisher.identity = IDENTITY
    publisher.publish(view(clients={}))
    assert metadata[pop_mod.KEY_PUE] == '1.2'
    assert metadata[pop_mod.KEY_IMAGES] == 'img-1'


def with_others(base: LocalityView, **others) -> LocalityView:
    return dataclasses.replace(base, others=others)


def test_other_pops_are_written_from_their_records_without_hosts():
    compute = ComputeWithServices()
    publisher = ap.AggregatePublisher(Connection(compute), IDENTITY, 60)
    # lon1 has hosts of this deployment: its own agent publishes it.
    lon1 = compute.create_aggregate('lon1', 'lon1')
    compute.store[lon1.id].hosts.append('lon-cmp1')
    compute.store[lon1.id].metadata[pop_mod.KEY_POP] = 'lon1'
    fra1 = PeerPlace(Coordinate((14.321, 2.0), 0.2), 0.1234,
                     ('country:DE',))
    publisher.publish(with_others(
        view(), fra1=fra1,
        lon1=PeerPlace(Coordinate((1.0, 1.0), 0.1), 0.1),
        ams1=PeerPlace(Coordinate((9.0, 9.0), 0.1), 0.3, ('bad tag',))))
    by_pop = {a.metadata.get(pop_mod.KEY_POP): a
              for a in compute.store.values()}
    assert set(by_pop) == {'par1', 'fra1', 'lon1'}  # ams1: a bad tag
    written = pop_mod.PopDescriptor.from_metadata(by_pop['fra1'].metadata)
    assert (written.coordinate, written.error, written.tags) == (
        Coordinate((14.32, 2.0), 0.2), 0.123, frozenset({'country:DE'}))
    assert by_pop['fra1'].hosts == []
    assert by_pop['fra1'].availability_zone == 'fra1'
    assert by_pop['lon1'].metadata == {'availability_zone': 'lon1',
                                       pop_mod.KEY_POP: 'lon1'}

    # What a record does not carry stays; small moves are held.
    by_pop['fra1'].metadata[pop_mod.KEY_RTT] = 'par1:10.0'
    by_pop['fra1'].metadata[pop_mod.KEY_PUE] = '1.1'
    compute.calls.clear()
    publisher.publish(with_others(view(), fra1=dataclasses.replace(
        fra1, coordinate=Coordinate((15.0, 2.0), 0.2))))
    assert compute.calls == ['services', 'list']
    assert by_pop['fra1'].metadata[pop_mod.KEY_RTT] == 'par1:10.0'
    assert by_pop['fra1'].metadata[pop_mod.KEY_PUE] == '1.1'
    # A real move is written.
    publisher.publish(with_others(view(), fra1=dataclasses.replace(
        fra1, coordinate=Coordinate((20.0, 2.0), 0.2))))
    assert by_pop['fra1'].metadata[pop_mod.KEY_COORD] == '20.0,2.0;0.2'


def test_other_pops_can_be_left_to_someone_else():
    compute = ComputeWithServices()
    publisher = ap.AggregatePublisher(Connection(compute), IDENTITY, 60,
                                      other_pops=False)
    publisher.publish(with_others(view(), fra1=PeerPlace(
        Coordinate((14.0, 2.0), 0.2), 0.1)))
    assert [a.name for a in compute.store.values()] == ['par1']


def test_identity_and_interval_are_checked():
    with pytest.raises(ap.PublisherConfigError, match='pop_tags'):
        ap.PopIdentity('par1', frozenset({'bad tag'}))
    with pytest.raises(ap.PublisherConfigError, match='pop_name'):
        ap.PopIdentity('x' * 64)
    with pytest.raises(ap.PublisherConfigError, match='publish_interval'):
        ap.AggregatePublisher(Connection(ComputeWithServices()), IDENTITY, 0)


class BlockingCompute(ComputeWithServices):
    """Its service list waits until released, like a slow API."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.threads = set()

    def services(self, binary=None):
        self.threads.add(threading.current_thread().name)
        if not self.release.wait(5):
            raise AssertionError('never released')
        return super().services(binary)


def test_run_publishes_off_the_loop_and_survives_api_errors():
    compute = BlockingCompute()
    compute.failures = 1
    publisher = ap.AggregatePublisher(Connection(compute), IDENTITY, 0.05)
    views = []

    def current():
        views.append(asyncio.get_running_loop())
        return view(x=10.0 + 5 * len(views))

    async def main():
        task = asyncio.create_task(publisher.run(current))
        # The loop keeps turning while the API call hangs on its thread.
        ticks = 0
        while not compute.threads and ticks < 100:
            await asyncio.sleep(0.01)
            ticks += 1
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert compute.threads and not compute.store
        compute.release.set()
        # The first call fails (503); the loop goes on to a later one.
        while publisher.published is None:
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(asyncio.wait_for(main(), 10))
    assert all(t.startswith('aggregate-publisher') for t in compute.threads)
    assert len(views) >= 2
    (stored,) = compute.store.values()
    assert stored.metadata[pop_mod.KEY_POP] == 'par1'
