"""Supervision: failed overlay services come back after a growing delay."""

import asyncio
import itertools
import logging

import pytest

from discovery_nova.overlay.supervisor import RestartPolicy
from discovery_nova.overlay.supervisor import Supervisor


def test_backoff_doubles_up_to_the_maximum():
    supervisor = Supervisor(restart_backoff=0.5, restart_backoff_max=3.0)
    assert [supervisor.backoff(n) for n in range(0, 6)] == [
        0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert supervisor.backoff(10_000) == 3.0


@pytest.mark.parametrize('kwargs,words', [
    ({'restart_backoff': -1.0}, 'restart_backoff must be'),
    ({'restart_backoff_max': float('nan')}, 'restart_backoff_max must be'),
    ({'restart_backoff': 2.0, 'restart_backoff_max': 1.0}, 'must not be'),
])
def test_bad_backoff_settings_are_refused(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Supervisor(**kwargs)


def test_a_failing_service_is_restarted_with_growing_delays(caplog):
    starts = []

    async def flaky():
        starts.append(asyncio.get_running_loop().time())
        if len(starts) <= 3:
            raise RuntimeError('backend down')
        await asyncio.sleep(3600)

    async def steady_service():
        await asyncio.sleep(3600)

    async def main():
        supervisor = Supervisor(restart_backoff=0.02,
                                restart_backoff_max=0.05)
        supervisor.add('flaky', flaky)
        supervisor.add('steady', steady_service)
        supervisor.start()
        for _ in range(200):
            if len(starts) >= 4:
                break
            await asyncio.sleep(0.01)
        status = supervisor.status()
        await supervisor.stop()
        return supervisor, status

    with caplog.at_level(logging.WARNING):
        supervisor, status = asyncio.run(main())
    assert len(starts) == 4
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 0.02, 0.04, then capped at 0.05 (less a hair of timer resolution).
    assert gaps[0] >= 0.019 and gaps[1] >= 0.039 and gaps[2] >= 0.049
    assert supervisor.restarts == {'flaky': 3}
    assert status['flaky'].running
    assert status['flaky'].last_error == 'RuntimeError: backend down'
    assert status['flaky'].consecutive_failures == 3
    assert status['steady'].restarts == 0
    assert 'Overlay service flaky failed' in caplog.text
    assert 'Restarting overlay service flaky' in caplog.text
    assert not any(s.running for s in supervisor.status().values())


def test_a_long_healthy_run_resets_the_delay():
    runs = []

    async def fails_after_a_while():
        runs.append(1)
        await asyncio.sleep(0.05 if len(runs) > 1 else 0)
        raise RuntimeError('lost connection')

    async def main():
        supervisor = Supervisor(restart_backoff=0.01,
                                restart_backoff_max=0.2, stable_after=0.04)
        supervisor.add('svc', fails_after_a_while)
        supervisor.start()
        while len(runs) < 4:
            await asyncio.sleep(0.01)
        status = supervisor.status()['svc']
        await supervisor.stop()
        return status

    status = asyncio.run(main())
    # The first run failed at once (1 in a row); the later ones ran longer
    # than stable_after, so each counts as the first of a new series.
    assert status.consecutive_failures == 1


def test_permanent_services_that_return_restart_transient_ones_finish():
    calls = {'permanent': 0, 'transient': 0}

    def counted(name):
        async def service():
            calls[name] += 1
        return service

    async def main():
        supervisor = Supervisor(restart_backoff=0.0, restart_backoff_max=0.0)
        supervisor.add('permanent', counted('permanent'))
        supervisor.add('transient', counted('transient'),
                       RestartPolicy.TRANSIENT)
        supervisor.start()
        while calls['permanent'] < 5:
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        status = supervisor.status()
        await supervisor.stop()
        return status

    status = asyncio.run(main())
    assert calls['transient'] == 1
    assert status['transient'].finished and not status['transient'].running
    assert status['permanent'].restarts >= 4
    assert status['permanent'].last_error == 'returned while it should run'


def test_stop_cancels_services_and_runs_their_cleanup():
    cleaned = []

    async def service():
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(True)

    async def main():
        async with Supervisor() as supervisor:
            supervisor.add('late', service)  # added after start: runs now
            await asyncio.sleep(0.01)
            assert supervisor.status()['late'].running
        return supervisor

    supervisor = asyncio.run(main())
    assert cleaned == [True]
    assert supervisor.restarts == {}


def test_services_need_unique_names_and_callables():
    supervisor = Supervisor()

    async def service():
        await asyncio.sleep(0)

    supervisor.add('a', service)
    with pytest.raises(ValueError, match='already supervised'):
        supervisor.add('a', service)
    with pytest.raises(ValueError, match='non-empty string'):
        supervisor.add('', service)
    with pytest.raises(TypeError, match='must be callable'):
        supervisor.add('b', 'not a coroutine')
    with pytest.raises(RuntimeError):
        supervisor.start()  # no running loop
