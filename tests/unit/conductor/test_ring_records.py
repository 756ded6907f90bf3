"""The conductors' ring records, through real overlay agents.

Three agents run on loopback in a background thread (in-process
membership); the records are written and read with the blocking client
the conductor and the ``openstack`` command use, from the main thread, so
everything below the client (wire, ring routing, locator replication) is
the real code.
"""

import asyncio
import threading

from nova import objects
import pytest

from discovery_nova.conductor import placement_index
from discovery_nova.conductor import ring_records
from discovery_nova.conductor import takeover
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.locality.prefixes import PrefixTable
from discovery_nova.overlay.agent import AgentParams
from discovery_nova.overlay.agent import OverlayAgent
from discovery_nova.overlay.client import AgentClient
from discovery_nova.overlay.client import AgentUnavailable
from discovery_nova.overlay.client import read_key_file
from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.local_membership import LocalHub
from discovery_nova.overlay.local_membership import LocalMembership
from tests.ports import free_tcp_udp_port

objects.register_all()

KEY = b'unit-test-deployment-key'
UUID = '4b1f1e2a-8c51-4a36-9d64-6e0a3f1c2b7d'


class Ring:
    """Agents on an event loop of their own thread."""

    def __init__(self, names):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       daemon=True)
        self.thread.start()
        hub = LocalHub()
        self.agents = {}
        for name in names:
            params = AgentParams(
                name=name, key=KEY, listen_host='127.0.0.1',
                listen_port=free_tcp_udp_port(), probe_interval=0.05,
                request_timeout=1.0, membership_heartbeat_interval=0.05,
                membership_timeout=0.5)
            membership = LocalMembership('g', heartbeat_interval=0.05,
                                         timeout=0.5, hub=hub)
            self.agents[name] = OverlayAgent(params, membership=membership)
        for agent in self.agents.values():
            self.call(agent.start())
        self.wait(lambda: all(len(a.peers) == len(names) - 1
                              for a in self.agents.values()))

    def call(self, coro, timeout=20):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(
            timeout)

    def wait(self, check, timeout=10.0):
        async def until():
            deadline = self.loop.time() + timeout
            while not check():
                if self.loop.time() > deadline:
                    raise AssertionError('not met within %.0f s' % timeout)
                await asyncio.sleep(0.02)
        self.call(until(), timeout + 5)

    def client(self, name) -> AgentClient:
        return AgentClient('127.0.0.1',
                           self.agents[name].params.listen_port, KEY,
                           timeout=5.0)

    def stop(self, name):
        self.call(self.agents.pop(name).stop())

    def close(self):
        for name in list(self.agents):
            self.stop(name)

        async def drain():
            # Links of stopped agents may still wait on their queues.
            tasks = [t for t in asyncio.all_tasks()
                     if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.call(drain())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def ring():
    ring = Ring(['pa', 'pb', 'pc'])
    yield ring
    ring.close()


def test_a_record_written_at_one_pop_is_found_from_every_pop(ring):
    ring_records.RingRecords(ring.client('pa')).put_server(
        UUID, {'pop': 'pb', 'holder': 'pa', 'origin': 'pa'})
    for name in ('pa', 'pb', 'pc'):
        found = ring_records.RingRecords(ring.client(name)).server(UUID)
        assert found.found
        assert found.value == {'pop': 'pb', 'holder': 'pa', 'origin': 'pa'}
        assert found.path[0] == name
        assert found.node == found.path[-1]
    missing = ring_records.RingRecords(ring.client('pc')).server(
        '00000000-0000-0000-0000-000000000000')
    assert not missing.found and missing.value is None


def test_a_spec_too_big_for_one_record_is_split_and_read_back(ring):
    records = ring_records.RingRecords(ring.client('pa'))
    # Random-looking text compresses badly: several parts are needed.
    spec = {'instance': {'blob': [('%08x' % (i * 2654435761 % 2 ** 32))
                                  for i in range(2000)]}, 'networks': 'none'}
    pointer = records.put_spec(UUID, spec)
    assert pointer['parts'] > 1
    reader = ring_records.RingRecords(ring.client('pc'))
    assert reader.spec(UUID, pointer) == spec
    with pytest.raises(ring_records.RecordError, match='digest'):
        reader.spec(UUID, dict(pointer, sha='0' * 32))
    with pytest.raises(ring_records.RecordError, match='pointer'):
        reader.spec(UUID, None)


def test_a_pop_index_outlives_its_pop_and_shrinks_cleanly(ring):
    uuids = ['%08d-0000-4000-8000-000000000000' % i for i in range(150)]
    writer = ring_records.RingRecords(ring.client('pb'))
    pages = writer.put_pop_index('pb', uuids)
    assert pages == 3
    ring.stop('pb')
    reader = ring_records.RingRecords(ring.client('pa'))
    assert reader.pop_index('pb') == sorted(uuids)
    assert reader.pop_index('nowhere') is None
    # A smaller index empties the pages it no longer uses.
    reader.put_pop_index('pb', uuids[:10], previous_pages=pages)
    assert ring_records.RingRecords(ring.client('pc')).pop_index('pb') == \
        sorted(uuids[:10])


def test_records_survive_the_death_of_the_pop_that_wrote_them(ring):
    records = ring_records.RingRecords(ring.client('pa'))
    for i in range(12):
        records.put_server('%s-%d' % (UUID, i), {'pop': 'pa', 'n': i})
    ring.stop('pa')
    ring.wait(lambda: all(len(a.peers) == 1 for a in ring.agents.values()))
    reader = ring_records.RingRecords(ring.client('pb'))
    for i in range(12):
        assert reader.server('%s-%d' % (UUID, i)).value == {'pop': 'pa',
                                                             'n': i}


def test_client_errors_name_the_agent_and_the_problem(tmp_path):
    closed = AgentClient('127.0.0.1', free_tcp_udp_port(), KEY, timeout=1.0)
    with pytest.raises(AgentUnavailable, match='127.0.0.1:%d: locate '
                       % closed.port):
        closed.locate('server:x')
    short = tmp_path / 'key'
    short.write_text('too-short\n')
    with pytest.raises(AgentUnavailable, match='at least 16'):
        read_key_file(str(short))
    with pytest.raises(AgentUnavailable, match='cannot read'):
        read_key_file(str(tmp_path / 'missing'))
    with pytest.raises(AgentUnavailable, match='host:port'):
        AgentClient.from_address('no-port', KEY)
    assert AgentClient.from_address('0.0.0.0:7390', KEY).host == '127.0.0.1'


def test_which_servers_a_pop_keeps_records_of():
    forwarded = {'discovery_forwarded_to': 'pb'}
    assert placement_index.kind_of('pa', {}, {}) == placement_index.NATIVE
    assert placement_index.kind_of(
        'pa', {'discovery_origin': 'pa'}, {}) == placement_index.NATIVE
    assert placement_index.kind_of(
        'pa', {'discovery_origin': 'pa'}, forwarded) == \
        placement_index.FORWARDED
    # Forwarded here by pb: pb keeps its record.
    assert placement_index.kind_of('pa', {'discovery_origin': 'pb'},
                                   {}) is None


def _pop(name, x, y):
    return PopDescriptor(name=name, coordinate=Coordinate((x, y), 0.0),
                         error=0.1)


def test_every_conductor_picks_the_same_successor_of_a_dead_pop():
    pops = {p.name: p for p in (_pop('pa', 0, 0), _pop('pb', 10, 0),
                                _pop('pc', 50, 0), _pop('pd', 10, 0.0))}
    prefixes = PrefixTable()
    # pb and pd are equally near: the name breaks the tie.
    assert takeover.successor_of('pa', pops, {'pb', 'pc', 'pd'},
                                 prefixes) == 'pb'
    assert takeover.successor_of('pa', pops, {'pc', 'pd'}, prefixes) == 'pd'
    assert takeover.successor_of('pc', pops, {'pa', 'pb'}, prefixes) == 'pb'
    assert takeover.successor_of('pa', pops, set(), prefixes) is None
    assert takeover.successor_of('px', pops, {'pa'}, prefixes) is None


# -- the conductor's pass over its cell, on real agents ------------------

class _Manager:
    pop_name = 'pa'


class _Sync:
    """Records what the pass hands to the shadow sync's reconcile."""

    def __init__(self):
        self.reconciled = []

    def _reconcile_guests(self, cctxt, guests, alive):
        self.reconciled.extend((g.uuid, g.metadata['discovery_origin'],
                                sorted(alive)) for g in guests)


def _instance(uuid, metadata=None, system_metadata=None, host='pa-cmp1'):
    return objects.Instance(
        uuid=uuid, metadata=dict(metadata or {}),
        system_metadata=dict(system_metadata or {}), vm_state='active',
        host=host, display_name='vm-' + uuid[:4], updated_at=None)


def _index(ring, sync=None):
    index = placement_index.PlacementIndex(_Manager(), sync or _Sync(),
                                           ring.client('pa'))
    index.spec_of = lambda cctxt, instance: {'instance': instance.uuid}
    return index


NATIVE_ID = '11111111-0000-4000-8000-000000000001'
FORWARDED_ID = '11111111-0000-4000-8000-000000000002'
GUEST_ID = '11111111-0000-4000-8000-000000000003'
OTHER_ID = '11111111-0000-4000-8000-000000000004'


def test_the_pass_publishes_what_this_pop_keeps_and_marks_deletions(ring):
    index = _index(ring)
    native = _instance(NATIVE_ID)
    forwarded = _instance(FORWARDED_ID, {'discovery_origin': 'pa'},
                          {'discovery_forwarded_to': 'pc'}, host=None)
    guest = _instance(GUEST_ID, {'discovery_origin': 'pb'})
    index.publish(None, [native, forwarded, guest], {'pa', 'pb', 'pc'})
    reader = ring_records.RingRecords(ring.client('pb'))
    record = reader.server(NATIVE_ID).value
    assert {k: record[k] for k in ('pop', 'holder', 'origin', 'host',
                                   'state')} == {
        'pop': 'pa', 'holder': 'pa', 'origin': 'pa', 'host': 'pa-cmp1',
        'state': 'active'}
    assert reader.spec(NATIVE_ID, record['spec']) == {'instance': NATIVE_ID}
    record = reader.server(FORWARDED_ID).value
    assert (record['pop'], record['holder'], 'spec' in record) == (
        'pc', 'pa', False)
    # pb, which forwarded the guest here, keeps its record.
    assert not reader.server(GUEST_ID).found
    assert reader.pop_index('pa') == [NATIVE_ID]
    index.publish(None, [forwarded, guest], {'pa', 'pb', 'pc'})
    assert reader.server(NATIVE_ID).value['deleted'] is True
    assert reader.pop_index('pa') == []


def test_a_record_of_another_live_pop_hands_the_copy_to_reconcile(ring):
    writer = ring_records.RingRecords(ring.client('pc'))
    writer.put_server(NATIVE_ID, {'pop': 'pb', 'holder': 'pb'})
    sync = _Sync()
    index = _index(ring, sync)
    index.publish(None, [_instance(NATIVE_ID)], {'pa', 'pb', 'pc'})
    assert sync.reconciled == [(NATIVE_ID, 'pb', ['pa', 'pb', 'pc'])]
    # Not ours: untouched, and not in our index.
    assert writer.server(NATIVE_ID).value == {'pop': 'pb', 'holder': 'pb'}
    assert writer.pop_index('pa') == []
    # Its holder is dead and this copy was not rebuilt from it: wait.
    sync.reconciled.clear()
    index.publish(None, [_instance(NATIVE_ID)], {'pa', 'pc'})
    assert sync.reconciled == []
    assert writer.server(NATIVE_ID).value['holder'] == 'pb'
    # A copy rebuilt here from that dead PoP claims the record.
    rebuilt = _instance(NATIVE_ID, system_metadata={
        ring_records.SYSMETA_REBUILT_FROM: 'pb'})
    index.publish(None, [rebuilt], {'pa', 'pc'})
    record = writer.server(NATIVE_ID).value
    assert (record['holder'], record['pop'], record['rebuilt_from']) == (
        'pa', 'pa', 'pb')
    assert writer.pop_index('pa') == [NATIVE_ID]


def test_servers_deleted_while_the_conductor_was_down_are_marked(ring):
    first = _index(ring)
    first.publish(None, [_instance(NATIVE_ID), _instance(OTHER_ID)],
                  {'pa'})
    # The conductor restarts; one server was deleted meanwhile.
    second = _index(ring)
    second.publish(None, [_instance(OTHER_ID)], {'pa'})
    reader = ring_records.RingRecords(ring.client('pc'))
    assert reader.server(NATIVE_ID).value['deleted'] is True
    assert reader.server(OTHER_ID).value.get('deleted') is None
    assert reader.pop_index('pa') == [OTHER_ID]
