"""Train a scenario into a run directory: what `testbed.run` and `testbed run` do.

Nothing here prints: progress goes to an optional callback, which receives a `Progress` before
the first epoch and after every epoch (the command line draws it as a progress bar).

A run that stops (killed, interrupted, failed) keeps its staging folder with the training's
last checkpoint; running the same scenario into the same directory again continues from it,
and the run directory comes out as if the run had never stopped."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.config import scenario as scenario_mod
from testbed.config.schema import Scenario
from testbed.engine import checkpoint
from testbed.engine.loop import train
from testbed.engine.threads import choose as choose_threads
from testbed.engine.threads import intra_op_threads
from testbed.errors import Interrupted, RunFailure, describe
from testbed.plugin_api.probe import Evaluation
from testbed.rundir import checksums, provenance
from testbed.rundir import resume as resume_mod
from testbed.rundir import summary as summary_mod
from testbed.rundir import writer as rundir
from testbed.rundir.reader import Run


@dataclass(frozen=True)
class Progress:
    """Where a run in training is: `epoch` of `epochs` done (0 before training starts), with
    the per-seed losses and accuracies when that epoch was evaluated."""

    label: str  # the run's name on a progress display, e.g. "smooth_norm (10 seeds)"
    epoch: int
    epochs: int
    evaluation: Evaluation | None = None
    resumed_from: Path | None = None  # on the first event of a run continued from a checkpoint: its file (of epoch `epoch`)


ProgressCallback = Callable[[Progress], None]


def run_scenario(
    scenario: Scenario,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
    label: str | None = None,
    threads: int | None = None,
    resume: bool | None = None,
    checkpoint_every: int | str | None = None,
    seal: bool = False,
    named: str | None = None,
) -> Run:
    """Train `scenario` into `out` (default: a fresh folder under the scenario's output root),
    written in a staging folder and renamed into place when complete; `label` names the run in
    its progress events; `threads` intra-op threads, default by `testbed.engine.threads.choose`
    (the caller's torch setting is restored afterwards).

    `checkpoint_every`: epochs (50), training time ('30s', '5m', '1h'; default 60 s) or 'off';
    a checkpoint also follows the last epoch. `resume`: None continues the stopped run in `out`
    if its checkpoint has the same scenario and code (and refuses one of another, unless
    `force`, which discards it); True must continue one (without `out`: the newest stopped run
    of this scenario under the output root); False starts afresh."""
    policy = checkpoint.Policy.parse(checkpoint_every)
    ident = resume_mod.identity(scenario)
    if out is not None:
        path = Path(out)
    elif resume:
        path = resume_mod.newest_unfinished(scenario, ident)
    else:
        path = rundir.default_path(scenario.output.root, scenario.name)
    epochs = scenario.training.epochs
    label = label or f"{scenario.name} ({len(scenario.seeds)} seeds)"
    continuation = resume_mod.Continuation(path, ident, resume, force, named)
    continuation.refuse_early()
    try:
        return _train_staged(scenario, path, force, continuation, policy, ident, progress, label, threads, seal, named)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: say what was kept
        if isinstance(exc, Interrupted):
            raise
        raise Interrupted(_kept_notes(rundir.staging_path(path), epochs), rundir.staging_path(path)) from None


def _checkpoint_epoch(stage: Path) -> int | None:
    """The epoch of the checkpoint in a staging folder (None: none written yet, or unreadable)."""
    try:
        return checkpoint.header(stage / rundir.CHECKPOINT)["epoch"]
    except Exception:
        return None


def _kept_notes(stage: Path, epochs: int) -> list[str]:
    """What a stopped training keeps: its checkpoint, and that the same command continues it."""
    epoch = _checkpoint_epoch(stage)
    if epoch is None:
        return [f"no checkpoint had been written yet: nothing of the training is kept ({stage})"]
    return [f"the checkpoint of epoch {epoch} of {epochs} is kept in {stage}", "the same command continues from it"]


def _train_staged(scenario: Scenario, path, force, continuation, policy, ident, progress, label, threads, seal, named) -> Run:
    epochs = scenario.training.epochs
    with rundir.staged(path, force, continuation, finish=checksums.seal if seal else None, named=named) as stage:
        (stage / "scenario.yaml").write_text(scenario_mod.to_yaml(scenario))
        advance: Callable[[int, Evaluation | None], None] | None = None
        if progress is not None:
            progress(Progress(label, continuation.epoch, epochs, resumed_from=continuation.file))
            report = progress

            def each_epoch(epoch: int, evaluation: Evaluation | None) -> None:
                report(Progress(label, epoch, epochs, evaluation))

            advance = each_epoch

        checkpoints = checkpoint.Checkpointing(stage / rundir.CHECKPOINT, policy, ident, resume=continuation.file is not None)
        with intra_op_threads(choose_threads(len(scenario.seeds), threads)):
            started = provenance.now()
            try:
                result = train(scenario, stage, progress=advance, checkpoints=checkpoints)
            except RunFailure as failure:
                _keep_unfinished(failure, stage)
                raise
            finished = provenance.now()
            run_record = provenance.record(scenario, started, finished)  # records the thread count in force
        failures = _write_outputs(stage, scenario, result, run_record)
        if failures:
            rundir.write_error_log(stage, [failure for failure, _ in failures])
    if failures:
        raise _incomplete(failures, path)
    return Run(path)


def _write_outputs(stage: Path, scenario: Scenario, result, run_record: dict) -> list[tuple[RunFailure, str]]:
    """summary.json, run.json and curves.png of a trained run; -> what failed, each with what
    it leaves missing (first the probes whose finish raised), listed in summary.json's
    `failures`."""
    failures = [(failure, "this probe's outputs") for failure in result.failures]
    try:
        summary = summary_mod.build(scenario.name, result, scenario.training.epochs)
    except Exception as exc:
        failures.append((_failed("writing summary.json", exc), "the tables of summary.json"))
        summary = {"scenario": scenario.name, "seeds": list(result.seeds)}
    (stage / "run.json").write_text(json.dumps(run_record, indent=1) + "\n")
    if (stage / "metrics.csv").exists():
        from testbed.rundir import curves  # matplotlib only when a figure is drawn

        try:
            curves.curves(stage / "metrics.csv", stage / "curves.png", scenario.name)
        except Exception as exc:
            (stage / "curves.png").unlink(missing_ok=True)
            failures.append((_failed("drawing curves.png", exc), "curves.png"))
    if failures:
        summary["failures"] = [failure.record() for failure, _ in failures]
    (stage / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
    return failures


def _failed(phase: str, exc: Exception) -> RunFailure:
    failure = RunFailure("", phase, describe(exc))
    failure.__cause__ = exc
    return failure


def _keep_unfinished(failure: RunFailure, stage: Path) -> None:
    """Training failed midway: keep its staging folder, with the traceback in error.log, for
    inspection and for a later run to continue from. A failure before training began (in a
    plugin's build, a probe's start) leaves nothing worth keeping: nothing is written."""
    if failure.epoch is None:
        failure.notes.append("no run directory was written")
        return
    failure.kept = stage
    epoch = _checkpoint_epoch(stage)
    saved = f" with its checkpoint of epoch {epoch} (the same command continues from it)" if epoch is not None else ""
    failure.log = stage / "error.log"
    failure.notes.append(f"the unfinished run is kept in {stage}{saved} (traceback in {failure.log})")
    try:
        rundir.write_error_log(stage, [failure])
    except OSError as exc:  # the disk that failed the training may fail this too: say so, keep the first failure
        failure.log.unlink(missing_ok=True)
        failure.log = None
        failure.notes[-1] = f"the unfinished run is kept in {stage}{saved}; error.log could not be written ({exc.strerror or exc})"


def _incomplete(failures: list[tuple[RunFailure, str]], path: Path) -> RunFailure:
    """The error for a finished run written without some of its outputs: the first failure,
    saying where the run is and what it lacks."""
    first, missing = failures[0]
    first.kept, first.log = path, path / "error.log"
    listed = "the failure" if len(failures) == 1 else f"all {len(failures)} failures"
    first.notes.append(f"the run is in {path} without {missing} (summary.json lists {listed}; traceback in {first.log})")
    return first
