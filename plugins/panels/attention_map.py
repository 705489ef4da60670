"""Attention map: the attention of every probe sentence (rows, grouped by prefix) over the
positions (columns); the dashed line separates the k summed positions from the rest."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import PowerNorm

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel


class AttentionMap(Panel):
    title = "Attention map (probe sentences)"
    xlabel = "position t"
    ylabel = "sentence (by prefix)"
    geometric = False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        N, L = q.trace["attn"].shape[1:]
        self.im = self.keep(ax.imshow(np.zeros((N, L)), aspect="auto", cmap="Greys", norm=PowerNorm(0.5, 0, 1),
                                      interpolation="nearest", extent=(0.5, L + 0.5, N - 0.5, -0.5)))
        ax.axvline(q.run.k + 0.5, color="red", lw=0.8, ls="--")
        ax.set_xticks(range(1, L + 1, max(1, L // 6)))
        # a thin strip of each sentence's colour on the left, as in the point panels
        ax.imshow(q.sentences.colors[:, None, :], aspect="auto", extent=(0.5 - 0.06 * L, 0.5, N - 0.5, -0.5), interpolation="nearest")
        ax.set_xlim(0.5 - 0.06 * L, L + 0.5)
        ax.set_yticks([])

    def update(self, q, i):
        self.im.set_data(q.trace["attn"][i])


@plugin("attention_map", Params)
def attention_map(params: Params):
    """Attention of each probe sentence over positions (rows: sentences, columns: positions)."""
    return AttentionMap(params)
