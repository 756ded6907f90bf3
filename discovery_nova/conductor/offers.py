"""Forwarding off nova's RPC threads: a pool, slots per PoP, busy answers.

A build the local PoP cannot place used to be offered to the other PoPs
inside the RPC thread that received it, waiting up to ``forward_timeout``
for each PoP. In a boot storm those waits took every thread of nova's RPC
executor, and the computes' own conductor calls (``instance.save``...)
queued behind them until they timed out: servers stuck in BUILD. So:

- :class:`ForwardPool` runs the offers in a few threads of its own; the
  RPC thread only hands the build over. A job that has to wait (every PoP
  it may go to is busy) is parked with a due time and holds no thread.
- :class:`PopSlots` bounds the offers this PoP has in flight to each PoP.
- :class:`AcceptGate` bounds the offers a PoP takes at once; the others are
  answered "busy, retry in N s" at once instead of being left to time out.
- :class:`Walk` offers one instance to its PoPs nearest first: a PoP that
  declines is done with, a busy one is offered again when it said, until
  one accepts, every PoP declined, or the deadline passed. Either way the
  walk ends with exactly one call of ``accept``, ``placed_here`` or
  ``refuse``: a request is neither lost nor left building.

Nova-free (the glue is in ``compute_task``), so it is tested with real
threads alone.
"""

from collections.abc import Callable
import dataclasses
import heapq
import itertools
import random
import threading
import time

from oslo_log import log as logging

from discovery_nova.conductor.candidates import Candidate

LOG = logging.getLogger(__name__)

#: Bounds of the delay before a busy PoP is offered the build again (s).
MIN_RETRY = 0.2
MAX_RETRY = 10.0
#: Delay before offering again to a PoP this PoP had no free slot for.
SLOT_RETRY = 0.25


@dataclasses.dataclass(frozen=True)
class Answer:
    """What one PoP answered an offer."""

    accepted: bool
    reason: str = ''
    #: The PoP may take it later: it is busy with other offers.
    busy: bool = False
    #: When a busy PoP suggests offering again, in seconds.
    retry_after: float = 0.0
    host: str | None = None

    @classmethod
    def from_wire(cls, answer: dict) -> 'Answer':
        """The answer dict of ``offer_build`` (older PoPs send no
        ``busy``)."""
        return cls(bool(answer.get('accepted')), answer.get('reason', ''),
                   bool(answer.get('busy')),
                   float(answer.get('retry_after') or 0.0),
                   answer.get('host'))

    @classmethod
    def busy_now(cls, reason: str, retry_after: float) -> 'Answer':
        return cls(False, reason, True, retry_after)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One PoP tried for one instance, and its last answer."""

    candidate: Candidate
    accepted: bool
    reason: str


class PopSlots:
    """At most ``limit`` offers in flight from this PoP to each PoP."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError('offers in flight per PoP must be at least 1, '
                             'got %r' % (limit,))
        self.limit = limit
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def try_take(self, pop: str) -> bool:
        with self._lock:
            if self._used.get(pop, 0) >= self.limit:
                return False
            self._used[pop] = self._used.get(pop, 0) + 1
            return True

    def give_back(self, pop: str) -> None:
        with self._lock:
            left = self._used.get(pop, 0) - 1
            if left < 0:
                raise RuntimeError('no offer to %s was in flight' % pop)
            if left:
                self._used[pop] = left
            else:
                del self._used[pop]

    def in_flight(self, pop: str) -> int:
        with self._lock:
            return self._used.get(pop, 0)


class AcceptGate:
    """At most ``limit`` offers from other PoPs taken at once here.

    An offer that finds the gate full is answered busy at once, with the
    time an offer has taken here lately as the delay to come back after.
    """

    def __init__(self, limit: int,
                 clock: Callable[[], float] = time.monotonic):
        if limit < 1:
            raise ValueError('offers taken at once must be at least 1, '
                             'got %r' % (limit,))
        self.limit = limit
        self._clock = clock
        self._inside = 0
        #: Moving average of how long taking an offer lasts (s).
        self._typical = 1.0
        self._lock = threading.Lock()

    def try_enter(self) -> float | None:
        """A ticket (the start time) to pass to ``leave``, or None when
        ``limit`` offers are being taken already."""
        with self._lock:
            if self._inside >= self.limit:
                return None
            self._inside += 1
            return self._clock()

    def leave(self, ticket: float) -> None:
        took = max(0.0, self._clock() - ticket)
        with self._lock:
            if self._inside <= 0:
                raise RuntimeError('leave() without a matching try_enter()')
            self._inside -= 1
            self._typical = 0.8 * self._typical + 0.2 * took

    @property
    def inside(self) -> int:
        with self._lock:
            return self._inside

    def retry_after(self) -> float:
        """Seconds after which a turned-away offer should come back."""
        with self._lock:
            return min(MAX_RETRY, max(MIN_RETRY, self._typical))


