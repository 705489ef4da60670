"""What the experiment-tracking probes (`tensorboard`, `mlflow`) share: the resolved scenario as
flat parameters, each seed's evaluations kept until the run directory exists (a probe learns
where it is only in `finish`), and one clear line when the optional library is missing."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml
from pydantic import Field

from testbed.config.scenario import to_yaml
from testbed.config.schema import Scenario
from testbed.errors import UserError
from testbed.plugin_api.base import Params
from testbed.plugin_api.probe import Evaluation, Probe, stack_evaluations, unstack_evaluations

METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")  # named as in metrics.csv, with p
INSTALL = "pip install 'testbed[tracking]'"


class TrackingParams(Params):
    every: int = Field(1, ge=1, description="log every this many epochs (and at 0 and the last)")


def require(module: str, probe: str) -> ModuleType:
    """Import an optional library when a scenario uses the probe that needs it: a missing one is
    bad input (a scenario naming a probe whose extra is not installed), not a crash."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"probe '{probe}' needs the tracking extra ({reason}): {INSTALL}") from None


def scenario_parameters(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario exactly as scenario.yaml writes it, flattened to dotted keys
    (`optimizer.lr`, `model.norm.radius`, `probes.0.name`) with YAML scalar values; an empty
    mapping or list stays one key whose value is {} or []."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        elif isinstance(node, list) and node:
            for i, value in enumerate(node):
                walk(f"{prefix}.{i}", value)
        else:
            flat[prefix] = node

    walk("", yaml.safe_load(to_yaml(scenario)))
    return flat


def as_text(value: Any) -> str:
    """A parameter value as text: strings as they are, anything else as JSON (null, true, 0.003, {})."""
    return value if isinstance(value, str) else json.dumps(value)


def run_directory(out: Path) -> Path:
    """The run directory `out` becomes. Probes finish inside the hidden staging folder
    `.NAME.partial`, renamed to NAME once the run is complete (testbed.rundir.writer)."""
    name = out.name
    if name.startswith(".") and name.endswith(".partial"):
        return (out.parent / name[1 : -len(".partial")]).resolve()
    return out.resolve()


class TrackingProbe(Probe):
    """Keeps (wall time, evaluation) of every `every`-th epoch, 0 and the last included, for
    `finish` to log: the run directory, where TensorBoard's files go and which MLflow records,
    is known only then, and a run that fails leaves nothing behind in a tracking store."""

    def __init__(self, params: TrackingParams):
        self.every = params.every
        self.logged: list[tuple[float, Evaluation]] = []

    def eval_epochs(self, epochs: int) -> set[int]:
        return set(range(0, epochs + 1, self.every)) | {epochs}

    def start(self, info) -> None:
        super().start(info)
        self.started = time.time()

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        # Other probes may ask for evaluations at other epochs: log only this probe's own.
        if evaluation is not None and (epoch % self.every == 0 or epoch == self.info.epochs):
            self.logged.append((time.time(), evaluation))

    def state_dict(self) -> dict:
        """The start and the evaluations with their wall times, as measured before the stop."""
        return {"started": self.started, "wall_times": [t for t, _ in self.logged], "evaluations": stack_evaluations([ev for _, ev in self.logged])}

    def load_state_dict(self, state: dict) -> None:
        self.started = state["started"]
        self.logged = list(zip(state["wall_times"], unstack_evaluations(state["evaluations"])))

    def values(self, ev: Evaluation, seed_index: int) -> dict[str, float]:
        """One seed's metrics at one evaluation: p and the columns of metrics.csv."""
        return {"p": float(ev.p), **{name: float(getattr(ev, name)[seed_index]) for name in METRICS}}
