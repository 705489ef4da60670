"""The figures of a study: for each axis, the headline metrics against its values (a panel per
metric), and with exactly two axes a heatmap of mean final test accuracy and success rate.

Every number drawn is a column of the per-cell summary (cells.csv), so the figures say what the
table says. Figures are matplotlib `Figure`s on their own Agg canvas, never pyplot's, so drawing
a report leaves the caller's backend as it was."""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator
from matplotlib.transforms import ScaledTranslation

from testbed.analysis.outcomes import BY_KEY
from testbed.rundir.summary import SUCCESS_ACC
from testbed.study.sweep_table import Cell, value_key, value_text

HEADLINE = ("final_test_acc", "success", "spikes", "epochs_to_0.9", "train_loss_auc", "diverged")
TITLES = {
    "final_test_acc": "Final test accuracy",
    "success": f"Success rate (test accuracy > {SUCCESS_ACC})",
    "spikes": "Loss spikes per seed",
    "epochs_to_0.9": "Epochs to 0.9 test accuracy",
    "train_loss_auc": "Train-loss AUC per epoch",
    "diverged": "Diverged (non-finite loss)",
}
YLABELS = {
    "final_test_acc": "test accuracy after the last epoch",
    "success": "share of seeds",
    "spikes": "spikes",
    "epochs_to_0.9": "epochs (never = last epoch + 1)",
    "train_loss_auc": "mean train loss over training",
    "diverged": "share of seeds",
}
DODGE_POINTS = 9.0  # lines at the same x value are drawn this far apart (points), at most
MAX_LINES = 8  # lines (combinations of the other axes) drawn per panel
LOG_DECADES = 2  # numeric axes spanning at least this many decades get a log scale
COLORS = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap; matplotlib types colormaps[...] as the base Colormap
TICK_WIDTH = 18  # category labels are wrapped at this many characters ...
TICK_LINES = 3  # ... and cut after this many lines (the table names every cell in full)
LEGEND_CHARS = 40  # legend entries longer than this are cut


@dataclass(frozen=True)
class Drawn:
    """A figure file and the caption the report gives it."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Scale:
    """How an axis's values sit along x: numeric (linear or log) at their values, or categorical
    at 0, 1, ... in study order."""

    keys: list[str]  # value_key of each distinct value, in x order
    values: list[Any]
    numeric: bool
    log: bool

    def position(self, value: Any) -> float:
        return float(value) if self.numeric else float(self.keys.index(value_key(value)))

    def positions(self) -> np.ndarray:
        return np.array([self.position(v) for v in self.values], dtype=float)

    def limits(self) -> tuple[float, float]:
        """The x limits, in the axis's own units (log10 of the value on a log axis)."""
        u = self.along()
        if self.numeric:
            return _span(float(u.min()), float(u.max()), 0.12)
        return -0.6, len(u) - 0.4

    def along(self) -> np.ndarray:
        """The values' positions where the axis is linear (log10 of them on a log axis)."""
        return np.log10(self.positions()) if self.log else self.positions()

    def smallest_gap(self) -> float:
        """The smallest distance between neighbouring values, as a share of the axis's width."""
        u = np.sort(self.along())
        lo, hi = self.limits()
        return float(np.diff(u).min() / (hi - lo)) if u.size > 1 else 1.0

    def tick_labels(self) -> list[str]:
        if self.numeric:
            return [_tick_text(v) for v in self.values]
        return [_wrapped(_tick_text(v)) for v in self.values]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _tick_text(v: Any) -> str:
    """A value as a label: numbers short, a plugin reference as name(param=value, ...), other
    dicts as key=value pairs, lists as compact JSON."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        params = ", ".join(f"{k}={_tick_text(x)}" for k, x in v.items() if k != "name")
        return f"{v['name']}({params})" if "name" in v else params or "{}"
    return value_text(v)


def _wrapped(text: str) -> str:
    lines = textwrap.wrap(text, TICK_WIDTH, break_long_words=False, break_on_hyphens=False) or [text]
    if len(lines) > TICK_LINES:
        lines = lines[:TICK_LINES]
        lines[-1] = lines[-1][: TICK_WIDTH - 1] + "…"
    return "\n".join(lines)


def _short(text: str) -> str:
    return text if len(text) <= LEGEND_CHARS else text[: LEGEND_CHARS - 1] + "…"


def _geometric(values: list[float]) -> bool:
    """At least three positive values spanning a decade or more, at an even ratio (2, 4, 8, 16,
    ...): drawn on a log axis, they are evenly spaced instead of crowded at the low end."""
    if len(values) < 3 or values[-1] / values[0] < 10:
        return False
    ratios = np.asarray(values[1:]) / np.asarray(values[:-1])
    return bool(ratios.max() / ratios.min() <= 1.5)


def scale_of(cells: list[Cell], axis: str) -> Scale:
    distinct: dict[str, Any] = {}
    for c in cells:
        distinct.setdefault(value_key(c.values[axis]), c.values[axis])
    values = list(distinct.values())
    numeric = all(_is_number(v) for v in values)
    if numeric:
        values = sorted(values)
    log = numeric and min(values) > 0 and (max(values) / min(values) >= 10**LOG_DECADES or _geometric(values))
    return Scale([value_key(v) for v in values], values, numeric, log)


def determines(cells: list[Cell], a: str, b: str) -> bool:
    """Whether the value of axis `a` fixes that of `b` in this study (zipped axes): then `b`
    changes along `a`'s own line and gets no lines of its own."""
    seen: dict[str, str] = {}
    for c in cells:
        ka, kb = value_key(c.values[a]), value_key(c.values[b])
        if seen.setdefault(ka, kb) != kb:
            return False
    return True