class _Entry:
    """One candidate PoP of a walk and where it stands."""

    __slots__ = ('candidate', 'state', 'reason', 'not_before', 'busy_count')

    def __init__(self, candidate: Candidate):
        self.candidate = candidate
        #: untried, busy, declined, skipped or accepted.
        self.state = 'untried'
        self.reason = ''
        self.not_before = 0.0
        self.busy_count = 0


class Walk:
    """Offer one instance to its candidate PoPs until one takes it.

    ``try_local()`` builds here and returns ``(placed, reason)``;
    ``offer(pop)`` returns that PoP's :class:`Answer`; exactly one of
    ``accept(candidate, answer, outcomes)`` (a remote PoP took it),
    ``placed_here(outcomes)`` or ``refuse(outcomes)`` is called when the
    walk ends. ``local_reason`` is why this PoP already could not place it
    (its candidate then counts as declined). Remote PoPs first offered are
    at most ``max_remote``; a busy one is offered again when it asked, and
    no offer starts after ``deadline`` (``clock`` time).
    """

    def __init__(self, candidates: tuple[Candidate, ...], *,
                 try_local: Callable[[], tuple[bool, str]],
                 offer: Callable[[str], Answer],
                 accept: Callable[[Candidate, Answer, list], None],
                 placed_here: Callable[[list], None],
                 refuse: Callable[[list], None],
                 slots: PopSlots, max_remote: int, deadline: float,
                 local_reason: str | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 label: str = ''):
        self._entries = [_Entry(c) for c in candidates]
        for entry in self._entries:
            if entry.candidate.local and local_reason is not None:
                entry.state, entry.reason = 'declined', local_reason
        self._try_local = try_local
        self._offer = offer
        self._accept = accept
        self._placed_here = placed_here
        self._refuse = refuse
        self._slots = slots
        self._max_remote = max_remote
        self.deadline = deadline
        self._clock = clock
        self._remote_tried = 0
        #: How a walk that ends with busy PoPs ended.
        self._ended = 'the deadline'
        self.finished = False
        self.label = label

    def outcomes(self) -> list[Outcome]:
        """Every PoP tried so far, in the order of the plan."""
        found = []
        for entry in self._entries:
            if entry.state == 'untried':
                continue
            reason = entry.reason
            if entry.state == 'busy':
                # Short: nova keeps 255 characters of a fault, for every
                # PoP's answer.
                reason = '%s, %d offers until %s' % (
                    reason, entry.busy_count, self._ended)
            found.append(Outcome(entry.candidate, entry.state == 'accepted',
                                 reason))
        return found

    def step(self) -> float | None:
        """Offer to every PoP due now, nearest first; None when the walk
        ended, else the seconds after which to step again."""
        if self.finished:
            return None
        for entry in self._entries:
            if entry.state not in ('untried', 'busy'):
                continue
            now = self._clock()
            if now >= self.deadline:
                break
            if entry.state == 'busy' and entry.not_before > now:
                continue
            if self._try_one(entry):
                self.finished = True
                return None
        waiting = [e.not_before for e in self._entries if e.state == 'busy']
        now = self._clock()
        if not waiting or now >= self.deadline:
            self._end_unplaced(now)
            return None
        return max(0.0, min(min(waiting), self.deadline) - now)

    def _try_one(self, entry: _Entry) -> bool:
        """Try ``entry``'s PoP; True when it took the instance."""
        candidate = entry.candidate
        if candidate.local:
            placed, reason = self._try_local()
            entry.reason = reason
            if placed:
                entry.state = 'accepted'
                self._placed_here(self.outcomes())
                return True
            entry.state = 'declined'
            return False
        if entry.state == 'untried':
            if self._remote_tried >= self._max_remote:
                entry.state = 'skipped'
                entry.reason = ('not tried: [discovery_conductor] '
                                'max_forward_attempts = %d reached'
                                % self._max_remote)
                return False
            self._remote_tried += 1
        if not self._slots.try_take(candidate.pop):
            self._busy(entry, 'waiting: %d offers in flight to it'
                       % self._slots.limit, SLOT_RETRY)
            return False
        try:
            answer = self._offer(candidate.pop)
        finally:
            self._slots.give_back(candidate.pop)
        entry.reason = answer.reason
        if answer.accepted:
            entry.state = 'accepted'
            self._accept(candidate, answer, self.outcomes())
            return True
        if answer.busy:
            self._busy(entry, answer.reason or 'busy', answer.retry_after)
            LOG.info("%(pop)s is busy: %(label)s offered to it again in "
                     "%(delay).1f s at the earliest",
                     {'pop': candidate.pop, 'label': self.label,
                      'delay': entry.not_before - self._clock()})
            return False
        entry.state = 'declined'
        return False

    def _busy(self, entry: _Entry, reason: str, retry_after: float) -> None:
        entry.state = 'busy'
        entry.reason = reason
        entry.busy_count += 1
        delay = min(MAX_RETRY, max(MIN_RETRY, retry_after))
        # Jitter: the PoPs turned away together do not all come back at
        # the same instant.
        entry.not_before = self._clock() + delay * random.uniform(1.0, 1.5)

    def _end_unplaced(self, now: float) -> None:
        for entry in self._entries:
            if entry.state == 'untried' and now >= self.deadline:
                entry.state = 'skipped'
                entry.reason = 'not tried before the deadline'
        self.finished = True
        if any(e.state == 'busy' for e in self._entries):
            LOG.warning("%(label)s: deadline passed with PoPs still busy",
                        {'label': self.label})
        self._refuse(self.outcomes())

    def abandon(self, why: str) -> None:
        """End the walk now, unplaced (the conductor stops)."""
        if self.finished:
            return
        for entry in self._entries:
            if entry.state == 'untried':
                entry.state = 'skipped'
                entry.reason = 'not tried: %s' % why
        self._ended = why
        self.finished = True
        self._refuse(self.outcomes())


