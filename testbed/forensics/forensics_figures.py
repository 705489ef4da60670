"""Figures of the forensics: step losses with each spike marked by its cause, beside the
sharpness against the edge-of-stability threshold 2 / lr (and Adam's preconditioned sharpness
against (2 + 2 beta1) / ((1 - beta1) lr)).

- `run_overview(run, path)`: one run (`testbed render RUN --spikes` writes it beside the spike
  frames): a few seeds' step losses, spikes marked by cause; the sharpness probe's values per
  seed against the thresholds, where the run has sharpness.npz.
- `compare_overview(runs, path)`: several scenarios (`testbed compare`): the median and
  interquartile band over seeds of the step loss and of the sharpness, one colour per scenario.

Figures are matplotlib `Figure`s on their own Agg canvas, never pyplot's."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from testbed.render.probe_figures import save
from testbed.rundir.reader import Run

CAUSE_STYLE = {"norm_curvature": ("crimson", "v"), "mlp_boundary": ("navy", "o"), "other": ("gold", "s"), "unknown": ("black", "x")}
SCENARIO_COLORS = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap; matplotlib types colormaps[...] as the base Colormap
SEED_COLORS = colormaps["Set2"].colors  # pale, so that the markers of the causes stand out  # type: ignore[attr-defined]  # a ListedColormap; matplotlib types colormaps[...] as the base Colormap
MAX_POINTS = 1500  # step losses are drawn as at most this many bins (max per bin, so spikes stay visible)


def _save(fig: Figure, path: Path, dpi: float = 110) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save(fig, path, dpi)


def _binned_max(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(step of each bin's start, max of each bin) of (T, ...) values."""
    T = values.shape[0]
    width = max(1, -(-T // bins))
    starts = np.arange(0, T, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins (a diverged seed) stay NaN
        return starts, np.stack([np.nanmax(values[s : s + width], axis=0) for s in starts])


def run_overview(run: Run, path: Path, seeds: list[int] | None = None, max_seeds: int = 4) -> Path:
    """Step losses of `seeds` (default: the seeds with the most spikes, at most `max_seeds`)
    with spikes marked by cause, and the sharpness against its thresholds."""
    losses = run.step_loss
    table = run.spike_causes if run.has("spike_causes.csv") else run.spikes.assign(cause="unknown")
    if seeds is None:
        by_count = table["seed"].value_counts()
        seeds = [int(s) for s in by_count.index[:max_seeds]] or [int(s) for s in losses.columns[:1]]
    z = run.sharpness if run.has("sharpness.npz") else None
    has_pre = z is not None and "preconditioned" in z
    fig = Figure(figsize=(10, 3.2 * (1 + (z is not None) + has_pre)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + (z is not None) + has_pre, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    colors = {s: SEED_COLORS[i % len(SEED_COLORS)] for i, s in enumerate(seeds)}
    for s in seeds:
        x, y = _binned_max(losses[s].to_numpy(dtype=float), MAX_POINTS)
        ax.plot(x, y, lw=0.7, color=colors[s], label=f"seed {s}")
    for cause, (color, marker) in CAUSE_STYLE.items():
        rows = table[(table["cause"] == cause) & table["seed"].isin(seeds)]
        if len(rows):
            ax.scatter(rows["peak"], rows["peak_loss"], color=color, marker=marker, s=44, zorder=3, label=f"spike: {cause} ({len(rows)})",
                       edgecolors="black", linewidths=0.6)
    ax.set_yscale("log")
    ax.set_ylabel("step loss (max per bin)")
    ax.set_title(f"{run.scenario.name}: step losses, spikes by cause")
    ax.legend(fontsize=8, ncol=2, loc="lower left", framealpha=0.85)
    if z is not None:
        _sharpness_panel(axes[1], z["steps"], z["sharpness"], [int(s) for s in z["seeds"]], seeds, colors, float(z["threshold"]),
                         "sharpness λmax(H)", "2/η")
        if has_pre:
            _sharpness_panel(axes[2], z["steps"], z["preconditioned"], [int(s) for s in z["seeds"]], seeds, colors,
                             float(z["preconditioned_threshold"]), "preconditioned sharpness λmax(P⁻¹H)", "(2+2β₁)/((1−β₁)η)")
    axes[-1].set_xlabel("step")
    return _save(fig, path)


def _sharpness_panel(ax, steps, values, file_seeds, seeds, colors, threshold, ylabel, name) -> None:
    for s in seeds:
        if s in file_seeds:
            ax.plot(steps, values[:, file_seeds.index(s)], lw=1.0, marker=".", ms=3, color=colors[s], label=f"seed {s}")
    ax.axhline(threshold, color="black", ls="--", lw=1.0, label=f"{name} = {threshold:.4g}")
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="lower right")


def compare_overview(runs: dict[str, Run], seeds: list[int], path: Path) -> Path:
    """Median and interquartile band over `seeds` of the step loss and of the sharpness (and
    the preconditioned sharpness), one colour per scenario; thresholds dashed in its colour."""
    has_pre = any("preconditioned" in r.sharpness for r in runs.values() if r.has("sharpness.npz"))
    rows = 2 + has_pre
    fig = Figure(figsize=(10, 3.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for i, (label, run) in enumerate(runs.items()):
        color = SCENARIO_COLORS[i % len(SCENARIO_COLORS)]
        loss = run.step_loss[[s for s in seeds if s in run.step_loss.columns]].to_numpy(dtype=float)
        x, binned = _binned_max(loss, MAX_POINTS // 3)
        _band(axes[0], x, binned, color, label)
        if not run.has("sharpness.npz"):
            continue
        z = run.sharpness
        cols = [list(z["seeds"]).index(s) for s in seeds if s in list(z["seeds"])]
        _band(axes[1], z["steps"], z["sharpness"][:, cols], color, label)
        axes[1].axhline(float(z["threshold"]), color=color, ls="--", lw=1.0, label=f"{label}: 2/η = {float(z['threshold']):.4g}")
        if has_pre and "preconditioned" in z:
            _band(axes[2], z["steps"], z["preconditioned"][:, cols], color, label)
            t = float(z["preconditioned_threshold"])
            axes[2].axhline(t, color=color, ls="--", lw=1.0, label=f"{label}: (2+2β₁)/((1−β₁)η) = {t:.4g}")
    axes[0].set_ylabel("step loss (max per bin)")
    axes[0].set_title(f"Step loss and sharpness: median and interquartile band over {len(seeds)} seeds")
    axes[1].set_ylabel("sharpness λmax(H)")
    if has_pre:
        axes[2].set_ylabel("preconditioned sharpness")
    for ax in axes:
        ax.set_yscale("log")
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("step")
    return _save(fig, path)


def _band(ax, x, values, color, label) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanpercentile(values, [25, 50, 75], axis=1)
    ax.fill_between(x, q[0], q[2], color=color, alpha=0.2, lw=0)
    ax.plot(x, q[1], color=color, lw=1.0, label=label)


def compare_figures(runs: dict[str, Path | None], seeds: list[int], folder: Path) -> list:
    """The report figure of `compare_overview` (a `testbed.comparison.report.Figure`, path
    relative to the report), where at least one compared run has sharpness.npz; else none."""
    from testbed.comparison.report import Figure as ReportFigure

    if any(p is None for p in runs.values()):
        return []
    loaded = {label: Run(p) for label, p in runs.items() if p is not None}  # none is None here
    if not any(r.has("sharpness.npz") for r in loaded.values()):
        return []
    path = compare_overview(loaded, seeds, folder / "figures" / "sharpness.png")
    return [ReportFigure(path.relative_to(folder), "Step loss and sharpness (largest Hessian eigenvalue; with Adam also the preconditioned "
                                                   "one) against the edge-of-stability thresholds, dashed: median and interquartile band over seeds")]