def groups(cells: list[Cell], axes: list[str], axis: str) -> tuple[list[str], list[tuple[str, list[Cell]]]]:
    """The other axes that split `axis`'s cells into lines, and the lines: (legend text, cells),
    in study order."""
    others = [b for b in axes if b != axis and not determines(cells, axis, b)]
    lines: dict[tuple[str, ...], tuple[str, list[Cell]]] = {}
    for c in cells:
        key = tuple(value_key(c.values[b]) for b in others)
        text = ", ".join(_short(_tick_text(c.values[b])) for b in others)
        lines.setdefault(key, (text, []))[1].append(c)
    return others, list(lines.values())


def _figure(nrows: int, ncols: int, figsize: tuple[float, float], **subplots) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **subplots)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def _span(low: float, high: float, margin: float = 0.06) -> tuple[float, float]:
    """[low, high] widened by `margin` of its width on each side (a single value: of 1, or of a
    tenth of the value if larger); the unit interval where nothing is finite."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return -0.05, 1.05
    width = high - low
    if width <= 0:
        width = max(abs(low) * 0.1, 1.0)
    return low - margin * width, high + margin * width


def _set_x(ax, scale: Scale, axis: str) -> None:
    """Ticks at the axis's values, and limits set here: lines drawn a few points apart
    (`_panel`) must not move them."""
    ticks = scale.positions()
    lo, hi = scale.limits()
    if scale.log:
        ax.set_xscale("log")
        ax.set_xlim(10**lo, 10**hi)
    else:
        ax.set_xlim(lo, hi)
    labels = scale.tick_labels()
    ax.set_xticks(ticks, labels)
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) > 8 or (not scale.numeric and len(ticks) > 4):
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    if ax.get_subplotspec().is_last_row():
        ax.set_xlabel(axis)


def _panel(ax, key: str, axis: str, lines: list[tuple[str, list[Cell]]], summary: pd.DataFrame, scale: Scale, step: float) -> None:
    """One metric: rates with their Wilson interval; other metrics as mean ± sd (solid, error
    bars) and median (dashed) with the interquartile range (shaded bar). Lines are drawn a few
    points apart at each value (an offset in points, not in data, so it reads the same on a
    linear, log or categorical axis, `step` points apart); limits are therefore set here, never
    autoscaled."""
    metric = BY_KEY[key]
    rows = summary.set_index("cell")
    n = len(lines)
    extent: list[np.ndarray] = []
    for g, (_, cells) in enumerate(lines):
        color = COLORS[g % len(COLORS)]
        shift = ax.transData + ScaledTranslation(step * (g - (n - 1) / 2) / 72, 0, ax.get_figure().dpi_scale_trans)
        x = np.array([scale.position(c.values[axis]) for c in cells])
        order = np.argsort(x, kind="stable")
        x = x[order]
        r = rows.loc[[cells[i].index for i in order]]
        mean = r[f"{key}_mean"].to_numpy(dtype=float)
        if metric.kind == "binary":
            err = np.vstack([mean - r[f"{key}_wilson_lo"].to_numpy(dtype=float), r[f"{key}_wilson_hi"].to_numpy(dtype=float) - mean])
            ax.errorbar(x, mean, yerr=np.clip(err, 0, None), color=color, marker="o", markersize=4, capsize=3, linewidth=1.5, transform=shift)
            continue
        sd = r[f"{key}_sd"].to_numpy(dtype=float)
        q25, q75 = r[f"{key}_q25"].to_numpy(dtype=float), r[f"{key}_q75"].to_numpy(dtype=float)
        ax.vlines(x, q25, q75, color=color, alpha=0.28, linewidth=max(0.8 * step, 2.0) if n > 1 else 9, transform=shift)
        ax.plot(x, r[f"{key}_median"], color=color, linestyle="--", marker="_", markersize=10, linewidth=1.1, transform=shift)
        ax.errorbar(x, mean, yerr=sd, color=color, marker="o", markersize=4, capsize=3, linewidth=1.5, transform=shift)
        extent += [mean - sd, mean + sd, q25, q75]
    if metric.kind == "binary" or key == "final_test_acc":
        ax.set_ylim(-0.03, 1.03)
    else:
        values = np.concatenate(extent) if extent else np.empty(0)
        values = values[np.isfinite(values)]
        ax.set_ylim(*_span(values.min(), values.max()) if values.size else (-0.05, 1.05))
    if key == "final_test_acc":
        ax.axhline(SUCCESS_ACC, color="grey", linestyle=":", linewidth=0.8)
    if key == "epochs_to_0.9":
        last = set(summary["last_epoch"].tolist())
        if len(last) == 1:  # one length of training: "never" is one line, and the scale starts at 0
            never = last.pop() + 1
            ax.axhline(never, color="grey", linestyle=":", linewidth=0.8)
            ax.text(0.99, never, "never", transform=ax.get_yaxis_transform(), ha="right", va="bottom", fontsize=8, color="grey")
            ax.set_ylim(0, never * 1.1)
    ax.set_title(TITLES[key], fontsize=11)
    ax.set_ylabel(YLABELS[key])
    ax.grid(alpha=0.3)


def by_axis(cells: list[Cell], axes: list[str], summary: pd.DataFrame, axis: str, n_seeds: int, out: Path) -> Drawn:
    """The headline metrics against the values of `axis`, a line per combination of the other
    axes (those not zipped with it), at most MAX_LINES of them."""
    scale = scale_of(cells, axis)
    others, lines = groups(cells, axes, axis)
    shown = lines[:MAX_LINES]
    width = 15.0 if not scale.numeric and len(scale.values) > 6 else 13.5
    # lines a few points apart at each value, all of them within 70% of the narrowest gap
    # between values (a panel is about a quarter of the figure's width)
    gap_points = scale.smallest_gap() * width * 72 / 4
    step = min(DODGE_POINTS, 56 / len(shown), 0.7 * gap_points / len(shown))
    fig, panels = _figure(2, 3, (width, 7.6), sharex=True)
    for ax, key in zip(panels.flat, HEADLINE):
        _panel(ax, key, axis, shown, summary, scale, step)
        _set_x(ax, scale, axis)
    handles = [
        Line2D([], [], color="dimgray", marker="o", markersize=4, linewidth=1.5, label="mean ± sd over seeds (rates: rate, Wilson 95% CI)"),
        Line2D([], [], color="dimgray", linestyle="--", marker="_", markersize=12, linewidth=1.1, label="median over seeds"),
        Patch(color="dimgray", alpha=0.28, label="interquartile range"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    if others:
        colored = [Line2D([], [], color=COLORS[g % len(COLORS)], linewidth=3, label=text) for g, (text, _) in enumerate(shown)]
        fig.legend(handles=colored, loc="outside right upper", fontsize=9, title="\n".join(others), title_fontsize=9)
    fig.suptitle(f"Headline metrics against {axis} ({n_seeds} seeds per cell)", fontsize=13)
    path = _save(fig, out)
    caption = f"Headline metrics against {axis}: mean ± sd and median with interquartile range over seeds; rates with Wilson 95% intervals"
    if others:
        caption += f"; one line per value of {others[0]}" if len(others) == 1 else f"; one line per combination of {', '.join(others)}"
        if len(lines) > MAX_LINES:
            caption += f" (the first {MAX_LINES} of {len(lines)} combinations, in study order; cells.csv has every cell)"
    zipped = [b for b in axes if b != axis and b not in others]
    if zipped:
        caption += f"; {', '.join(zipped)} change{'s' if len(zipped) == 1 else ''} together with {axis} along each line"
    if scale.log:
        caption += "; logarithmic x axis"
    return Drawn(path, caption + ".")


def heatmap(cells: list[Cell], axes: list[str], summary: pd.DataFrame, out: Path) -> Drawn:
    """Two axes: mean final test accuracy and success rate of every cell, rows the first axis,
    columns the second; combinations the study did not train are left grey."""
    a, b = axes
    rows_scale, cols_scale = scale_of(cells, a), scale_of(cells, b)
    R, C = len(rows_scale.values), len(cols_scale.values)
    by_cell = summary.set_index("cell")
    grids = {k: np.full((R, C), np.nan) for k in ("acc", "acc_sd", "rate", "lo", "hi")}
    for c in cells:
        i, j = rows_scale.keys.index(value_key(c.values[a])), cols_scale.keys.index(value_key(c.values[b]))
        if not np.isnan(grids["acc"][i, j]):
            continue  # a combination met twice: the first cell's numbers
        r = by_cell.loc[c.index]
        grids["acc"][i, j], grids["acc_sd"][i, j] = r["final_test_acc_mean"], r["final_test_acc_sd"]
        grids["rate"][i, j], grids["lo"][i, j], grids["hi"][i, j] = r["success_mean"], r["success_wilson_lo"], r["success_wilson_hi"]
    small = C > 14 or R > 14  # one line of text per cell, smaller
    fontsize = 7 if small else 8.5
    panel_w = min(max(4.8, (0.55 if small else 0.9) * C + 2.4), 16.0)
    panel_h = min(max(3.4, (0.3 if small else 0.55) * R + 1.8), 12.0)
    stacked = C > 6  # wide grids one above the other, so cells keep room for their text
    fig, panels = _figure(2, 1, (panel_w, 2 * panel_h)) if stacked else _figure(1, 2, (2 * panel_w, panel_h))
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    for ax, key, title in zip(panels.flat, ("acc", "rate"), ("Mean final test accuracy (± sd)", f"Success rate (test acc > {SUCCESS_ACC}) [Wilson 95% CI]")):
        grid = grids[key]
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", origin="lower")
        fig.colorbar(image, ax=ax, shrink=0.9)
        for i in range(R):
            for j in range(C):
                v = grid[i, j]
                if np.isnan(v):
                    continue
                if key == "acc":
                    text = f"{v:.2f}" if small else f"{v:.3f}\n± {grids['acc_sd'][i, j]:.2f}"
                else:
                    text = f"{v:.0%}" if small else f"{v:.0%}\n[{grids['lo'][i, j]:.0%}, {grids['hi'][i, j]:.0%}]"
                ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color="white" if v < 0.6 else "black")
        ax.set_xticks(range(C), cols_scale.tick_labels())
        ax.set_yticks(range(R), rows_scale.tick_labels())
        if not rows_scale.numeric:
            ax.invert_yaxis()  # categories read from the top in study order; numbers grow upwards
        if C > 6:
            ax.tick_params(axis="x", labelrotation=30)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
                label.set_rotation_mode("anchor")
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        ax.set_title(title, fontsize=11)
    fig.suptitle(f"{a} × {b}", fontsize=13)
    path = _save(fig, out)
    caption = f"Mean final test accuracy (± sd over seeds) and success rate (Wilson 95% interval) of every cell, {a} by {b}"
    if np.isnan(grids["acc"]).any():
        caption += "; grey: combinations not in the study"
    return Drawn(path, caption + ".")


def file_name(i: int, axis: str) -> str:
    return f"{i + 1:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', axis).strip('_') or 'axis'}.png"


def draw(cells: list[Cell], axes: list[str], summary: pd.DataFrame, n_seeds: int, folder: Path) -> list[Drawn]:
    """Every figure of a study into `folder`: one per axis, and a heatmap with exactly two axes."""
    folder.mkdir(exist_ok=True)
    drawn = [by_axis(cells, axes, summary, axis, n_seeds, folder / file_name(i, axis)) for i, axis in enumerate(axes)]
    if len(axes) == 2:
        drawn.append(heatmap(cells, axes, summary, folder / "heatmap.png"))
    return drawn
