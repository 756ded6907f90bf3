"""Where simulated nodes sit: RTT between them, from a matrix or generated.

A topology names its nodes and answers ``rtt(i, j)`` in milliseconds. The
shipped PlanetLab matrix is a real measurement (490 nodes); the generated
ones reach 10,000 nodes without holding an N x N matrix in memory: RTTs are
computed from positions on demand.
"""

import abc
import gzip
import importlib.resources
import lzma
import math
import os

import numpy as np


class RttMatrixError(ValueError):
    """An RTT matrix file is unusable; the message says where and why."""


class Topology(abc.ABC):
    """Base of every topology: node names and pairwise RTT in ms."""

    #: Short name used on the command line and in reports.
    kind = 'topology'

    def __init__(self, names: list[str]):
        self.names = names
        self.index = {name: i for i, name in enumerate(names)}

    @property
    def size(self) -> int:
        return len(self.names)

    @abc.abstractmethod
    def rtt(self, i: int, j: int) -> float:
        """RTT in milliseconds between nodes ``i`` and ``j``."""

    @abc.abstractmethod
    def rtts_from(self, i: int) -> np.ndarray:
        """RTTs from node ``i`` to every node, as a float array."""

    def index_of(self, name: str) -> int:
        try:
            return self.index[name]
        except KeyError:
            raise KeyError('unknown node %r: this %s topology has nodes %s'
                           % (name, self.kind, _name_range(self.names))
                           ) from None

    def describe(self) -> str:
        return '%s (%d nodes)' % (self.kind, self.size)


def _name_range(names: list[str]) -> str:
    if len(names) <= 3:
        return ', '.join(names)
    return '%s .. %s' % (names[0], names[-1])


class MatrixTopology(Topology):
    """RTTs read from a square matrix (symmetrised: mean of both ways)."""

    kind = 'matrix'

    def __init__(self, matrix: np.ndarray, names: list[str] | None = None,
                 source: str = 'matrix'):
        n = matrix.shape[0]
        names = names or ['n%0*d' % (len(str(n - 1)), i) for i in range(n)]
        super().__init__(names)
        self.source = source
        self.matrix = (matrix + matrix.T) / 2.0
        self._rows = self.matrix.tolist()

    def rtt(self, i: int, j: int) -> float:
        return self._rows[i][j]

    def rtts_from(self, i: int) -> np.ndarray:
        return self.matrix[i]

    def describe(self) -> str:
        return '%s (%d nodes, %s)' % (self.kind, self.size, self.source)


def _open_text(path: str):
    if path.endswith('.xz'):
        return lzma.open(path, 'rt')
    if path.endswith('.gz'):
        return gzip.open(path, 'rt')
    return open(path)


def load_rtt_matrix(path: str) -> np.ndarray:
    """Read a whitespace-separated square RTT matrix in milliseconds.

    Raises RttMatrixError naming the file, the line and the column of the
    first problem: an unreadable file, a non-number, a negative or non-finite
    value, a row of the wrong length, a non-square shape, or a non-zero
    diagonal.
    """
    if not os.path.isfile(path):
        raise RttMatrixError('%s: no such RTT matrix file' % path)
    rows: list[list[float]] = []
    try:
        with _open_text(path) as stream:
            for lineno, line in enumerate(stream, 1):
                if not line.strip() or line.lstrip().startswith('#'):
                    continue
                row = []
                for col, field in enumerate(line.split(), 1):
                    try:
                        value = float(field)
                    except ValueError:
                        raise RttMatrixError(
                            '%s line %d, column %d: %r, expected a number of '
                            'milliseconds' % (path, lineno, col, field)
                        ) from None
                    if not math.isfinite(value) or value < 0:
                        raise RttMatrixError(
                            '%s line %d, column %d: %r, expected a finite RTT '
                            '>= 0 ms' % (path, lineno, col, field))
                    row.append(value)
                if rows and len(row) != len(rows[0]):
                    raise RttMatrixError(
                        '%s line %d: %d values, the first row has %d'
                        % (path, lineno, len(row), len(rows[0])))
                rows.append(row)
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise RttMatrixError('%s: cannot read RTT matrix: %s'
                             % (path, exc)) from None
    if not rows:
        raise RttMatrixError('%s: no RTT values found' % path)
    if len(rows) != len(rows[0]):
        raise RttMatrixError(
            '%s: matrix is %d x %d, expected a square N x N matrix'
            % (path, len(rows), len(rows[0])))
    matrix = np.array(rows, dtype=float)
    bad = np.flatnonzero(np.diag(matrix) != 0)
    if bad.size:
        i = int(bad[0])
        raise RttMatrixError('%s: diagonal entry (%d, %d) is %r, expected 0'
                             % (path, i + 1, i + 1, matrix[i, i]))
    if matrix.shape[0] < 2:
        raise RttMatrixError('%s: a matrix of at least 2 nodes is needed'
                             % path)
    return matrix


