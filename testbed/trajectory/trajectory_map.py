"""`testbed trajectories RUN [RUN ...]`: the joint map of the parameter trajectories of runs.

Every snapshot of every chosen seed of every run (snapshots.npz) is one point: its parameters,
flattened and concatenated in the order of their names, so that one map holds all runs, which
must therefore have the same parameters and shapes. The points are projected together (PCA or
t-SNE) and written, staged, into a report directory: trajectories.csv (run, seed, epoch, x, y,
test_acc), trajectories.png and report.md."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.comparison import report as blocks
from testbed.config import scenario as scenario_mod
from testbed.errors import UserError
from testbed.rundir import writer
from testbed.rundir.reader import Run
from testbed.trajectory import projection

METHODS = ("pca", "tsne")
COLORS = ("run", "epoch", "test_acc")
REPORT_ROOT = "reports"
COLUMNS = ("run", "seed", "epoch", "x", "y", "test_acc")


@dataclass
class Trajectories:
    """The points of one run in the map: a row per (seed, snapshot), seeds in the chosen
    order, epochs increasing within each seed."""

    label: str
    run: Run
    seeds: list[int]
    epochs: np.ndarray  # (n,) snapshot epochs
    vectors: np.ndarray  # (S, n, D) flattened parameters
    test_acc: np.ndarray  # (S, n), NaN where the snapshot epoch was not evaluated
    switches: list[tuple[int, int, int]] = field(default_factory=list)  # (epoch, p before, p after) of the curriculum
    xy: np.ndarray | None = None  # (S, n, 2) once projected


@dataclass
class TrajectoryMap:
    """What `testbed.trajectories` returns: the report directory, and its points as a table."""

    path: Path
    method: str
    explained: tuple[float, float] | None  # PCA: the share of the variance of each axis

    def table(self) -> pd.DataFrame:
        """trajectories.csv: run, seed, epoch, x, y, test_acc (NaN where not evaluated)."""
        return pd.read_csv(self.path / "trajectories.csv")


def _labels(runs: list[Run]) -> list[str]:
    """Each run's folder name; its path as given where two names collide; #k where those do."""
    names = [r.path.name or str(r.path) for r in runs]
    labels = [n if names.count(n) == 1 else str(r.path) for n, r in zip(names, runs)]
    return [lab if labels.count(lab) == 1 else f"{lab} #{labels[:i + 1].count(lab)}" for i, lab in enumerate(labels)]


def _test_acc(run: Run, seeds: list[int], epochs: np.ndarray) -> np.ndarray:
    """(S, n) test accuracy at each snapshot epoch where metrics.csv has one, else NaN."""
    out = np.full((len(seeds), len(epochs)), np.nan)
    if not run.has("metrics.csv"):
        return out
    grid = run.metrics.pivot_table(index="epoch", columns="seed", values="test_acc", aggfunc="last")
    grid = grid.reindex(index=[int(e) for e in epochs], columns=seeds)
    return grid.to_numpy(dtype=np.float64).T


def load(paths: Sequence[str | Path | Run], seeds: str | Sequence[int] | None) -> list[Trajectories]:
    """The chosen seeds' snapshots of every run, checked to share their parameters' shapes."""
    runs = [p if isinstance(p, Run) else Run(p) for p in paths]
    if not runs:
        raise UserError("trajectories: give at least one run directory")
    chosen = None
    if seeds is not None:
        try:
            chosen = scenario_mod.parse_seeds(list(seeds) if isinstance(seeds, range) else seeds)
        except ValueError as exc:
            raise UserError(f"--seeds: {exc}") from None
    out, reference = [], None
    for label, run in zip(_labels(runs), runs):
        run.require("snapshots.npz", needed_by="testbed trajectories")
        snaps = run.snapshots
        shapes = {name: a.shape[2:] for name, a in snaps.params.items()}
        if not shapes:
            raise UserError(f"{run.path / 'snapshots.npz'}: no parameters (param/<name>)")
        if reference is None:
            reference = (run.path, shapes)
        else:
            _same_parameters(reference, run.path, shapes)
        names = sorted(reference[1])
        these = list(snaps.seeds) if chosen is None else chosen
        missing = [s for s in these if s not in snaps.seeds]
        if missing:
            raise UserError(f"--seeds: {run.path} has no snapshots of seed{'s' if len(missing) > 1 else ''} "
                            f"{','.join(map(str, missing))} (its seeds: {scenario_mod.format_seeds(snaps.seeds)})")
        cols = [snaps.seeds.index(s) for s in these]
        order = np.argsort(snaps.epochs, kind="stable")
        epochs = np.asarray(snaps.epochs)[order].astype(np.int64)
        flat = [snaps.params[n][order][:, cols].reshape(len(epochs), len(cols), -1) for n in names]
        vectors = np.concatenate(flat, axis=2).astype(np.float64).transpose(1, 0, 2)
        out.append(Trajectories(label, run, these, epochs, vectors, _test_acc(run, these, epochs), scenario_mod.curriculum_switches(run.scenario)))
    return out


def _same_parameters(reference: tuple[Path, dict], path: Path, shapes: dict) -> None:
    ref_path, ref = reference
    for name in sorted(set(ref) | set(shapes)):
        if name not in shapes:
            raise UserError(f"{path}: no parameter {name!r}, which {ref_path} has; runs in one map need the same parameters")
        if name not in ref:
            raise UserError(f"{path}: parameter {name!r}, which {ref_path} lacks; runs in one map need the same parameters")
        if shapes[name] != ref[name]:
            raise UserError(f"{path}: parameter {name!r} has shape {tuple(shapes[name])}, {ref_path}'s {tuple(ref[name])}; "
                            "runs in one map need the same shapes")


