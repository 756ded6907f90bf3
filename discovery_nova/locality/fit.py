"""Fit Vivaldi coordinates to measured RTTs offline.

The agents compute coordinates online, one probe at a time. Tests,
benchmarks and an operator seeding PoP aggregates from a one-off
measurement need the same coordinates from a known RTT matrix: this runs
the very same ``VivaldiNode`` update over it, each node sampling random
peers (which train the error estimate) and its nearest peers (which make
the coordinates right where locality matters), in a seeded order.
"""

from collections.abc import Callable
from collections.abc import Sequence
import random

from discovery_nova.overlay.coordinates import Coordinate
from discovery_nova.overlay.coordinates import VivaldiNode
from discovery_nova.overlay.coordinates import VivaldiParams


def fit_coordinates(rtt: Callable[[int, int], float], nodes: Sequence[int],
                    rounds: int = 200, near_peers: int = 8,
                    params: VivaldiParams | None = None,
                    seed: int = 0) -> list[tuple[Coordinate, float]]:
    """(coordinate, error estimate) of each node in ``nodes``.

    ``rtt(i, j)`` gives the measured RTT in ms between node ids. Each round
    every node takes one sample from a random peer and one from one of its
    ``near_peers`` nearest peers.
    """
    if len(nodes) < 2:
        raise ValueError('fitting coordinates needs at least 2 nodes, got %d'
                         % len(nodes))
    rng = random.Random(seed)
    vivaldi = [VivaldiNode(params, rng=random.Random(seed + k))
               for k in range(len(nodes))]
    near = []
    for a, i in enumerate(nodes):
        others = sorted((rtt(i, j), b) for b, j in enumerate(nodes) if b != a)
        near.append([b for _, b in others[:max(1, near_peers)]])
    order = list(range(len(nodes)))
    for _ in range(rounds):
        rng.shuffle(order)
        for a in order:
            b = rng.randrange(len(nodes) - 1)
            b = b + 1 if b >= a else b
            for peer, representative in ((b, True),
                                         (rng.choice(near[a]), False)):
                remote = vivaldi[peer]
                vivaldi[a].observe(rtt(nodes[a], nodes[peer]),
                                   remote.coordinate, remote.error,
                                   representative)
    return [(node.coordinate, node.error) for node in vivaldi]
