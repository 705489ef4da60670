"""Position embeddings P(t): circles for the summed positions t <= k, squares for the rest.
The ideal circuit collapses each group to one point (invariance to permutations and suffixes)."""

from __future__ import annotations

import numpy as np

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel, position_legend
from testbed.render.style import PREFIX_MARKER, SUFFIX_MARKER, position_colors


class PositionEmbeddings(Panel):
    title = "Position embeddings P(t)"

    def points(self, q):
        return q.params["pos_emb"]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        L, k = q.run.arch.seq_len, q.run.k
        colors = position_colors(L)
        self.parts = []
        for marker, ts in ((PREFIX_MARKER, np.arange(min(k, L))), (SUFFIX_MARKER, np.arange(k, L))):
            if len(ts):
                sc = ax.scatter(np.zeros(len(ts)), np.zeros(len(ts)), c=colors[ts], marker=marker, s=30,
                                edgecolors="k", linewidths=0.4, zorder=3)
                self.parts.append((self.keep(sc), ts))
        self.shown = sorted({0, k - 1, min(k, L - 1), L - 1})
        self.texts = [self.keep(ax.text(0, 0, f" {t + 1}", fontsize=6, zorder=4, clip_on=True)) for t in self.shown] if self.labels else []
        position_legend(ax, k)

    def update(self, q, i):
        P = q.params["pos_emb"][i]
        for sc, ts in self.parts:
            sc.set_offsets(P[ts])
        for t, txt in zip(self.shown, self.texts):
            txt.set_position(P[t])


@plugin("pos_emb", Params)
def pos_emb(params: Params):
    """Position embeddings P(t): circles t <= k, squares t > k."""
    return PositionEmbeddings(params)
