"""Per-seed outcomes of a run directory: the metrics a comparison tests, read from the files a
run leaves (metrics.csv, step_loss.npz), so analysis never retrains. A run without step-level
losses gives every metric but those of spikes (`computable`, `not_computed`).

Spikes are re-detected here from step-level losses with the detector's default parameters, so
every scenario of a comparison is judged by the same detector whatever its own probe settings.

A seed that diverges (a non-finite loss) is counted, and its losses count as its loss at
initialisation, as Wortsman et al. (2024) do: dropping it would flatter the scenario that
diverges, and an infinite value would leave no mean to compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from testbed.analysis import spike_detector as detector
from testbed.rundir.reader import Run, by_epoch
from testbed.rundir.summary import SUCCESS_ACC

Kind = Literal["continuous", "count", "binary", "time"]


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: Literal["higher", "lower"]
    kind: Kind
    fmt: str = ".3f"
    needs_steps: bool = False  # computed from step-level losses (step_loss.npz), not only metrics.csv


METRICS: tuple[Metric, ...] = (
    Metric("final_test_acc", "final test accuracy", "higher", "continuous"),
    Metric("success", f"success (test acc > {SUCCESS_ACC})", "higher", "binary", ".0%"),
    Metric("epochs_to_0.9", "epochs to 0.9 test accuracy", "lower", "time", ".0f"),
    Metric("epochs_to_1.0", "epochs to 1.0 test accuracy", "lower", "time", ".0f"),
    Metric("spikes", "loss spikes", "lower", "count", ".2f", needs_steps=True),
    Metric("spike_size", "total spike size (loss jump)", "lower", "continuous", needs_steps=True),
    Metric("worst_spike", "worst spike (loss jump)", "lower", "continuous", needs_steps=True),
    Metric("train_loss_auc", "train-loss AUC per epoch", "lower", "continuous", ".4f"),
    Metric("final_train_loss", "final train loss", "lower", "continuous", ".4f"),
    Metric("final_test_loss", "final test loss", "lower", "continuous", ".4f"),
    Metric("diverged", "diverged (non-finite loss)", "lower", "binary", ".0%"),
)
BY_KEY = {m.key: m for m in METRICS}


def computable(runs) -> tuple[Metric, ...]:
    """The metrics every one of `runs` (RunData) has the data for: those of step-level losses
    only when every run kept them."""
    steps = all(run.step_loss is not None for run in runs)
    return tuple(m for m in METRICS if steps or not m.needs_steps)


def not_computed(runs: dict) -> str | None:
    """A sentence naming the metrics left out for lack of step-level losses, and the runs that
    lack them (label -> RunData); None when nothing is left out."""
    lacking = [label for label, run in runs.items() if run.step_loss is None]
    if not lacking:
        return None
    names = ", ".join(m.label for m in METRICS if m.needs_steps)
    return (f"Not computed: {names}. They need step-level training losses (step_loss.npz, the step_loss probe), "
            f"which {', '.join(lacking)} did not keep; every other metric is computed from metrics.csv.")


@dataclass
class RunData:
    """What a comparison reads from one run directory, restricted to the compared seeds: the
    per-epoch curves and step losses as (epochs, seeds) and (steps, seeds) arrays, and the
    spikes the detector finds with its default settings."""

    path: Path | None
    seeds: list[int]
    epochs: np.ndarray  # (E,) evaluated epochs, 0 included
    curves: dict[str, np.ndarray]  # train_loss, train_acc, test_loss, test_acc: (E, S)
    step_loss: np.ndarray | None  # (T, S); None for a run without step_loss.npz
    spikes: list[detector.Spike]  # none found where there are no step losses

    @property
    def total_epochs(self) -> int:
        return int(self.epochs[-1])

    @classmethod
    def of(cls, run: Run, seeds: list[int]) -> RunData:
        """The view of `run` (which must hold `seeds`) over `seeds`, in their order."""
        seeds = list(seeds)
        curves = {}
        for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
            epochs, grid = by_epoch(run.metrics, name, seeds)
            # seed by seed in memory (column-major), as compare has always laid them out: numpy's
            # sums over epochs follow the layout, and reports must reproduce to the last digit
            curves[name] = np.asfortranarray(grid)
        if not run.has("step_loss.npz"):  # what needs step losses is left out (`computable`)
            return cls(run.path, seeds, epochs, curves, None, [])
        step_loss = run.step_loss[seeds].to_numpy(dtype=np.float64)
        found = detector.detect(step_loss, seeds, detector.SpikeParams())
        return cls(run.path, seeds, epochs, curves, step_loss, found)


def first_epoch_at(epochs: np.ndarray, acc: np.ndarray, level: float) -> np.ndarray:
    """(S,) first evaluated epoch with accuracy >= level; NaN where never reached."""
    reached = acc >= level - 1e-9
    first = np.argmax(reached, axis=0)
    return np.where(reached.any(axis=0), epochs[first].astype(float), np.nan)


def finite_or_initial(loss: np.ndarray) -> np.ndarray:
    """(E, S) loss curve with non-finite values replaced by the seed's initial loss."""
    return np.where(np.isfinite(loss), loss, loss[0])


def outcomes(run: RunData) -> dict[str, np.ndarray]:
    """Metric key -> (S,) values, one per compared seed; NaN for the metrics of step losses
    where the run has none (and `diverged` from the evaluated losses alone)."""
    c, e = run.curves, run.epochs
    S = len(run.seeds)
    train_loss, test_loss = finite_or_initial(c["train_loss"]), finite_or_initial(c["test_loss"])
    count = np.zeros(S)
    size = np.zeros(S)
    worst = np.zeros(S)
    col = {seed: j for j, seed in enumerate(run.seeds)}
    for s in run.spikes:
        j = col[s.seed]
        peak = s.peak_loss if np.isfinite(s.peak_loss) else train_loss[0, j]
        jump = max(peak - s.baseline, 0.0)
        count[j] += 1
        size[j] += jump
        worst[j] = max(worst[j], jump)
    span = max(float(e[-1] - e[0]), 1.0)
    auc = np.trapezoid(train_loss, e, axis=0) / span if e.size > 1 else train_loss[0]
    final_acc = c["test_acc"][-1]
    diverged = ~np.isfinite(c["train_loss"][-1])
    if run.step_loss is not None:
        diverged |= ~np.isfinite(run.step_loss).all(axis=0)
    else:
        count[:] = size[:] = worst[:] = np.nan
    return {
        "final_test_acc": final_acc,
        "success": (final_acc > SUCCESS_ACC).astype(float),
        "epochs_to_0.9": first_epoch_at(e, c["test_acc"], 0.9),
        "epochs_to_1.0": first_epoch_at(e, c["test_acc"], 1.0),
        "spikes": count,
        "spike_size": size,
        "worst_spike": worst,
        "train_loss_auc": auc,
        "final_train_loss": train_loss[-1],
        "final_test_loss": test_loss[-1],
        "diverged": diverged.astype(float),
    }
