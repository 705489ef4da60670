"""trajectories.png: the joint map, one line per seed through its snapshots in epoch order.

Drawn on its own Agg canvas, never pyplot's, as every figure of testbed (see
`testbed.comparison.figures`), so the caller's matplotlib backend stays as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

RUN_COLORS = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap; matplotlib types colormaps[...] as the base Colormap
NOT_EVALUATED = "#b0b0b0"


def switch_index(epochs: np.ndarray, switch_epoch: int) -> int | None:
    """The last snapshot trained entirely before the switch (epoch < switch_epoch), if any
    snapshot lies after it too (else the switch is not inside the trajectory)."""
    before = np.flatnonzero(epochs < switch_epoch)
    if before.size == 0 or epochs[-1] < switch_epoch:
        return None
    return int(before[-1])


def draw(trajs, out: Path, *, method: str, color: str, explained, perplexity: float) -> Path:
    fig = Figure(figsize=(9.5, 7), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    many = sum(t.xy.shape[0] for t in trajs) > 40
    line_alpha, line_width = (0.35, 0.7) if many else (0.6, 1.0)
    if color == "epoch":
        values = [np.broadcast_to(t.epochs, t.xy.shape[:2]).astype(float) for t in trajs]
        cmap, label = colormaps["viridis"], "epoch"
    elif color == "test_acc":
        values = [t.test_acc for t in trajs]
        cmap, label = colormaps["plasma"], "test accuracy (grey: not evaluated at that snapshot)"
    else:
        values, cmap, label = None, None, None
    norm = None
    if color == "test_acc":  # accuracy on its own scale, so that maps of different runs read alike
        norm = Normalize(0.0, 1.0)
    elif values is not None:
        finite = np.concatenate([v[np.isfinite(v)] for v in values])
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        norm = Normalize(low, high if high > low else low + 1)
    switch_marked = False
    for k, t in enumerate(trajs):
        run_color = RUN_COLORS[k % len(RUN_COLORS)]
        line_color = run_color if color == "run" else "#777777"
        for i in range(t.xy.shape[0]):
            x, y = t.xy[i, :, 0], t.xy[i, :, 1]
            ax.plot(x, y, color=line_color, alpha=line_alpha, linewidth=line_width, zorder=1)
            if values is None:
                ax.scatter(x, y, s=6, color=run_color, alpha=0.6, linewidths=0, zorder=2)
            else:
                v = values[k][i]
                ok = np.isfinite(v)
                ax.scatter(x[~ok], y[~ok], s=8, color=NOT_EVALUATED, linewidths=0, zorder=2)
                ax.scatter(x[ok], y[ok], s=10, c=v[ok], cmap=cmap, norm=norm, linewidths=0, zorder=3)
            edge = run_color if color == "run" else "black"
            ax.scatter(x[:1], y[:1], s=36, marker="o", facecolors="white", edgecolors=edge, linewidths=1.2, zorder=4)
            ax.scatter(x[-1:], y[-1:], s=36, marker="s", color=edge, edgecolors="black", linewidths=0.6, zorder=4)
            for epoch, _, _ in t.switches:
                j = switch_index(t.epochs, epoch)
                if j is not None:
                    switch_marked = True
                    ax.scatter(x[j], y[j], s=60, marker="D", facecolors="none", edgecolors="red", linewidths=1.3, zorder=5)
    handles = []
    if color == "run":
        handles += [Line2D([], [], color=RUN_COLORS[k % len(RUN_COLORS)], marker="o", markersize=4, label=f"{t.label} ({t.xy.shape[0]} seeds)")
                    for k, t in enumerate(trajs)]
    handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="black", label="start (epoch 0)"))
    handles.append(Line2D([], [], linestyle="none", marker="s", color="black", label="end (last snapshot)"))
    if switch_marked:
        switches = sorted({(e, a, b) for t in trajs for e, a, b in t.switches})
        text = ", ".join(f"p {a}→{b} at epoch {e}" for e, a, b in switches[:3]) + (", ..." if len(switches) > 3 else "")
        handles.append(Line2D([], [], linestyle="none", marker="D", markerfacecolor="none", markeredgecolor="red",
                              label=f"last snapshot before\ncurriculum switch ({text})"))
    if norm is not None:
        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label, shrink=0.8)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(3, len(handles)), fontsize=8, frameon=False)
    if method == "pca":
        ax.set_xlabel(f"PC 1 ({explained[0]:.1%} variance)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.1%} variance)")
        how = "PCA"
    else:
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        how = f"t-SNE, perplexity {perplexity:g}"
    n = sum(t.xy.shape[0] * t.xy.shape[1] for t in trajs)
    seeds = sum(t.xy.shape[0] for t in trajs)
    ax.set_title(f"Parameter trajectories ({how}): {n} snapshots of {seeds} seeds in {len(trajs)} run{'s' if len(trajs) > 1 else ''}", fontsize=11)
    ax.grid(alpha=0.3)
    fig.savefig(out, dpi=110)
    return out
