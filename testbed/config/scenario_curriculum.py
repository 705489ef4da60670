"""A scenario's curriculum, built from its plugin and read the same way whatever the plugin."""

from __future__ import annotations

from testbed.config.schema import Scenario
from testbed.plugin_api.curriculum import Curriculum
from testbed.plugin_api.registry import Registry, default_registry


def build_curriculum(scenario: Scenario, registry: Registry | None = None) -> Curriculum:
    registry = registry or default_registry()
    ref = scenario.curriculum
    return registry.get("curriculum", ref.name).build(ref, scenario.task)


def curriculum_switches(scenario: Scenario) -> list[tuple[int, int, int]]:
    """(epoch, p before, p after) for each epoch whose p differs from the epoch before's, asked
    of the scenario's curriculum plugin (its `p_at`), so any curriculum is read the same way."""
    curriculum = build_curriculum(scenario)
    switches, before = [], curriculum.p_at(1)
    for epoch in range(2, scenario.training.epochs + 1):
        p = curriculum.p_at(epoch)
        if p != before:
            switches.append((epoch, before, p))
            before = p
    return switches
