"""Figures of a run's probe files, one figure per run (what `testbed render --sparsity` and
`--grad-norms` draw):

- `sparsity`: the fraction of MLP hidden activations with |a| < eps against eps at the last
  measured epoch, one line per seed coloured by its final test accuracy, and the successful
  seeds against the failed ones (first paper, Figure 17);
- `grad_norms`: train and test loss and accuracy over epochs, and the gradient norm of every
  parameter tensor in log and linear scale (first paper, Figure 15).

Figures are matplotlib `Figure`s on their own Agg canvas, never pyplot's."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from testbed.errors import UserError
from testbed.rundir.reader import Run, by_epoch
from testbed.rundir.summary import SUCCESS_ACC

MAX_POINTS = 400  # per-step gradient norms are averaged into at most this many bins per seed (raw steps are noise)
SUCCESS_COLOR, FAILURE_COLOR = "tab:green", "tab:red"
PARAM_COLORS = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap; matplotlib types colormaps[...] as the base Colormap


def _figure(rows: int, cols: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(-1)


def _band(ax, x, values, color, label, log=False, alpha=0.22) -> None:
    """Median over the seeds (values (rows, S)) and the band between their quartiles."""
    with np.errstate(all="ignore"):
        q25, q50, q75 = np.nanpercentile(values, [25, 50, 75], axis=1)
    if log:  # zeros (absent parameters, exact fits) have no place on a log axis
        q25, q50, q75 = (np.where(v > 0, v, np.nan) for v in (q25, q50, q75))
    ax.fill_between(x, q25, q75, color=color, alpha=alpha, linewidth=0)
    ax.plot(x, q50, color=color, label=label, linewidth=1.4)


def _final_test_acc(run: Run, seeds: list[int]) -> np.ndarray:
    """Each seed's final test accuracy (summary.json), NaN for a seed it lacks."""
    table = run.summary.set_index("seed")["test_acc"] if "test_acc" in run.summary else {}
    return np.array([float(table[s]) if s in table else np.nan for s in seeds])  # type: ignore[arg-type]  # pandas' types do not follow this column through


def sparsity(run: Run, path: Path, dpi: float = 110) -> Path:
    """Sparsity against eps at the last measured epoch: every seed coloured by its final test
    accuracy, and the successful seeds (test accuracy > 0.9) against the failed ones."""
    sp = run.sparsity
    if len(sp.epochs) == 0:
        raise UserError(f"{run.path / 'sparsity.npz'}: holds no measurement")
    acc = _final_test_acc(run, sp.seeds)
    last, frac = int(sp.epochs[-1]), sp.fraction[-1]  # (S, E)
    fig, (ax, bx) = _figure(1, 2, (12, 4.6))
    cmap, norm = colormaps["viridis"], Normalize(0.0, 1.0)
    for s in np.argsort(np.nan_to_num(acc, nan=-1.0), kind="stable"):  # the best seeds drawn last, on top
        color = "0.6" if np.isnan(acc[s]) else cmap(norm(acc[s]))
        ax.plot(sp.eps, frac[s], color=color, linewidth=1.0, alpha=0.85)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="final test accuracy")
    ax.set_title(f"each seed ({len(sp.seeds)})")
    ok = acc > SUCCESS_ACC
    for mask, color, word in ((ok, SUCCESS_COLOR, "successful"), (~ok, FAILURE_COLOR, "failed")):
        if mask.any():
            _band(bx, sp.eps, frac[mask].T, color, f"{word} ({int(mask.sum())} seed{'s' if mask.sum() != 1 else ''})")
    bx.set_title(f"successful (test accuracy > {SUCCESS_ACC}) vs failed")
    bx.legend(loc="upper left", title="median, quartile band")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_ylim(-0.02, 1.02)
        a.set_xlabel("threshold eps")
        a.set_ylabel("fraction of hidden activations with |a| < eps")
        a.grid(alpha=0.3)
    fig.suptitle(f"{run.scenario.name}: sparsity of the MLP hidden activations at epoch {last} (training sequences)")
    return save(fig, path, dpi)