def shipped_matrix_path(name: str = 'planetlab-490.tsv.xz') -> str:
    """Path of an RTT matrix shipped inside the package."""
    return str(importlib.resources.files('discovery_nova.sim') / 'data' / name)


class PlanetLabTopology(MatrixTopology):
    """The real 490-node PlanetLab matrix shipped with the package.

    Source: NetLatency-Data (PlanetLab, slice 1), MIT licence; see
    ``discovery_nova/sim/data/README.md``.
    """

    kind = 'planetlab'

    def __init__(self, path: str | None = None, size: int | None = None,
                 seed: int = 0):
        path = path or shipped_matrix_path()
        matrix = load_rtt_matrix(path)
        if size is not None and size != matrix.shape[0]:
            raise ValueError('the planetlab topology has %d nodes, %d were '
                             'asked for' % (matrix.shape[0], size))
        names = ['pl%03d' % i for i in range(matrix.shape[0])]
        super().__init__(matrix, names, source=os.path.basename(path))


class _PositionTopology(Topology):
    """RTT = propagation over positions x stretch + both access delays."""

    def __init__(self, positions: np.ndarray, access: np.ndarray,
                 stretch: float, seed: int):
        n = positions.shape[0]
        super().__init__(['n%0*d' % (len(str(n - 1)), i) for i in range(n)])
        self.positions = positions
        self.access = access
        self.stretch = stretch
        self.seed = seed
        self._pos = positions.tolist()
        self._acc = access.tolist()

    def _jitter(self, i: int, j: int) -> float:
        # Deterministic per-pair detour factor in [1, 1.3): routing
        # inefficiency, and the triangle-inequality violations of real
        # networks that no coordinate space embeds exactly.
        a, b = (i, j) if i < j else (j, i)
        h = (a * 2654435761 ^ b * 40503 ^ self.seed * 97) & 0xffffffff
        h = (h * 2246822519) & 0xffffffff
        return 1.0 + 0.3 * (h / 4294967296.0) ** 3

    def rtt(self, i: int, j: int) -> float:
        if i == j:
            return 0.0
        d = math.dist(self._pos[i], self._pos[j]) * self.stretch
        return d * self._jitter(i, j) + self._acc[i] + self._acc[j]

    def rtts_from(self, i: int) -> np.ndarray:
        d = np.sqrt(((self.positions - self.positions[i]) ** 2).sum(axis=1))
        d = d * self.stretch
        a = np.minimum(np.arange(self.size), i).astype(np.uint64)
        b = np.maximum(np.arange(self.size), i).astype(np.uint64)
        with np.errstate(over='ignore'):
            h = ((a * np.uint64(2654435761)) ^ (b * np.uint64(40503)) ^
                 np.uint64(self.seed * 97)) & np.uint64(0xffffffff)
            h = (h * np.uint64(2246822519)) & np.uint64(0xffffffff)
        jitter = 1.0 + 0.3 * (h.astype(float) / 4294967296.0) ** 3
        out = d * jitter + self.access + self.access[i]
        out[i] = 0.0
        return out


class PlaneTopology(_PositionTopology):
    """Nodes spread uniformly on a plane 150 ms across, with access delays."""

    kind = 'plane'

    def __init__(self, size: int = 1000, seed: int = 0):
        if size < 2:
            raise ValueError('a topology needs at least 2 nodes, got %d'
                             % size)
        rng = np.random.default_rng(seed)
        positions = rng.uniform(0.0, 75.0, size=(size, 2))
        access = rng.exponential(2.0, size=size) + 0.2
        super().__init__(positions, access, stretch=2.0, seed=seed)


class BackboneTopology(_PositionTopology):
    """PoPs of a backbone: dense metro clusters spread over continents.

    Cluster centres are drawn on a world-sized plane; PoPs gather around
    them, so most PoPs have close neighbours and a few far links span the
    oceans, which is the shape the spiral search and Vivaldi must cope with.
    """

    kind = 'backbone'

    def __init__(self, size: int = 1000, seed: int = 0,
                 clusters: int | None = None):
        if size < 2:
            raise ValueError('a topology needs at least 2 nodes, got %d'
                             % size)
        rng = np.random.default_rng(seed)
        clusters = clusters or max(2, int(math.sqrt(size) / 2))
        centres = rng.uniform(0.0, 100.0, size=(clusters, 2))
        weights = rng.pareto(1.5, size=clusters) + 1.0
        weights /= weights.sum()
        owner = rng.choice(clusters, size=size, p=weights)
        spread = rng.uniform(1.0, 6.0, size=clusters)
        positions = centres[owner] + rng.normal(
            0.0, 1.0, size=(size, 2)) * spread[owner, None]
        access = rng.exponential(1.0, size=size) + 0.1
        super().__init__(positions, access, stretch=1.5, seed=seed)


TOPOLOGIES = {
    'planetlab': PlanetLabTopology,
    'plane': PlaneTopology,
    'backbone': BackboneTopology,
}
