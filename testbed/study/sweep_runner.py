"""`testbed sweep`: every cell of a study, trained through the run store, then analysed.

Order of work: validate every cell; ask the store what each cell lacks; train only that (local
or Ray executor), each run landing in the store when finished; then write the study directory
(staged, renamed into place when complete):

    study.yaml        the study file as given
    study.json        the cells: label, axis values, run directory; seeds, axes, executor
    cells/NNN-label/  each cell's run directory (files copied from the store)
    sweep.csv, cells.csv, figures/, report.md, report.html   the analysis

A failure or an interrupt keeps every run finished (in the store): the same command again trains
only what is missing and writes the same study. A finished study directory given instead of a
study file is analysed again without training."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.config.scenario import format_seeds
from testbed.config.schema import Scenario
from testbed.errors import Interrupted, RunFailure, UserError
from testbed.rundir import writer as rundir
from testbed.rundir.reader import Run
from testbed.store.materialize import materialize
from testbed.store.serve import bound, open_store
from testbed.study import cells as cells_mod
from testbed.study.executors import Job, executor

STUDY_ROOT = "sweeps"
MANIFEST = "study.json"
ANALYSIS_OUTPUTS = ("sweep.csv", "cells.csv", "report.md", "report.html", "figures")


CONFIRM_CELLS = 1000  # a larger study asks before it starts (the command line; --yes answers)
SEED_STEPS_PER_SECOND = 22_000.0  # one core, default widths, 100+ seeds (README "Speed": 345 seed-epochs/s of 64 steps)
SECONDS_PER_EPOCH = 0.03  # a run's own cost per epoch, whatever its seeds (1 seed: 0.032 s an epoch)


def _enough_open_files(cells: int) -> None:
    """Each cell's claim holds a file open while the study trains: raise the soft limit of open
    files (often 1024) towards the hard one for a study of thousands of cells."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cells + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def estimated_seconds(scenario: Scenario) -> float:
    """A rough training time of a scenario on one core (the README's rates; the store may hold
    some of it already, and wider models take longer): for the confirmation of a large study."""
    steps = -(-scenario.task.n_train // scenario.training.batch_for(scenario.task.n_train))
    epochs = scenario.training.epochs
    return epochs * (SECONDS_PER_EPOCH + len(scenario.seeds) * steps / SEED_STEPS_PER_SECOND)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:60]


def is_study_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def sweep(
    source: str | Path,
    *,
    seeds: str | Sequence[int] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    axes: Sequence[str] | Mapping[str, list] = (),
    out: str | Path | None = None,
    force: bool = False,
    executor_name: str = "local",
    address: str | None = None,
    cpus_per_cell: int = 1,
    progress: Callable[[Any], None] | None = None,
    threads: int | None = None,
    store=None,
    confirm: Callable[[int, float], bool] | None = None,
):
    """Train and analyse the study file `source` into the study directory `out` (default:
    sweeps/<name>-<time>), or analyse the finished study directory `source` again (into `out`,
    default: in place). Returns the analysis (`testbed.study.sweep_report.StudyResult`).
    `confirm(cells, seconds)`, asked once the study is valid when it has more than
    `CONFIRM_CELLS` cells (with a rough estimate of its training time), may stop it."""
    source = Path(source)
    if is_study_dir(source):
        if seeds is not None or overrides or axes:
            raise UserError(f"{source}: a finished study is analysed as it is; --seeds and --set apply to study files")
        return reanalyse(source, out, force)
    if store is False:  # --no-store: a store of this study's own, removed afterwards (nothing reused, nothing kept)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="testbed-no-store-") as own:
            return sweep(source, seeds=seeds, overrides=overrides, axes=axes, out=out, force=force, executor_name=executor_name,
                         address=address, cpus_per_cell=cpus_per_cell, progress=progress, threads=threads, store=own, confirm=confirm)
    started = time.perf_counter()
    study = cells_mod.load(source, seeds, overrides, axes)
    if confirm is not None and len(study.cells) > CONFIRM_CELLS:
        if not confirm(len(study.cells), sum(estimated_seconds(cell.scenario) for cell in study.cells)):
            raise UserError(f"{source}: {len(study.cells)} cells: not started")
    path = Path(out) if out is not None else rundir.default_path(STUDY_ROOT, study.name)
    rundir.check_target(path, force)
    rundir.check_writable(path.parent, f"--out {path}")  # refused before anything trains
    runner = executor(executor_name, address, cpus_per_cell, threads)
    the_store = open_store(store)
    the_store.check_writable()
    _enough_open_files(len(study.cells))
    plans = []
    try:
        for cell in study.cells:  # each cell's missing seeds claimed, less those another command trains now
            plans.append(the_store.acquire(cell.scenario))
        for plan in plans:  # a run to train that starts from a source scenario: that source first
            if plan.missing:
                plan.scenario = bound(plan.scenario, the_store, progress=progress, threads=threads)
        jobs, shared = _jobs(study, plans)
        try:
            failures = runner.train(jobs, progress)
        except KeyboardInterrupt:
            landed = sum(1 for job in jobs if job.plan.trained is not None)
            said = f"{landed} of {len(jobs)} runs to train had finished and are in the run store {the_store.root}"
            raise Interrupted([f"{said}; the same command again trains only the rest"], None) from None
    finally:
        for plan in plans:
            plan.release()
    if failures:
        raise _failed(failures, len(jobs), the_store.root)
    for plan, twin in shared:
        plan.trained = twin.trained

    def train_here(plan) -> None:
        plan.scenario = bound(plan.scenario, the_store, progress=progress, threads=threads)
        the_store.fill(plan, progress=progress, label=f"{plan.scenario.name} ({len(plan.missing)} seeds)", threads=threads)

    for i, (cell, plan) in enumerate(zip(study.cells, plans)):
        if plan.waiting:  # seeds another command was training: wait for them (and train what it failed to)
            plans[i] = the_store.settle(cell.scenario, train_here)
    with rundir.staged(path, force) as stage:
        (stage / "study.yaml").write_text(source.read_text())
        manifest = _write_cells(stage, study, plans, runner.name, len(jobs))
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        intro = _intro(study, manifest, time.perf_counter() - started)
        result = _analyse(stage, manifest, intro, progress)
    result.path = path
    return result


