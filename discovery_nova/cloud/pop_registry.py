"""Describe the local cloud's PoPs to every PoP: coordinates and aggregates.

In a real deployment a PoP's coordinate comes from its overlay agent's
measured RTTs, written into the PoP aggregates with
``discovery_nova.scheduler.sync.AggregateSync``. The local cloud runs all
PoPs on one machine, where measured RTTs are all ~0, so at ``up`` it runs
the same Vivaldi update over the shipped matrix for the PoPs' matrix
nodes (plus random others, as a real overlay has more members than PoPs)
and writes each PoP's descriptor as aggregate metadata into every PoP's
nova: its own aggregate with its compute hosts and availability zone, the
others as the PoP directory the scheduler and the conductor rank by.
"""

import random

from discovery_nova.locality.pop import PopDescriptor
from discovery_nova.overlay.coordinates import VivaldiNode

#: Vivaldi rounds and extra matrix nodes; enough to converge on <= 50
#: PoPs (a few ms of CPU).
ROUNDS = 400
EXTRA_NODES = 40


def pop_coordinates(topology, nodes: list[int], seed: int = 7
                    ) -> dict[int, VivaldiNode]:
    """Vivaldi state of each node of ``nodes`` after ``ROUNDS`` rounds."""
    rng = random.Random(seed)
    others = [n for n in range(topology.size) if n not in set(nodes)]
    members = list(nodes) + rng.sample(others,
                                       min(EXTRA_NODES, len(others)))
    state = {n: VivaldiNode(rng=random.Random(rng.random()))
             for n in members}
    for _ in range(ROUNDS):
        for node in members:
            peer = rng.choice(members)
            if peer == node:
                continue
            rtt = float(topology.rtt(node, peer))
            if rtt != rtt or rtt <= 0:
                continue
            remote = state[peer]
            state[node].observe(rtt, remote.coordinate, remote.error)
    return {n: state[n] for n in nodes}


def describe_pops(layout, topology) -> list[PopDescriptor]:
    """One descriptor per PoP of ``layout``, coordinates from the matrix."""
    states = pop_coordinates(topology, [pop.node for pop in layout.pops])
    return [PopDescriptor(name=pop.name,
                          coordinate=states[pop.node].coordinate,
                          error=round(states[pop.node].error, 4))
            for pop in layout.pops]


def measured_rtts(layout, topology) -> dict[str, dict[str, float]]:
    """The matrix RTT in ms between every two PoPs, by PoP name."""
    return {a.name: {b.name: float(topology.rtt(a.node, b.node))
                     for b in layout.pops if b is not a}
            for a in layout.pops}
