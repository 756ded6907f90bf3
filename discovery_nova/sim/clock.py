"""A virtual clock: a discrete-event loop that jumps from event to event.

Simulated time only moves when the next event runs, so a ten-minute overlay
run over thousands of nodes takes as long as its events take to compute.
"""

import heapq
import itertools
from collections.abc import Callable


class Timer:
    """A scheduled callback; ``cancel`` keeps it from running."""

    __slots__ = ('when', 'callback', 'args', 'cancelled')

    def __init__(self, when: float, callback: Callable, args: tuple):
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Event queue ordered by virtual time, then by scheduling order."""

    def __init__(self, start: float = 0.0):
        self._now = start
        self._queue: list = []
        self._seq = itertools.count()
        self.events_run = 0

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable, *args) -> Timer:
        if when < self._now:
            when = self._now
        timer = Timer(when, callback, args)
        heapq.heappush(self._queue, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable, *args) -> Timer:
        return self.call_at(self._now + max(delay, 0.0), callback, *args)

    def pending(self) -> int:
        return len(self._queue)

    def run_until(self, until: float | None = None,
                  max_events: int | None = None) -> int:
        """Run events up to virtual time ``until`` (all when None).

        Returns how many events ran. The clock ends at ``until`` when given,
        even if the queue emptied earlier.
        """
        ran = 0
        queue = self._queue
        while queue:
            when, _, timer = queue[0]
            if until is not None and when > until:
                break
            if max_events is not None and ran >= max_events:
                return ran
            heapq.heappop(queue)
            if timer.cancelled:
                continue
            self._now = when
            timer.callback(*timer.args)
            ran += 1
        if until is not None and until > self._now:
            self._now = until
        self.events_run += ran
        return ran
