"""comparison.json: which runs a report was made from, so a report directory can itself be an
input of `testbed compare` (re-analysed and redrawn, its learning-rate grid included, without
retraining anything)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from testbed.config.scenario import format_seeds
from testbed.errors import UserError

MANIFEST = "comparison.json"


def is_report_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def _stored(path: Path, report: Path) -> str:
    """Runs inside the report are stored relative to it (the report can move); others absolute."""
    try:
        return path.relative_to(report).as_posix()
    except ValueError:
        return str(path.resolve())


def write(
    folder: Path, report: Path, seeds: list[int], grid: list[float] | None, main: list[tuple[str, Path]], sweep: dict[str, dict[float, Path]]
) -> None:
    """Into `folder` (the staging folder of the report that will be at `report`): `main`, the
    (label, run directory) of every input, and `sweep`, label -> lr -> run directory."""
    data = {
        "seeds": format_seeds(seeds),
        "lr_grid": grid,
        "inputs": [{"label": label, "run": _stored(run, report)} for label, run in main],
        "lr_runs": {label: {repr(lr): _stored(run, report) for lr, run in runs.items()} for label, runs in sweep.items()},
    }
    (folder / MANIFEST).write_text(json.dumps(data, indent=1) + "\n")


@dataclass
class Expanded:
    """The inputs with every report directory replaced by the runs it compared."""

    paths: list  # paths, and scenario objects as given
    known_runs: dict[tuple[Path, float], Path] = field(default_factory=dict)  # (main run, lr) -> grid run
    grid: list[float] | None = None  # the first report's grid


def expand(items: list) -> Expanded:
    """Every report directory among `items` replaced by its runs; other items as they are."""
    out = Expanded([])
    for item in items:
        path = Path(item) if isinstance(item, (str, os.PathLike)) else None
        if path is None or not is_report_dir(path):
            out.paths.append(path if path is not None else item)
            continue
        try:
            data = json.loads((path / MANIFEST).read_text())
            inputs = [(item["label"], path / item["run"]) for item in data["inputs"]]
            lr_runs = {label: {float(lr): path / run for lr, run in runs.items()} for label, runs in data.get("lr_runs", {}).items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path / MANIFEST}: not a comparison manifest ({exc})") from None
        for label, run in inputs:
            out.paths.append(run)
            for lr, grid_run in lr_runs.get(label, {}).items():
                out.known_runs[(run.resolve(), lr)] = grid_run
        if out.grid is None and data.get("lr_grid"):
            out.grid = [float(g) for g in data["lr_grid"]]
    return out
