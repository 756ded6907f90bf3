"""Supervision of the overlay agent's services.

The agent runs its services (prober, membership, spiral refresh, transport)
as asyncio tasks in one process. An exception in one of them must not take
the agent down, nor leave it silently without that service: the
``Supervisor`` restarts a failed service after a delay that starts at
``restart_backoff`` and doubles on each consecutive failure up to
``restart_backoff_max`` (the ``[discovery_overlay]`` options of the same
names), so a service whose backend is down retries without spinning. A
service that ran for ``stable_after`` seconds before failing starts again
from the shortest delay. Every failure is logged with its traceback and
counted.
"""

import asyncio
import collections
from collections.abc import Awaitable
from collections.abc import Callable
import dataclasses
import enum
import math

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

ServiceFactory = Callable[[], Awaitable[None]]


class RestartPolicy(enum.Enum):
    #: Restart on failure and when it returns: it should run until stopped.
    PERMANENT = 'permanent'
    #: Restart on failure only; returning means its work is done.
    TRANSIENT = 'transient'


@dataclasses.dataclass
class ServiceStatus:
    """What the supervisor knows of one service."""

    name: str
    policy: RestartPolicy
    running: bool = False
    #: How many times it was restarted, and how many failures in a row
    #: (those that decide the next delay).
    restarts: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    finished: bool = False


@dataclasses.dataclass(eq=False)
class _Service:
    factory: ServiceFactory
    status: ServiceStatus
    task: asyncio.Task | None = None


class Supervisor:
    """Runs named services as asyncio tasks and restarts failed ones."""

    def __init__(self, restart_backoff: float = 0.5,
                 restart_backoff_max: float = 30.0,
                 stable_after: float | None = None) -> None:
        for label, value in (('restart_backoff', restart_backoff),
                             ('restart_backoff_max', restart_backoff_max)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError('%s must be a non-negative number of '
                                 'seconds, got %r' % (label, value))
        if restart_backoff_max < restart_backoff:
            raise ValueError(
                'restart_backoff_max (%r) must not be below restart_backoff '
                '(%r)' % (restart_backoff_max, restart_backoff))
        self.restart_backoff = float(restart_backoff)
        self.restart_backoff_max = float(restart_backoff_max)
        self.stable_after = (max(self.restart_backoff_max, 1.0)
                             if stable_after is None else float(stable_after))
        self._services: dict[str, _Service] = {}
        self._started = False
        self._stopping = False
        #: Restarts by service name.
        self.restarts: collections.Counter[str] = collections.Counter()

    def backoff(self, consecutive_failures: int) -> float:
        """Delay before the restart that follows this many failures."""
        if consecutive_failures < 1:
            return 0.0
        exponent = min(consecutive_failures - 1, 60)
        return min(self.restart_backoff * 2.0 ** exponent,
                   self.restart_backoff_max)

    def add(self, name: str, factory: ServiceFactory,
            policy: RestartPolicy = RestartPolicy.PERMANENT) -> None:
        """Supervise ``factory()``, a coroutine run again on each restart.

        Services added after ``start()`` start at once.
        """
        if not isinstance(name, str) or not name:
            raise ValueError('a service name is a non-empty string, got %r'
                             % (name,))
        if name in self._services:
            raise ValueError('a service named %r is already supervised'
                             % name)
        if not callable(factory):
            raise TypeError('service %r: the factory must be callable and '
                            'return a coroutine, got %r' % (name, factory))
        service = _Service(factory, ServiceStatus(name, policy))
        self._services[name] = service
        if self._started and not self._stopping:
            self._launch(service)

    def start(self) -> None:
        """Start every service; call from within the running loop."""
        asyncio.get_running_loop()
        if self._started:
            return
        self._started = True
        self._stopping = False
        for service in self._services.values():
            self._launch(service)

    def _launch(self, service: _Service) -> None:
        service.task = asyncio.get_running_loop().create_task(
            self._keep(service), name='overlay-%s' % service.status.name)

    async def _keep(self, service: _Service) -> None:
        status = service.status
        loop = asyncio.get_running_loop()
        while not self._stopping:
            began = loop.time()
            status.running = True
            try:
                await service.factory()
            except asyncio.CancelledError:
                status.running = False
                raise
            except Exception as exc:
                status.last_error = '%s: %s' % (type(exc).__name__, exc)
                LOG.exception('Overlay service %(name)s failed',
                              {'name': status.name})
            else:
                if status.policy is RestartPolicy.TRANSIENT:
                    status.running = False
                    status.finished = True
                    LOG.info('Overlay service %(name)s finished',
                             {'name': status.name})
                    return
                status.last_error = 'returned while it should run'
                LOG.error('Overlay service %(name)s returned while it '
                          'should run until stopped', {'name': status.name})
            status.running = False
            if loop.time() - began >= self.stable_after:
                status.consecutive_failures = 0
            status.consecutive_failures += 1
            delay = self.backoff(status.consecutive_failures)
            status.restarts += 1
            self.restarts[status.name] += 1
            LOG.warning('Restarting overlay service %(name)s in %(delay).3f '
                        's (restart %(count)d, %(row)d failure(s) in a row)',
                        {'name': status.name, 'delay': delay,
                         'count': status.restarts,
                         'row': status.consecutive_failures})
            await asyncio.sleep(delay)

    def status(self) -> dict[str, ServiceStatus]:
        return {name: dataclasses.replace(service.status)
                for name, service in self._services.items()}

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every service and wait up to ``timeout`` for them."""
        self._stopping = True
        tasks = [s.task for s in self._services.values()
                 if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                LOG.error('Overlay service task %(task)s did not stop within '
                          '%(timeout)s s', {'task': task.get_name(),
                                            'timeout': timeout})
        for service in self._services.values():
            service.status.running = False
        self._started = False

    async def __aenter__(self) -> 'Supervisor':
        self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()
