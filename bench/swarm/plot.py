"""A PNG of the completion-time distribution per system (matplotlib, optional).

One step line per system: the fraction of nodes done against seconds since the start, every
successful run's nodes pooled; vertical lines at the fluid bounds (medians over runs):
dashed with the file on the origin, dotted with it on a warm seed. Without matplotlib the
benchmark still runs and says there is no plot.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from bench.swarm.report import SwarmRun

# The same colour for a system in every plot, so figures of different days compare at a glance.
COLOURS = {"damselfly": "C0", "direct": "C1", "bt-cold": "C2", "bt-warm": "C3"}
COLOURS["damselfly-mtls"] = "C4"


def plot_completions(runs: Sequence[SwarmRun], title: str, path: Path) -> str | None:
    """Write the PNG; returns why not when it cannot (matplotlib missing, nothing to plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no plot"
    good = [r for r in runs if r.figures is not None]
    if not good:
        return "no successful run: no plot"
    figure, axes = plt.subplots(figsize=(9, 4), dpi=100)
    for name in dict.fromkeys(r.system for r in good):
        times = sorted(t for r in good if r.system == name for t in _times(r))
        fractions = [(i + 1) / len(times) for i in range(len(times))]
        colour = COLOURS.get(name)
        axes.step([0.0, *times], [0.0, *fractions], where="post", label=name, color=colour)
    for source, style in (("origin", "--"), ("seed", ":")):
        bounds = [r.bound_seconds for r in good if r.bound_source == source]
        if bounds:
            bound = statistics.median(bounds)
            label = f"fluid bound, file on the {source}: {bound:.1f} s"
            axes.axvline(bound, linestyle=style, color="grey", label=label)
    axes.set_xlabel("seconds since all nodes started")
    axes.set_ylabel("fraction of nodes done")
    axes.set_title(title, fontsize=10)
    axes.set_ylim(0, 1.02)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return None


def _times(run: SwarmRun) -> list[float]:
    return [] if run.figures is None else list(run.figures.completion_seconds)
