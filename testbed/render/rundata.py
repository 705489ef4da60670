"""What `testbed render` needs of a run directory, read through the one reader (`Run`): the
architecture rebuilt from the resolved scenario through the registry (so analysis never
retrains), the parameter snapshots, the metrics, the spikes and, when the snapshots probe kept
them, the step-level parameters around each spike."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed.config.schema import Scenario
from testbed.engine.model import Architecture, ParamSpace
from testbed.errors import UserError
from testbed.rundir.reader import SPIKE_COLUMNS, Run

SPIKE_STEPS_FILE = "spike_steps.npz"


@dataclass
class SnapshotRun:
    """A run as render sees it: its snapshots with the architecture that evaluates them."""

    run: Run
    scenario: Scenario
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

    @property
    def path(self) -> Path:
        return self.run.path

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

    def snapshot_range(self, spec: str | None, flag: str = "--epochs") -> np.ndarray:
        """Snapshot indices of 'A-B' (every snapshot from epoch A to B) or 'A-B:STEP' (the
        snapshot nearest each of A, A + STEP, ... B); None: every snapshot."""
        if spec is None:
            return np.arange(len(self.epochs))
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*(?::\s*(\d+)\s*)?", spec)
        if not m or int(m.group(1)) > int(m.group(2)) or (m.group(3) is not None and int(m.group(3)) < 1):
            raise UserError(f"{flag} {spec!r}: expected FIRST-LAST or FIRST-LAST:STEP epochs, e.g. 0-1000:10")
        lo, hi = int(m.group(1)), int(m.group(2))
        inside = np.flatnonzero((self.epochs >= lo) & (self.epochs <= hi))
        if len(inside) == 0:
            raise UserError(f"{flag} {spec}: no snapshot in epochs {lo}-{hi}; snapshots cover epochs {int(self.epochs[0])}-{int(self.epochs[-1])}")
        if m.group(3) is None:
            return inside
        targets = np.arange(lo, hi + 1, int(m.group(3)))
        picked = inside[np.abs(self.epochs[inside][None, :] - targets[:, None]).argmin(1)]
        return np.unique(picked)

    def seed_params(self, s: int, index: int | slice | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
        """name -> (F, ...) parameters of seed column s at snapshot indices `index`."""
        return {n: np.ascontiguousarray(a[index, s]) for n, a in self.params.items()}

    def step_losses(self) -> np.ndarray | None:
        """(steps, S) loss of every optimizer step (step_loss.npz), or None without the file."""
        return self.run.step_loss.to_numpy() if self.run.has("step_loss.npz") else None

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


def load(path: Path) -> SnapshotRun:
    from testbed.config.scenario import build_curriculum
    from testbed.engine.loop import build

    run = Run(path)
    if not run.has("snapshots.npz"):
        raise UserError(f"{run.path}: no snapshots.npz; add the probe to the scenario, e.g. probes: [..., {{name: snapshots, every: 10}}]")
    scenario = run.scenario
    components = build(scenario)
    snap = run.snapshots
    missing = [n for n in components.space.shapes if n not in snap.params]
    if missing:
        raise UserError(f"{run.path / 'snapshots.npz'}: no parameter {', '.join(missing)} of this run's model")
    if len(snap.epochs) == 0:
        raise UserError(f"{run.path / 'snapshots.npz'}: holds no snapshots")
    metrics = {c: run.metrics[c].to_numpy() for c in run.metrics.columns} if run.has("metrics.csv") else None
    spikes = []
    if run.has("spikes.csv"):
        ints = {c for c, dtype in SPIKE_COLUMNS.items() if dtype == "int64"}
        spikes = [{k: (int(v) if k in ints else float(v)) for k, v in row.items()} for row in run.spikes.to_dict("records")]
    task = scenario.task
    B = scenario.training.batch_for(task.n_train)
    return SnapshotRun(
        run=run,
        scenario=scenario,
        arch=components.arch,
        space=components.space,
        k=task.sparsity,
        p=max(build_curriculum(scenario).vocab_sizes()),
        epochs=snap.epochs,
        seeds=snap.seeds,
        params={n: snap.params[n].astype(np.float32) for n in components.space.shapes},
        metrics=metrics,
        spikes=spikes,
        steps_per_epoch=-(-task.n_train // B),
    )


def load_spike_steps(path: Path) -> dict | None:
    """The step-level parameters saved around spikes (snapshots probe, spike_steps: true)."""
    run = Run(path)
    return run.spike_steps if run.has(SPIKE_STEPS_FILE) else None
