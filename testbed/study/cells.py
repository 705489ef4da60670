"""A study file expanded into its cells: one validated scenario per combination of base scenario
and axis values, every cell checked before anything trains; a cell that fails validation is
one line naming the study file, the cell and the field."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.comparison.inputs import with_probes
from testbed.config import scenario as scenario_mod
from testbed.config.overrides import apply_overrides
from testbed.config.scenario import parse_seeds
from testbed.config.validation_errors import ScenarioError, printable
from testbed.errors import UserError
from testbed.rundir import scenarios
from testbed.study import study_file

SCENARIO_AXIS = "scenario"  # the axis of the base scenarios, when a study has several


@dataclass(frozen=True)
class CellSpec:
    index: int
    label: str  # e.g. "model.hidden=8, optimizer.lr=0.001"
    values: dict[str, Any]  # axis -> value
    scenario: Any  # validated, with the study's seeds and the probes the analysis reads


@dataclass(frozen=True)
class Study:
    path: Path  # the study file
    spec: study_file.StudyFile
    seeds: list[int]
    axes: list[str]
    cells: list[CellSpec]

    @property
    def name(self) -> str:
        return self.spec.name


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={value_text(v)}" for k, v in values.items()) or "(one cell)"


def load(
    path: str | Path,
    seeds: str | Sequence[int] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    axes: Sequence[str] | Mapping[str, list] = (),
) -> Study:
    """Read a study file and validate every cell. `seeds` replaces the file's; `overrides`
    (`--set` strings or a mapping) apply to every cell and may not name an axis; `axes`
    (`--axis FIELD=[v1, v2]` strings or a mapping) replace the values of axes of the file (a
    coarser grid first, the rest later: the store keeps what is done)."""
    path = Path(path)
    data = scenario_mod.read_yaml(path)
    replaced = _axis_values(axes)
    unknown = [f for f in replaced if f not in (data.get("axes") or {})]
    if unknown:
        raise UserError(f"--axis {printable(unknown[0])}: not an axis of {path} (its axes: {', '.join(data.get('axes') or {}) or 'none'})")
    if replaced:
        data["axes"] = {**data["axes"], **replaced}
    spec = study_file.parse(data, str(path))
    files = spec.scenario_files()
    several = len(files) > 1
    axes = ([SCENARIO_AXIS] if several else []) + spec.axis_names()
    cli_fields = _override_fields(overrides)
    for field in cli_fields:
        if field in spec.axis_names():
            raise UserError(f"--set {printable(field)}: is an axis of {path}; a study varies it")
    bases = {label: _base(path, label, file) for label, file in files.items()}
    chosen = _seeds(path, spec, seeds, bases)
    cells: list[CellSpec] = []
    for label, raw in bases.items():
        for combo in itertools.product(*spec.factors()):
            values = ({SCENARIO_AXIS: label} if several else {}) | {k: v for choice in combo for k, v in choice.items()}
            index = len(cells)
            cell_label = _label(values)
            fields = {k: v for k, v in values.items() if k != SCENARIO_AXIS}
            cells.append(CellSpec(index, cell_label, values, _cell_scenario(path, index, cell_label, raw, spec.set, overrides, fields, chosen)))
    return Study(path, spec, chosen, axes, cells)


def _axis_values(axes: Sequence[str] | Mapping[str, list]) -> dict[str, Any]:
    if isinstance(axes, Mapping):
        return dict(axes)
    out = {}
    for item in axes:
        field, sep, raw = item.partition("=")
        try:
            values = yaml.safe_load(raw) if sep else None
        except yaml.YAMLError:
            values = None
        if not isinstance(values, list):
            raise UserError(f"--axis {printable(item)}: expected FIELD=[v1, v2, ...]")
        out[field.strip()] = values
    return out


def _override_fields(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    if isinstance(overrides, Mapping):
        return [str(k).strip() for k in overrides]
    return [item.partition("=")[0].strip() for item in overrides]


def _base(study: Path, label: str, file: str) -> dict:
    where = Path(file)
    if not where.is_absolute():
        where = study.parent / where
    try:
        return scenario_mod.anchored(scenario_mod.read_yaml(where), where.parent)
    except UserError as exc:
        raise UserError(f"{study}: scenarios.{label}: {exc}") from None


def _seeds(study: Path, spec, seeds, bases: dict[str, dict]) -> list[int]:
    if seeds is not None:
        try:
            return parse_seeds(list(seeds) if isinstance(seeds, range) else seeds)
        except ValueError as exc:
            raise UserError(f"--seeds: {exc}") from None
    if spec.seeds is not None:
        return list(spec.seeds)
    first = next(iter(bases.values()))
    try:
        return parse_seeds(first.get("seeds", "0-9"))
    except ValueError as exc:
        raise UserError(f"{study}: seeds of the first scenario: {exc}") from None


def _cell_scenario(study: Path, index: int, label: str, raw: dict, fixed: dict, overrides, fields: dict, seeds: list[int]):
    where = f"{study}: cell {index} ({label})"
    try:
        anchored = scenario_mod.anchored  # a source run's path: relative to the file or command line that names it
        data = anchored(apply_overrides(copy.deepcopy(raw), fixed), study.parent)
        data = anchored(apply_overrides(data, overrides), Path.cwd())
        data = anchored(apply_overrides(data, fields), study.parent)
        data["seeds"] = seeds
        scenario = scenarios.validate(data, where)
    except ScenarioError:
        raise
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    return with_probes(scenario)
