"""Whether a warm start's source (`model.init: {run: ...}` or `{scenario: ...}`) can start this
scenario's model on its seeds: checked when the scenario is validated, before any training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from testbed.config.checks import Problem, token_count
from testbed.config.schema import Scenario, WarmStart
from testbed.config.validation_errors import ScenarioError
from testbed.engine.model import parameter_shapes
from testbed.errors import UserError
from testbed.rundir.warm_start import Source

LoadSource = Callable[[str, list[int]], Scenario]  # a source scenario file on these seeds, validated in full


def problems(scenario: Scenario, load_source: LoadSource) -> list[Problem]:
    init = scenario.model.init
    if not isinstance(init, WarmStart):
        return []
    try:
        source = Source.read(init.run) if init.run is not None else _scenario_source(init.scenario or "", list(scenario.seeds), load_source)
    except UserError as exc:
        field, _, message = str(exc).partition(": ")
        return [(field, message)]
    return source.problems(_shapes(scenario, token_count(scenario)), list(scenario.seeds), init.epoch, init.keep_tokens)


def _shapes(scenario: Scenario, tokens: int) -> dict[str, tuple[int, ...]]:
    m = scenario.model
    return parameter_shapes(m.d, m.hidden, tokens, scenario.task.seq_len)


def _scenario_source(path: str, seeds: list[int], load_source: LoadSource) -> Source:
    """What the run of a source scenario will hold (parameter shapes, snapshot epochs), known
    before it is trained."""
    try:
        source = load_source(path, seeds)
    except ScenarioError as exc:
        raise UserError(f"model.init.scenario: {exc.problems[0][0]}: {exc.problems[0][1]} (in {path})") from None
    except UserError as exc:
        raise UserError(f"model.init.scenario: {exc}") from None
    snapshots = next((p for p in source.probes if p.name == "snapshots"), None)
    if snapshots is None:
        raise UserError(f"model.init.scenario: {path} has no snapshots probe, so its runs keep no weights to start from")
    epochs = source.training.epochs
    kept = [e for e in range(epochs + 1) if snapshots.keeps(e, epochs)]  # the probe's own rule
    return Source(Path(path), _shapes(source, token_count(source)), kept, seeds)