def _binned(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, S) -> the mean of each of at most `bins` runs of consecutive rows, and each bin's
    mean row index."""
    rows = values.shape[0]
    if rows <= bins:
        return np.arange(rows, dtype=float), values
    edges = np.linspace(0, rows, bins + 1).astype(int)
    with np.errstate(all="ignore"):
        means = np.add.reduceat(values, edges[:-1], axis=0) / np.diff(edges)[:, None]
    return (edges[:-1] + edges[1:] - 1) / 2.0, means


def grad_norms(run: Run, path: Path, dpi: float = 110) -> Path:
    """Loss and accuracy (train and test) over epochs, and every parameter's gradient norm in
    log and linear scale: median over the seeds and the quartile band."""
    frame, metrics = run.grad_norms, run.metrics
    per = "step" if "step" in frame.columns else "epoch"
    names = [c for c in frame.columns if c not in ("seed", per)]
    seeds = list(dict.fromkeys(frame["seed"].tolist()))
    S = len(seeds)
    rows = len(frame) // S
    task = run.scenario.task
    spe = -(-task.n_train // run.scenario.training.batch_for(task.n_train))
    fig, axes = _figure(2, 2, (13, 8.5))
    lx, ax_acc, gx_log, gx_lin = axes
    for split, color in (("train", "tab:blue"), ("test", "tab:orange")):
        epochs, loss = by_epoch(metrics, f"{split}_loss")
        _, acc = by_epoch(metrics, f"{split}_acc")
        _band(lx, epochs, loss, color, split, log=True)
        _band(ax_acc, epochs, acc, color, split)
    lx.set_yscale("log")
    lx.set_title("loss")
    lx.set_ylabel("cross-entropy loss")
    ax_acc.set_title("accuracy")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(-0.02, 1.02)
    for a in (lx, ax_acc):
        a.legend(loc="best", title=f"median, quartiles ({S} seeds)")
    shown = 0
    for j, name in enumerate(names):
        values = frame[name].to_numpy(dtype=np.float64).reshape(rows, S)
        if not np.any(values):  # a parameter the model does not have (mlp_bias: false): held at 0
            continue
        index, values = _binned(values, MAX_POINTS)
        x = (index + 1) / spe if per == "step" else index + 1  # step s ends at epoch (s + 1) / steps per epoch
        color = "black" if name == "total" else PARAM_COLORS[j % len(PARAM_COLORS)]
        _band(gx_log, x, values, color, name, log=True, alpha=0.12)  # nine bands: lighter, so the medians show
        _band(gx_lin, x, values, color, name, alpha=0.12)
        shown += 1
    how = "per step" + (f", averaged in bins of {rows // MAX_POINTS}+ steps" if rows > MAX_POINTS else "") if per == "step" else "mean over each epoch's steps"
    gx_log.set_yscale("log")
    gx_log.set_title(f"gradient norm, log scale ({how})")
    gx_lin.set_title("gradient norm, linear scale")
    for a in (gx_log, gx_lin):
        a.set_ylabel("gradient norm")
    if shown:
        gx_lin.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title="parameter", fontsize="small")
    for a in axes:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    fig.suptitle(f"{run.scenario.name}: training curves and gradient norms (median over seeds, band: quartiles)")
    return save(fig, path, dpi)


def save(fig: Figure, path: Path, dpi: float) -> Path:
    """Written whole or not at all (a staged file renamed into place)."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        fig.savefig(partial, dpi=dpi)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


DRAW = {"sparsity": sparsity, "grad_norms": grad_norms}
NEEDS = {"sparsity": ("sparsity.npz", "summary.json"), "grad_norms": ("grad_norms.npz", "metrics.csv")}  # checked before anything is written
