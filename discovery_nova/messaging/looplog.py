"""Logging from the driver's asyncio thread that is safe under eventlet.

In a monkey-patched process the ``logging`` module's locks are green: a
native thread that finds one held by a greenthread parks on a hub of its
own that nobody ever wakes, and the peer's loop thread would hang for
good (eventlet issue 432; ``oslo_log.log.setup`` works around it for
services that call it, test harnesses and libraries often do not). So in
such a process the loop thread never calls ``logging``: it hands each
record over a ``CrossQueue`` to a greenthread that logs it. In a native
process records are logged directly.
"""

import logging as std_logging
import traceback

from oslo_log import log as logging

from discovery_nova.messaging import handoff

_queue: handoff.CrossQueue | None = None


def start_drain() -> None:
    """Start the logging greenthread, from the caller's world, once."""
    global _queue
    if _queue is not None or not handoff.green_world():
        return
    import eventlet

    queue = handoff.CrossQueue()
    eventlet.spawn_n(_drain, queue)
    _queue = queue


def _drain(queue: handoff.CrossQueue) -> None:
    while True:
        name, level, msg, args = queue.get()
        logging.getLogger(name).log(level, msg, *args)


class LoopLogger:
    """The subset of a logger the loop thread uses, lock-free when green."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger = logging.getLogger(name)

    def _emit(self, level: int, msg: str, args: tuple) -> None:
        if _queue is None:
            self._logger.log(level, msg, *args)
        else:
            _queue.put((self._name, level, msg, args))

    def debug(self, msg: str, *args) -> None:
        self._emit(std_logging.DEBUG, msg, args)

    def info(self, msg: str, *args) -> None:
        self._emit(std_logging.INFO, msg, args)

    def warning(self, msg: str, *args) -> None:
        self._emit(std_logging.WARNING, msg, args)

    def error(self, msg: str, *args) -> None:
        self._emit(std_logging.ERROR, msg, args)

    def exception(self, msg: str, *args) -> None:
        """An error with the traceback being handled, formatted here."""
        self._emit(std_logging.ERROR, '%s\n%s',
                   (msg % args if args else msg, traceback.format_exc()))
