"""PNG pictures of a simulation run: error curves, recall, hops, the map.

Plain functions over plain sequences, so they draw the same whatever
experiment produced the numbers. matplotlib runs headless (Agg).
"""

from collections.abc import Sequence
import math

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def vivaldi_error_curves(rounds: Sequence[int], median: Sequence[float],
                         p90: Sequence[float],
                         estimate: Sequence[float] | None,
                         real_per_node: Sequence[float] | None,
                         title: str, path: str) -> str:
    """Relative error of the coordinates over rounds, and the nodes' own
    error estimate beside their real error."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.plot(rounds, median, label='median relative error (all pairs)',
            color='tab:blue', linewidth=2)
    ax.plot(rounds, p90, label='90th percentile', color='tab:blue',
            linestyle='--')
    if estimate is not None:
        ax.plot(rounds, estimate, label="median of nodes' error estimate",
                color='tab:orange')
    if real_per_node is not None:
        ax.plot(rounds, real_per_node, label="median of nodes' real error",
                color='tab:green', linestyle=':')
    ax.axhline(0.10, color='grey', linewidth=0.8)
    ax.text(rounds[-1], 0.10, ' 0.10 target', va='bottom', ha='right',
            color='grey', fontsize=8)
    ax.set_yscale('log')
    ax.set_xlabel('round (one probe per node)')
    ax.set_ylabel('relative error')
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def spiral_recall(labels: Sequence[str], recall: Sequence[float],
                  messages: Sequence[float], k: int, title: str,
                  path: str) -> str:
    """Recall@k of spiral searches and their message cost, side by side."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.6))
    x = np.arange(len(labels))
    left.bar(x, recall, color=['tab:grey', 'tab:blue', 'tab:green'][
        :len(labels)])
    left.axhline(0.9, color='red', linewidth=0.8)
    left.set_xticks(x, labels, fontsize=8)
    left.set_ylim(0, 1.05)
    left.set_ylabel('recall@%d vs true nearest by RTT' % k)
    for i, value in enumerate(recall):
        left.text(i, value + 0.02, '%.2f' % value, ha='center', fontsize=8)
    right.bar(x, messages, color='tab:purple')
    right.set_xticks(x, labels, fontsize=8)
    right.set_ylabel('messages per search')
    for i, value in enumerate(messages):
        right.text(i, value, '%.0f' % value, ha='center', va='bottom',
                   fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def routing_hops(sizes: Sequence[int], before: Sequence[float],
                 after: Sequence[float], title: str, path: str) -> str:
    """Mean hops against N before and after learning, with the bound."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(sizes, before, marker='o', label='before learning')
    ax.plot(sizes, after, marker='o', label='after warm-up')
    bound = [0.5 * math.log2(n) + 1 for n in sizes]
    ax.plot(sizes, bound, linestyle='--', color='grey',
            label='0.5 log2(N) + 1')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('nodes N')
    ax.set_ylabel('mean hops per lookup')
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def routing_warmup(lookups: Sequence[int], hops: Sequence[float], n: int,
                   title: str, path: str) -> str:
    """How hops fall as lookups flow and nodes learn shortcuts."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(lookups, hops, color='tab:blue')
    ax.axhline(0.5 * math.log2(n) + 1, linestyle='--', color='grey',
               label='0.5 log2(N) + 1')
    ax.set_yscale('log')
    ax.set_xlabel('lookups carried so far')
    ax.set_ylabel('mean hops (window)')
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def overlay_map(coords: np.ndarray, heights: np.ndarray,
                links: Sequence[tuple[int, int]], labels: Sequence[str],
                highlight: int | None, title: str, path: str) -> str:
    """The nodes in coordinate space (first two principal axes), with the
    near-set links the spiral search built; marker size shows the height
    (access delay)."""
    centred = coords - coords.mean(axis=0)
    if centred.shape[1] > 2:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy = centred @ vt[:2].T
    elif centred.shape[1] == 2:
        xy = centred
    else:
        xy = np.column_stack([centred[:, 0], np.zeros(len(centred))])
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for a, b in links:
        ax.plot([xy[a, 0], xy[b, 0]], [xy[a, 1], xy[b, 1]],
                color='tab:blue', alpha=0.15, linewidth=0.6)
    sizes = 6 + 2 * np.clip(heights, 0, 40)
    ax.scatter(xy[:, 0], xy[:, 1], s=sizes, color='tab:orange',
               edgecolor='black', linewidth=0.3, zorder=3)
    if highlight is not None:
        ax.scatter([xy[highlight, 0]], [xy[highlight, 1]], s=90,
                   color='red', zorder=4, label=labels[highlight])
        for a, b in links:
            if a == highlight:
                ax.plot([xy[a, 0], xy[b, 0]], [xy[a, 1], xy[b, 1]],
                        color='red', linewidth=1.2, zorder=3)
        ax.legend(fontsize=8)
    ax.set_xlabel('coordinate axis 1 (ms)')
    ax.set_ylabel('coordinate axis 2 (ms)')
    ax.set_title(title)
    ax.set_aspect('equal', adjustable='datalim')
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
