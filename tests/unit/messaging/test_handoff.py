"""The cross-world queue, native side (the green side runs in the
eventlet functional tests, which need a monkey-patched process)."""

import subprocess
import sys
import threading
import time

import pytest

from discovery_nova.messaging import handoff


def test_get_returns_items_in_order():
    q = handoff.CrossQueue()
    q.put(1)
    q.put(2)
    assert (q.get(0), q.get(0)) == (1, 2)


def test_get_times_out_with_empty():
    q = handoff.CrossQueue()
    start = time.monotonic()
    with pytest.raises(handoff.Empty):
        q.get(0.1)
    assert time.monotonic() - start >= 0.1


def test_put_from_another_thread_wakes_a_waiter():
    q = handoff.CrossQueue()
    threading.Timer(0.05, q.put, args=('x',)).start()
    assert q.get(5) == 'x'


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_native_process_uses_the_default_selector():
    # A fresh interpreter: this test process may have been monkey-patched
    # by Nova's harness when its tests were collected in the same session.
    out = _run('from discovery_nova.messaging import handoff\n'
               'assert not handoff.green_world()\n'
               'print(type(handoff.native_selector()).__name__)')
    assert out.strip() in ('EpollSelector', 'PollSelector')


def test_green_process_gets_a_native_selector_and_green_waits():
    out = _run('import eventlet\n'
               'eventlet.monkey_patch()\n'
               'import threading, time\n'
               'from discovery_nova.messaging import handoff\n'
               'assert handoff.green_world()\n'
               'sel = handoff.native_selector()\n'
               'assert sel.select(0) == []\n'
               'q = handoff.CrossQueue()\n'
               'ticks = []\n'
               'eventlet.spawn(lambda: [ticks.append(1) or time.sleep(0.01)'
               ' for _ in range(5)])\n'
               'native = handoff.native_module("threading")\n'
               'native.Timer(0.2, q.put, args=("x",)).start()\n'
               'assert q.get(5) == "x"\n'
               'assert len(ticks) == 5, ticks\n'
               'print("ok")')
    assert out.strip() == 'ok'
