"""A virtual clock: a discrete-event loop that jumps from event to event.

Simulated time only moves when the next event runs, so a ten-minute overlay
run over thousands of nodes takes as long as its events take to compute.
"""

from collections.abc import Callable
import heapq
import itertools
import math


class Timer:
    """A scheduled callback; ``cancel`` keeps it from running.

    A cancelled timer stays in the queue until its time comes (removing it
    from the heap would cost more than skipping it), so ``cancel`` drops
    the callback and its arguments at once: a simulated search leaves a
    dozen cancelled timeouts behind, and they must not keep its views and
    state alive for seconds of virtual time.
    """

    __slots__ = ('when', 'callback', 'args', 'cancelled')

    def __init__(self, when: float, callback: Callable, args: tuple):
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = None
        self.args = ()


class VirtualClock:
    """Event queue ordered by virtual time, then by scheduling order.

    A calendar queue: timers wait in unsorted buckets of a millisecond of
    virtual time, and only the bucket being run is a heap. A 10,000-node
    simulation has some 100,000 timers pending, most of them timeouts that
    get cancelled; one heap of them all made every push and pop wade
    through that many cold entries. Here a timer costs an append and the
    heap being run stays small and in cache. The order events run in is
    exactly that of a single heap.
    """

    #: Buckets per second of virtual time.
    SCALE = 1000.0

    def __init__(self, start: float = 0.0):
        self._now = start
        self._next_seq = itertools.count().__next__
        #: Heap of (when, seq, timer): the bucket being run, and any timer
        #: due no later than it.
        self._queue: list = []
        #: Number of the bucket being run (its timers are in ``_queue``).
        self._current = self._bucket(start)
        #: Bucket number -> its (when, seq, timer) entries, unsorted; every
        #: number here is above ``_current``.
        self._later: dict[float, list] = {}
        #: Heap of the bucket numbers in ``_later``.
        self._buckets: list[float] = []
        self._later_count = 0
        self.events_run = 0

    def _bucket(self, when: float) -> float:
        """The bucket number of ``when``: an integer that never decreases
        as ``when`` grows (a product by a constant, then the floor), so
        buckets are in time order; infinity for a time beyond them all
        (and NaN: the one heap never ordered those either)."""
        scaled = when * self.SCALE
        if math.isfinite(scaled):
            return math.floor(scaled)
        return math.inf

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable, *args) -> Timer:
        if when < self._now:
            when = self._now
        return self._schedule(when, callback, args)

    def call_later(self, delay: float, callback: Callable, *args) -> Timer:
        # _schedule inlined: every message and probe of a run comes here.
        when = self._now
        if delay > 0.0:
            when += delay
        timer = Timer(when, callback, args)
        entry = (when, self._next_seq(), timer)
        # Most timers join a bucket that exists already.
        scaled = when * self.SCALE
        if 0.0 <= scaled < 1e15:
            number = int(scaled)
            if number > self._current:
                bucket = self._later.get(number)
                if bucket is not None:
                    bucket.append(entry)
                    self._later_count += 1
                    return timer
        return self._place(entry)

    def _schedule(self, when: float, callback: Callable,
                  args: tuple) -> Timer:
        timer = Timer(when, callback, args)
        return self._place((when, self._next_seq(), timer))

    def _place(self, entry: tuple) -> Timer:
        """Queue ``(when, seq, timer)`` in its bucket; returns the timer."""
        when = entry[0]
        scaled = when * self.SCALE
        # int() is the floor of a non-negative float: _bucket's number,
        # without its calls, for every timer of a run from time 0.
        number = (int(scaled) if 0.0 <= scaled < 1e15
                  else self._bucket(when))
        if number <= self._current:
            heapq.heappush(self._queue, entry)
            return entry[2]
        bucket = self._later.get(number)
        if bucket is None:
            self._later[number] = [entry]
            heapq.heappush(self._buckets, number)
        else:
            bucket.append(entry)
        self._later_count += 1
        return entry[2]

    def _open_bucket(self) -> None:
        """Make the earliest waiting bucket the one being run (the heap is
        empty): its timers become the heap."""
        number = heapq.heappop(self._buckets)
        queue = self._later.pop(number)
        self._later_count -= len(queue)
        heapq.heapify(queue)
        self._queue = queue
        self._current = number

    def pending(self) -> int:
        """Timers scheduled and not run yet (cancelled ones may count)."""
        return len(self._queue) + self._later_count

    def run_until(self, until: float | None = None,
                  max_events: int | None = None) -> int:
        """Run events up to virtual time ``until`` (all when None).

        Returns how many events ran. The clock ends at ``until`` when given,
        even if the queue emptied earlier.
        """
        ran = 0
        heappop = heapq.heappop
        # ``until`` and ``max_events`` as numbers that never stop the run
        # when None, so that each event costs two comparisons.
        limit = math.inf if until is None else until
        budget = math.inf if max_events is None else max_events
        while True:
            queue = self._queue
            if not queue:
                buckets = self._buckets
                # The buckets ahead hold no timer due by ``until``.
                if not buckets or (until is not None and
                                   buckets[0] > self._bucket(until)):
                    break
                self._open_bucket()
                continue
            entry = heappop(queue)
            when = entry[0]
            if when > limit or ran >= budget:
                heapq.heappush(queue, entry)
                if when > limit:
                    break
                return ran
            timer = entry[2]
            if timer.cancelled:
                continue
            self._now = when
            timer.callback(*timer.args)
            ran += 1
        if until is not None and until > self._now:
            self._now = until
        self.events_run += ran
        return ran
