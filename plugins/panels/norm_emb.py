"""Normalized embeddings Z(x, t) = norm(E(x) + P(t)) with the query q as an arrow: the
attention score of a pair is its alignment with q, so this shows where attention can focus."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.patches import Circle

from testbed.plugin import Params, plugin
from testbed.render.panel import Panel, TablePoints


class NormalizedEmbeddings(Panel):
    title = "Normalized Z(x,t) and query q"

    def points(self, q):
        t = q.tables["z"]
        return np.concatenate([t.reshape(t.shape[0], -1, 2), q.params["query"][:, None, :]], 1)

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        r = math.sqrt(q.run.arch.d)  # RMS-normalized vectors lie on the circle of radius sqrt(d)
        ax.add_patch(Circle((0, 0), r, fill=False, lw=0.5, ls=":", color="0.5"))
        self.table = TablePoints(self, ax, q)
        self.arrow = self.keep(ax.quiver([0], [0], [1], [0], angles="xy", scale_units="xy", scale=1, color="red",
                                         width=0.012, zorder=5, label="query q"))
        ax.legend(handles=[self.arrow], fontsize=5, loc="upper right", framealpha=0.6)

    def update(self, q, i):
        self.table.update(q.tables["z"][i])
        qv = q.params["query"][i]
        self.arrow.set_UVC([qv[0]], [qv[1]])


@plugin("norm_emb", Params)
def norm_emb(params: Params):
    """Normalized embeddings Z(x, t) with the query drawn as a red arrow."""
    return NormalizedEmbeddings(params)
