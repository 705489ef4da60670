"""The one reader of run directories, used by the Python API, `compare`, `render` and the curves
figure: a `Run` reads each file of a run directory the first time it is asked for, and keeps it.

Tables come back as pandas DataFrames in the layout of their file: `metrics` long (one row per
seed and evaluated epoch, as metrics.csv), `summary` one row per seed, `spikes` one row per
spike. Step losses come back wide (one row per optimizer step, one column per seed), as
step_loss.npz stores them: every reader of them (the spike detector, the figures, render) wants
the (steps, seeds) matrix, and a long table would triple a large array (100 seeds of 1000
epochs are 3.2 million steps) to say the same.

A missing or unreadable file is a `UserError` of one line that names the file (and, for a
probe's file, the probe that writes it).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd

from testbed.config import scenario as scenario_mod
from testbed.errors import UserError
from testbed.rundir import scenarios

# Each file of a run directory and what writes it: the run itself, or a probe.
WRITERS = {
    "scenario.yaml": "the run",
    "summary.json": "the run",
    "run.json": "the run",
    "metrics.csv": "the metrics probe",
    "step_loss.npz": "the step_loss probe",
    "spikes.csv": "the spikes probe",
    "grad_norms.npz": "the grad_norms probe",
    "snapshots.npz": "the snapshots probe",
    "spike_steps.npz": "the snapshots probe with spike_steps: true",
    "sparsity.npz": "the sparsity probe",
    "sharpness.npz": "the sharpness probe",
    "spike_causes.csv": "`testbed spikes`",
}

METRIC_COLUMNS = {"seed": "int64", "epoch": "int64", "p": "int64", "train_loss": "float64", "train_acc": "float64",
                  "test_loss": "float64", "test_acc": "float64"}
SPIKE_COLUMNS = {"seed": "int64", "start": "int64", "peak": "int64", "end": "int64", "epoch": "int64",
                 "baseline": "float64", "peak_loss": "float64", "ratio": "float64"}  # ratio is inf from a baseline of 0

T = TypeVar("T")


class File(NamedTuple):
    """A file of a run: where to read it, and how messages name it (the path as given)."""

    path: Path
    shown: Path


def _parsed(file: File, parse: Callable[[File], T]) -> T:
    """`parse(file)`, with every way a file can be broken turned into one line naming it."""
    try:
        return parse(file)
    except UserError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{file.shown}: unreadable ({reason})") from None


def _csv(file: File, columns: dict[str, str]) -> pd.DataFrame:
    """A CSV with (at least) `columns`, typed. pandas >= 3.1 parses every float correctly
    rounded (as Python's float() does), so values read here equal those the file was written
    from, and analyses reproduce to the last digit."""
    frame = pd.read_csv(file.path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{file.shown}: no column {', '.join(missing)}")
    return frame.astype(columns)


def read_metrics(path: Path) -> pd.DataFrame:
    """metrics.csv -> long-format DataFrame: seed, epoch, p, train_loss, train_acc, test_loss, test_acc."""
    return _parsed(File(Path(path), Path(path)), lambda f: _csv(f, METRIC_COLUMNS))


def by_epoch(metrics: pd.DataFrame, column: str, seeds: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(epochs (E,), values (E, S)) of one column of the long-format table, seeds in sorted order
    (or in the order of `seeds`); NaN where a seed was not evaluated at an epoch."""
    grid = metrics.pivot(index="epoch", columns="seed", values=column)
    if seeds is not None:
        grid = grid[list(seeds)]
    return grid.index.to_numpy(), grid.to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class Snapshots:
    """snapshots.npz: every parameter of every seed at some epochs."""

    epochs: np.ndarray  # (n,) the epochs of the snapshots, 0 = initialisation
    seeds: list[int]
    params: dict[str, np.ndarray]  # parameter name -> (n, S, *shape)


@dataclass(frozen=True)
class Sparsity:
    """sparsity.npz: how many MLP hidden activations are near zero, per seed, at some epochs."""

    epochs: np.ndarray  # (n,) the epochs measured, 0 = initialisation
    eps: np.ndarray  # (E,) the thresholds, increasing
    seeds: list[int]
    fraction: np.ndarray  # (n, S, E) fraction of activations with |a| < eps over the training sequences


def _npz(file: File, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of an .npz file, which must hold those `required`."""

    def read(f: File) -> dict[str, np.ndarray]:
        with np.load(f.path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        missing = [k for k in required if k not in arrays]
        if missing:
            raise UserError(f"{f.shown}: no array {', '.join(missing)}")
        return arrays

    return _parsed(file, read)


def _json(file: File) -> Any:
    return _parsed(file, lambda f: json.loads(f.path.read_text()))


class Run:
    """A run directory. `Run(path)` checks that it is one (a folder with scenario.yaml); every
    other file is read when first used, from the same folder even if the working directory
    changes meanwhile. `testbed.run` and `testbed.load_run` return this."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: no such run directory")
        if not (path / "scenario.yaml").is_file():
            raise UserError(f"{path}: not a run directory (no scenario.yaml)")
        self.path = path  # as given: what messages and `render` outputs are named after
        self._folder = path.absolute()

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def has(self, name: str) -> bool:
        """Whether the run directory holds the file `name` (e.g. 'snapshots.npz')."""
        return (self._folder / name).is_file()

    def require(self, *names: str, needed_by: str | None = None) -> None:
        """Fail with one line for the first of `names` the run lacks."""
        for name in names:
            self.file(name, needed_by)

    def file(self, name: str, needed_by: str | None = None) -> File:
        """File `name` of the run, which must exist."""
        if not self.has(name):
            writer = WRITERS.get(name)
            why = f" ({writer} writes it; it was not in this run)" if writer and writer != "the run" else ""
            need = f"; {needed_by} needs it" if needed_by else ""
            raise UserError(f"{self.path}: no {name}{why}{need}")
        return File(self._folder / name, self.path / name)

    @cached_property
    def scenario(self):
        """The resolved scenario (scenario.yaml), validated against the installed plugins."""
        file = self.file("scenario.yaml")
        return scenarios.validate(scenario_mod.read_yaml(file.path), str(file.shown))

    @property
    def seeds(self) -> list[int]:
        """The seeds the run trained (its scenario's)."""
        return list(self.scenario.seeds)

    @cached_property
    def summary_json(self) -> dict[str, Any]:
        """summary.json as written: per-seed final metrics, their aggregates, time."""
        return _json(self.file("summary.json"))

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Final metrics, one row per seed: seed, train_loss, train_acc, test_loss, test_acc and
        the probes' columns (spikes, worst_spike_ratio, ...)."""
        per_seed = self.summary_json.get("per_seed")
        if not isinstance(per_seed, dict) or "seed" not in per_seed:
            raise UserError(f"{self.path / 'summary.json'}: no per_seed table")
        return pd.DataFrame(per_seed)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """metrics.csv, long format: seed, epoch, p, train_loss, train_acc, test_loss, test_acc."""
        return _parsed(self.file("metrics.csv"), lambda f: _csv(f, METRIC_COLUMNS))

    @cached_property
    def _step_loss_file(self) -> dict[str, np.ndarray]:
        return _npz(self.file("step_loss.npz"), ("loss", "epoch", "seeds"))

    @cached_property
    def step_loss(self) -> pd.DataFrame:
        """The loss of every optimizer step: one row per step (index `step`, from 0, as in
        spikes.csv), one column per seed (in the run's order)."""
        z = self._step_loss_file
        index = pd.RangeIndex(len(z["loss"]), name="step")
        return pd.DataFrame(z["loss"], index=index, columns=pd.Index(z["seeds"].tolist(), name="seed"))

    @cached_property
    def step_epoch(self) -> pd.Series:
        """The epoch (from 1) of each step, indexed like `step_loss`."""
        z = self._step_loss_file
        return pd.Series(z["epoch"], index=pd.RangeIndex(len(z["epoch"]), name="step"), name="epoch")

    @cached_property
    def spikes(self) -> pd.DataFrame:
        """spikes.csv: one row per detected spike (seed, start, peak, end, epoch, baseline, peak_loss, ratio;
        runs since the divergence detector also `diverged`, 1 for a seed's first non-finite loss)."""
        return _parsed(self.file("spikes.csv"), lambda f: _csv(f, SPIKE_COLUMNS))

    @cached_property
    def snapshots(self) -> Snapshots:
        """snapshots.npz: epochs, seeds and every parameter (n, S, *shape)."""
        z = _npz(self.file("snapshots.npz"), ("epochs", "seeds"))
        params = {k.removeprefix("param/"): v for k, v in z.items() if k.startswith("param/")}
        return Snapshots(z["epochs"], [int(s) for s in z["seeds"]], params)

    @cached_property
    def spike_steps(self) -> dict[str, np.ndarray]:
        """spike_steps.npz: `seed`, `step`, `before/<name>` and `after/<name>` of each kept loss jump."""
        return _npz(self.file("spike_steps.npz"), ("seed", "step"))

    @cached_property
    def grad_norms(self) -> pd.DataFrame:
        """grad_norms.npz, long format: seed, epoch (or step, when the probe kept every step),
        then one column per parameter tensor and `total`."""
        z = _npz(self.file("grad_norms.npz"), ("norms", "names", "seeds", "per"))
        norms, names, seeds, per = z["norms"], [str(n) for n in z["names"]], z["seeds"], str(z["per"])
        rows, S, _ = norms.shape
        first = 1 if per == "epoch" else 0  # epochs count from 1; steps from 0, as in step_loss
        frame = pd.DataFrame({"seed": np.tile(seeds, rows), per: np.repeat(np.arange(first, first + rows), S)})
        return pd.concat([frame, pd.DataFrame(norms.reshape(rows * S, -1), columns=names)], axis=1)

    @cached_property
    def sparsity(self) -> Sparsity:
        """sparsity.npz: the fraction (n, S, E) of MLP hidden activations with |a| < eps, at its
        epochs (n,), seeds (S,) and thresholds eps (E,)."""
        z = _npz(self.file("sparsity.npz"), ("epochs", "eps", "seeds", "fraction"))
        return Sparsity(z["epochs"], z["eps"], [int(s) for s in z["seeds"]], z["fraction"])

    @cached_property
    def sharpness(self) -> dict[str, np.ndarray]:
        """sharpness.npz: `steps` (n,), `seeds` (S,), `sharpness` (n, S) (lambda_max of the loss
        Hessian), with Adam `preconditioned` (n, S), and the stability thresholds `threshold`
        (2 / lr) and `preconditioned_threshold` (see `testbed.forensics.hessian`)."""
        return _npz(self.file("sharpness.npz"), ("steps", "seeds", "sharpness"))

    @cached_property
    def spike_causes(self) -> pd.DataFrame:
        """spike_causes.csv, written by `testbed spikes`: one row per spike of spikes.csv with its forensics."""
        return _parsed(self.file("spike_causes.csv"), lambda f: _csv(f, {**SPIKE_COLUMNS, "cause": "object"}))

    @cached_property
    def provenance(self) -> dict[str, Any]:
        """run.json: where the run came from (versions, plugins, git commit, threads, device, times)."""
        return _json(self.file("run.json"))

    def checkpoint_metrics(self) -> pd.DataFrame | None:
        """For a run still training (its staging folder, `.NAME.partial`, read as a `Run`): the
        evaluations its last checkpoint holds, in the layout of metrics.csv; None where there is
        no checkpoint or no metrics probe. Read afresh on every call (the checkpoint is replaced
        as training goes), tensors mapped rather than read, nothing written."""
        import torch

        names = [probe.name for probe in self.scenario.probes]
        if "metrics" not in names or not self.has("checkpoint.pt"):
            return None
        file = self.file("checkpoint.pt")
        try:
            saved = torch.load(file.path, weights_only=True, mmap=True)
            state = saved["probes"][names.index("metrics")]["rows"]
        except FileNotFoundError:  # renamed away as the run landed
            return None
        except Exception as exc:
            raise UserError(f"{file.shown}: unreadable ({type(exc).__name__})") from None
        seeds = self.seeds
        columns: dict[str, list] = {c: [] for c in METRIC_COLUMNS}
        for i, (epoch, p) in enumerate(zip(state["epoch"], state["p"])):
            columns["seed"] += seeds
            columns["epoch"] += [int(epoch)] * len(seeds)
            columns["p"] += [int(p)] * len(seeds)
            for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
                columns[name] += state[name][i].tolist()
        return pd.DataFrame(columns).astype(METRIC_COLUMNS)
