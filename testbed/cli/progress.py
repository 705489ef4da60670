"""Progress on the terminal: the progress events of `testbed.run`, `compare` and `sweep` drawn
as a rich bar per run on a terminal, and as a line every tenth of a run in logs and pipes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from testbed.plugin_api.probe import Evaluation
from testbed.trainer import Progress

if TYPE_CHECKING:  # the comparison (scipy) is imported only by the command that compares
    from testbed.comparison.result import Analysing
    from testbed.comparison.until_decided import Checked
    from testbed.study.sweep_table import AnalysingCell


def status(ev: Evaluation) -> str:
    return f"median train loss {np.nanmedian(ev.train_loss.numpy()):.3f}, test acc {np.nanmedian(ev.test_acc.numpy()):.3f}"


class LogLines:
    """One run's progress for logs and pipes (no terminal): a line at every tenth of the run."""

    def __init__(self, console: Console, label: str, epochs: int):
        self.console, self.label, self.epochs = console, label, epochs
        self.next_mark = 1
        self.status = ""
        self.started = time.perf_counter()

    def advance(self, epoch: int, ev: Evaluation | None) -> None:
        if ev is not None:
            self.status = status(ev)
        if epoch * 10 >= self.next_mark * self.epochs:
            elapsed = time.perf_counter() - self.started
            self.console.print(f"{self.label}: epoch {epoch}/{self.epochs}, {elapsed:.0f} s, {self.status}", highlight=False, soft_wrap=True)
            self.next_mark = epoch * 10 // self.epochs + 1

    def stop(self) -> None:
        return None


class Bar:
    """One run's progress on a terminal: a rich progress bar over its epochs."""

    def __init__(self, console: Console, label: str, epochs: int):
        self.bar = RichProgress(
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
        self.task = self.bar.add_task(label, total=epochs, status="")
        self.bar.start()

    def advance(self, epoch: int, ev: Evaluation | None) -> None:
        if ev is None:
            self.bar.update(self.task, completed=epoch)
        else:
            self.bar.update(self.task, completed=epoch, status=status(ev))

    def stop(self) -> None:
        self.bar.stop()


class ProgressDisplay:
    """A progress callback for `testbed.run`, `compare` and `until_decided` that draws on `console`;
    use it in a `with` block, which closes the last bar however the block ends."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.label: str | None = None
        self.current: Bar | LogLines | None = None

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()
        self.current, self.label = None, None

    def __call__(self, event: Progress | Analysing | AnalysingCell | Checked) -> None:
        # Told apart by their fields: the classes of the analyses are not imported until a command needs them.
        if hasattr(event, "done"):  # a study's analysis reads its cells: a line at every tenth
            cell = cast("AnalysingCell", event)
            self.close()
            if cell.done == 1 or cell.done == cell.cells or cell.done * 10 // cell.cells > (cell.done - 1) * 10 // cell.cells:
                self.console.print(f"analysing: {cell.done}/{cell.cells} cells read ({cell.label})", highlight=False, soft_wrap=True)
            return
        if hasattr(event, "decision"):  # compare --until-decided looked at a batch: a line per look
            self.close()
            self.console.print(cast("Checked", event).text, highlight=False, soft_wrap=True)
            return
        if not isinstance(event, Progress):  # a comparison's analysis begins
            begins = cast("Analysing", event)
            self.close()
            grid = " and the learning-rate grid" if begins.grid else ""
            self.console.print(f"analysing {begins.runs} runs{grid} on {begins.seeds} seeds: spikes, statistics, figures", highlight=False)
            return
        if self.current is None or event.label != self.label:
            self.close()
            kind = Bar if self.console.is_terminal else LogLines
            self.current, self.label = kind(self.console, event.label, event.epochs), event.label
        self.current.advance(event.epoch, event.evaluation)
        if event.epoch >= event.epochs:
            self.close()
