"""What `testbed render` reads from a run directory: the resolved scenario (to rebuild the
architecture through the registry, so analysis never retrains), the parameter snapshots, the
metrics, the spikes and, when the snapshots probe kept them, the step-level parameters around
each spike."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed.errors import UserError
from testbed.engine.model import Architecture
from testbed.engine.model import ParamSpace

SPIKE_STEPS_FILE = "spike_steps.npz"

SPIKE_INT_FIELDS = {"seed", "start", "peak", "end", "epoch", "diverged"}  # the rest of spikes.csv is float (ratio may be inf)


@dataclass
class RunData:
    path: Path
    scenario: object
    arch: Architecture
    space: ParamSpace
    k: int
    p: int  # the largest vocabulary the run uses (probe sentences and class colours use it)
    epochs: np.ndarray  # (n,) snapshot epochs
    seeds: list[int]
    params: dict[str, np.ndarray]  # name -> (n, S, ...)
    metrics: dict[str, np.ndarray] | None = None
    spikes: list[dict] = field(default_factory=list)
    steps_per_epoch: int = 1

    def seed_index(self, seed: int | None) -> int:
        if seed is None:
            return 0
        if seed not in self.seeds:
            raise UserError(f"--seed {seed}: not in this run; its seeds are {_ranges(self.seeds)}")
        return self.seeds.index(seed)

    def snapshot_index(self, epoch: int | None) -> tuple[int, str | None]:
        """Index of the snapshot of `epoch` (default: the last), or of the nearest one with a note."""
        if epoch is None:
            return len(self.epochs) - 1, None
        lo, hi = int(self.epochs[0]), int(self.epochs[-1])
        if not lo <= epoch <= hi:
            raise UserError(f"--epoch {epoch}: out of range; snapshots cover epochs {lo}-{hi} ({len(self.epochs)} snapshots)")
        i = int(np.argmin(np.abs(self.epochs - epoch)))
        note = None if self.epochs[i] == epoch else f"no snapshot at epoch {epoch}; using the nearest, epoch {self.epochs[i]}"
        return i, note

    def seed_params(self, s: int, index=slice(None)) -> dict[str, np.ndarray]:
        """name -> (F, ...) parameters of seed column s at snapshot indices `index`."""
        return {n: np.ascontiguousarray(a[index, s]) for n, a in self.params.items()}

    def step_losses(self) -> np.ndarray | None:
        """(steps, S) loss of every optimizer step (step_loss.npz), read once when first asked."""
        if not hasattr(self, "_step_losses"):
            f = self.path / "step_loss.npz"
            self._step_losses = np.load(f)["loss"] if f.is_file() else None
        return self._step_losses

    def seed_metrics(self, seed: int) -> dict[str, np.ndarray] | None:
        if self.metrics is None:
            return None
        m = self.metrics
        rows = m["seed"] == seed
        order = np.argsort(m["epoch"][rows])
        return {k: v[rows][order] for k, v in m.items()}


def _ranges(seeds: list[int]) -> str:
    from testbed.config.scenario import format_seeds

    return format_seeds(sorted(seeds))


def load(path: Path) -> RunData:
    from testbed.rundir import curves as plots
    from testbed.config import scenario as scenario_mod
    from testbed.config.scenario import build_curriculum
    from testbed.engine.loop import build

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory")
    if not (path / "scenario.yaml").is_file():
        raise UserError(f"{path}: not a run directory (no scenario.yaml)")
    snap = path / "snapshots.npz"
    if not snap.is_file():
        raise UserError(f"{path}: no snapshots.npz; add the probe to the scenario, e.g. probes: [..., {{name: snapshots, every: 10}}]")
    scenario = scenario_mod.load(path / "scenario.yaml")
    components = build(scenario)
    with np.load(snap) as z:
        epochs = z["epochs"]
        seeds = [int(s) for s in z["seeds"]]
        params = {n: z[f"param/{n}"].astype(np.float32) for n in components.space.shapes}
    if len(epochs) == 0:
        raise UserError(f"{snap}: holds no snapshots")
    metrics = plots.read_metrics(path / "metrics.csv") if (path / "metrics.csv").is_file() else None
    spikes = []
    if (path / "spikes.csv").is_file():
        with open(path / "spikes.csv") as f:
            spikes = [{k: (int(v) if k in SPIKE_INT_FIELDS else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]
    task = scenario.task
    B = scenario.training.batch_for(task.n_train)
    return RunData(
        path=path,
        scenario=scenario,
        arch=components.arch,
        space=components.space,
        k=task.sparsity,
        p=max(build_curriculum(scenario).vocab_sizes()),
        epochs=epochs,
        seeds=seeds,
        params=params,
        metrics=metrics,
        spikes=spikes,
        steps_per_epoch=-(-task.n_train // B),
    )


def load_spike_steps(path: Path) -> dict | None:
    """The step-level parameters saved around spikes (snapshots probe, spike_steps: true)."""
    f = Path(path) / SPIKE_STEPS_FILE
    if not f.is_file():
        return None
    with np.load(f) as z:
        return {k: z[k] for k in z.files}
