"""Membership records, the notification dispatcher and the local backend."""

import asyncio
import logging

import pytest

from discovery_nova.overlay.errors import MembershipUnavailable
from discovery_nova.overlay.local_membership import LocalHub
from discovery_nova.overlay.local_membership import LocalMembership
from discovery_nova.overlay.membership import EventKind
from discovery_nova.overlay.membership import LeaveReason
from discovery_nova.overlay.membership import Member
from discovery_nova.overlay.membership import MembershipEvent
from discovery_nova.overlay.membership import MembershipListener
from discovery_nova.overlay.membership import NeighboursChanged
from discovery_nova.overlay.membership import NotificationDispatcher
from discovery_nova.overlay.membership import load_membership
from discovery_nova.overlay.peer import PeerRef
from discovery_nova.sim.clock import VirtualClock


class Recorder(MembershipListener):
    def __init__(self):
        self.events = []

    def on_join(self, event):
        self.events.append(('join', event.member.name))

    def on_leave(self, event):
        self.events.append(('leave', event.member.name, event.reason))

    def on_update(self, event):
        self.events.append(('update', event.member.name,
                            event.member.capabilities))

    def on_neighbours_changed(self, event):
        self.events.append(('neighbours', event.kind,
                            [p.name for p in event.added],
                            [p.name for p in event.removed]))


class Broken(MembershipListener):
    def on_join(self, event):
        raise RuntimeError('listener bug')

    on_leave = on_join
    on_neighbours_changed = on_join


def _member(name, **caps):
    return Member.create(name, '127.0.0.1:%d' % (7000 + len(name)), **caps)


# -- Member records ------------------------------------------------------

def test_member_round_trips_through_its_record():
    member = _member('paris', coordinate=[[1.0, 2.0, 3.0], 0.5],
                     tags=['country:FR'])
    again = Member.from_record('paris', member.to_record())
    assert again == member
    assert again.coordinate.vec == (1.0, 2.0, 3.0)
    assert again.tags == ('country:FR',)
    assert again.peer == PeerRef('paris', member.address)


@pytest.mark.parametrize('record,words', [
    ('junk', 'a record is'),
    ({'version': 7, 'address': ''}, 'record version 1 expected'),
    ({'version': 1, 'address': 5}, 'address is'),
    ({'version': 1, 'address': '', 'capabilities': {'coordinate': 'x'}},
     'a coordinate is'),
    ({'version': 1, 'address': '', 'capabilities': {'tags': 'FR'}},
     'tags'),
    ({'version': 1, 'address': '', 'capabilities': [1]},
     'mapping with string keys'),
])
def test_bad_records_are_refused_naming_the_member(record, words):
    with pytest.raises(ValueError) as info:
        Member.from_record('lyon', record)
    assert 'lyon' in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize('name', ['', 'a\nb', 'x' * 256, 7])
def test_bad_member_names_are_refused(name):
    with pytest.raises(ValueError, match='member name'):
        Member(PeerRef(name, ''))


# -- dispatcher ------------------------------------------------------------

def _join(name):
    return MembershipEvent(EventKind.JOIN, _member(name), 0.0)


def test_a_raising_listener_is_isolated_logged_and_counted(caplog):
    dispatcher = NotificationDispatcher()
    before, after = Recorder(), Recorder()
    dispatcher.register(before)
    dispatcher.register(Broken())
    dispatcher.register(after)
    with caplog.at_level(logging.ERROR):
        dispatcher.post(_join('a'))
        dispatcher.notify_neighbours_changed(
            'ring_successors', added=[PeerRef('a')])
    assert before.events == after.events == [
        ('join', 'a'), ('neighbours', 'ring_successors', ['a'], [])]
    assert dispatcher.failures == {'Broken': 2}
    assert dispatcher.failures_total == 2
    assert 'Broken failed in on_join' in caplog.text
    assert 'listener bug' in caplog.text


def test_callables_and_objects_can_be_registered_and_unregistered():
    dispatcher = NotificationDispatcher()
    seen = []
    registration = dispatcher.register(on_leave=seen.append, name='fn')
    dispatcher.post(_join('a'))  # no on_join handler: nothing happens
    assert seen == []
    leave = MembershipEvent(EventKind.LEAVE, _member('a'), 1.0,
                            LeaveReason.LEFT)
    dispatcher.post(leave)
    assert seen == [leave]
    dispatcher.unregister(registration)
    dispatcher.post(leave)
    assert seen == [leave]
    assert dispatcher.posted == {'join': 1, 'leave': 2}


