"""`testbed run`: train a scenario into a run directory."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from testbed.rundir import curves as plots
from testbed.rundir import writer as rundir
from testbed.config import scenario as scenario_mod
from testbed.rundir import summary as summary_mod
from testbed.plugin_api.probe import Evaluation
from testbed.engine.loop import train


@dataclass
class RunOutput:
    path: Path
    summary: dict


class LogProgress:
    """Progress for logs and pipes (no terminal): a line at every tenth of the run."""

    def __init__(self, console: Console, label: str, epochs: int):
        self.console, self.label, self.epochs = console, label, epochs
        self.next_mark = 1
        self.status = ""
        self.started = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def advance(self, epoch: int, ev: Evaluation | None) -> None:
        if ev is not None:
            self.status = _status(ev)
        if epoch * 10 >= self.next_mark * self.epochs:
            elapsed = time.perf_counter() - self.started
            self.console.print(f"{self.label}: epoch {epoch}/{self.epochs}, {elapsed:.0f} s, {self.status}", highlight=False, soft_wrap=True)
            self.next_mark = epoch * 10 // self.epochs + 1


def _status(ev: Evaluation) -> str:
    return f"median train loss {np.nanmedian(ev.train_loss.numpy()):.3f}, test acc {np.nanmedian(ev.test_acc.numpy()):.3f}"


def progress_bar(console: Console, label: str, epochs: int):
    """A progress display over epochs and the callback that advances it: a rich bar on a
    terminal, periodic lines otherwise."""
    if not console.is_terminal:
        log = LogProgress(console, label, epochs)
        return log, log.advance
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )
    task = bar.add_task(label, total=epochs, status="")

    def advance(epoch: int, ev: Evaluation | None) -> None:
        status = _status(ev) if ev is not None else None
        bar.update(task, completed=epoch, **({"status": status} if status else {}))

    return bar, advance


def run_scenario(
    scenario, out: Path | None, force: bool = False, console: Console | None = None, quiet: bool = False, label: str | None = None
) -> RunOutput:
    """Train `scenario` into `out` (default: a fresh folder under the scenario's output root);
    `label` names it on the progress display."""
    console = console or Console(stderr=True)
    path = Path(out) if out is not None else rundir.default_path(scenario.output.root, scenario.name)
    with rundir.staged(path, force) as stage:
        (stage / "scenario.yaml").write_text(scenario_mod.to_yaml(scenario))
        epochs = scenario.training.epochs
        label = label or f"{scenario.name} ({len(scenario.seeds)} seeds)"
        if quiet:
            result = train(scenario, stage)
        else:
            bar, advance = progress_bar(console, label, epochs)
            with bar:
                result = train(scenario, stage, progress=advance)
        summary = summary_mod.build(scenario.name, result, epochs)
        (stage / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
        if (stage / "metrics.csv").exists():
            plots.curves(stage / "metrics.csv", stage / "curves.png", scenario.name)
    return RunOutput(path, summary)
