"""The figure of `testbed barrier`: loss and accuracy against t, one line per pair and split.
A matplotlib `Figure` on its own Agg canvas (never pyplot's), as the comparison figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

STYLES = {"train": "-", "test": "--"}
LEGEND_PAIRS = 10  # more pairs than this are drawn without a legend entry each


def draw(curves: pd.DataFrame, labels: dict[int, str], title: str, out: Path) -> Path:
    """curves: barrier.csv's rows (pair, t, split, loss, acc); labels: pair -> legend text."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    cmap = colormaps["viridis" if len(labels) > LEGEND_PAIRS else "tab10"]
    n = max(len(labels) - 1, 1)
    for k, (pair, label) in enumerate(labels.items()):
        color = cmap(k / n) if len(labels) > LEGEND_PAIRS else cmap(k % 10)
        for split, style in STYLES.items():
            rows = curves[(curves["pair"] == pair) & (curves["split"] == split)].sort_values("t")  # type: ignore[call-overload]  # pandas' types do not follow this column through
            if rows.empty:
                continue
            legend = f"{label}, {split}" if len(labels) <= LEGEND_PAIRS else None
            ax_loss.plot(rows["t"], rows["loss"], style, color=color, linewidth=1.4, label=legend)
            ax_acc.plot(rows["t"], rows["acc"], style, color=color, linewidth=1.4, label=legend)
    for ax, name in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy")):
        for end in (0.0, 1.0):
            ax.axvline(end, color="0.6", linewidth=0.8, zorder=0)
        ax.set_xlabel("t   (weights (1 - t) θ_A + t θ_B)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax_loss.set_title("Loss along the line from A (t = 0) to B (t = 1)")
    ax_acc.set_title("Accuracy along the line")
    if len(labels) <= LEGEND_PAIRS:
        ax_loss.legend(fontsize=8)
    else:
        ax_loss.plot([], [], "-", color="0.3", label="train")
        ax_loss.plot([], [], "--", color="0.3", label="test")
        ax_loss.legend(fontsize=8, title=f"{len(labels)} pairs (colour: pair order)", title_fontsize=8)
    fig.suptitle(title)
    fig.savefig(out, dpi=110)
    return out
