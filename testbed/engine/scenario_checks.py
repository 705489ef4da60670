"""What only the engine can check of a scenario before training: that its optimizer's
lr_multipliers name the model's parameters, and that the fused engine covers it when asked for."""

from __future__ import annotations

from testbed.config.checks import Problem
from testbed.config.schema import Scenario
from testbed.engine.fused.validation import scenario_gap
from testbed.engine.model import PARAM_GROUPS
from testbed.plugin_api.registry import Registry


def problems(scenario: Scenario, registry: Registry) -> list[Problem]:
    found: list[Problem] = []
    for key in getattr(scenario.optimizer, "lr_multipliers", {}) or {}:
        if not any(key == g or g.startswith(key + ".") for g in PARAM_GROUPS):
            found.append((f"optimizer.lr_multipliers.{key}", f"unknown module; use a parameter or a prefix of one (e.g. mlp): {', '.join(PARAM_GROUPS)}"))
    if scenario.training.engine == "fused":
        gap = scenario_gap(scenario, registry)
        if gap is not None:
            found.append(("training.engine", f"fused does not cover {gap}; use auto (falls back to the reference engine) or reference"))
    return found
