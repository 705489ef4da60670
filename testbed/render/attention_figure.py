"""The first paper's Figure 8: one seed's attention over positions for every probe sentence, at
the start of training and at its end (or any later snapshot), side by side, with their
difference: which positions the circuit learned to read, and which it learned to ignore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import PowerNorm, TwoSlopeNorm
from matplotlib.figure import Figure

from testbed.render.probe_figures import save
from testbed.render.quantities import snapshot_quantities
from testbed.render.rundata import SnapshotRun


def _accuracy_note(run: SnapshotRun, seed: int, epoch: int) -> str:
    metrics = run.seed_metrics(seed)
    if metrics is None or epoch not in set(metrics["epoch"].tolist()):
        return ""
    at = int(np.flatnonzero(metrics["epoch"] == epoch)[0])
    return f", test acc {metrics['test_acc'][at]:.2f}"


def draw(run: SnapshotRun, s: int, end: int, path: Path, dpi: float) -> Path:
    """Attention maps of seed column `s` at the first snapshot and at snapshot index `end`."""
    q = snapshot_quantities(run, s, np.array([0, end]))
    attn = q.trace["attn"]  # (2, N, L)
    N, L = attn.shape[1:]
    seed = run.seeds[s]
    fig = Figure(figsize=(15, min(0.06 * N + 2.8, 9.0)), layout="constrained")  # its own canvas, never pyplot's
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    strip = q.sentences.colors[:, None, :]
    images = []
    for ax, frame in zip(axes[:2], range(2)):
        epoch = int(q.epochs[frame])
        images.append(ax.imshow(attn[frame], aspect="auto", cmap="Greys", norm=PowerNorm(0.5, 0, 1), interpolation="nearest",
                                extent=(0.5, L + 0.5, N - 0.5, -0.5)))
        ax.set_title(f"epoch {epoch}{_accuracy_note(run, seed, epoch)}")
    change = attn[1] - attn[0]
    bound = max(float(np.abs(change).max()), 1e-6)
    diff = axes[2].imshow(change, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), interpolation="nearest",
                          extent=(0.5, L + 0.5, N - 0.5, -0.5))
    axes[2].set_title(f"change, epoch {int(q.epochs[1])} minus epoch {int(q.epochs[0])}")
    for ax in axes:
        ax.imshow(strip, aspect="auto", extent=(0.5 - 0.06 * L, 0.5, N - 0.5, -0.5), interpolation="nearest")
        ax.set_xlim(0.5 - 0.06 * L, L + 0.5)
        ax.axvline(run.k + 0.5, color="red", lw=0.9, ls="--")
        ax.set_xticks(range(1, L + 1))
        ax.set_xlabel("position t")
        ax.set_yticks([])
    axes[0].set_ylabel(f"{N} probe sentences, grouped by prefix (colour strip)")
    fig.colorbar(images[1], ax=axes[:2], shrink=0.8, label="attention weight")
    fig.colorbar(diff, ax=axes[2], shrink=0.8, label="change in attention weight")
    fig.suptitle(f"Attention over positions at the start and end of training: {run.scenario.name}, seed {seed}, p = {run.p} "
                 f"(red dashes: the first k = {run.k} positions, which the label sums, end there)")
    return save(fig, path, dpi)