def trajectories(
    runs: Sequence[str | Path | Run],
    *,
    method: str = "pca",
    seeds: str | Sequence[int] | None = None,
    color: str = "run",
    perplexity: float = 30.0,
    out: str | Path | None = None,
    force: bool = False,
) -> TrajectoryMap:
    """Project every snapshot of every seed of `runs` onto one plane and write the report
    directory `out` (default reports/trajectories-<time>)."""
    if method not in METHODS:
        raise UserError(f"--method {method}: choose {' or '.join(METHODS)}")
    if color not in COLORS:
        raise UserError(f"--color {color}: choose one of {', '.join(COLORS)}")
    if method == "tsne":
        try:
            import sklearn  # noqa: F401  (refused before any reading or writing)
        except ImportError:
            raise UserError(f"--method tsne needs scikit-learn, which is not installed: {projection.TSNE_INSTALL}") from None
    trajs = load(runs, seeds)
    points = np.concatenate([t.vectors.reshape(-1, t.vectors.shape[2]) for t in trajs])
    finite = np.isfinite(points).all(axis=1)  # a diverged seed's snapshots: no place in the map
    if finite.sum() < 2:
        lost = f", {len(points) - finite.sum()} of them with non-finite parameters" if not finite.all() else ""
        raise UserError(f"trajectories: {len(points)} point{'s' if len(points) != 1 else ''}{lost}; a map needs at least 2 with finite parameters")
    path = Path(out) if out is not None else writer.default_path(REPORT_ROOT, "trajectories")
    writer.check_creatable(path)
    writer.check_target(path, force)
    started = time.perf_counter()
    explained = None
    xy = np.full((len(points), 2), np.nan)
    if method == "pca":
        xy[finite], ratio = projection.pca(points[finite])
        explained = (float(ratio[0]), float(ratio[1]))
    else:
        xy[finite] = projection.tsne(points[finite], perplexity)
    seconds = time.perf_counter() - started
    start = 0
    for t in trajs:
        n = t.vectors.shape[0] * t.vectors.shape[1]
        t.xy = xy[start:start + n].reshape(t.vectors.shape[0], t.vectors.shape[1], 2)
        start += n
    from testbed.trajectory.trajectory_figure import draw

    with writer.staged(path, force) as stage:
        _write_csv(stage / "trajectories.csv", trajs)
        draw(trajs, stage / "trajectories.png", method=method, color=color, explained=explained, perplexity=perplexity)
        (stage / "report.md").write_text(blocks.to_markdown(_report(trajs, method, color, explained, perplexity, points.shape, int((~finite).sum()), seconds)))
    return TrajectoryMap(path, method, explained)


def _write_csv(path: Path, trajs: list[Trajectories]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for t in trajs:
            assert t.xy is not None, "projected before it is written"
            for i, seed in enumerate(t.seeds):
                for j, epoch in enumerate(t.epochs):
                    acc = t.test_acc[i, j]
                    x, y = (("", "") if np.isnan(t.xy[i, j]).any() else (repr(float(t.xy[i, j, 0])), repr(float(t.xy[i, j, 1]))))
                    w.writerow([t.label, seed, int(epoch), x, y, "" if np.isnan(acc) else repr(float(acc))])


def _report(trajs, method, color, explained, perplexity, shape, dropped, seconds) -> blocks.Report:
    n, dims = shape
    rep = blocks.Report("Parameter trajectories")
    how = ("PCA (numpy SVD of the centred points; each component's largest loading positive)" if method == "pca"
           else f"t-SNE (scikit-learn, {'exact' if n <= projection.EXACT_TSNE_POINTS else 'Barnes-Hut'}, perplexity {perplexity:g}, "
           "initialised from the PCA, random_state 0)")
    rep.add(blocks.Paragraph(
        f"{n} points, each one snapshot of one seed: its {dims} parameters flattened and concatenated in the order of "
        f"their names, all runs projected together by {how} in {seconds:.2f} s. Lines join a seed's snapshots in epoch "
        "order; a circle marks epoch 0, a square the last snapshot, a diamond the last snapshot before a curriculum switch."
    ))
    if dropped:
        rep.add(blocks.Paragraph(f"{dropped} snapshots with non-finite parameters (diverged seeds) are left out of the projection "
                                 "(x and y empty in trajectories.csv); their seeds' lines stop before them."))
    if explained is not None:
        rep.add(blocks.Paragraph(f"PC 1 explains {explained[0]:.1%} of the variance, PC 2 {explained[1]:.1%}."))
    rows = []
    for t in trajs:
        switch = "; ".join(f"p {a}→{b} at epoch {e}" for e, a, b in t.switches) or "none"
        final = t.test_acc[:, -1]
        acc = f"{np.nanmedian(final):.3f}" if np.isfinite(final).any() else "not evaluated"
        rows.append([t.label, str(t.run.path), scenario_mod.format_seeds(t.seeds), str(len(t.epochs)),
                     f"{int(t.epochs[0])}–{int(t.epochs[-1])}", switch, acc])
    rep.add(blocks.Table(["run", "directory", "seeds", "snapshots", "epochs", "curriculum switch", "median last test acc"], rows))
    rep.add(blocks.Figure(Path("trajectories.png"), f"Trajectories, coloured by {color.replace('_', ' ')}"))
    rep.add(blocks.Paragraph("The points: trajectories.csv (run, seed, epoch, x, y, test_acc; empty where not evaluated)."))
    return rep
