"""What a comparison gives back to Python: a progress event when its analysis begins, and at
the end where its report is, the runs it compared, and its statistics as DataFrames (`table()`:
the rows of statistics.csv with a verdict for each paired test; `outcomes()`: each seed's
metrics, as in comparison.csv)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.analysis import stats
from testbed.comparison import report as rep
from testbed.comparison.pairwise import Analysis, difference_name
from testbed.rundir.reader import Run


@dataclass(frozen=True)
class Analysing:
    """Progress of a comparison: training is done, the analysis of `runs` runs (and of the
    learning-rate grid, if any) on `seeds` seeds begins."""

    runs: int
    seeds: int
    grid: bool


TABLE_COLUMNS = [
    "row", "scenario", "versus", "metric", "n", "statistic", "value", "spread", "ci_low", "ci_high", "p", "p_holm", "test", "detectable", "verdict",
]


@dataclass
class Comparison:
    """A finished comparison. `runs` maps each input's label to its run (those trained for the
    comparison live under the report's runs/)."""

    path: Path  # the report directory
    analysis: Analysis
    runs: dict[str, Run]
    per_seed: dict[str, dict[str, np.ndarray]]  # label -> metric key -> (S,) values
    sweep_tables: list[rep.Table]  # learning-rate grid tables, as in the report
    seconds: float
    report: rep.Report

    @property
    def labels(self) -> list[str]:
        return list(self.analysis.labels)

    @property
    def seeds(self) -> list[int]:
        return list(self.analysis.seeds)

    @property
    def verdicts(self) -> dict[tuple[str, str], str]:
        """(a, b) -> one sentence on where b is better or worse than a."""
        return dict(self.analysis.verdicts)

    def table(self) -> pd.DataFrame:
        """Every estimate and paired test, one row each, with the numbers of statistics.csv:
        `row` 'estimate' (a scenario's metric over its seeds: value, spread, 95% CI) or 'paired'
        (scenario minus `versus`, seed by seed: difference, 95% CI, p, Holm-adjusted p, test,
        `detectable`: the smallest difference its seeds detect with 80% power at p < 0.05),
        and for paired rows the `verdict`: 'better', 'worse' or 'same' for the scenario against
        `versus` at Holm p < 0.05."""
        a = self.analysis
        rows = []
        for label in a.labels:
            for m in a.metrics:
                e = a.estimates[label][m.key]
                rows.append(["estimate", label, None, m.key, e.n, e.statistic, e.estimate, e.spread, e.low, e.high, math.nan, math.nan, None, math.nan, None])
        for (x, y), tests in a.tests.items():
            for m in a.metrics:
                t = tests[m.key]
                rows.append(["paired", y, x, m.key, t.n, difference_name(m), t.difference, math.nan, t.low, t.high, t.p, t.p_adjusted, t.test,
                             t.detectable, stats.direction(m, t)])
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    def outcomes(self) -> pd.DataFrame:
        """Each seed's metrics, one row per scenario and seed (the values of comparison.csv;
        epochs to an accuracy never reached are NaN)."""
        frames = [
            pd.DataFrame({"scenario": label, "seed": self.seeds} | {m.key: self.per_seed[label][m.key] for m in self.analysis.metrics})
            for label in self.labels
        ]
        return pd.concat(frames, ignore_index=True)
