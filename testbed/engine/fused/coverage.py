"""Which scenarios the fused engine trains, and the engine a scenario gets.

The fused kernels implement the built-in norms, activations and update rules themselves, so a
scenario runs there only if each of its plugins is one of those (checked on the built objects,
so a third-party plugin that reuses a built-in name is not mistaken for it). Curricula act
through the loop both engines share (the stage's data, resets, the `scored` restriction), so
every curriculum is covered. Probes see the run through the hooks (parameters, step losses, the
applied gradient, evaluations); the ones listed in PROBES are checked to read nothing else.
"""

from __future__ import annotations

import sys

from testbed.config.schema import Scenario
from testbed.errors import UserError

ENGINES = ("reference", "fused", "auto")
PROBES = ("metrics", "step_loss", "spikes", "snapshots", "grad_norms")


def _builtin(obj, module: str, *names: str) -> bool:
    """Whether obj is an instance of one of the built-in classes `names` of testbed_plugins.`module`
    (by name: importing the plugins here would close an import cycle through validation)."""
    kind = type(obj)
    return kind.__module__ == f"testbed_plugins.{module}" and kind.__name__ in names


def uncovered(scenario: Scenario, norms: dict, activation, rule, probes: list) -> str | None:
    """What in this scenario the fused engine does not cover (a phrase naming it), else None.
    `norms` maps each norm site to its built object; the others are the built objects too."""
    training = scenario.training
    if training.compile:
        return "training.compile"
    if training.device != "cpu":
        return f"training.device {training.device} (the fused engine runs on the CPU)"
    m = scenario.model
    refs = {"embedding_norm": m.embedding_norm or m.norm, "mlp_norm": m.mlp_norm or m.norm}
    for site, obj in norms.items():
        if not _builtin(obj, "norms", "RadialNorm", "SmoothNorm", "Identity"):
            return f"norm '{refs[site].name}' ({site})"
    act = m.activation
    approximate = getattr(act, "approximate", "none")
    if not (_builtin(activation, "activations", "Gelu", "Relu") and act.name in ("gelu", "relu") and approximate == "none"):
        return f"activation '{act.name}'" + (f" (approximate: {approximate})" if approximate != "none" else "")
    if not _builtin(rule, "optimizers", "Adam", "SGD"):
        return f"optimizer '{scenario.optimizer.name}'"
    for probe, ref in zip(probes, scenario.probes):
        if ref.name not in PROBES or not type(probe).__module__.startswith("testbed_plugins."):
            return f"probe '{ref.name}'"
    return None


def choose(scenario: Scenario, components) -> str:
    """'fused' or 'reference' for `training.engine`: auto falls back with one line on stderr
    naming what made it; fused refuses a scenario it does not cover."""
    wanted = scenario.training.engine
    if wanted == "reference":
        return "reference"
    arch = components.arch
    norms = {"embedding_norm": arch.embedding_norm, "mlp_norm": arch.mlp_norm}
    missing = uncovered(scenario, norms, arch.activation, components.optimizer.rule, components.probes)
    if missing is None:
        return "fused"
    if wanted == "fused":
        raise UserError(f"training.engine fused does not cover {missing}; use engine: auto (falls back to the reference engine) or reference")
    print(f"training.engine auto: {missing} is not covered by the fused engine; training on the reference engine", file=sys.stderr)
    return "reference"