class ForwardPool:
    """``workers`` threads that step walks; a waiting walk holds none.

    Walks are kept in a heap by due time. ``stop`` ends the threads and
    then abandons every walk not finished, so each gets its ``refuse``.
    """

    def __init__(self, workers: int, name: str = 'discovery-forward',
                 clock: Callable[[], float] = time.monotonic):
        if workers < 1:
            raise ValueError('forward workers must be at least 1, got %r'
                             % (workers,))
        self._clock = clock
        self._heap: list[tuple[float, int, Walk]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._running: set[Walk] = set()
        self._threads = [threading.Thread(target=self._work, daemon=True,
                                          name='%s-%d' % (name, i))
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, walk: Walk, delay: float = 0.0) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError('the forward pool is stopped')
            heapq.heappush(self._heap,
                           (self._clock() + delay, next(self._seq), walk))
            self._cond.notify()

    def pending(self) -> int:
        """Walks not finished: waiting or being stepped."""
        with self._cond:
            return len(self._heap) + len(self._running)

    def _next(self) -> Walk | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    due = self._heap[0][0]
                    now = self._clock()
                    if due <= now:
                        walk = heapq.heappop(self._heap)[2]
                        self._running.add(walk)
                        return walk
                    self._cond.wait(due - now)
                else:
                    self._cond.wait()
            return None

    def _work(self) -> None:
        while True:
            walk = self._next()
            if walk is None:
                return
            try:
                delay = walk.step()
            except Exception:
                LOG.exception("Forwarding %s failed", walk.label)
                delay = None
                # The walk must still end, with a refusal.
                self._abandon(walk, 'forwarding failed here (see the '
                              'conductor log)')
            with self._cond:
                self._running.discard(walk)
                requeue = delay is not None and not self._stopping
                if requeue:
                    heapq.heappush(self._heap, (self._clock() + delay,
                                                next(self._seq), walk))
                    self._cond.notify()
            if delay is not None and not requeue:
                self._abandon(walk, 'the conductor stopped')

    @staticmethod
    def _abandon(walk: Walk, why: str) -> None:
        try:
            walk.abandon(why)
        except Exception:
            LOG.exception("Could not refuse %s", walk.label)

    def stop(self, timeout: float = 30.0) -> int:
        """Stop stepping; refuse the walks left. Returns how many."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        until = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, until - time.monotonic()))
        with self._cond:
            left = [item[2] for item in self._heap]
            self._heap = []
        for walk in left:
            self._abandon(walk, 'the conductor stopped')
        return len(left)
