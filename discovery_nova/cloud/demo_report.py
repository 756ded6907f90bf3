"""What ``discovery-nova cloud demo`` saw: a table, a JSON report, a map.

The scenario (``discovery_nova.cloud.demo``) talks to the cloud; this
module only turns what it observed into text and pictures, so that the
table and the map can be checked without a cloud. matplotlib runs
headless (Agg), as for the simulation's plots.
"""

from collections.abc import Sequence
import dataclasses
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

#: The scenarios, in the order they run, and their colour on the map.
SCENARIOS = {
    'locality': ('locality: --hint near=<PoP>', 'tab:blue'),
    'overflow': ('overflow: origin full', 'tab:orange'),
    'malformed': ('malformed hint: refused', 'tab:purple'),
    'failure': ('PoP killed: rebuilt elsewhere', 'tab:red'),
}
COLUMNS = ('SERVER', 'ASKED AT', 'HINT', 'LANDED AT', 'RTT EST/MATRIX ms',
           'STATUS', 'TO ACTIVE s', 'PATH')
#: Size of demo.png: figure inches times dots per inch.
FIGSIZE = (9.0, 6.0)
DPI = 110


@dataclasses.dataclass(frozen=True)
class PopPoint:
    """A PoP on the map: its Vivaldi coordinate and capacity."""

    name: str
    #: First two dimensions of the coordinate (ms).
    x: float
    y: float
    height: float = 0.0
    error: float = 1.0
    #: vCPUs its computes offer (placement inventory), None if unknown.
    vcpus: int | None = None


@dataclasses.dataclass(frozen=True)
class Hop:
    """One PoP tried for a server (an instance action at the origin)."""

    pop: str
    accepted: bool
    #: Why the PoP declined (the event's details), if it said.
    reason: str = ''


@dataclasses.dataclass
class Row:
    """One server (or a group of identical ones) and where it went."""

    server: str
    scenario: str
    asked_at: str
    hint: str
    landed_at: str | None
    status: str
    est_rtt_ms: float | None = None
    matrix_rtt_ms: float | None = None
    seconds_to_active: float | None = None
    path: list[Hop] = dataclasses.field(default_factory=list)
    #: Servers the row stands for (the fillers of the overflow step).
    count: int = 1
    #: The fault of a server in ERROR, or what else was seen.
    note: str = ''

    def path_text(self) -> str:
        if not self.path:
            return self.landed_at or '-'
        return ' > '.join(h.pop if h.accepted else '%s(x)' % h.pop
                          for h in self.path)


@dataclasses.dataclass
class DemoResult:
    """Everything the demo observed, in the order it happened."""

    origin: str
    pops: list[PopPoint]
    rows: list[Row]
    killed_pop: str | None = None
    #: Observations that are not a placement (deletions, stale copies).
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def pop(self, name: str) -> PopPoint | None:
        return next((p for p in self.pops if p.name == name), None)


def _ms(value: float | None) -> str:
    if value is None or math.isinf(value) or math.isnan(value):
        return '?'
    return '%.0f' % value


def row_cells(row: Row) -> list[str]:
    """The table cells of ``row``, in ``COLUMNS`` order."""
    if row.landed_at is None:
        rtt = '-'
    else:
        rtt = '%s/%s' % (_ms(row.est_rtt_ms), _ms(row.matrix_rtt_ms))
    return [
        row.server if row.count == 1 else '%s (x%d)' % (row.server,
                                                        row.count),
        row.asked_at, row.hint or '-', row.landed_at or '-', rtt,
        row.status,
        '-' if row.seconds_to_active is None
        else '%.1f' % row.seconds_to_active,
        row.path_text(),
    ]


