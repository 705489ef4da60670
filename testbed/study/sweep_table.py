"""The numbers of a finished study: every seed's outcomes in every cell (sweep.csv, one row per
cell, seed and metric) and their summary over seeds, a row per cell (cells.csv).

The outcomes are those of `testbed compare` (`testbed.analysis.outcomes`), computed from each
cell's run directory, so a study and a comparison of the same runs agree to the digit. Files are
written with every float in its shortest exact form (Python's repr), so reading them back gives
the very numbers they were written from; NaN (an accuracy never reached) is an empty field.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.analysis import stats
from testbed.analysis.outcomes import METRICS, RunData, outcomes
from testbed.errors import UserError
from testbed.rundir.reader import Run

# Columns of sweep.csv and cells.csv besides the axes; an axis may not take one of these names.
RESERVED = ("cell", "label", "seed", "metric", "value", "n_seeds", "last_epoch")
STATISTICS = ("mean", "sd", "median", "q25", "q75")


@dataclass(frozen=True)
class Cell:
    """One combination of axis values of a study, and the run directory holding its seeds."""

    index: int  # 0..n-1 in study order
    label: str  # e.g. "model.hidden=8, optimizer.lr=0.001"
    values: dict[str, Any]  # axis name -> this cell's value (JSON-able); "scenario": the base scenario's label
    run: Run  # the cell's run directory (holds every seed of the study)


@dataclass(frozen=True)
class AnalysingCell:
    """Progress of a study's analysis: `done` of `cells` cells read, the last one `label`."""

    done: int
    cells: int
    label: str


@dataclass(frozen=True)
class CellOutcomes:
    """Each seed's outcomes in one cell."""

    cell: Cell
    last_epoch: int  # the cell's last evaluated epoch; "never reached" counts as one past it
    values: dict[str, np.ndarray]  # metric key -> (S,) in the order of the study's seeds

    @property
    def censor_at(self) -> float:
        return float(self.last_epoch + 1)


def value_text(value: Any) -> str:
    """An axis value as text: dicts and lists as compact JSON, floats exact, others as str()."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def value_key(value: Any) -> str:
    """A hashable identity of an axis value (dicts and lists are not hashable)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _column_value(value: Any) -> Any:
    """An axis value as a table holds it: scalars as they are, dicts and lists as JSON text."""
    return value_text(value) if isinstance(value, (dict, list, tuple)) else value


def check(cells: list[Cell], axes: list[str]) -> None:
    """Programming errors of the caller, said plainly: no cells, an axis named like a column, a
    cell without a value for every axis."""
    if not cells:
        raise ValueError("a study needs at least one cell")
    clash = [a for a in axes if a in RESERVED]
    if clash:
        raise ValueError(f"axis {', '.join(clash)}: the name of a column of sweep.csv ({', '.join(RESERVED)})")
    for c in cells:
        missing = [a for a in axes if a not in c.values]
        if missing:
            raise ValueError(f"cell {c.index} ({c.label}): no value for axis {', '.join(missing)}")


def read_cell(cell: Cell, seeds: list[int]) -> CellOutcomes:
    """One cell's per-seed outcomes over `seeds`, from its run directory."""
    # A copy of the caller's Run: the step losses it reads go with it, instead of staying cached
    # in the caller's cells (60 cells of 100 seeds would hold gigabytes).
    run = copy.copy(cell.run)
    present = set(run.metrics["seed"].tolist())
    missing = [s for s in seeds if s not in present]
    if missing:
        raise UserError(f"{run.path}: no seed {', '.join(map(str, missing))} (cell {cell.index}: {cell.label})")
    data = RunData.of(run, seeds)
    return CellOutcomes(cell, data.total_epochs, outcomes(data))


def read(cells: list[Cell], seeds: list[int], progress: Callable[[AnalysingCell], None] | None = None, workers: int | None = None) -> list[CellOutcomes]:
    """Each cell's per-seed outcomes over `seeds`, in the order of `cells`. Cells are read
    `workers` at a time (default: up to 2 with the cores for it): reading and spike detection
    spend most of their time in numpy and torch, which run beside each other in threads (1.4x
    faster on 2 cores), and the results do not depend on it. `progress` hears of each cell read,
    in order, from the calling thread."""
    seeds = [int(s) for s in seeds]
    workers = workers or max(1, min(2, os.cpu_count() or 1))
    found = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            for f in pool.map(lambda c: read_cell(c, seeds), cells):
                found.append(f)
                if progress is not None:
                    progress(AnalysingCell(len(found), len(cells), f.cell.label))
        except BaseException:  # a broken cell (or ^C): the cells not yet started are not read
            pool.shutdown(cancel_futures=True)
            raise
    return found


