"""Forwarding off the RPC threads: slots, the accept gate, walks, the pool.

Real threads throughout; every wait has a generous timeout and asserts on
what happened, never on how long it took.
"""

import threading

import pytest

from discovery_nova.conductor import candidates
from discovery_nova.conductor import offers

WAIT = 10.0


def _cand(pop, local=False):
    return candidates.Candidate(pop, 10.0, 0.1, local, 0.0 if local else 10.0)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Ends:
    """What a walk ended with; it must end exactly once."""

    def __init__(self):
        self.calls = []
        self.done = threading.Event()
        self._lock = threading.Lock()

    def _end(self, kind, *args):
        with self._lock:
            self.calls.append((kind,) + args)
        self.done.set()

    def accept(self, candidate, answer, outcomes):
        self._end('accept', candidate.pop, outcomes)

    def placed_here(self, outcomes):
        self._end('here', outcomes)

    def refuse(self, outcomes):
        self._end('refuse', outcomes)

    @property
    def only(self):
        assert len(self.calls) == 1, self.calls
        return self.calls[0]


def _walk(cands, offer, ends, *, try_local=None, slots=None, max_remote=4,
          deadline=1e9, local_reason=None, clock=None):
    return offers.Walk(
        tuple(cands), try_local=try_local or (lambda: (False, 'full')),
        offer=offer, accept=ends.accept, placed_here=ends.placed_here,
        refuse=ends.refuse, slots=slots or offers.PopSlots(4),
        max_remote=max_remote, deadline=deadline, local_reason=local_reason,
        clock=clock or Clock(), label='test')


def _reasons(outcomes):
    return {o.candidate.pop: (o.accepted, o.reason) for o in outcomes}


# -- answers, slots, gate -----------------------------------------------------

def test_answer_of_an_older_pop_without_busy_is_a_plain_decline():
    answer = offers.Answer.from_wire({'accepted': False,
                                      'reason': 'No valid host'})
    assert (answer.accepted, answer.busy, answer.reason) == \
        (False, False, 'No valid host')
    busy = offers.Answer.from_wire({'accepted': False, 'busy': True,
                                    'retry_after': 2.5, 'reason': 'busy'})
    assert busy.busy and busy.retry_after == 2.5


def test_slots_bound_each_pop_separately():
    slots = offers.PopSlots(2)
    assert slots.try_take('a') and slots.try_take('a')
    assert not slots.try_take('a')
    assert slots.try_take('b')
    slots.give_back('a')
    assert slots.in_flight('a') == 1 and slots.try_take('a')
    with pytest.raises(RuntimeError, match='no offer to c'):
        slots.give_back('c')
    with pytest.raises(ValueError, match='at least 1'):
        offers.PopSlots(0)


def test_gate_turns_away_offers_beyond_its_limit_from_real_threads():
    gate = offers.AcceptGate(2)
    inside = threading.Barrier(3)
    release = threading.Event()
    results = []

    def take():
        ticket = gate.try_enter()
        results.append(ticket is not None)
        inside.wait(WAIT)
        release.wait(WAIT)
        gate.leave(ticket)

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait(WAIT)  # both are inside now
    assert gate.inside == 2
    assert gate.try_enter() is None
    assert offers.MIN_RETRY <= gate.retry_after() <= offers.MAX_RETRY
    release.set()
    for thread in threads:
        thread.join(WAIT)
    assert results == [True, True]
    assert gate.inside == 0
    ticket = gate.try_enter()
    assert ticket is not None
    gate.leave(ticket)
    with pytest.raises(RuntimeError, match='without a matching'):
        gate.leave(ticket)


def test_gate_suggests_coming_back_after_a_typical_offer():
    clock = Clock()
    gate = offers.AcceptGate(1, clock=clock)
    for _ in range(30):
        ticket = gate.try_enter()
        clock.now += 4.0
        gate.leave(ticket)
    assert gate.retry_after() == pytest.approx(4.0, rel=0.01)
    for _ in range(30):
        gate.leave(gate.try_enter())  # instant offers
    assert gate.retry_after() == offers.MIN_RETRY


# -- one walk -----------------------------------------------------------------

def test_walk_goes_nearest_first_and_records_every_answer():
    ends = Ends()
    asked = []

    def offer(pop):
        asked.append(pop)
        return offers.Answer(pop == 'far', 'No valid host' if pop == 'near'
                             else 'placed on far-cmp1', host='far-cmp1')

    walk = _walk([_cand('here', True), _cand('near'), _cand('far')], offer,
                 ends, local_reason='No valid host here')
    assert walk.step() is None
    assert asked == ['near', 'far']
    kind, pop, outcomes = ends.only
    assert (kind, pop) == ('accept', 'far')
    assert _reasons(outcomes) == {
        'here': (False, 'No valid host here'),
        'near': (False, 'No valid host'),
        'far': (True, 'placed on far-cmp1')}


