"""The line between two weight vectors, evaluated with testbed's own evaluation.

The points of every line ride on the seed axis: the interpolated parameter vectors of all pairs
are stacked into one (rows, P) flat tensor and evaluated by `testbed.engine.stage.evaluate`, each
row on the data of its pair's seed (the evaluation tensors of each data seed are repeated once
per point), in blocks of at most ROWS_PER_PASS rows. A row's numbers do not depend on the rows
beside it, so the ends of a line (t = 0 and t = 1) are exactly the evaluation of the end weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from numpy.typing import ArrayLike

from testbed.config.scenario import build_curriculum
from testbed.engine.stage import EVAL_CHUNK_ELEMENTS, Stage, eval_table, eval_width, evaluate
from testbed.engine.task import make_dataset
from testbed.errors import UserError
from testbed.render.rundata import SnapshotRun

SPLITS = ("train", "test")
ROWS_PER_PASS = 256  # interpolated weight vectors evaluated together


@dataclass(frozen=True)
class End:
    """One end of a line: a seed's weights at a snapshot epoch of a run."""

    run: SnapshotRun
    seed: int
    epoch: int

    def flat(self) -> np.ndarray:
        """(P,) float64: every parameter in the order of the run's ParamSpace."""
        s = self.run.seeds.index(self.seed)
        e = int(np.flatnonzero(self.run.epochs == self.epoch)[0])
        return np.concatenate([self.run.params[name][e, s].reshape(-1).astype(np.float64) for name in self.run.space.shapes])


@dataclass(frozen=True)
class Pair:
    a: End
    b: End
    data_seed: int  # whose training and test samples evaluate the line


def grid(points: int, extend: float) -> np.ndarray:
    """`points` values of t evenly over [-extend, 1 + extend], with 0 and 1 added when the
    spacing misses them (the barrier is measured between the ends)."""
    if points < 2:
        raise UserError(f"--points {points}: need at least 2")
    if not extend >= 0:
        raise UserError(f"--extend {extend}: must be >= 0")
    t = np.linspace(-extend, 1.0 + extend, points)
    return np.union1d(t, [0.0, 1.0])


def check_shapes(a: SnapshotRun, b: SnapshotRun) -> None:
    """Two runs can be interpolated when every parameter has the same shape in both."""
    for name, shape in a.space.shapes.items():
        other = b.space.shapes.get(name)
        if other != shape:
            raise UserError(f"{b.path}: parameter {name} has shape {other}, {a.path} has {shape}; the runs cannot be interpolated")


def check_functions(a: SnapshotRun, b: SnapshotRun) -> None:
    """The line is one function of the weights: the two runs' norms, activation and MLP biases
    must be the same (otherwise the ends would not be the runs' own losses)."""

    def functions(run: SnapshotRun) -> dict:
        m = run.scenario.model
        return {
            "model.embedding_norm": (m.embedding_norm or m.norm).model_dump(),
            "model.mlp_norm": (m.mlp_norm or m.norm).model_dump(),
            "model.activation": m.activation.model_dump(),
            "model.mlp_bias": m.mlp_bias,
        }

    fa, fb = functions(a), functions(b)
    for field, value in fa.items():
        if fb[field] != value:
            raise UserError(f"{b.path}: {field} is {_short(fb[field])}, {a.path} has {_short(value)}; a line needs one architecture")


def _short(value) -> str:
    if isinstance(value, dict):
        return value.get("name", "?") + "(" + ", ".join(f"{k}={v}" for k, v in value.items() if k != "name") + ")"
    return str(value)


def final_p(run: SnapshotRun) -> int:
    """The vocabulary the run ends on (its curriculum's p at the last epoch)."""
    return int(build_curriculum(run.scenario).p_at(run.scenario.training.epochs))


def interpolate(pairs: list[Pair], t: np.ndarray) -> torch.Tensor:
    """(len(pairs) * len(t), P) float32: (1 - t) theta_a + t theta_b, pair-major. Computed in
    float64, so that t = 0 and t = 1 give the end weights exactly."""
    a = np.stack([p.a.flat() for p in pairs])[:, None, :]
    b = np.stack([p.b.flat() for p in pairs])[:, None, :]
    w = t[None, :, None]
    return torch.from_numpy(((1.0 - w) * a + w * b).reshape(-1, a.shape[-1]).astype(np.float32))


def evaluate_rows(end: SnapshotRun, p: int, flat: torch.Tensor, data_seeds: list[int], rows_per_pass: int = ROWS_PER_PASS) -> dict[str, np.ndarray]:
    """Loss and accuracy of every row of `flat` (rows, P) with the architecture of `end`, on the
    training and test samples of its task at vocabulary `p`, row i on the data of seed
    data_seeds[i]. Returns train_loss, train_acc, test_loss, test_acc, each (rows,) float64."""
    task = end.scenario.task
    unique = sorted(set(data_seeds))
    dataset = make_dataset(unique, p, task.seq_len, task.sparsity, task.n_train, task.n_test, task.test_split)
    stage = Stage.prepare(dataset, end.arch, build_curriculum(end.scenario).restricts_logits())  # scored as the run was
    index, labels = eval_table(stage)  # (seeds, L, U), (seeds, U)
    column = torch.tensor([unique.index(s) for s in data_seeds])
    absent = [end.space.slices[name] for name in end.arch.absent()]
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    for lo in range(0, flat.shape[0], rows_per_pass):
        rows = column[lo : lo + rows_per_pass]
        block = flat[lo : lo + rows_per_pass].clone()
        for sl in absent:
            block[:, sl] = 0.0
        size = max(1, EVAL_CHUNK_ELEMENTS // (len(rows) * eval_width(end.arch)))
        chunks = [
            (slice(None), index[:, :, u : u + size].index_select(0, rows).contiguous(), labels[:, u : u + size].index_select(0, rows).contiguous())
            for u in range(0, index.shape[2], size)
        ]
        part = replace(
            stage,
            eval_chunks=chunks,
            train_weight=stage.train_weight.index_select(0, rows),
            test_weight=stage.test_weight.index_select(0, rows),
            last=stage.last.index_select(0, rows),
        )
        ev = evaluate(end.arch, end.space.views(block), part, 0)
        for key in out:
            out[key].append(getattr(ev, key))
    return {k: torch.cat(v).double().numpy() for k, v in out.items()}


def barrier_height(t: ArrayLike, loss: ArrayLike) -> tuple[float, float, float, float]:
    """(loss at t = 0, loss at t = 1, barrier, t of the barrier) of one curve: the largest excess
    of the loss over the straight line between its end losses, over t in [0, 1]."""
    t, loss = np.asarray(t, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    l0, l1 = float(loss[t == 0.0][0]), float(loss[t == 1.0][0])
    inside = (t >= 0.0) & (t <= 1.0)
    excess = loss[inside] - ((1.0 - t[inside]) * l0 + t[inside] * l1)
    i = int(np.argmax(excess))
    return l0, l1, float(excess[i]), float(t[inside][i])
