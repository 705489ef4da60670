"""Scenarios: a YAML file (or a mapping) with `--set` overrides and a seed list, validated by
the schema (`testbed.config.schema`) and the checks across fields (`testbed.config.checks`),
every problem reported at once, each with its path in the file.

The names a caller needs (the schema's classes, seed specs, YAML I/O) are importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from testbed.config.checks import Check, Problem, check
from testbed.config.overrides import apply_overrides
from testbed.config.scenario_curriculum import build_curriculum, curriculum_switches
from testbed.config.schema import ModelConfig, OutputConfig, Scenario, Strict, TaskConfig, TrainingConfig, WarmStart, json_schema, scenario_model
from testbed.config.seeds import MAX_SEEDS, Seeds, format_seeds, parse_seeds
from testbed.config.validation_errors import ScenarioError, format_errors
from testbed.config.yaml_io import read_yaml, to_yaml
from testbed.errors import UserError
from testbed.plugin_api.registry import Registry, default_registry

__all__ = [
    "MAX_SEEDS", "Check", "ModelConfig", "OutputConfig", "Problem", "Scenario", "ScenarioError", "Seeds", "Strict", "TaskConfig",
    "TrainingConfig", "WarmStart", "anchored", "build_curriculum", "curriculum_switches", "format_seeds", "json_schema", "load",
    "parse_seeds", "raw", "read_yaml", "revised", "scenario_model", "to_yaml", "validate",
]  # fmt: skip


def validate(data: dict[str, Any], source: str = "scenario", registry: Registry | None = None, checks: Sequence[Check] = ()) -> Scenario:
    """Validate a raw mapping into a Scenario, raising ScenarioError with every problem; `checks`
    are those of the layers above (the engine's, a warm start's source)."""
    registry = registry or default_registry()
    try:
        scenario = scenario_model(registry).model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, format_errors(exc, scenario_model(registry))) from None
    problems = check(scenario, registry, checks)
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def revised(scenario: Scenario, checks: Sequence[Check] = (), **fields: Any) -> Scenario:
    """A copy of a validated scenario with some top-level fields replaced, validated again:
    scenarios are frozen, and a changed one must pass the same checks as a file."""
    data = scenario.model_dump(mode="json")
    data.update(fields)
    return validate(data, scenario.name, checks=checks)


def raw(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (), seeds: Any = None) -> dict[str, Any]:
    """The mapping a scenario file makes with its overrides (`--set` strings, or dotted keys to
    values) and `seeds` ('0-99', '0,3,7' or a list; replaces the file's), before validation."""
    path = Path(path)
    data = anchored(read_yaml(path), path.parent)  # a source run named in the file: relative to the file
    data = anchored(apply_overrides(data, overrides), Path.cwd())  # named by --set: relative to where the user is
    if seeds is not None:
        try:
            data["seeds"] = parse_seeds(seeds)
        except ValueError as exc:
            raise UserError(f"--seeds: {exc}") from None
    return data


def load(
    path: str | Path,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    seeds: Any = None,
    registry: Registry | None = None,
    checks: Sequence[Check] = (),
) -> Scenario:
    """Read, override and validate a scenario file (see `raw`)."""
    return validate(raw(path, overrides, seeds), str(path), registry, checks)


def anchored(data: Any, base: Path) -> Any:
    """`model.init.run` made absolute against `base` when relative (the folder of the file
    that named it, or the working directory for --set), so that the resolved scenario names
    the source run wherever it is read from."""
    model = data.get("model") if isinstance(data, dict) else None
    init = model.get("init") if isinstance(model, dict) else None
    for field in ("run", "scenario"):
        if isinstance(init, dict) and isinstance(init.get(field), str) and init[field] and not Path(init[field]).is_absolute():
            init[field] = str((base / init[field]).resolve())
    return data