def tidy(found: list[CellOutcomes], axes: list[str], seeds: list[int]) -> pd.DataFrame:
    """sweep.csv as a DataFrame: cell, label, one column per axis, seed, metric, value; rows by
    cell, then seed, then metric (in the order of `testbed.analysis.outcomes.METRICS`)."""
    keys = [m.key for m in METRICS]
    S, M = len(seeds), len(keys)
    n = len(found) * S * M
    columns: dict[str, Any] = {
        "cell": np.repeat([f.cell.index for f in found], S * M),
        "label": np.repeat(np.array([f.cell.label for f in found], dtype=object), S * M),
    }
    for a in axes:
        per_cell = np.empty(len(found), dtype=object)
        per_cell[:] = [_column_value(f.cell.values[a]) for f in found]
        columns[a] = np.repeat(per_cell, S * M)
    columns["seed"] = np.tile(np.repeat(np.asarray(seeds, dtype=np.int64), M), len(found))
    columns["metric"] = np.tile(np.array(keys, dtype=object), len(found) * S)
    # (S, M) per cell, row-major: seed by seed, every metric of a seed together
    values = [np.column_stack([np.asarray(f.values[k], dtype=np.float64) for k in keys]).ravel() for f in found]
    columns["value"] = np.concatenate(values) if values else np.empty(0)
    frame = pd.DataFrame(columns)
    for a in axes:
        frame[a] = _typed(frame[a])  # type: ignore[arg-type]  # a column of the frame is a Series; pandas' types do not follow this column through
    assert len(frame) == n
    return frame


def _typed(column: pd.Series) -> pd.Series:
    """An axis column as pandas would read it back when its values share a type (ints, floats,
    bools, strings), else left as objects."""
    kinds = {type(v) for v in column}
    if kinds == {bool}:
        return column.astype(bool)
    if kinds == {int}:
        return column.astype(np.int64)
    if kinds <= {int, float} and kinds:
        return column.astype(np.float64)
    if kinds == {str}:
        return column.astype(object)
    return column


def _quantiles(x: np.ndarray) -> tuple[float, float, float]:
    if x.size == 0:
        return math.nan, math.nan, math.nan
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float(q25), float(q50), float(q75)


def summarize(found: list[CellOutcomes], axes: list[str]) -> pd.DataFrame:
    """cells.csv as a DataFrame, a row per cell: cell, label, the axes, n_seeds, last_epoch, then
    per metric `<key>_mean`, `_sd`, `_median`, `_q25`, `_q75` over the seeds whose value is
    finite; rates (success, diverged) also `_wilson_lo` and `_wilson_hi` (Wilson 95% interval);
    epochs to an accuracy also `_reached` (how many seeds got there), and their statistics count
    a seed that never got there as `last_epoch + 1` (a restricted mean, as `testbed compare`)."""
    rows = []
    for f in found:
        row: dict[str, Any] = {"cell": f.cell.index, "label": f.cell.label}
        row.update({a: _column_value(f.cell.values[a]) for a in axes})
        row["n_seeds"] = len(next(iter(f.values.values())))
        row["last_epoch"] = f.last_epoch
        for m in METRICS:
            x = np.asarray(f.values[m.key], dtype=np.float64)
            if m.kind == "time":
                row[f"{m.key}_reached"] = int(np.isfinite(x).sum())
                x = stats.censor(x, f.censor_at)
            x = x[np.isfinite(x)]
            q25, median, q75 = _quantiles(x)
            row[f"{m.key}_mean"] = float(x.mean()) if x.size else math.nan
            row[f"{m.key}_sd"] = float(x.std(ddof=1)) if x.size > 1 else (0.0 if x.size else math.nan)
            row[f"{m.key}_median"] = median
            row[f"{m.key}_q25"] = q25
            row[f"{m.key}_q75"] = q75
            if m.kind == "binary":
                rate = stats.estimate(x, "binary")
                row[f"{m.key}_wilson_lo"] = rate.low
                row[f"{m.key}_wilson_hi"] = rate.high
        rows.append(row)
    frame = pd.DataFrame(rows)
    for a in axes:
        frame[a] = _typed(frame[a])  # type: ignore[arg-type]  # a column of the frame is a Series; pandas' types do not follow this column through
    return frame


def _field(value: Any) -> str:
    """A CSV field: floats in their shortest exact form, NaN empty."""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, np.bool_):
        return str(bool(value))
    return value_text(value)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """`frame` as CSV, every float exact (pandas' own writer may round them)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(frame.columns)
        for row in frame.itertuples(index=False, name=None):
            w.writerow([_field(v) for v in row])
