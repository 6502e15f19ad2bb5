"""A figure in the style of the paper's Fig. 2: scores per arm over permutations.

One panel per metric (accuracy, sensitivity, specificity, AUC); in each,
one column per arm (each node alone, the swarm, central training) with a
dot per permutation, the mean as a line and mean ± SD as a whisker.
matplotlib is imported with the Agg backend, so no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

FIGURE_METRICS = ("accuracy", "sensitivity", "specificity", "auc")
_LABELS = {"auc": "AUC", "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity"}
_COLOURS = {"swarm": "#d1495b", "central": "#00798c"}
_NODE_COLOUR = "#8d8d8d"


def plot_scores(
    scores: Sequence[Mapping[str, object]],
    arms: Sequence[str],
    path: Path,
    title: str,
    metrics: Sequence[str] = FIGURE_METRICS,
) -> Path:
    """Draw per-permutation scores of every arm and save a PNG.

    Args:
        scores: rows with ``arm``, ``permutation`` and one value per metric
            (as `swarm_examples.evaluation` writes them).
        arms: the arms to show, in order.
        path: where the PNG goes (folders are made).
        title: the figure's title (say what data, and if it is simulated).
        metrics: one panel per metric.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)  # jitter only; fixed so reruns draw the same picture
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.0 * len(metrics), 3.3), sharey=False)
    axes = np.atleast_1d(axes)
    positions = np.arange(len(arms))
    for ax, metric in zip(axes, metrics, strict=True):
        lowest = 1.0
        for x, arm in zip(positions, arms, strict=True):
            values = np.array(
                [float(row[metric]) for row in scores if row["arm"] == arm and row.get(metric) is not None],  # type: ignore[arg-type]
                dtype=np.float64,
            )
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            colour = _COLOURS.get(arm, _NODE_COLOUR)
            mean = float(values.mean())
            sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
            ax.hlines(mean, x - 0.28, x + 0.28, color=colour, linewidth=2.0)
            ax.errorbar(x, mean, yerr=sd, color=colour, capsize=4, linewidth=1.2)
            jitter = rng.uniform(-0.15, 0.15, values.size) if values.size > 1 else np.zeros(1)
            ax.scatter(x + jitter, values, s=14, color=colour, zorder=3, edgecolors="white", linewidths=0.4)
            lowest = min(lowest, float(values.min()), mean - sd)
        ax.set_title(_LABELS.get(metric, metric), fontsize=10)
        ax.set_xticks(positions, labels=list(arms), rotation=45, ha="right", fontsize=8)
        ax.set_ylim(max(0.0, min(lowest - 0.05, 0.9)), 1.01)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
