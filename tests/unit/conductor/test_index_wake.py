"""The ring-record pass runs at once when a compute saves a server ACTIVE.

A server's rebuild spec reaches the ring at the pass after its build; a
PoP dying before that pass loses the server for good. The pass is woken by
the conductor that sees the compute's save, instead of waiting up to one
``sync_interval``.
"""

import threading
import time

from nova import objects
import nova.conf

from discovery_nova import conf as dn_conf
from discovery_nova.conductor import manager as manager_mod
from discovery_nova.conductor import placement_index

CONF = nova.conf.CONF
dn_conf.register_opts(CONF)
objects.register_all()


class _Manager:
    pop_name = 'pa'


class _RecordingIndex(placement_index.PlacementIndex):
    """The real pass loop; each pass only records its kind."""

    def __init__(self):
        super().__init__(_Manager(), sync=None, client=None)
        self.passes = []
        self.ran = threading.Event()

    def run_once(self, takeover=True):
        self.passes.append((time.monotonic(), takeover))
        self.ran.set()


def test_wake_runs_a_publishing_pass_long_before_the_interval():
    CONF.set_override('sync_interval', 30, group='discovery_conductor')
    index = _RecordingIndex()
    try:
        index.start()
        time.sleep(0.2)
        assert index.passes == []
        woken = time.monotonic()
        index.wake()
        assert index.ran.wait(5), 'no pass after wake()'
        when, takeover = index.passes[0]
        assert when - woken < 3
        # A woken pass publishes only: the takeover of dead PoPs keeps
        # its own (interval) pace.
        assert takeover is False
    finally:
        index.stop()
        CONF.clear_override('sync_interval', group='discovery_conductor')
    assert not index._thread.is_alive()


def test_passes_at_the_interval_take_over_too():
    CONF.set_override('sync_interval', 0.2, group='discovery_conductor')
    index = _RecordingIndex()
    try:
        index.start()
        assert index.ran.wait(5)
        time.sleep(0.5)
    finally:
        index.stop()
        CONF.clear_override('sync_interval', group='discovery_conductor')
    assert len(index.passes) >= 2
    assert all(takeover for _, takeover in index.passes)


class _Index:
    def __init__(self):
        self.woken = 0

    def wake(self):
        self.woken += 1


def _conductor():
    """The real manager's object_action on an object that saves nowhere."""
    conductor = manager_mod.DiscoveryConductorManager.__new__(
        manager_mod.DiscoveryConductorManager)
    conductor.index = _Index()
    conductor._object_dispatch = lambda obj, method, args, kwargs: None
    return conductor


def test_a_compute_saving_a_server_active_wakes_the_pass():
    conductor = _conductor()
    instance = objects.Instance(uuid='4b1f1e2a-8c51-4a36-9d64-6e0a3f1c2b7d',
                                vm_state='building')
    instance.obj_reset_changes()
    instance.vm_state = 'active'
    conductor.object_action(None, instance, 'save', (), {})
    assert conductor.index.woken == 1


def test_other_saves_do_not_wake_it():
    conductor = _conductor()
    instance = objects.Instance(uuid='4b1f1e2a-8c51-4a36-9d64-6e0a3f1c2b7d',
                                vm_state='active', task_state=None)
    instance.obj_reset_changes()
    instance.task_state = 'rebooting'  # ACTIVE already, not just built
    conductor.object_action(None, instance, 'save', (), {})
    building = objects.Instance(uuid='4b1f1e2a-8c51-4a36-9d64-6e0a3f1c2b7e',
                                vm_state='active')
    building.obj_reset_changes()
    building.vm_state = 'error'
    conductor.object_action(None, building, 'save', (), {})
    conductor.object_action(None, objects.Flavor(name='x'), 'save', (), {})
    assert conductor.index.woken == 0
