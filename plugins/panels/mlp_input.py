"""The normed MLP input norm(xi) with each neuron's decision line w_i . m + b_i = 0 (in the
neuron's colour): a sentence close to a line is where a small step can flip the MLP's answer
(first paper, Figures 13-14)."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel, SentencePoints
from testbed.render.style import neuron_colors


class MlpInput(Panel):
    title = "Normed MLP input, neuron lines"

    def points(self, q):
        return q.trace["mlp_in"]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.reach = 4 * (extent[1] - extent[0])
        h = q.run.arch.hidden
        self.lines = self.keep(LineCollection(np.zeros((h, 2, 2)), colors=neuron_colors(h), linewidths=0.5, alpha=0.6, zorder=2))
        ax.add_collection(self.lines)
        self.pts = SentencePoints(self, ax, q, labels=False)

    def update(self, q, i):
        w, b = q.params["mlp.fc1.weight"][i], q.params["mlp.fc1.bias"][i]
        n2 = np.maximum((w * w).sum(1), 1e-12)
        foot = -(b / n2)[:, None] * w  # closest point of each line to the origin
        direction = np.stack([-w[:, 1], w[:, 0]], 1) / np.sqrt(n2)[:, None]
        self.lines.set_segments(np.stack([foot - self.reach * direction, foot + self.reach * direction], 1))
        self.pts.update(q.trace["mlp_in"][i])


@plugin("mlp_input", Params)
def mlp_input(params: Params):
    """Normed MLP input of the probe sentences, with every neuron's line w_i . m + b_i = 0."""
    return MlpInput(params)
