"""The analysis and report of a finished study: every cell's run directory read on the study's
seeds, its tables (sweep.csv, cells.csv), figures (figures/) and report (report.md, report.html,
through the report writer of `testbed compare`), and a `StudyResult` for Python."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.analysis.stats import CONFIDENCE
from testbed.comparison import report as rep
from testbed.config.scenario import format_seeds
from testbed.rundir.summary import SUCCESS_ACC
from testbed.study import sweep_figures, sweep_table
from testbed.study.sweep_table import AnalysingCell, Cell

__all__ = ["AnalysingCell", "Cell", "StudyResult", "analyse"]


@dataclass
class StudyResult:
    """A study's analysis: where it was written, its report, and its two tables."""

    path: Path  # the folder holding sweep.csv, cells.csv, figures/ and the report
    report: rep.Report
    figures: list[Path]  # relative to `path`
    tidy: pd.DataFrame = field(repr=False)
    summary: pd.DataFrame = field(repr=False)

    def table(self) -> pd.DataFrame:
        """sweep.csv: a row per cell, seed and metric (cell, label, the axes, seed, metric, value)."""
        return self.tidy.copy()

    def cells(self) -> pd.DataFrame:
        """cells.csv: a row per cell, each metric's mean, sd, median and quartiles over seeds,
        rates with their Wilson interval."""
        return self.summary.copy()


def analyse(
    cells: list[Cell],
    axes: list[str],
    seeds: list[int],
    out: Path,
    *,
    title: str,
    intro: Sequence[str] = (),
    progress: Callable[[AnalysingCell], None] | None = None,
    workers: int | None = None,
) -> StudyResult:
    """Read every cell's run on `seeds`, and write into the existing folder `out` sweep.csv,
    cells.csv, figures/ and report.md and report.html (titled `title`, `intro` its opening
    lines). `progress` hears of each cell once read; `workers` cells are read at a time (default
    up to 2, see `sweep_table.read`)."""
    out = Path(out)
    axes = list(axes)
    seeds = [int(s) for s in seeds]
    sweep_table.check(cells, axes)
    found = sweep_table.read(cells, seeds, progress, workers)
    tidy = sweep_table.tidy(found, axes, seeds)
    summary = sweep_table.summarize(found, axes)
    sweep_table.write_csv(tidy, out / "sweep.csv")
    sweep_table.write_csv(summary, out / "cells.csv")
    drawn = sweep_figures.draw(cells, axes, summary, len(seeds), out / "figures")
    drawn = [sweep_figures.Drawn(d.path.relative_to(out), d.caption) for d in drawn]
    report = build_report(cells, axes, seeds, summary, drawn, title=title, intro=list(intro))
    from testbed.forensics.by_cause import sweep_section  # where the cells' runs kept spike_steps.npz

    method = next(i for i, b in enumerate(report.blocks) if isinstance(b, rep.Heading) and b.text == "Method")
    report.blocks[method:method] = sweep_section({c.label: c.run.path for c in cells}, seeds, out / "spike_causes")
    (out / "report.md").write_text(rep.to_markdown(report))
    (out / "report.html").write_text(rep.to_html(report, out))
    return StudyResult(out, report, [d.path for d in drawn], tidy, summary)


def _rate(count: int, n: int, lo: float, hi: float) -> str:
    return f"{count / n:.0%} ({count}/{n}) [{lo:.0%}, {hi:.0%}]" if n else "-"


def cell_table(summary: pd.DataFrame) -> rep.Table:
    header = ["cell", "label", "seeds", "final test accuracy", f"success (acc > {SUCCESS_ACC}) [{CONFIDENCE:.0%} CI]", "spikes per seed", "diverged"]
    rows = [_cell_row(r) for r in summary.to_dict("records")]
    caption = "Per cell over its seeds: mean ± sd of final test accuracy; success rate with its Wilson interval; mean loss spikes per seed; seeds that diverged"
    return rep.Table(header, rows, caption)


