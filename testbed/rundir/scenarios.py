"""Scenarios validated in full, as every command takes them: the configuration's schema and
checks (`testbed.config.scenario`) plus what only the engine (`testbed.engine.scenario_checks`)
and run directories (a warm start's source, `warm_start_checks`) can tell, all problems in one
error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.config import scenario as config
from testbed.config.checks import Check, Problem
from testbed.config.schema import Scenario
from testbed.engine import scenario_checks
from testbed.errors import UserError
from testbed.plugin_api.registry import Registry
from testbed.rundir import warm_start_checks


def validate(data: dict[str, Any], source: str = "scenario", registry: Registry | None = None) -> Scenario:
    return config.validate(data, source, registry, _checks(()))


def load(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (), seeds: Any = None, registry: Registry | None = None) -> Scenario:
    return config.load(path, overrides, seeds, registry, _checks(()))


def revised(scenario: Scenario, **fields: Any) -> Scenario:
    return config.revised(scenario, _checks(()), **fields)


def _checks(sources: tuple[str, ...]) -> tuple[Check, ...]:
    """The engine's and the warm start's checks; `sources` is the chain of source scenarios
    being validated (each warm-starts the next), so that a cycle is refused, not followed."""

    def load_source(path: str, seeds: list[int]) -> Scenario:
        if path in sources:
            raise UserError(f"model.init.scenario: {path} starts from itself (through its own model.init)")
        return config.load(path, seeds=seeds, checks=_checks((*sources, path)))

    def warm_start(scenario: Scenario, registry: Registry) -> list[Problem]:
        return warm_start_checks.problems(scenario, load_source)

    return (scenario_checks.problems, warm_start)
