"""Which PoPs a local cloud has, where they sit and which ports they use.

PoP positions come from the shipped PlanetLab RTT matrix so that the local
cloud and the simulator speak about the same places; a PoP is named after
its matrix node, which lets RTT emulation look its latencies up by name.
"""

import dataclasses
import socket

import numpy as np

from discovery_nova.locality.pop import POP_NAME_RE

#: Offsets from the base port of the services shared by all PoPs.
SHARED_PORTS = {'keystone': 0, 'glance': 1, 'network': 2}
#: Each PoP owns a block of this many ports after the shared ones.
POP_PORT_BLOCK = 10
#: Offsets inside a PoP's block.
POP_PORTS = {'nova-api': 0, 'placement': 1, 'p2p': 2, 'federation': 3,
             'overlay': 4}
MAX_POPS = 50


class LayoutError(ValueError):
    """The requested cloud cannot be laid out (names, counts, ports)."""


@dataclasses.dataclass(frozen=True)
class PopSpec:
    """One PoP: its name (= keystone region), matrix node and ports."""

    name: str
    node: int
    nova_api_port: int
    placement_port: int
    p2p_port: int
    #: Where this PoP's conductor meets the other PoPs' conductors.
    federation_port: int = 0
    #: The PoP's overlay agent: TCP for overlay messages and queries, UDP
    #: of the same number for its RTT probes.
    overlay_port: int = 0


@dataclasses.dataclass(frozen=True)
class CloudLayout:
    """Every PoP of the cloud and the shared services' ports."""

    pops: tuple[PopSpec, ...]
    keystone_port: int
    glance_port: int
    network_port: int
    host: str = '127.0.0.1'

    def ports(self) -> dict[str, int]:
        """Map a human label to each port the cloud will listen on."""
        ports = {'keystone': self.keystone_port,
                 'glance': self.glance_port,
                 'network': self.network_port}
        for pop in self.pops:
            ports['%s/nova-api' % pop.name] = pop.nova_api_port
            ports['%s/placement' % pop.name] = pop.placement_port
            ports['%s/p2p' % pop.name] = pop.p2p_port
            ports['%s/federation' % pop.name] = pop.federation_port
            if pop.overlay_port:
                ports['%s/overlay' % pop.name] = pop.overlay_port
        return ports


def choose_nodes(rtt: np.ndarray, count: int) -> list[int]:
    """Pick ``count`` well-separated, well-connected matrix nodes.

    Nodes whose median RTT is above the overall median are left out (they
    are badly connected or broken hosts, whose huge RTTs would make every
    other node look close); among the rest, the most central node comes
    first and each next one is the farthest from those already chosen
    (greedy max-min), so the PoPs spread over distinct regions.
    """
    size = rtt.shape[0]
    if not 1 <= count <= size:
        raise LayoutError('asked for %d PoPs; the matrix has %d nodes'
                          % (count, size))
    sym = np.where(np.isfinite(rtt), rtt, np.inf)
    sym = np.minimum(sym, sym.T)
    medians = np.median(sym, axis=1)
    candidates = np.flatnonzero(medians <= np.median(medians))
    if len(candidates) < count:
        candidates = np.arange(size)
    chosen = [int(candidates[np.argmin(medians[candidates])])]
    while len(chosen) < count:
        dist = sym[np.ix_(candidates, chosen)].min(axis=1)
        dist[np.isin(candidates, chosen)] = -1.0
        chosen.append(int(candidates[int(np.argmax(dist))]))
    return chosen


def rtt_matrix(topology) -> np.ndarray:
    """The full RTT matrix of a topology, one row per node."""
    return np.array([topology.rtts_from(i) for i in range(topology.size)])


def make_layout(count: int, base_port: int,
                names: list[str] | None = None,
                topology=None) -> CloudLayout:
    """Lay out ``count`` PoPs from the PlanetLab matrix on ``base_port``.

    ``names`` picks matrix nodes by name (``pl017``) instead of the
    automatic choice.
    """
    if not 1 <= count <= MAX_POPS:
        raise LayoutError('--pops must be between 1 and %d, got %d'
                          % (MAX_POPS, count))
    last = base_port + POP_PORT_BLOCK * count + max(POP_PORTS.values())
    if base_port < 1024 or last > 65535:
        raise LayoutError('--base-port %d leaves no room for %d PoPs: ports '
                          'must stay within 1024-65535'
                          % (base_port, count))
    if topology is None:
        from discovery_nova.sim.topology import PlanetLabTopology
        topology = PlanetLabTopology()
    if names:
        if len(names) != count:
            raise LayoutError('%d PoP names given for %d PoPs'
                              % (len(names), count))
        nodes = []
        for name in names:
            if not POP_NAME_RE.match(name):
                raise LayoutError('PoP name %r is not valid: expected '
                                  'letters, digits, "-", "_" or "."' % name)
            try:
                nodes.append(topology.index_of(name))
            except (KeyError, ValueError) as exc:
                raise LayoutError('PoP %r is not a node of the %s matrix '
                                  '(expected e.g. %s)'
                                  % (name, topology.kind,
                                     topology.names[0])) from exc
        if len(set(nodes)) != len(nodes):
            raise LayoutError('PoP names must be distinct: %s' % names)
    else:
        nodes = choose_nodes(rtt_matrix(topology), count)
    pops = []
    for i, node in enumerate(nodes):
        start = base_port + POP_PORT_BLOCK * (i + 1)
        pops.append(PopSpec(
            name=topology.names[node], node=node,
            nova_api_port=start + POP_PORTS['nova-api'],
            placement_port=start + POP_PORTS['placement'],
            p2p_port=start + POP_PORTS['p2p'],
            federation_port=start + POP_PORTS['federation'],
            overlay_port=start + POP_PORTS['overlay']))
    return CloudLayout(
        pops=tuple(pops),
        keystone_port=base_port + SHARED_PORTS['keystone'],
        glance_port=base_port + SHARED_PORTS['glance'],
        network_port=base_port + SHARED_PORTS['network'])


def taken_ports(layout: CloudLayout) -> dict[str, int]:
    """The ports of ``layout`` that something else already listens on."""
    taken = {}
    for label, port in layout.ports().items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((layout.host, port))
            except OSError:
                taken[label] = port
    return taken
