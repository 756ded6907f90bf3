"""Overflow goes to the neighbours the overlay's spiral search found.

Real agents on loopback (the Ring of test_ring_records) run their spiral
searches; the conductor reads the result through the blocking client.
"""

import types

import pytest

from discovery_nova.conductor import compute_task
from discovery_nova.conductor.neighbours import SpiralNeighbours
from discovery_nova.overlay.agent import AgentParams
from tests.unit.conductor.test_ring_records import Ring


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def spiral_ring(monkeypatch):
    # Searches every fraction of a second instead of every half minute.
    monkeypatch.setattr(AgentParams, 'spiral_refresh_interval', 0.2)
    ring = Ring(['pa', 'pb', 'pc', 'pd'])
    yield ring
    ring.close()


def _near(agent):
    return {p.peer.name for p in agent.spiral.near_peers()}


def test_the_agents_spiral_neighbours_are_what_the_conductor_reads(
        spiral_ring):
    agent = spiral_ring.agents['pa']
    # Four PoPs: once the searches have met everyone, all three others
    # are among pa's nearest (spiral_k is larger).
    spiral_ring.wait(lambda: len(_near(agent)) == 3, timeout=20.0)
    clock = _Clock()
    neighbours = SpiralNeighbours(spiral_ring.client('pa'), ttl=10.0,
                                  clock=clock)
    names = neighbours.names()
    assert names == frozenset({'pb', 'pc', 'pd'})
    # Within the TTL the answer is kept even when the agent is gone...
    spiral_ring.stop('pa')
    assert neighbours.names() == names
    # ...and after it, no agent means no spiral view.
    clock.now = 11.0
    assert neighbours.names() is None


def test_no_agent_means_no_spiral_view():
    assert SpiralNeighbours(None, ttl=10.0).names() is None


class _Liveness:
    def __init__(self, alive):
        self._alive = set(alive)

    def alive(self):
        return set(self._alive)


class _Neighbours:
    def __init__(self, names):
        self._names = names

    def names(self):
        return self._names


def _manager(alive, near):
    return types.SimpleNamespace(
        pop_name='pa', liveness=_Liveness(alive),
        neighbours=None if near is False else _Neighbours(near))


@pytest.mark.parametrize('hints,near,expected', [
    # Overflow with no hint: only the spiral's neighbours, and this PoP.
    ({}, frozenset({'pb'}), {'pa', 'pb'}),
    # A neighbour that is not alive is not a candidate.
    ({}, frozenset({'pb', 'px'}), {'pa', 'pb'}),
    # No spiral view yet, or no agent: every live PoP.
    ({}, None, {'pa', 'pb', 'pc'}),
    ({}, False, {'pa', 'pb', 'pc'}),
    # A hint with its own reference point or PoPs: every live PoP.
    ({'near': 'pc'}, frozenset({'pb'}), {'pa', 'pb', 'pc'}),
    ({'pop': 'pc'}, frozenset({'pb'}), {'pa', 'pb', 'pc'}),
    ({'max_rtt_ms': '50'}, frozenset({'pb'}), {'pa', 'pb', 'pc'}),
    # Hints that are not about locality do not count.
    ({'group': 'x'}, frozenset({'pb'}), {'pa', 'pb'}),
])
def test_which_pops_a_build_may_go_to(hints, near, expected):
    manager = _manager({'pa', 'pb', 'pc'}, near)
    got = compute_task.ForwardingComputeTaskManager.candidate_pops(
        manager, hints)
    assert got == expected