def _cell_row(r: dict) -> list[str]:
    n = int(r["n_seeds"])
    successes = int(round(r["success_mean"] * n))
    diverged = int(round(r["diverged_mean"] * n))
    return [
        str(r["cell"]),
        str(r["label"]),
        str(n),
        f"{r['final_test_acc_mean']:.3f} ± {r['final_test_acc_sd']:.3f}",
        _rate(successes, n, r["success_wilson_lo"], r["success_wilson_hi"]),
        f"{r['spikes_mean']:.2f}",
        f"{diverged}/{n}",
    ]


def highlights(summary: pd.DataFrame) -> list[str]:
    """The cells with the highest mean final test accuracy and success rate (the first in study
    order among ties, with how many tie)."""
    lines = []
    for key, what, fmt in (("final_test_acc_mean", "mean final test accuracy", "{:.3f}"), ("success_mean", "success rate", "{:.0%}")):
        values = summary[key].to_numpy(dtype=float)
        if not np.isfinite(values).any():
            continue
        best = np.nanmax(values)
        tied = np.flatnonzero(values == best)
        first = summary.iloc[tied[0]]
        tail = f" (tied with {tied.size - 1} other cell{'s' if tied.size > 2 else ''})" if tied.size > 1 else ""
        lines.append(f"Highest {what}: {fmt.format(best)}, cell {first['cell']} ({first['label']}){tail}.")
    return lines


def build_report(
    cells: list[Cell], axes: list[str], seeds: list[int], summary: pd.DataFrame, drawn: list[sweep_figures.Drawn], *, title: str, intro: list[str]
) -> rep.Report:
    r = rep.Report(title)
    if intro:
        r.add(rep.Bullets(intro))
    over = f" over {len(axes)} ax{'es' if len(axes) != 1 else 'is'} ({', '.join(axes)})" if axes else ""
    r.add(rep.Paragraph(f"{len(cells)} cell{'s' if len(cells) != 1 else ''}{over}, each trained on the same {len(seeds)} seeds ({format_seeds(seeds)})."))
    best = highlights(summary)
    if best:
        r.add(rep.Bullets(best))
    r.add(rep.Heading("Cells"), cell_table(summary))
    if drawn:
        r.add(rep.Heading("Figures"), *(rep.Figure(d.path, d.caption) for d in drawn))
    r.add(rep.Heading("Method"), rep.Bullets(METHOD))
    return r


METHOD = [
    "Every cell trains the same seeds, and a seed fixes its data, its initialisation (per parameter, where shapes allow) "
    "and its batch order, so cells differ by their axis values, not by the luck of the draw.",
    "Per-seed metrics are those of `testbed compare` (testbed.analysis.outcomes), computed from each cell's run directory: "
    "final test accuracy, success (test accuracy > 0.9), epochs to 0.9 and 1.0 test accuracy, loss spikes (count, total size, worst), "
    "train-loss AUC per epoch, final train and test loss, and diverged.",
    "Spikes are detected on step-level training losses by testbed.analysis.spike_detector with its default parameters, "
    "the same for every cell, whatever a cell's own probe settings.",
    "A seed that diverges (a non-finite loss) is counted in 'diverged', and its losses count as its loss at initialisation "
    "(as in Wortsman et al. 2024), so it is neither dropped nor infinite in the means.",
    "Per cell, over its seeds: mean and standard deviation (n − 1), median and quartiles (linear interpolation); "
    "rates (success, diverged) with a Wilson 95% interval.",
    "Epochs to an accuracy: a seed that never reaches it counts as one epoch past the cell's last epoch "
    "(a restricted mean, as in `testbed compare`); cells.csv says how many seeds got there (`_reached`). "
    "In sweep.csv such a seed's value is empty.",
    "This report estimates each cell; it tests no differences between cells. To test two cells against each other, "
    "paired by seed, give their run directories to `testbed compare`.",
    "Files: sweep.csv has one row per cell, seed and metric (tidy); cells.csv one row per cell with every metric's statistics; "
    "numbers are written exactly (shortest repr), empty where undefined.",
]
