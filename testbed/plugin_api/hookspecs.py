"""Pluggy hook specifications: one registration hook per plugin kind.

A package provides plugins by naming a module in the entry-point group ``testbed.plugins``;
that module defines `@hookimpl` functions, named after these hooks, that each return a list of
`Plugin` objects made with the `@plugin` decorator. Every plugin has a pydantic parameter
model (a subclass of `Params`), which validates its part of a scenario file, and a build
function receiving the validated parameters and returning an instance of its kind's base
class (checked: anything else stops the command with one `error:` line naming the plugin).
A command may build a plugin several times (to validate a scenario, to key the run store, to
train, to rebuild a run's model), so build must be cheap, deterministic and free of side
effects: work belongs to the object's methods.

Each hook's docstring says where a scenario chooses the kind (its first line) and what `build`
receives and when it is called; what the built object must do is written once, in its base
class's docstrings. docs/plugins.md renders both, with a complete example of each kind.
"""

from __future__ import annotations

import pluggy

from testbed.plugin_api.activation import Activation
from testbed.plugin_api.base import Plugin
from testbed.plugin_api.curriculum import Curriculum
from testbed.plugin_api.norm import Norm
from testbed.plugin_api.panel import Panel
from testbed.plugin_api.probe import Probe
from testbed.plugin_api.update_rule import UpdateRule

PROJECT = "testbed"
ENTRY_POINT_GROUP = "testbed.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class TestbedSpecs:
    """The registration hooks, called once per process when the registry first loads."""

    @hookspec
    def testbed_norms(self) -> list[Plugin]:
        """`model.norm` (both sites), `model.embedding_norm`, `model.mlp_norm` (one site each).

        ``build(params) -> Norm``, with the validated parameters: one object for each site
        when a run starts, and again wherever a run's model is rebuilt (`testbed render`,
        spike forensics, the loss barrier). The contract: `Norm` (and `Differentiable`).
        """
        ...

    @hookspec
    def testbed_activations(self) -> list[Plugin]:
        """`model.activation`.

        ``build(params) -> Activation``, when a run starts and wherever its model is rebuilt.
        The contract: `Activation` (and `Differentiable`).
        """
        ...

    @hookspec
    def testbed_optimizers(self) -> list[Plugin]:
        """`optimizer`.

        ``build(params) -> UpdateRule``, when a run starts and again at every epoch where the
        curriculum resets the optimizer. The parameter model must subclass `OptimizerParams`,
        whose fields (`lr`, `lr_multipliers`, `clip_grad_norm`, `warmup_steps`) the engine
        applies around the rule. The contract: `UpdateRule`.
        """
        ...

    @hookspec
    def testbed_curricula(self) -> list[Plugin]:
        """`curriculum`.

        ``build(params, task) -> Curriculum``: besides its parameters, build receives the
        scenario's validated `task` section (`seq_len`, `sparsity`, `p`, `n_train`, `n_test`,
        `test_split`). It is built when the scenario is validated, again to train, to render
        and to analyse a run. The contract: `Curriculum`.
        """
        ...

    @hookspec
    def testbed_probes(self) -> list[Plugin]:
        """`probes` (a list, which replaces the default `[metrics, step_loss, spikes]`).

        ``build(params) -> Probe``, for each entry of the list when a run starts, and by the
        run store, which asks whether it overrides `Probe.combine` and calls that alone. The
        contract: `Probe`, and `RunInfo` and `Evaluation` for what it is given.
        """
        ...

    @hookspec
    def testbed_panels(self) -> list[Plugin]:
        """`testbed render --panels` (names only).

        ``build(params) -> Panel``, with the parameter model's defaults, for each figure (and
        in each worker process of a video). The contract: `Panel`, whose docstring lists what a
        frame's `Quantities` hold.
        """
        ...


# Plugin kind -> hook name; the order is the order of `testbed plugins`.
KINDS: dict[str, str] = {
    "norm": "testbed_norms",
    "activation": "testbed_activations",
    "optimizer": "testbed_optimizers",
    "curriculum": "testbed_curricula",
    "probe": "testbed_probes",
    "panel": "testbed_panels",
}

# Plugin kind -> the class every object its plugins build must be an instance of.
BASES: dict[str, type] = {
    "norm": Norm,
    "activation": Activation,
    "optimizer": UpdateRule,
    "curriculum": Curriculum,
    "probe": Probe,
    "panel": Panel,
}
