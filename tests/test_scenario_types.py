"""The typed scenario: plain classes whose plugin fields the registry validates, a suggestion
for a mistyped key, and the checks only the engine can make kept out of the configuration."""

from __future__ import annotations

import pytest

from testbed.config import scenario as config
from testbed.config.plugin_ref import NormRef, OptimizerRef, ProbeRef
from testbed.config.schema import ModelConfig, Scenario
from testbed.config.validation_errors import ScenarioError
from testbed.plugin_api.registry import default_registry
from testbed.rundir import scenarios


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as raised:
        scenarios.validate(data)
    return raised.value.problems


def test_a_validated_scenario_is_a_scenario_whose_plugin_fields_are_references_and_the_plugins_options():
    sc = scenarios.validate({"name": "typed", "model": {"norm": {"name": "smooth", "radius": 0.5}}, "optimizer": "sgd"})
    assert isinstance(sc, Scenario) and isinstance(sc.model, ModelConfig)
    norm = sc.model.norm
    assert isinstance(norm, NormRef) and isinstance(norm, default_registry().get("norm", "smooth").params)
    assert (norm.name, norm.radius) == ("smooth", 0.5)
    assert isinstance(sc.optimizer, OptimizerRef) and sc.optimizer.name == "sgd"
    assert all(isinstance(p, ProbeRef) for p in sc.probes) and [p.name for p in sc.probes] == ["metrics", "step_loss", "spikes"]


def test_the_plain_class_validates_with_the_installed_plugins_as_the_bound_one_does():
    data = {"name": "plain", "model": {"norm": "rms", "activation": {"name": "gelu", "approximate": "tanh"}}}
    assert Scenario.model_validate(data).model_dump() == scenarios.validate(data).model_dump()


@pytest.mark.parametrize("data, expected", [
    ({"training": {"epoch": 3}}, ("training.epoch", "unknown key; did you mean training.epochs?")),
    ({"nam": "x"}, ("nam", "unknown key; did you mean name?")),
    ({"model": {"norm": {"name": "rms", "epss": 1e-6}}}, ("model.norm.epss", "unknown key; did you mean model.norm.eps?")),
    ({"probes": ["metrics", {"name": "snapshots", "everyy": 2}]}, ("probes.1.everyy", "unknown key; did you mean probes.1.every?")),
    ({"model": {"init": {"run": "r", "epochh": 1}}}, ("model.init.epochh", "unknown key; did you mean model.init.epoch?")),
    ({"task": {"colour": "red"}}, ("task.colour", "unknown key")),  # nothing close: no guess
])  # fmt: skip
def test_a_mistyped_key_gets_the_closest_known_key_of_its_section(data, expected):
    assert expected in problems(data)


def test_the_engines_checks_come_with_validation_in_full_not_with_the_configuration_alone():
    data = {"name": "lr", "optimizer": {"name": "adam", "lr_multipliers": {"attention": 2.0}}}
    assert config.validate(data).optimizer.lr_multipliers == {"attention": 2.0}  # the configuration cannot know the parameters
    assert [field for field, _ in problems(data)] == ["optimizer.lr_multipliers.attention"]


def test_json_schema_names_every_plugin_of_every_kind():
    text = str(config.json_schema())
    registry = default_registry()
    for kind in ("norm", "activation", "optimizer", "curriculum", "probe"):
        for name in registry.names(kind):
            assert f"{kind.title()}_{name}" in text