def format_table(rows: Sequence[Row]) -> str:
    """Aligned columns, one line per row, then the faults under it."""
    lines = [list(COLUMNS)] + [row_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines)
              for i in range(len(COLUMNS))]
    text = ['  '.join(cell.ljust(w) for cell, w
                      in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    text.append('PATH: PoPs tried, in order; (x) = declined. RTT: estimated '
                'from Vivaldi coordinates / PlanetLab matrix, origin to '
                'landing PoP.')
    for row in rows:
        if row.note:
            text.append('%s: %s' % (row.server, row.note))
    return '\n'.join(text)


def _plain(value):
    """``value`` with NaN and infinities as None: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_json(result: DemoResult) -> dict:
    """The report as plain data (demo.json)."""
    rows = []
    for row in result.rows:
        data = dataclasses.asdict(row)
        data['path'] = [dataclasses.asdict(h) for h in row.path]
        data['path_text'] = row.path_text()
        rows.append(_plain(data))
    return {'origin': result.origin,
            'killed_pop': result.killed_pop,
            'seconds': round(result.seconds, 1),
            'columns': list(COLUMNS),
            'table': [row_cells(r) for r in result.rows],
            'rows': rows,
            'pops': _plain([dataclasses.asdict(p) for p in result.pops]),
            'notes': list(result.notes)}


def write_json(result: DemoResult, path: Path) -> Path:
    path.write_text(json.dumps(to_json(result), indent=2,
                               allow_nan=False, default=str) + '\n')
    return path


# The map ----------------------------------------------------------------

def _arrow_label(row: Row) -> str:
    label = row.server if row.count == 1 else '%d x %s' % (row.count,
                                                          row.server)
    if row.est_rtt_ms is not None or row.matrix_rtt_ms is not None:
        label += '\n%s/%s ms' % (_ms(row.est_rtt_ms), _ms(row.matrix_rtt_ms))
    return label


def write_map(result: DemoResult, path: Path) -> Path:
    """The PoPs by their coordinates and an arrow per placement.

    Marker area follows each PoP's vCPUs; an arrow goes from the PoP a
    server was asked at to the PoP it landed at, coloured by scenario;
    servers that stayed at their origin and refused ones are listed beside
    it. The killed PoP is crossed out.
    """
    fig, ax = plt.subplots(figsize=FIGSIZE)
    _frame(ax, result)
    fig.tight_layout()
    ax.apply_aspect()
    # Display pixels taken by labels; arrow labels are kept off them.
    placed: list[tuple[float, float]] = []
    _draw_pops(ax, result, placed)
    stayed = _draw_arrows(ax, result, placed)
    xy = {p.name: (p.x, p.y) for p in result.pops}
    for origin, items in stayed.items():
        if origin not in xy:
            continue
        ax.annotate('\n'.join(items), xy[origin], xytext=(0, -34),
                    textcoords='offset points', ha='center', va='top',
                    fontsize=7.5, zorder=5,
                    bbox={'boxstyle': 'round,pad=0.3', 'fc': 'lightyellow',
                          'ec': 'grey', 'alpha': 0.9})
    used = {row.scenario for row in result.rows
            if row.landed_at not in (None, row.asked_at)}
    handles = [mpatches.Patch(color=colour, label=label)
               for name, (label, colour) in SCENARIOS.items()
               if name in used]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc='upper right')
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _frame(ax, result: DemoResult) -> None:
    """Limits with room for the labels, equal scales, titles."""
    margin = 0.35 * _span(result.pops)
    xs = [p.x for p in result.pops] or [0.0]
    ys = [p.y for p in result.pops] or [0.0]
    ax.set_xlim(min(xs) - margin, max(xs) + margin)
    ax.set_ylim(min(ys) - margin, max(ys) + margin)
    ax.set_aspect('equal', adjustable='box')
    ax.set_xlabel('Vivaldi coordinate, dimension 1 (ms)')
    ax.set_ylabel('Vivaldi coordinate, dimension 2 (ms)')
    ax.set_title('discovery-nova demo: servers asked at %s and where they '
                 'landed' % result.origin)
    ax.grid(True, alpha=0.3)


def _draw_pops(ax, result: DemoResult,
               placed: list[tuple[float, float]]) -> None:
    colours = plt.get_cmap('tab10')
    most = max((p.vcpus or 0 for p in result.pops), default=0) or 1
    for i, pop in enumerate(result.pops):
        size = 300 + 900 * (pop.vcpus or 0) / most
        ax.scatter([pop.x], [pop.y], s=size, color=colours(i % 10),
                   alpha=0.35, edgecolor='black', linewidth=1.0, zorder=2)
        text = pop.name
        if pop.name == result.origin:
            text += ' (origin)'
        if pop.vcpus is not None:
            text += '\n%d vCPUs' % pop.vcpus
        ax.annotate(text, (pop.x, pop.y), xytext=(0, 24),
                    textcoords='offset points', ha='center',
                    fontsize=9, fontweight='bold', zorder=5)
        x, y = ax.transData.transform((pop.x, pop.y))
        placed.extend([(x, y), (x, y + 34 * DPI / 72)])
        if pop.name == result.killed_pop:
            ax.scatter([pop.x], [pop.y], marker='x', s=500, color='red',
                       linewidth=3, zorder=4)
            ax.annotate('killed, then restarted', (pop.x, pop.y),
                        xytext=(0, -32), textcoords='offset points',
                        ha='center', color='red', fontsize=8, zorder=5)
            placed.append((x, y - 32 * DPI / 72))


#: Half the size of an arrow's label, in pixels, for keeping labels apart.
_LABEL_HALF = (52.0, 16.0)


def _draw_arrows(ax, result: DemoResult,
                 placed: list[tuple[float, float]]) -> dict[str, list[str]]:
    """An arrow per server that left its origin; what stayed, by origin.
    """
    xy = {p.name: (p.x, p.y) for p in result.pops}
    pair_count: dict[tuple[str, str], int] = {}
    stayed: dict[str, list[str]] = {}
    for row in result.rows:
        what = row.server if row.count == 1 else '%d x %s' % (row.count,
                                                             row.server)
        if row.landed_at is None or row.landed_at not in xy or \
                row.asked_at not in xy:
            stayed.setdefault(row.asked_at, []).append(
                '%s: %s' % (what, row.status.lower()))
            continue
        if row.landed_at == row.asked_at:
            stayed.setdefault(row.asked_at, []).append('%s: stayed' % what)
            continue
        colour = SCENARIOS.get(row.scenario, ('', 'tab:grey'))[1]
        key = (row.asked_at, row.landed_at)
        k = pair_count.get(key, 0)
        pair_count[key] = k + 1
        # Arrows between the same PoPs bend more and more; by at least
        # ~15 px apart at their middles, however close the PoPs are.
        a_px, b_px = ax.transData.transform([xy[row.asked_at],
                                             xy[row.landed_at]])
        chord = math.dist(a_px, b_px) or 1.0
        rad = 0.12 + k * max(0.16, 30.0 / chord)
        ax.add_patch(mpatches.FancyArrowPatch(
            xy[row.asked_at], xy[row.landed_at],
            connectionstyle='arc3,rad=%.2f' % rad, arrowstyle='-|>',
            mutation_scale=18, color=colour, linewidth=2,
            linestyle='--' if row.scenario == 'failure' else '-',
            shrinkA=14, shrinkB=14, zorder=3))
        mid, normal = _arc_point(xy[row.asked_at], xy[row.landed_at], rad)
        offset = _clear_spot(ax.transData.transform(mid), normal, placed)
        # A label moved off its arrow keeps a thin line to it.
        leader = {'arrowstyle': '-', 'color': colour, 'linewidth': 0.6} \
            if offset != (0.0, 0.0) else None
        ax.annotate(_arrow_label(row), mid,
                    xytext=(offset[0] * 72 / DPI, offset[1] * 72 / DPI),
                    textcoords='offset points', ha='center', va='center',
                    fontsize=7.5, color=colour, zorder=5, arrowprops=leader,
                    bbox={'boxstyle': 'round,pad=0.2', 'fc': 'white',
                          'ec': colour, 'alpha': 0.85})
    return stayed


def _clear_spot(anchor, normal: tuple[float, float],
                placed: list[tuple[float, float]]) -> tuple[float, float]:
    """Pixel offset from ``anchor`` along ``normal`` where a label does
    not cover one already ``placed`` (display pixels); records it."""
    hw, hh = _LABEL_HALF
    offset = (0.0, 0.0)
    for step in range(40):
        offset = (normal[0] * 6.0 * step, normal[1] * 6.0 * step)
        spot = (anchor[0] + offset[0], anchor[1] + offset[1])
        if all(abs(spot[0] - x) >= 2 * hw or abs(spot[1] - y) >= 2 * hh
               for x, y in placed):
            break
    placed.append((anchor[0] + offset[0], anchor[1] + offset[1]))
    return offset


def _span(pops: Sequence[PopPoint]) -> float:
    """The larger extent of the PoPs on the map; 50 ms for a lone PoP."""
    if len(pops) < 2:
        return 50.0
    width = max(p.x for p in pops) - min(p.x for p in pops)
    height = max(p.y for p in pops) - min(p.y for p in pops)
    return max(width, height, 20.0)


def _arc_point(a: tuple[float, float], b: tuple[float, float],
               rad: float) -> tuple[tuple[float, float],
                                    tuple[float, float]]:
    """The middle of matplotlib's ``arc3`` curve from ``a`` to ``b``, and
    the unit normal on the side it bends to.

    arc3 is a quadratic Bezier whose control point sits ``rad`` times the
    chord length off the chord's middle; the curve's middle is half way
    between the chord's middle and that control point. (It bends in
    display space, the same as data space on an equal-aspect map.)
    """
    (x1, y1), (x2, y2) = a, b
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    dx, dy = x2 - x1, y2 - y1
    cx, cy = mx + rad * dy, my - rad * dx
    length = math.hypot(dx, dy) or 1.0
    return ((mx + cx) / 2, (my + cy) / 2), (dy / length, -dx / length)