def test_local_candidate_later_in_the_plan_is_built_here():
    ends = Ends()
    walk = _walk([_cand('near'), _cand('here', True)],
                 lambda pop: offers.Answer(False, 'full there'), ends,
                 try_local=lambda: (True, 'placed here'))
    assert walk.step() is None
    kind, outcomes = ends.only
    assert kind == 'here'
    assert _reasons(outcomes)['near'] == (False, 'full there')


def test_a_busy_pop_is_offered_again_when_it_said_and_then_takes_it():
    clock = Clock()
    ends = Ends()
    answers = {'near': [offers.Answer.busy_now('busy: 2 offers', 2.0),
                        offers.Answer(True, 'placed')],
               'far': [offers.Answer(False, 'No valid host')]}
    asked = []

    def offer(pop):
        asked.append(pop)
        return answers[pop].pop(0)

    walk = _walk([_cand('near'), _cand('far')], offer, ends, clock=clock)
    delay = walk.step()
    # Busy near: far was tried meanwhile; near again after 2-3 s.
    assert asked == ['near', 'far'] and not ends.calls
    assert 2.0 <= delay <= 3.0
    clock.now += delay / 2
    assert 0 < walk.step() <= delay / 2 + 1e-9  # not yet due: not offered
    assert asked == ['near', 'far']
    clock.now += delay
    assert walk.step() is None
    assert asked == ['near', 'far', 'near']
    kind, pop, outcomes = ends.only
    assert (kind, pop) == ('accept', 'near')
    assert _reasons(outcomes)['far'] == (False, 'No valid host')


def test_still_busy_at_the_deadline_is_refused_with_every_answer():
    clock = Clock()
    ends = Ends()
    offered = []

    def offer(pop):
        offered.append(clock.now)
        return offers.Answer.busy_now('busy: 2 offers', 1.0)

    walk = _walk([_cand('here', True), _cand('near')], offer, ends,
                 clock=clock, deadline=clock.now + 30,
                 local_reason='No valid host')
    for _ in range(1000):
        delay = walk.step()
        if delay is None:
            break
        clock.now += delay
    # Every 1 to 1.5 s (jitter) until the deadline, none after it.
    assert 20 <= len(offered) <= 31
    assert max(offered) < walk.deadline
    offered = len(offered)
    kind, outcomes = ends.only
    assert kind == 'refuse'
    accepted, reason = _reasons(outcomes)['near']
    assert not accepted
    assert reason == 'busy: 2 offers, %d offers until the deadline' % offered
    assert clock.now >= walk.deadline


def test_a_decline_is_final_and_max_forward_attempts_bounds_the_pops():
    ends = Ends()
    asked = []

    def offer(pop):
        asked.append(pop)
        return offers.Answer(False, 'No valid host')

    walk = _walk([_cand('a'), _cand('b'), _cand('c')], offer, ends,
                 max_remote=2)
    assert walk.step() is None
    assert asked == ['a', 'b']
    kind, outcomes = ends.only
    assert kind == 'refuse'
    assert _reasons(outcomes)['c'] == (
        False, 'not tried: [discovery_conductor] max_forward_attempts = 2 '
        'reached')
    assert walk.step() is None and len(ends.calls) == 1


def test_no_free_slot_counts_as_busy_without_an_offer():
    ends = Ends()
    slots = offers.PopSlots(1)
    assert slots.try_take('near')
    asked = []
    walk = _walk([_cand('near')],
                 lambda pop: asked.append(pop) or offers.Answer(True, 'ok'),
                 ends, slots=slots)
    delay = walk.step()
    assert delay is not None and not asked and not ends.calls
    slots.give_back('near')
    walk._entries[0].not_before = 0.0  # due now
    assert walk.step() is None
    assert asked == ['near'] and ends.only[0] == 'accept'
    assert slots.in_flight('near') == 0


def test_abandon_refuses_once_naming_why():
    ends = Ends()
    walk = _walk([_cand('near')],
                 lambda pop: offers.Answer.busy_now('busy', 1.0), ends)
    assert walk.step() is not None
    walk.abandon('the conductor stopped')
    walk.abandon('again')
    kind, outcomes = ends.only
    assert kind == 'refuse'
    assert _reasons(outcomes)['near'] == (
        False, 'busy, 1 offers until the conductor stopped')


# -- the pool -----------------------------------------------------------------