def test_registering_nothing_or_non_callables_is_refused():
    dispatcher = NotificationDispatcher()
    with pytest.raises(TypeError, match='at least one of'):
        dispatcher.register(object())
    with pytest.raises(TypeError, match='on_join must be callable'):
        dispatcher.register(on_join=3)


def test_events_posted_by_a_listener_wait_for_the_current_one():
    dispatcher = NotificationDispatcher()
    order = []

    class Announcer(MembershipListener):
        def on_join(self, event):
            order.append(('announcer', event.member.name))
            dispatcher.notify_neighbours_changed('spiral_near',
                                                 [event.member.peer])

    class Last(MembershipListener):
        def on_join(self, event):
            order.append(('last', event.member.name))

        def on_neighbours_changed(self, event):
            order.append(('last-neighbours', event.kind))

    dispatcher.register(Announcer())
    dispatcher.register(Last())
    dispatcher.post(_join('a'))
    assert order == [('announcer', 'a'), ('last', 'a'),
                     ('last-neighbours', 'spiral_near')]


def test_neighbour_changes_are_checked_and_empty_ones_dropped():
    dispatcher = NotificationDispatcher()
    recorder = Recorder()
    dispatcher.register(recorder)
    dispatcher.notify_neighbours_changed('ring_successors', [], [])
    assert recorder.events == []
    with pytest.raises(ValueError, match='neighbour set kind'):
        dispatcher.notify_neighbours_changed('', [PeerRef('a')])
    with pytest.raises(TypeError, match='PeerRef'):
        dispatcher.notify_neighbours_changed('ring_successors', ['a'])
    assert isinstance(NeighboursChanged('k', (), ()), NeighboursChanged)


# -- local backend -------------------------------------------------------

def _local(hub, clock=None, **kw):
    membership = LocalMembership('g', heartbeat_interval=1.0, timeout=5.0,
                                 clock=clock, hub=hub, **kw)
    membership.start()
    return membership


def test_local_members_see_each_other_join_update_and_leave():
    hub = LocalHub()
    a, b = _local(hub), _local(hub)
    seen_by_a = Recorder()
    a.register_listener(seen_by_a)
    a.join(_member('a'))
    b.join(_member('b'))
    assert seen_by_a.events == [('join', 'b')]
    assert set(a.members()) == set(b.members()) == {'a', 'b'}
    assert [p.name for p in a.peers()] == ['b']
    b.update_capabilities({'tags': ['country:FR']})
    assert seen_by_a.events[-1] == ('update', 'b', {'tags': ['country:FR']})
    assert a.members()['b'].tags == ('country:FR',)
    seen_by_b = Recorder()
    b.register_listener(seen_by_b)
    b.stop()
    assert seen_by_a.events[-1] == ('leave', 'b', LeaveReason.LEFT)
    assert set(a.members()) == {'a'}
    # Nobody is told of its own comings and goings.
    assert seen_by_b.events == [('join', 'a')]
    assert not any(e[1] == 'a' for e in seen_by_a.events)


def test_a_late_listener_gets_the_current_members_replayed():
    hub = LocalHub()
    a, b, c = _local(hub), _local(hub), _local(hub)
    b.join(_member('b'))
    c.join(_member('c'))
    a.join(_member('a'))
    late = Recorder()
    a.register_listener(late)
    assert sorted(late.events) == [('join', 'b'), ('join', 'c')]
    quiet = Recorder()
    a.register_listener(quiet, replay=False)
    assert quiet.events == []


def test_a_crashed_member_leaves_after_the_timeout_on_the_clock():
    clock = VirtualClock()
    hub = LocalHub()
    a, b = _local(hub, clock), _local(hub, clock)
    recorder = Recorder()
    a.register_listener(recorder)
    a.join(_member('a'))
    b.join(_member('b'))
    clock.run_until(12.5)
    b.crash()  # last heartbeat at t=12, timeout 5 s: gone at t=17
    clock.run_until(16.9)
    assert 'b' in a.members()
    left_at = []
    a.register_listener(on_leave=lambda e: left_at.append(e.time),
                        replay=False)
    clock.run_until(20.0)
    assert recorder.events[-1] == ('leave', 'b', LeaveReason.TIMEOUT)
    assert left_at == [17.0]
    assert hub.member_names('g') == ['a']


