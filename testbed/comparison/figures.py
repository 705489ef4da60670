"""The figures of a comparison report: one function per figure, each reading the loaded runs
(`RunData`) and per-seed outcomes, so a report can be redrawn without retraining.

Figures are matplotlib `Figure`s on their own Agg canvas, never pyplot's, so drawing a report
leaves the caller's backend (a notebook's, say) as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.ticker
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from testbed.analysis.outcomes import RunData
from testbed.analysis.stats import estimate
from testbed.comparison.lr_sweep import SweepResult
from testbed.rundir.summary import SUCCESS_ACC

COLORS = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap; matplotlib types colormaps[...] as the base Colormap
STEP_BINS = 400  # step losses are averaged into this many bins per seed before the median


def colors(labels: list[str]) -> dict[str, tuple]:
    return {label: COLORS[i % len(COLORS)] for i, label in enumerate(labels)}


def _figure(ncols: int, figsize: tuple[float, float], **subplots) -> tuple[Figure, Any]:
    """A figure with one row of `ncols` axes (one Axes when `ncols` is 1, else an array of them), laid out by constrained layout."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols, **subplots)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def _median_band(ax, x, values, label, color) -> None:
    """Median and interquartile band only: with many seeds, per-seed lines are noise."""
    with np.errstate(all="ignore"):
        q25, q50, q75 = np.nanpercentile(values, [25, 50, 75], axis=1)
    ax.fill_between(x, q25, q75, color=color, alpha=0.22, linewidth=0)
    ax.plot(x, q50, color=color, label=label, linewidth=1.8)


def _log_floor(ax) -> None:
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 1e-6), high)


def mark_switches(ax, switches: dict[str, list[int]] | None, col: dict) -> None:
    """A dotted vertical line, in the run's colour, at each curriculum switch (first epoch of a stage)."""
    for label, epochs in (switches or {}).items():
        for e in epochs:
            ax.axvline(e, color=col[label], linestyle=(0, (1, 2)), linewidth=1.2, alpha=0.9)


def losses(runs: dict[str, RunData], out: Path, switches: dict[str, list[int]] | None = None) -> Path:
    """Train and test loss over epochs, and train loss over steps; curriculum switches dotted."""
    col = colors(list(runs))
    fig, axes = _figure(3, (15, 4.3))
    for label, run in runs.items():
        _median_band(axes[0], run.epochs, run.curves["train_loss"], label, col[label])
        _median_band(axes[1], run.epochs, run.curves["test_loss"], label, col[label])
        if run.step_loss is not None:
            steps, binned = bin_steps(run.step_loss)
            _median_band(axes[2], steps, binned, label, col[label])
    lacking = [label for label, run in runs.items() if run.step_loss is None]
    if len(lacking) == len(runs):
        _no_data(axes[2], NO_STEP_LOSSES)
    elif lacking:
        axes[2].text(0.98, 0.97, f"no step losses kept: {', '.join(lacking)}", transform=axes[2].transAxes, ha="right", va="top", fontsize=8, color="grey")
    for ax, title, xlabel in zip(
        axes, ("Train loss over epochs", "Test loss over epochs", f"Train loss over steps (mean of {STEP_BINS} bins)"), ("epoch", "epoch", "step")
    ):
        ax.set_yscale("log")
        _log_floor(ax)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("cross-entropy loss")
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        mark_switches(ax, switches, col)
    axes[2].xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
    axes[0].legend(fontsize=8, title="median, IQR band", title_fontsize=8)
    return _save(fig, out)


NO_STEP_LOSSES = "no step-level losses kept (step_loss probe)"


def _no_data(ax, text: str) -> None:
    """Say in the panel what is missing, rather than leave it blank."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="grey")
    ax.set_xticks([])


def bin_steps(step_loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, S) -> bin centres (B,) and per-seed bin means (B, S)."""
    T = step_loss.shape[0]
    bins = min(STEP_BINS, T)
    edges = np.linspace(0, T, bins + 1).astype(int)
    with np.errstate(all="ignore"):
        means = np.add.reduceat(step_loss, edges[:-1], axis=0) / np.diff(edges)[:, None]
    return (edges[:-1] + edges[1:]) / 2, means


