"""MLP receptors w_i (rows of fc1): one colour per neuron, shared with its assembler."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel
from testbed.render.style import neuron_colors

KEY = "mlp.fc1.weight"


class NeuronVectors(Panel):
    """Vectors of the h neurons as points with a thin spoke from the origin."""

    key, title = KEY, "MLP receptors w_i"

    def vectors(self, q) -> np.ndarray:
        return q.params[self.key]

    def points(self, q):
        return self.vectors(q)

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        h = q.run.arch.hidden
        colors = neuron_colors(h)
        self.spokes = self.keep(LineCollection(np.zeros((h, 2, 2)), colors=colors, linewidths=0.4, alpha=0.5, zorder=2))
        ax.add_collection(self.spokes)
        self.sc = self.keep(ax.scatter(np.zeros(h), np.zeros(h), c=colors, s=14, edgecolors="k", linewidths=0.3, zorder=3))

    def update(self, q, i):
        v = self.vectors(q)[i]
        self.spokes.set_segments(np.stack([np.zeros_like(v), v], 1))
        self.sc.set_offsets(v)


@plugin("receptors", Params)
def receptors(params: Params):
    """MLP receptors w_i, one colour per neuron (shared with assemblers)."""
    return NeuronVectors(params)
