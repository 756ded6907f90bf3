"""The virtual clock and the simulated network that overlay code runs on."""

import weakref

from hypothesis import given
from hypothesis import strategies as st

from discovery_nova.sim.clock import VirtualClock
from discovery_nova.sim.network import SimNetwork
from discovery_nova.sim.topology import PlanetLabTopology


@given(st.lists(st.floats(0, 1000, allow_nan=False), max_size=50))
def test_clock_runs_events_in_time_order(delays):
    clock = VirtualClock()
    seen = []
    for d in delays:
        clock.call_later(d, lambda d=d: seen.append((clock.now(), d)))
    clock.run_until()
    assert [t for t, _ in seen] == sorted(delays)
    assert all(t == d for t, d in seen)


def test_clock_cancel_and_run_until_bound():
    clock = VirtualClock()
    ran = []
    clock.call_later(1.0, ran.append, 'a')
    timer = clock.call_later(2.0, ran.append, 'b')
    clock.call_later(5.0, ran.append, 'c')
    timer.cancel()
    assert clock.run_until(3.0) == 1
    assert ran == ['a'] and clock.now() == 3.0
    clock.run_until()
    assert ran == ['a', 'c'] and clock.now() == 5.0


def test_network_delivers_after_half_the_rtt_and_drops_for_the_dead():
    topology = PlanetLabTopology()
    clock = VirtualClock()
    net = SimNetwork(clock, topology)
    got = []
    for name in ('pl000', 'pl003'):
        net.register(name, lambda src, msg, me=name: got.append(
            (me, src, msg['type'], clock.now())))
    a = net.endpoint('pl000')
    a.send('pl003', {'type': 'x.ping'})
    clock.run_until()
    assert got == [('pl003', 'pl000', 'x.ping',
                    topology.rtt(0, 3) / 2000.0)]
    net.kill('pl003')
    a.send('pl003', {'type': 'x.ping'})
    clock.run_until()
    assert len(got) == 1 and net.dropped == 1
    assert net.sent_by_type == {'x.ping': 2}


def test_clock_keeps_time_order_across_its_buckets_and_partial_runs():
    # Timers land in millisecond buckets; a run that stops inside a bucket
    # and timers scheduled afterwards, earlier or later than those still
    # waiting, must keep one global (time, scheduling) order.
    clock = VirtualClock()
    seen = []

    def note(tag):
        seen.append((clock.now(), tag))
        if tag == 'b':
            clock.call_later(0.0, note, 'b-now')
            clock.call_later(2.0, note, 'b-far')

    clock.call_later(3.0, note, 'far')
    clock.call_later(0.0015, note, 'b')
    clock.call_later(0.0015, note, 'b-twin')
    clock.call_later(0.0012, note, 'a')
    assert clock.run_until(0.0013) == 1
    clock.call_later(0.0001, note, 'late-but-first')  # due at 0.0014
    clock.call_at(3.0, note, 'far-twin')
    assert clock.pending() == 5
    clock.run_until()
    assert [tag for _, tag in seen] == [
        'a', 'late-but-first', 'b', 'b-twin', 'b-now', 'b-far', 'far',
        'far-twin']
    assert [t for t, _ in seen] == sorted(t for t, _ in seen)
    assert clock.now() == 3.0


def test_clock_cancelled_timer_lets_go_of_its_callback():
    class Payload:
        def run(self):
            raise AssertionError('a cancelled timer ran')

    clock = VirtualClock()
    payload = Payload()
    ref = weakref.ref(payload)
    timer = clock.call_later(5.0, payload.run)
    del payload
    assert ref() is not None
    timer.cancel()
    assert ref() is None, 'the queued, cancelled timer still holds it'
    assert clock.run_until() == 0