def accuracy(runs: dict[str, RunData], out: Path, switches: dict[str, list[int]] | None = None) -> Path:
    col = colors(list(runs))
    fig, axes = _figure(2, (11, 4.2), sharey=True)
    for label, run in runs.items():
        _median_band(axes[0], run.epochs, run.curves["train_acc"], label, col[label])
        axes[1].plot(run.epochs, (run.curves["test_acc"] > SUCCESS_ACC).mean(axis=1), color=col[label], linestyle="--", linewidth=1.2)
        _median_band(axes[1], run.epochs, run.curves["test_acc"], label, col[label])
    for ax, title in zip(axes, ("Train accuracy", "Test accuracy (dashed: share of seeds above 0.9)")):
        ax.axhline(SUCCESS_ACC, color="grey", linestyle=":", linewidth=1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        mark_switches(ax, switches, col)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8, loc="lower right", title="median, IQR band", title_fontsize=8)
    return _save(fig, out)


def spike_raster(runs: dict[str, RunData], out: Path) -> Path:
    """Seed x step, one panel per scenario; a mark per spike at its peak, sized by its ratio."""
    labels = list(runs)
    col = colors(labels)
    fig, axes = _figure(len(labels), (4.6 * len(labels), 4.2), sharey=True, squeeze=False)
    for ax, label in zip(axes[0], labels):
        run = runs[label]
        row = {seed: i for i, seed in enumerate(run.seeds)}
        if run.step_loss is None:
            _no_data(ax, NO_STEP_LOSSES)
            ax.set_title(f"{label}: spikes not measured", fontsize=10)
            ax.set_xlabel("step")
            continue
        if run.spikes:
            x = [s.peak for s in run.spikes]
            y = [row[s.seed] for s in run.spikes]
            ratio = np.array([min(s.ratio, 1e4) for s in run.spikes])
            ax.scatter(x, y, s=8 + 10 * np.log10(ratio), color=col[label], alpha=0.75, linewidths=0)
        n_spiking = len({s.seed for s in run.spikes})
        ax.set_title(f"{label}: {len(run.spikes)} spikes in {n_spiking}/{len(run.seeds)} seeds", fontsize=10)
        ax.set_xlim(0, run.step_loss.shape[0])
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
        ax.set_ylim(-1, len(run.seeds))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("seed (index in the comparison)")
    fig.suptitle("Loss spikes: one mark per spike at its peak step (size grows with peak / baseline)")
    return _save(fig, out)


def distributions(outcomes: dict[str, dict[str, np.ndarray]], out: Path) -> Path:
    """Final test accuracy and spike count per seed: strip plots with box summaries."""
    labels = list(outcomes)
    col = colors(labels)
    fig, axes = _figure(2, (11, 4.2))
    rng = np.random.default_rng(0)
    for ax, key, title in ((axes[0], "final_test_acc", "Final test accuracy"), (axes[1], "spikes", "Loss spikes per seed")):
        data = [np.asarray(outcomes[label][key], dtype=float) for label in labels]
        data = [values[np.isfinite(values)] for values in data]  # spikes are NaN for runs without step losses
        ax.boxplot(data, positions=range(len(labels)), widths=0.5, showfliers=False, medianprops={"color": "black"})
        for i, (label, values) in enumerate(zip(labels, data)):
            jitter = rng.uniform(-0.18, 0.18, values.size)
            lift = rng.uniform(-0.12, 0.12, values.size) if key == "spikes" else 0.0
            ax.scatter(i + jitter, values + lift, s=10, color=col[label], alpha=0.6, linewidths=0)
        ax.set_xticks(range(len(labels)), labels, rotation=15 if len(labels) > 2 else 0)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    axes[0].axhline(SUCCESS_ACC, color="grey", linestyle=":", linewidth=1)
    axes[0].set_ylabel("test accuracy after the last epoch")
    axes[1].set_ylabel("spikes (jittered)")
    return _save(fig, out)


