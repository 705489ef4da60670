"""The fused engine's coverage of a scenario before any training, for scenario validation and
the store key: the plugins built from the registry here (the loop, which builds them for
training, would close an import cycle through the configuration)."""

from __future__ import annotations

from testbed.config.schema import Scenario
from testbed.engine.fused.coverage import uncovered


def scenario_gap(scenario: Scenario, registry) -> str | None:
    """What in `scenario` the fused engine does not cover, else None (`coverage.uncovered`)."""
    m = scenario.model

    def made(kind: str, ref):
        return registry.get(kind, ref.name).build(ref)

    norms = {"embedding_norm": made("norm", m.embedding_norm or m.norm), "mlp_norm": made("norm", m.mlp_norm or m.norm)}
    probes = [made("probe", ref) for ref in scenario.probes]
    return uncovered(scenario, norms, made("activation", m.activation), made("optimizer", scenario.optimizer), probes)