def _jobs(study, plans) -> tuple[list[Job], list[tuple[Any, Any]]]:
    """One job per distinct run to train (two cells of one scenario train once); the pairs
    (plan, plan that trains for it)."""
    jobs: list[Job] = []
    by_shard: dict[Path, Any] = {}
    shared = []
    todo = [(cell, plan) for cell, plan in zip(study.cells, plans) if plan.missing]
    total = len({plan.shard_path for _, plan in todo})
    for cell, plan in todo:
        if plan.shard_path in by_shard:
            shared.append((plan, by_shard[plan.shard_path]))
            continue
        by_shard[plan.shard_path] = plan
        jobs.append(Job(plan, f"[{len(by_shard)}/{total}] {cell.label} ({len(plan.missing)} seeds)"))
    return jobs, shared


def _failed(failures, total: int, root: Path) -> RunFailure:
    job, first = failures[0]
    failure = first if isinstance(first, RunFailure) else RunFailure("", "a study cell", str(first))
    failure.notes.insert(0, f"cell {job.label}")
    failure.notes.append(f"{len(failures)} of {total} runs failed; the {total - len(failures)} others are in the run store {root}")
    failure.notes.append("the same command again trains only what is missing")
    return failure


def _write_cells(stage: Path, study, plans, executor_name: str, trained: int) -> dict[str, Any]:
    folder = stage / "cells"
    folder.mkdir()
    listed = []
    for cell, plan in zip(study.cells, plans):
        name = f"{cell.index:03d}-{slug(cell.label)}"
        (folder / name).mkdir()
        materialize(plan, folder / name)
        listed.append({"index": cell.index, "label": cell.label, "values": cell.values, "run": f"cells/{name}", "key": plan.entry.key})
    return {
        "name": study.name,
        "study_file": str(study.path),
        "seeds": format_seeds(study.seeds),
        "axes": study.axes,
        "executor": executor_name,
        "runs_trained": trained,
        "cells": listed,
    }


def _intro(study, manifest: dict, seconds: float) -> list[str]:
    n = len(manifest["cells"])
    return [
        f"Study file {study.path}; {n} cells × {len(study.seeds)} seeds ({manifest['seeds']}); axes: {', '.join(study.axes) or '(none)'}.",
        f"{manifest['runs_trained']} runs trained for this study ({manifest['executor']} executor), the rest served by the run store; {seconds:.0f} s in all.",
    ]


def _analyse(folder: Path, manifest: dict, intro: list[str], progress):
    from testbed.config.scenario import parse_seeds
    from testbed.study.sweep_report import analyse
    from testbed.study.sweep_table import Cell

    cells = [Cell(c["index"], c["label"], c["values"], Run(folder / c["run"])) for c in manifest["cells"]]
    return analyse(cells, manifest["axes"], parse_seeds(manifest["seeds"]), folder, title=f"Study: {manifest['name']}", intro=intro, progress=progress)


def reanalyse(source: Path, out: str | Path | None, force: bool):
    """The analysis of a finished study directory, again: in place, or into `out` (its cells linked)."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{source / MANIFEST}: unreadable ({exc})") from None
    intro = [f"Analysed again from {source}, without training."]
    if out is None:
        for name in ANALYSIS_OUTPUTS:
            target = source / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        return _analyse(source, manifest, intro, None)
    path = Path(out)
    with rundir.staged(path, force) as stage:
        from testbed.rundir.checksums import copy_file

        shutil.copytree(source / "cells", stage / "cells", copy_function=copy_file)
        for name in ("study.yaml", MANIFEST):
            shutil.copy2(source / name, stage / name)
        result = _analyse(stage, manifest, intro, None)
    result.path = path
    return result
