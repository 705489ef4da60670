"""`testbed barrier` and `testbed.barrier`: choose the ends of each line, evaluate the lines,
write barrier.csv, barriers.csv, barrier.png and report.md into a staged report directory."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.errors import UserError
from testbed.loss_barrier import interpolation
from testbed.loss_barrier.interpolation import SPLITS, End, Pair
from testbed.render.rundata import SnapshotRun
from testbed.rundir.reader import Run

BARRIER_COLUMNS = ["pair", "seed_a", "seed_b", "epoch_a", "epoch_b", "split", "loss_0", "loss_1", "barrier", "t_max"]


@dataclass
class BarrierResult:
    """What `testbed.barrier` returns: `curves` (barrier.csv: pair, seed_a, seed_b, epoch_a,
    epoch_b, t, split, loss, acc), `barriers` (barriers.csv: per pair and split the end losses,
    the barrier height and the t where it is reached), the task it was evaluated on (`p`), the
    report directory `path` and the seconds the evaluation took."""

    curves: pd.DataFrame
    barriers: pd.DataFrame
    p: int
    path: Path
    seconds: float


def _two(text: str | tuple | list | None, flag: str) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = tuple(int(str(v).strip()) for v in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        raise UserError(f"{flag} {text}: give two integers, e.g. {flag} 0,1")
    return values  # type: ignore[return-value]


def _splits(split: str | Sequence[str]) -> list[str]:
    names = [s.strip() for s in split.split(",")] if isinstance(split, str) else list(split)
    bad = [s for s in names if s not in SPLITS]
    if bad or not names:
        raise UserError(f"--split {split}: choose among train, test (comma-separated)")
    return [s for s in SPLITS if s in names]


def _seed(run: SnapshotRun, seed: int, flag: str) -> int:
    if seed not in run.seeds:
        from testbed.config.scenario import format_seeds

        raise UserError(f"{flag} {seed}: not a seed of {run.path}; its snapshots hold seeds {format_seeds(sorted(run.seeds))}")
    return seed


def _epoch(run: SnapshotRun, epoch: int | None) -> int:
    if epoch is None:
        return int(run.epochs[-1])
    if epoch not in run.epochs.tolist():
        shown = ", ".join(str(int(e)) for e in run.epochs[:12]) + (", ..." if len(run.epochs) > 12 else "")
        raise UserError(f"--epochs {epoch}: no snapshot of {run.path} at that epoch; its snapshot epochs are {shown}")
    return epoch


def choose_pairs(a: SnapshotRun, b: SnapshotRun, *, two_runs: bool, seed: int | None, pair: tuple[int, int] | None,
                 pair_seeds: bool, epochs: tuple[int, int] | None) -> list[Pair]:
    """The lines to evaluate; each is evaluated on the data of its end seed (seed_b)."""
    if sum(x is not None and x is not False for x in (seed, pair, pair_seeds or None)) > 1:
        raise UserError("--seed, --pair and --pair-seeds: choose one")
    if not two_runs and pair is None and epochs is None:
        raise UserError(f"{a.path}: one run needs --pair A,B (two seeds) or --epochs EA,EB (two snapshot epochs), or a second run")
    ea, eb = (_epoch(a, epochs[0]), _epoch(b, epochs[1])) if epochs else (_epoch(a, None), _epoch(b, None))
    if pair is not None:
        sa, sb = _seed(a, pair[0], "--pair"), _seed(b, pair[1], "--pair")
        return [Pair(End(a, sa, ea), End(b, sb, eb), sb)]
    common = [s for s in a.seeds if s in b.seeds]
    if not common:
        raise UserError(f"{a.path} and {b.path}: no common seed; pick one of each with --pair A,B")
    if pair_seeds:
        return [Pair(End(a, s, ea), End(b, s, eb), s) for s in common]
    s = common[0] if seed is None else _seed(b, _seed(a, seed, "--seed"), "--seed")
    return [Pair(End(a, s, ea), End(b, s, eb), s)]


def _label(pair: Pair, runs: int) -> str:
    seeds = f"seed {pair.a.seed}" if pair.a.seed == pair.b.seed else f"seeds {pair.a.seed}→{pair.b.seed}"
    epochs = f"epoch {pair.a.epoch}" if pair.a.epoch == pair.b.epoch else f"epochs {pair.a.epoch}→{pair.b.epoch}"
    return seeds if runs == 2 and pair.a.epoch == pair.b.epoch else f"{seeds}, {epochs}"


def barrier(run_a: Path | str, run_b: Path | str | None = None, *, seed: int | None = None, pair=None, pair_seeds: bool = False,
            epochs=None, points: int = 51, extend: float = 0.0, split: str | Sequence[str] = "train,test", out: Path | str | None = None,
            force: bool = False) -> BarrierResult:
    """See `testbed.api.barrier`."""
    from testbed.comparison.report import Figure, Paragraph, Report, Table, to_markdown
    from testbed.loss_barrier.barrier_figure import draw
    from testbed.render import rundata
    from testbed.rundir import writer

    t = interpolation.grid(points, extend)
    chosen = _splits(split)
    pair, epochs = _two(pair, "--pair"), _two(epochs, "--epochs")
    for path in (run_a, run_b):
        if path is not None:
            Run(path).require("snapshots.npz", needed_by="testbed barrier")
    a = rundata.load(Path(run_a))
    b = rundata.load(Path(run_b)) if run_b is not None else a
    interpolation.check_shapes(a, b)
    interpolation.check_functions(a, b)
    pairs = choose_pairs(a, b, two_runs=run_b is not None, seed=seed, pair=pair, pair_seeds=pair_seeds, epochs=epochs)
    path = Path(out) if out is not None else writer.default_path("reports", "barrier")
    writer.check_target(path, force)

    started = time.perf_counter()
    p = interpolation.final_p(b)
    flat = interpolation.interpolate(pairs, t)
    values = interpolation.evaluate_rows(b, p, flat, [pr.data_seed for pr in pairs for _ in t])
    seconds = time.perf_counter() - started

    n = len(t)
    frames = []
    for s in chosen:
        frames.append(pd.DataFrame({
            "pair": np.repeat(np.arange(len(pairs)), n),
            "seed_a": np.repeat([pr.a.seed for pr in pairs], n),
            "seed_b": np.repeat([pr.b.seed for pr in pairs], n),
            "epoch_a": np.repeat([pr.a.epoch for pr in pairs], n),
            "epoch_b": np.repeat([pr.b.epoch for pr in pairs], n),
            "t": np.tile(t, len(pairs)),
            "split": s,
            "loss": values[f"{s}_loss"],
            "acc": values[f"{s}_acc"],
        }))  # fmt: skip
    curves = pd.concat(frames, ignore_index=True)
    rows = []
    for k, pr in enumerate(pairs):
        for s in chosen:
            line = curves[(curves["pair"] == k) & (curves["split"] == s)]
            rows.append([k, pr.a.seed, pr.b.seed, pr.a.epoch, pr.b.epoch, s, *interpolation.barrier_height(line["t"], line["loss"])])
    barriers = pd.DataFrame(rows, columns=BARRIER_COLUMNS)

    runs = 2 if run_b is not None else 1
    labels = {k: _label(pr, runs) for k, pr in enumerate(pairs)}
    ends = f"A = {a.path}, B = {b.path}" if runs == 2 else f"A and B from {a.path}"
    task = (f"Evaluated on the task of {'run B' if runs == 2 else 'the run'} at its final vocabulary p = {p} "
            f"(its architecture, sequence length, sparsity, sample sizes and test split), each line on the training and "
            f"test samples of its end seed (seed_b).")  # fmt: skip
    report = Report(f"Loss barrier: {a.path.name}" + (f" → {b.path.name}" if runs == 2 else ""))
    report.add(
        Paragraph(f"Loss and accuracy of the weights (1 − t) θ_A + t θ_B for {len(t)} values of t in [{t[0]:g}, {t[-1]:g}]; {ends}. {task}"),
        Paragraph("Barrier: the largest excess, over t in [0, 1], of the loss over the straight line between the end losses "
                  "(0 when the loss is convex along the line); t_max: where it is reached."),  # fmt: skip
        Table(["pair", "ends", "split", "loss at 0", "loss at 1", "barrier", "t_max"],
              [[str(r.pair), labels[r.pair], r.split, f"{r.loss_0:.4g}", f"{r.loss_1:.4g}", f"{r.barrier:.4g}", f"{r.t_max:.3g}"]  # type: ignore[attr-defined]  # named tuples of the columns
               for r in barriers.itertuples()], "Barrier height per pair and split"),  # fmt: skip
        Figure(Path("barrier.png"), "Loss and accuracy along the line, one line per pair (solid: train, dashed: test)"),
    )
    with writer.staged(path, force) as stage:
        curves.to_csv(stage / "barrier.csv", index=False, float_format="%.9g")
        barriers.to_csv(stage / "barriers.csv", index=False, float_format="%.9g")
        draw(curves, labels, f"{a.path.name}" + (f" → {b.path.name}" if runs == 2 else "") + f"  (task p = {p})", stage / "barrier.png")
        (stage / "report.md").write_text(to_markdown(report))
    return BarrierResult(curves, barriers, p, path, seconds)
