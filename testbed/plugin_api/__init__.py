"""Everything a plugin author needs, in one place (docs/plugins.md is the manual).

The machinery: hook specifications (`hookspecs`: where a scenario chooses each kind, what its
build receives), the registry that resolves plugins through pluggy entry points (`registry`),
the plugin and its parameters (`base`), and the base class of each of the six kinds, whose
docstrings are each kind's contract (docs/plugins.md's reference is generated from them).
"""

from typing import TYPE_CHECKING, Any

from testbed.engine import arithmetic
from testbed.plugin_api.activation import Activation
from testbed.plugin_api.base import Params, Plugin, plugin
from testbed.plugin_api.curriculum import Curriculum
from testbed.plugin_api.hookspecs import ENTRY_POINT_GROUP, hookimpl
from testbed.plugin_api.norm import Norm
from testbed.plugin_api.panel import Panel
from testbed.plugin_api.probe import Evaluation, Probe, RunInfo
from testbed.plugin_api.update_rule import OptimizerParams, UpdateRule

__all__ = [
    "ENTRY_POINT_GROUP",
    "Activation",
    "Curriculum",
    "Evaluation",
    "Norm",
    "OptimizerParams",
    "Panel",
    "Params",
    "Plugin",
    "Probe",
    "Quantities",
    "RunInfo",
    "UpdateRule",
    "arithmetic",
    "hookimpl",
    "plugin",
]

if TYPE_CHECKING:
    from testbed.render.quantities import Quantities


def __getattr__(name: str) -> Any:
    """`Quantities`, the frame a panel draws, is read on first use: it is computed by the render
    engine, which imports the registry, which imports this package."""
    if name == "Quantities":
        from testbed.render.quantities import Quantities

        return Quantities
    raise AttributeError(f"module 'testbed.plugin_api' has no attribute {name!r}")