def test_a_restarted_member_replaces_its_crashed_incarnation():
    clock = VirtualClock()
    hub = LocalHub()
    a, b = _local(hub, clock), _local(hub, clock)
    recorder = Recorder()
    a.register_listener(recorder)
    a.join(_member('a'))
    b.join(_member('b'))
    b.crash()
    with pytest.raises(MembershipUnavailable, match='crashed'):
        b.start()
    again = _local(hub, clock)
    again.join(_member('b'))
    assert recorder.events == [('join', 'b'), ('leave', 'b', LeaveReason.GONE),
                               ('join', 'b')]
    clock.run_until(100.0)  # the old incarnation's timer must not fire
    assert 'b' in a.members()


def test_local_membership_refuses_misuse_clearly():
    hub = LocalHub()
    idle = LocalMembership('g', hub=hub)
    with pytest.raises(MembershipUnavailable, match='before start'):
        idle.join(_member('a'))
    a, b = _local(hub), _local(hub)
    a.join(_member('a'))
    with pytest.raises(MembershipUnavailable, match='already live'):
        b.join(_member('a'))
    with pytest.raises(MembershipUnavailable, match='already joined'):
        a.join(_member('x'))
    with pytest.raises(MembershipUnavailable, match='before join'):
        b.update_capabilities({})
    with pytest.raises(ValueError, match='larger than heartbeat_interval'):
        LocalMembership('g', heartbeat_interval=2.0, timeout=1.0)


def test_clockless_crash_is_noticed_by_run_on_the_monotonic_clock():
    hub = LocalHub()
    a = LocalMembership('g', heartbeat_interval=0.02, timeout=0.1, hub=hub)
    b = LocalMembership('g', heartbeat_interval=0.02, timeout=0.1, hub=hub)
    a.start()
    b.start()
    left = []
    a.register_listener(on_leave=lambda e: left.append(e.reason))
    a.join(_member('a'))
    b.join(_member('b'))
    b.crash()

    async def main():
        task = asyncio.ensure_future(a.run())
        for _ in range(100):
            if left:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(main())
    assert left == [LeaveReason.TIMEOUT]


def test_backends_load_through_stevedore_and_unknown_names_fail():
    membership = load_membership('local', group='stevedore-test',
                                 heartbeat_interval=0.5, timeout=2.0)
    assert isinstance(membership, LocalMembership)
    # Built from the same configuration as tooz: a tooz URL means the
    # default hub, local://NAME a hub of its own.
    same = load_membership('local', url='file:///var/lib/x/membership',
                           group='stevedore-test')
    apart = load_membership('local', url='local://run-1',
                            group='stevedore-test')
    again = load_membership('local', url='local://run-1',
                            group='stevedore-test')
    assert same.hub is membership.hub
    assert apart.hub is not membership.hub and again.hub is apart.hub
    with pytest.raises(MembershipUnavailable) as info:
        load_membership('carrier-pigeon')
    assert "'carrier-pigeon'" in str(info.value)
    assert 'local' in str(info.value) and 'tooz' in str(info.value)


def test_many_simulated_members_cost_no_timers_while_alive():
    clock = VirtualClock()
    hub = LocalHub()
    members = [LocalMembership('big', clock=clock, hub=hub)
               for _ in range(300)]
    observer = LocalMembership('big', clock=clock, hub=hub)
    observer.start()
    recorder = Recorder()
    observer.register_listener(recorder)
    for i, m in enumerate(members):
        m.start()
        m.join(_member('n%d' % i))
    assert clock.pending() == 0
    members[7].crash()
    assert clock.pending() == 1
    clock.run_until(60.0)
    assert recorder.events[-1] == ('leave', 'n7', LeaveReason.TIMEOUT)
    assert len(observer.members()) == 299


def test_a_tooz_backend_with_a_bad_url_fails_while_being_built():
    with pytest.raises(MembershipUnavailable) as info:
        load_membership('tooz', url='/var/lib/membership', group='g')
    assert "'/var/lib/membership' is no tooz URL" in str(info.value)
    assert 'redis://host:6379' in str(info.value)
