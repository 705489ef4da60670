"""Pluggy hook specifications: one registration hook per plugin kind.

A package provides plugins by exposing a module with `@hookimpl` functions under the
entry-point group ``testbed.plugins``; each function returns a list of `Plugin` objects.
"""

from __future__ import annotations

import pluggy

PROJECT = "testbed"
ENTRY_POINT_GROUP = "testbed.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class TestbedSpecs:
    """The registration hooks. Each returns a list of `testbed.plugin_api.base.Plugin`."""

    @hookspec
    def testbed_norms(self) -> list:
        """Norms: build(params) -> callable mapping x[..., d] to a tensor of the same shape."""

    @hookspec
    def testbed_activations(self) -> list:
        """MLP activations: build(params) -> elementwise callable."""

    @hookspec
    def testbed_optimizers(self) -> list:
        """Optimizers: build(params) -> `testbed.engine.optimizer.UpdateRule` acting on (seeds, P) tensors."""

    @hookspec
    def testbed_curricula(self) -> list:
        """Curricula: build(params, task) -> `testbed.plugin_api.curriculum.Curriculum`."""

    @hookspec
    def testbed_probes(self) -> list:
        """Probes: build(params) -> `testbed.plugin_api.probe.Probe` observing a training run."""

    @hookspec
    def testbed_panels(self) -> list:
        """Panels of `testbed render`: build(params) -> `testbed.plugin_api.panel.Panel`."""


# Plugin kind -> hook name; the order is the order of `testbed plugins`.
KINDS: dict[str, str] = {
    "norm": "testbed_norms",
    "activation": "testbed_activations",
    "optimizer": "testbed_optimizers",
    "curriculum": "testbed_curricula",
    "probe": "testbed_probes",
    "panel": "testbed_panels",
}
