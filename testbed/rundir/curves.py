"""Figures of a run: loss and accuracy over epochs, median and spread over seeds (curves.png)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from testbed.rundir.reader import by_epoch, read_metrics  # the one reader of run directories
from testbed.rundir.summary import SUCCESS_ACC

SPAGHETTI_MAX_SEEDS = 40  # up to this many seeds, every seed is drawn as a thin line


def band(ax, x: np.ndarray, values: np.ndarray, label: str, color: str) -> None:
    """Median over seeds with its interquartile band, and each seed thinly when there are few
    (a median alone hides that seeds either learn or stay at chance)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch where every seed diverged is all NaN
        q25, q50, q75 = np.nanpercentile(values, [25, 50, 75], axis=1)
    if values.shape[1] <= SPAGHETTI_MAX_SEEDS:
        ax.plot(x, values, color=color, alpha=0.18, linewidth=0.6)
    ax.fill_between(x, q25, q75, color=color, alpha=0.25, linewidth=0)
    ax.plot(x, q50, color=color, label=label, linewidth=1.8)


def curves(metrics_csv: Path, out_png: Path, title: str) -> Path:
    m = read_metrics(metrics_csv)
    n_seeds = np.unique(m["seed"]).size
    fig = Figure(figsize=(11, 4.2), layout="constrained")  # no pyplot: the caller's backend stays as it is
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    colors = {"train": "tab:blue", "test": "tab:orange"}
    for split in ("train", "test"):
        epochs, loss = by_epoch(m, f"{split}_loss")
        _, acc = by_epoch(m, f"{split}_acc")
        band(ax_loss, epochs, loss, f"{split} (median)", colors[split])
        band(ax_acc, epochs, acc, f"{split} (median)", colors[split])
    epochs, p = by_epoch(m, "p")
    switches = epochs[1:][np.diff(p[:, 0]) != 0] if epochs.size > 1 else []
    for ax in (ax_loss, ax_acc):
        for e in switches:
            ax.axvline(e, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.set_yscale("log")
    low, high = ax_loss.get_ylim()
    ax_loss.set_ylim(max(low, 1e-6), high)
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_title("Loss")
    ax_acc.axhline(SUCCESS_ACC, color="grey", linestyle="--", linewidth=1, label=f"success ({SUCCESS_ACC})")
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("Accuracy")
    ax_loss.legend(loc="lower left", fontsize=8, title="band: IQR; thin: seeds", title_fontsize=8)
    ax_acc.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{title}: {n_seeds} seed{'s' if n_seeds != 1 else ''}")
    fig.savefig(out_png, dpi=110)
    return out_png
