"""Train a scenario into a run directory: what `testbed.run` and `testbed run` do.

Nothing here prints: progress goes to an optional callback, which receives a `Progress` before
the first epoch and after every epoch (the command line draws it as a progress bar)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.config import scenario as scenario_mod
from testbed.engine.loop import train
from testbed.engine.threads import choose as choose_threads
from testbed.engine.threads import intra_op_threads
from testbed.plugin_api.probe import Evaluation
from testbed.rundir import provenance
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


ProgressCallback = Callable[[Progress], None]


def run_scenario(
    scenario,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
    label: str | None = None,
    threads: int | None = None,
) -> Run:
    """Train `scenario` into `out` (default: a fresh folder under the scenario's output root),
    written in a staging folder and renamed into place when complete; `label` names the run in
    its progress events; `threads` intra-op threads, default by `testbed.engine.threads.choose`
    (the caller's torch setting is restored afterwards)."""
    path = Path(out) if out is not None else rundir.default_path(scenario.output.root, scenario.name)
    epochs = scenario.training.epochs
    label = label or f"{scenario.name} ({len(scenario.seeds)} seeds)"
    with rundir.staged(path, force) as stage:
        (stage / "scenario.yaml").write_text(scenario_mod.to_yaml(scenario))
        advance = None
        if progress is not None:
            progress(Progress(label, 0, epochs))

            def advance(epoch: int, evaluation: Evaluation | None) -> None:
                progress(Progress(label, epoch, epochs, evaluation))

        with intra_op_threads(choose_threads(len(scenario.seeds), threads)):
            started = provenance.now()
            result = train(scenario, stage, progress=advance)
            finished = provenance.now()
            run_record = provenance.record(scenario, started, finished)  # records the thread count in force
        summary = summary_mod.build(scenario.name, result, epochs)
        (stage / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
        (stage / "run.json").write_text(json.dumps(run_record, indent=1) + "\n")
        if (stage / "metrics.csv").exists():
            from testbed.rundir import curves  # matplotlib only when a figure is drawn

            curves.curves(stage / "metrics.csv", stage / "curves.png", scenario.name)
    return Run(path)
