"""Overflow goes to the neighbours the overlay's spiral search found.

Real agents on loopback (the Ring of test_ring_records) run their spiral
searches; the conductor reads the result through the blocking client.
"""

import time

import pytest

from discovery_nova.conductor import compute_task
from discovery_nova.conductor.neighbours import SpiralNeighbours
from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.overlay.agent import AgentParams
from discovery_nova.overlay.client import AgentUnavailable
from discovery_nova.overlay.coordinates import Coordinate
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


def test_a_point_search_finds_the_pops_around_another_pop(spiral_ring):
    """What ``near``/``near_ip`` builds are offered to: a spiral search
    from this PoP's agent towards another PoP's coordinate."""
    agent = spiral_ring.agents['pa']
    spiral_ring.wait(lambda: len(_near(agent)) == 3, timeout=20.0)
    clock = _Clock()
    neighbours = SpiralNeighbours(spiral_ring.client('pa'), ttl=10.0,
                                  clock=clock)
    point = spiral_ring.agents['pd'].vivaldi.coordinate.to_wire()
    found = neighbours.near_point('pd', point)
    # Four PoPs and a larger spiral_k: every one, the searching PoP too
    # (a point search ranks by coordinates, and pa is a candidate).
    assert found == frozenset({'pa', 'pb', 'pc', 'pd'})
    spiral_ring.stop('pa')
    assert neighbours.near_point('pd', point) == found  # within the TTL
    # Past it, the build is answered at once with what was found, while
    # a thread renews it: here the agent is gone, so it finds nothing.
    clock.now = 11.0
    assert neighbours.near_point('pd', point) == found
    deadline = time.monotonic() + 15
    while neighbours._renewing and time.monotonic() < deadline:
        time.sleep(0.05)
    assert neighbours.near_point('pd', point) is None


def test_a_malformed_point_is_refused_by_the_agent(spiral_ring):
    client = spiral_ring.client('pa')
    with pytest.raises(AgentUnavailable) as caught:
        client.nearest(point=[['x'], 0])
    assert 'point must be a coordinate' in str(caught.value)
    # The agent keeps serving.
    assert client.status()['name'] == 'pa'


class _Liveness:
    def __init__(self, alive):
        self._alive = set(alive)

    def alive(self):
        return set(self._alive)


class _Neighbours:
    """The spiral's answers: this PoP's neighbours, and around others."""

    def __init__(self, names, around=None):
        self._names = names
        self.around = dict(around or {})
        self.asked = []

    def names(self):
        return self._names

    def near_point(self, name, point):
        self.asked.append((name, point))
        return self.around.get(name)


def _pops():
    return {name: PopDescriptor(name, Coordinate((x, 0.0), 0.0), 0.05)
            for name, x in (('pa', 0.0), ('pb', 10.0), ('pc', 30.0),
                            ('pd', 70.0), ('pe', 75.0))}


def _manager(alive, near, around=None):
    manager = compute_task.ForwardingComputeTaskManager.__new__(
        compute_task.ForwardingComputeTaskManager)
    manager.pop_name = 'pa'
    manager.liveness = _Liveness(alive)
    manager.neighbours = None if near is False else _Neighbours(near,
                                                               around)
    return manager


ALL = {'pa', 'pb', 'pc', 'pd', 'pe'}


@pytest.mark.parametrize('hints,near,around,expected', [
    # Overflow with no hint: only the spiral's neighbours, and this PoP.
    ({}, frozenset({'pb'}), None, ['pa', 'pb']),
    # A neighbour that is not alive is not a candidate.
    ({}, frozenset({'pb', 'px'}), None, ['pa', 'pb']),
    # No spiral view yet, or no agent: every live PoP.
    ({}, None, None, ['pa', 'pb', 'pc', 'pd', 'pe']),
    ({}, False, None, ['pa', 'pb', 'pc', 'pd', 'pe']),
    # near=<another PoP>: the PoPs the spiral finds around that one
    # (and that PoP), nearest to it first; this PoP only if among them.
    # (nova keeps each hint as a list of strings)
    ({'near': ['pd']}, frozenset({'pb'}), {'pd': frozenset({'pe', 'pc'})},
     ['pd', 'pe', 'pc', 'pa']),
    # ...every live PoP when that search has no answer.
    ({'near': ['pd']}, frozenset({'pb'}), {},
     ['pd', 'pe', 'pc', 'pb', 'pa']),
    # near=<this PoP>: its own neighbours.
    ({'near': ['pa']}, frozenset({'pb'}), None, ['pa', 'pb']),
    # A hint that keeps the reference here: this PoP's neighbours.
    ({'max_rtt_ms': '50'}, frozenset({'pb'}), None, ['pa', 'pb']),
    # The user named the PoPs: those, whatever the spiral says.
    ({'pop': ['pc,pe']}, frozenset({'pb'}), None, ['pc', 'pe']),
    # The neighbours hold no PoP eligible for the hint (a PoP to avoid):
    # every live PoP that is.
    ({'avoid_pop': ['pb']}, frozenset({'pb'}), None,
     ['pa', 'pc', 'pd', 'pe']),
    # Hints that are not about locality do not count.
    ({'group': ['x']}, frozenset({'pb'}), None, ['pa', 'pb']),
])
def test_which_pops_a_build_is_offered_to(hints, near, around, expected):
    manager = _manager(ALL, near, around)
    plan = manager.rank(hints, _pops())
    assert [c.pop for c in plan.candidates] == expected


def test_a_point_search_asks_for_the_reference_pops_coordinate():
    manager = _manager(ALL, frozenset({'pb'}), {'pd': frozenset({'pe'})})
    manager.rank({'near': ['pd']}, _pops())
    assert manager.neighbours.asked == [('pd', [[70.0, 0.0], 0.0])]
