"""What a comparison compares: scenario files and scenario objects to train, run directories to
reuse, checked to be on one task and resolved to one list of seeds, so every comparison is
paired."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.config import scenario as scenario_mod
from testbed.config.overrides import apply_overrides
from testbed.config.scenario import format_seeds, parse_seeds
from testbed.config.schema import Scenario
from testbed.errors import UserError
from testbed.rundir import scenarios
from testbed.rundir.reader import Run

RUN_FILES = ("metrics.csv",)  # what a comparison needs of a run directory (step_loss.npz, where kept, gives the spike metrics)
REQUIRED_PROBES = ("metrics", "step_loss", "spikes")

Input = Path | Scenario  # a scenario file, a run or report directory, or a validated Scenario


@dataclass(frozen=True)
class Entry:
    label: str  # unique name in the comparison (the scenario's name unless two share it)
    source: Path | str  # the scenario file or run directory given, or "scenario object"
    scenario: Scenario  # validated Scenario (for a run directory: its resolved scenario.yaml)
    run_dir: Path | None  # an existing run to reuse, or None when the scenario must be trained


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "scenario.yaml").is_file()


def with_probes(scenario: Scenario):
    """The scenario with the probes a comparison reads added when missing."""
    names = [p.name for p in scenario.probes]
    missing = [name for name in REQUIRED_PROBES if name not in names]
    if not missing:
        return scenario
    return scenarios.revised(scenario, probes=[p.model_dump(mode="json") for p in scenario.probes] + missing)


def with_seeds(scenario: Scenario, seeds: list[int]):
    return scenario if list(scenario.seeds) == seeds else scenarios.revised(scenario, seeds=seeds)


def _load(item: Input, overrides: Sequence[str] | Mapping[str, Any]):
    """(scenario, run directory to reuse or None) of one input."""
    if isinstance(item, Scenario):  # a scenario built in Python: trained like a file, overrides applied
        if not overrides:
            return item, None
        return scenarios.validate(apply_overrides(item.model_dump(mode="json"), overrides), item.name), None
    path = Path(item)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        if not is_run_dir(path):
            raise UserError(f"{path}: not a run directory (no scenario.yaml) and not a scenario file")
        run = Run(path)
        run.require(*RUN_FILES, needed_by="compare")
        return run.scenario, path
    return scenarios.load(path, overrides), None


def _source(item: Input) -> Path | str:
    return "scenario object" if isinstance(item, Scenario) else Path(item)


def _labels(loaded: list[tuple[Path | str, Scenario]]) -> list[str]:
    """Scenario names, made unique with the file or folder name, then a counter."""
    names = [sc.name for _, sc in loaded]
    labels = []
    for (source, _), name in zip(loaded, names):
        where = source if isinstance(source, str) else source.stem if source.is_file() else source.name
        label = name if names.count(name) == 1 else f"{name} ({where})"
        labels.append(label)
    for i, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[i] = f"{label} #{labels[:i].count(label) + 1}"
    return labels


def final_task(scenario: Scenario) -> dict:
    """The task a run ends on: its fields, p the curriculum's at the last epoch."""
    task = scenario.task.model_dump()
    task["p"] = scenario_mod.build_curriculum(scenario).p_at(scenario.training.epochs)
    return task


def switch_epochs(scenario: Scenario) -> list[int]:
    """The first epochs of the curriculum's later stages (where p changes)."""
    return [epoch for epoch, _, _ in scenario_mod.curriculum_switches(scenario)]


def _task_differences(a, b) -> list[str]:
    """Differences of the final tasks: runs that reach one task by other curricula compare."""
    da, db = final_task(a), final_task(b)
    return [f"{'final p' if k == 'p' else 'task.' + k}: {db[k]} vs {da[k]}" for k in da if da[k] != db[k]]


def resolve(
    items: list[Input], seeds: str | Sequence[int] | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> tuple[list[Entry], list[int]]:
    """Check the inputs and settle the compared seeds: `seeds`, else the first input's.
    Scenarios are trained on those seeds; run directories must contain them. `overrides`
    (`--set` strings, or dotted keys to values) change every scenario that is trained."""
    if len(items) < 2:
        raise UserError(f"compare needs at least two scenario files or run directories, got {len(items)}")
    paths = [_source(item) for item in items]
    loaded = [_load(item, overrides) for item in items]
    if overrides and all(run_dir is not None for _, run_dir in loaded):
        raise UserError("--set: applies to scenario files only, and every input is a run directory (runs are reused, not retrained)")
    if seeds is not None:
        try:
            chosen = parse_seeds(seeds)
        except ValueError as exc:
            raise UserError(f"--seeds: {exc}") from None
    else:
        chosen = list(loaded[0][0].seeds)
    first_path, (first, _) = paths[0], loaded[0]
    for path, (sc, _) in zip(paths[1:], loaded[1:]):
        diffs = _task_differences(first, sc)
        if diffs:
            raise UserError(f"{path}: not the task of {first_path} ({'; '.join(diffs)}); compare needs runs that end on one task")
    entries = []
    labels = _labels([(p, sc) for p, (sc, _) in zip(paths, loaded)])
    for path, label, (sc, run_dir) in zip(paths, labels, loaded):
        if run_dir is not None:
            missing = sorted(set(chosen) - set(sc.seeds))
            if missing:
                raise UserError(
                    f"{path}: run directory has no seeds {format_seeds(missing)} (it has {format_seeds(list(sc.seeds))}); choose --seeds among them"
                )
        else:
            sc = with_seeds(with_probes(sc), chosen)
        entries.append(Entry(label, path, sc, run_dir))
    return entries, chosen
