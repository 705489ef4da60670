"""The fused engine's coverage of a scenario before any training: its plugins built here, for
scenario validation and the store key (apart from `coverage`, which the loop imports)."""

from __future__ import annotations

from testbed.engine.fused.coverage import uncovered
from testbed.engine.loop import build


def scenario_gap(scenario, registry) -> str | None:
    """What in `scenario` the fused engine does not cover, else None (`coverage.uncovered`)."""
    return uncovered(scenario, build(scenario, registry))
