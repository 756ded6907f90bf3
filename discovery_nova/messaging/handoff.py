"""Hand messages between the driver's asyncio thread and its callers.

The driver runs its network in one native thread with its own asyncio loop.
Callers live either in native threads (the threading executor) or in
greenthreads of a monkey-patched eventlet process (the eventlet executor).
A greenthread must never block its OS thread on a native lock, and a native
thread must never touch eventlet's hub, so the queue below wakes a waiter
the way its world understands: a native condition variable, or a byte on a
pipe that eventlet's green ``select`` waits on cooperatively.
"""

import collections
import os
import posix
import select
import selectors
import time
import typing

from oslo_utils import eventletutils


def green_world() -> bool:
    """Whether this process runs eventlet with patched threads."""
    return eventletutils.is_monkey_patched('thread')


def native_module(name: str):
    """The unpatched module ``name`` even in a monkey-patched process."""
    if green_world():
        from eventlet import patcher
        return patcher.original(name)
    return __import__(name)


def native_selector() -> selectors.BaseSelector:
    """A selector that blocks its OS thread, never eventlet's hub.

    Eventlet patches the ``select`` module in place and drops ``poll`` and
    ``epoll`` from it, so a selector for the native loop thread is built on
    the original module's ``poll``, through the standard library's own
    poll-style base class.
    """
    if not green_world():
        return selectors.DefaultSelector()
    original = native_module('select')

    class NativePollSelector(selectors._PollLikeSelector):
        _selector_cls = original.poll
        _EVENT_READ = original.POLLIN
        _EVENT_WRITE = original.POLLOUT

    return NativePollSelector()


class Empty(Exception):
    """Nothing arrived before the timeout."""


class CrossQueue:
    """A FIFO queue fed from the asyncio thread, read from either world.

    ``put`` may be called from any native thread; ``get`` blocks the caller
    in the way its world allows. The world is decided when the queue is
    built, which is after any monkey-patching of the process.
    """

    def __init__(self) -> None:
        self._items: collections.deque = collections.deque()
        self._green = green_world()
        self._closed = False
        if self._green:
            self._read_fd, self._write_fd = os.pipe()
            os.set_blocking(self._read_fd, False)
            os.set_blocking(self._write_fd, False)
        else:
            self._cond = native_module('threading').Condition()

    def put(self, item: typing.Any) -> None:
        if self._green:
            self._items.append(item)
            try:
                posix.write(self._write_fd, b'x')
            except (BlockingIOError, OSError):
                # A full pipe already wakes the reader; a closed one means
                # nobody reads any more.
                pass
        else:
            with self._cond:
                self._items.append(item)
                self._cond.notify()

    def get(self, timeout: float | None = None) -> typing.Any:
        """Return the oldest item; raise ``Empty`` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._green:
            with self._cond:
                while not self._items:
                    if deadline is None:
                        self._cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Empty()
                    self._cond.wait(remaining)
                return self._items.popleft()
        while True:
            if self._items:
                return self._items.popleft()
            if deadline is None:
                wait = None
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise Empty()
            # Patched select: other greenthreads run while this one waits.
            select.select([self._read_fd], [], [], wait)
            try:
                posix.read(self._read_fd, 4096)
            except (BlockingIOError, OSError):
                pass

    def __len__(self) -> int:
        return len(self._items)

    def __del__(self) -> None:
        # The pipe is closed only when nobody holds the queue any more, so a
        # late put from the asyncio thread can never write to a reused fd.
        if getattr(self, '_green', False) and not self._closed:
            self._closed = True
            os.close(self._read_fd)
            os.close(self._write_fd)
