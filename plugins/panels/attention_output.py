"""Attention outputs z_A (= xi here: the value matrix sits inside attention) of random
sentences, coloured by the plain sum of their first k tokens (second paper, Figure 4): a model
that counts shows one cluster per sum."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel


class AttentionOutput(Panel):
    title = "Attention output z_A by prefix sum"

    include_origin = False  # the clusters matter here, not the distance to the origin

    def points(self, q):
        return q.cloud_xi

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        sums = q.cloud_tokens[:, : q.run.k].sum(1)
        top = q.run.k * (q.run.p - 1)
        cmap = colormaps["plasma"]
        colors = cmap(0.9 * sums / max(top, 1))
        self.sc = self.keep(ax.scatter(np.zeros(len(sums)), np.zeros(len(sums)), c=colors, s=7, linewidths=0, zorder=3))
        shown = np.unique(sums)
        if len(shown) > 8:
            shown = shown[np.linspace(0, len(shown) - 1, 8).round().astype(int)]
        handles = [Line2D([], [], marker="o", ls="", color=cmap(0.9 * s / max(top, 1)), ms=3, label=str(s)) for s in shown]
        ax.legend(handles=handles, title="sum", fontsize=5, title_fontsize=5, loc="upper right", framealpha=0.6,
                  ncol=2, handletextpad=0.1, columnspacing=0.4, borderpad=0.3)

    def update(self, q, i):
        self.sc.set_offsets(q.cloud_xi[i])


@plugin("attention_output", Params)
def attention_output(params: Params):
    """Attention outputs z_A of random sentences, coloured by the sum of their first k tokens."""
    return AttentionOutput(params)