def paired_differences(a: str, b: str, outcomes: dict[str, dict[str, np.ndarray]], out: Path) -> Path:
    """Per seed: b's final test accuracy against a's, and the per-seed change in spikes."""
    fig, axes = _figure(2, (11, 4.6))
    xa, xb = outcomes[a]["final_test_acc"], outcomes[b]["final_test_acc"]
    ax = axes[0]
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--", label="no change")
    better = xb > xa
    ax.scatter(xa[better], xb[better], s=14, color="tab:green", alpha=0.7, label=f"{b} higher ({better.sum()})")
    worse = xb < xa
    ax.scatter(xa[worse], xb[worse], s=14, color="tab:red", alpha=0.7, label=f"{b} lower ({worse.sum()})")
    same = ~(better | worse)
    ax.scatter(xa[same], xb[same], s=14, color="tab:grey", alpha=0.7, label=f"equal ({same.sum()})")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{a}: final test accuracy")
    ax.set_ylabel(f"{b}: final test accuracy")
    ax.set_title("Final test accuracy, seed by seed")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax = axes[1]
    d = np.sort(outcomes[b]["spikes"] - outcomes[a]["spikes"])
    if not np.isfinite(d).any():
        _no_data(ax, f"spikes not measured: {NO_STEP_LOSSES}")
        ax.set_yticks([])
        ax.set_title("Loss spikes, seed by seed")
        fig.suptitle(f"Paired differences: {b} vs {a}")
        return _save(fig, out)
    ax.bar(np.arange(d.size), d, width=1.0, color=np.where(d < 0, "tab:green", np.where(d > 0, "tab:red", "tab:grey")))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("seeds, sorted by the change")
    ax.set_ylabel(f"spikes of {b} minus spikes of {a}")
    ax.set_title("Loss spikes, seed by seed (green: fewer)")
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Paired differences: {b} vs {a}")
    return _save(fig, out)


def lr_sensitivity(sweeps: dict[str, SweepResult], out: Path) -> Path:
    """Final train loss, final test loss and success rate against the learning rate."""
    col = colors(list(sweeps))
    fig, axes = _figure(3, (15, 4.3))
    for label, sw in sweeps.items():
        lrs = np.asarray(sw.lrs)
        for ax, split in zip(axes[:2], ("train", "test")):
            value, lo, hi = sw.sensitivity[split]
            _median_band(ax, lrs, sw.final[split], f"{label} (sensitivity {value:.3f})", col[label])
            ax.plot(lrs, sw.final[split].mean(axis=1), color=col[label], linestyle=":", marker="o", markersize=3)
        rates = [estimate(row, "binary") for row in sw.success]
        rate = np.array([r.estimate for r in rates])
        err = np.array([[r.estimate - r.low for r in rates], [r.high - r.estimate for r in rates]])
        axes[2].errorbar(lrs, rate, yerr=err, color=col[label], marker="o", capsize=3, label=label)
    for ax, title in zip(axes[:2], ("Final train loss", "Final test loss")):
        ax.set_yscale("log")
        _log_floor(ax)
        ax.set_title(f"{title} (median, IQR; dotted: mean)")
        ax.set_ylabel("final loss (capped at the initial loss)")
        ax.legend(fontsize=8)
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_title(f"Success rate (test accuracy > {SUCCESS_ACC}), Wilson 95% CI")
    axes[2].set_ylabel("share of seeds")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
    return _save(fig, out)


def confidence_sequence(looks, metric, margin: float, alpha: float, difference: str, decision: str, out: Path) -> Path:
    """`compare --until-decided`: the interval of the mean paired difference after each batch
    (`looks`, testbed.analysis.sequential.Look), with 0, the equivalence margin and where it
    stopped; binary metrics in percentage points."""
    scale, unit = (100.0, " (percentage points)") if metric.kind == "binary" else (1.0, "")
    n = np.array([k.n for k in looks], dtype=float)
    est = np.array([k.estimate for k in looks]) * scale
    low = np.array([k.low if np.isfinite(k.low) else np.nan for k in looks]) * scale
    high = np.array([k.high if np.isfinite(k.high) else np.nan for k in looks]) * scale
    fig, ax = _figure(1, (8, 4.6))
    kind = "asymptotic " if looks[-1].method == "asymptotic" else ""
    ax.fill_between(n, low, high, color="tab:blue", alpha=0.2, linewidth=0)
    ax.vlines(n, low, high, color="tab:blue", linewidth=2, label=f"{1 - alpha:.0%} {kind}confidence sequence (a bar per look)")
    ax.plot(n, est, color="black", marker="o", markersize=3, linewidth=1.2, label="mean difference so far")
    ax.axhline(0, color="grey", linewidth=1, label="no difference")
    for sign in (1, -1):
        ax.axhline(sign * margin * scale, color="tab:orange", linewidth=1, linestyle="--", label="equivalence margin" if sign > 0 else None)
    ax.axvline(n[-1], color="tab:red", linewidth=1, linestyle=":", label=f"stopped: {decision} ({int(n[-1])} seeds)")
    ax.set_xlabel("paired seeds")
    ax.set_ylabel(f"{difference}: {metric.label}{unit}")
    ax.set_title(f"{metric.label}: {difference} after each batch ({metric.better} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, out)