def test_submit_returns_while_the_offer_is_still_running():
    pool = offers.ForwardPool(1)
    started, release = threading.Event(), threading.Event()
    ends = Ends()

    def offer(pop):
        started.set()
        release.wait(WAIT)
        return offers.Answer(True, 'ok')

    try:
        pool.submit(_walk([_cand('a')], offer, ends, clock=None))
        assert started.wait(WAIT)  # the offer runs, submit returned
        assert pool.pending() == 1 and not ends.calls
        release.set()
        assert ends.done.wait(WAIT)
        assert ends.only[0] == 'accept'
    finally:
        release.set()
        pool.stop()


def _real_walk(cands, offer, ends, slots=None, deadline_s=WAIT * 3):
    import time
    return offers.Walk(
        tuple(cands), try_local=lambda: (False, 'full'), offer=offer,
        accept=ends.accept, placed_here=ends.placed_here, refuse=ends.refuse,
        slots=slots or offers.PopSlots(4), max_remote=4,
        deadline=time.monotonic() + deadline_s, label='test')


def test_a_walk_waiting_for_a_busy_pop_holds_no_thread():
    pool = offers.ForwardPool(1)
    release = threading.Event()
    first, second = Ends(), Ends()

    def busy_until_released(pop):
        if release.is_set():
            return offers.Answer(True, 'ok')
        return offers.Answer.busy_now('busy', 0.0)

    try:
        pool.submit(_real_walk([_cand('a')], busy_until_released, first))
        pool.submit(_real_walk([_cand('b')],
                               lambda pop: offers.Answer(True, 'ok'),
                               second))
        # One worker only: the second walk ends while the first waits.
        assert second.done.wait(WAIT)
        assert not first.calls
        release.set()
        assert first.done.wait(WAIT)
        assert first.only[0] == 'accept' and second.only[0] == 'accept'
        assert pool.pending() == 0
    finally:
        release.set()
        pool.stop()


def test_many_walks_respect_the_bounds_and_each_ends_once():
    workers, per_pop, walks = 3, 2, 24
    pool = offers.ForwardPool(workers)
    slots = offers.PopSlots(per_pop)
    lock = threading.Lock()
    in_flight = {'a': 0, 'b': 0}
    most = {'a': 0, 'b': 0, 'all': 0}
    both = threading.Barrier(2)

    def offer(pop):
        with lock:
            in_flight[pop] += 1
            most[pop] = max(most[pop], in_flight[pop])
            most['all'] = max(most['all'], sum(in_flight.values()))
        try:
            # Two offers meet here: concurrency is real, not assumed.
            try:
                both.wait(0.5)
            except threading.BrokenBarrierError:
                pass
            return offers.Answer(True, 'ok')
        finally:
            with lock:
                in_flight[pop] -= 1

    ends = [Ends() for _ in range(walks)]
    try:
        for one in ends:
            pool.submit(_real_walk([_cand('a'), _cand('b')], offer, one,
                                   slots=slots))
        for one in ends:
            assert one.done.wait(WAIT * 3)
    finally:
        pool.stop()
    assert [e.only[0] for e in ends] == ['accept'] * walks
    assert most['a'] <= per_pop and most['b'] <= per_pop
    assert 2 <= most['all'] <= workers
    assert slots.in_flight('a') == slots.in_flight('b') == 0


def test_a_step_that_raises_still_ends_the_walk_with_a_refusal():
    pool = offers.ForwardPool(1)
    ends = Ends()

    def broken(pop):
        raise ZeroDivisionError('bug')

    try:
        pool.submit(_real_walk([_cand('a')], broken, ends))
        assert ends.done.wait(WAIT)
    finally:
        pool.stop()
    kind, outcomes = ends.only
    assert kind == 'refuse'
    assert 'forwarding failed here' in _reasons(outcomes)['a'][1]


def test_stop_refuses_the_walks_still_waiting_and_takes_no_more():
    pool = offers.ForwardPool(2)
    ends = [Ends() for _ in range(5)]
    for one in ends:
        pool.submit(_real_walk(
            [_cand('a')], lambda pop: offers.Answer.busy_now('busy', 5.0),
            one))
    # Wait until every walk was offered once and is parked.
    for _ in range(1000):
        if pool.pending() == 5 and all(
                w[2]._entries[0].busy_count for w in pool._heap):
            break
        threading.Event().wait(0.01)
    assert pool.stop() == 5
    for one in ends:
        kind, outcomes = one.only
        assert kind == 'refuse'
        assert _reasons(outcomes)['a'] == (
            False, 'busy, 1 offers until the conductor stopped')
    with pytest.raises(RuntimeError, match='stopped'):
        pool.submit(_real_walk([_cand('a')], lambda pop: None, Ends()))
