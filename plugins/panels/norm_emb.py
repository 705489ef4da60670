"""Normalized embeddings Z(x, t) = norm(E(x) + P(t)) with the query q as an arrow: the
attention score of a pair is its alignment with q, so this shows where attention can focus.
The arrow keeps q's direction at a fixed length (its norm is written beside it), so a long
query does not squeeze the points."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.patches import Circle

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel, TablePoints


class NormalizedEmbeddings(Panel):
    title = "Normalized Z(x,t) and query q"

    def points(self, q):
        t = q.tables["z"]
        r = math.sqrt(q.run.arch.d)
        frame = np.array([[-r, -r], [r, r]], dtype=t.dtype)  # the circle stays whole, the arrow inside
        return np.concatenate([t.reshape(t.shape[0], -1, 2), np.broadcast_to(frame, (t.shape[0], 2, 2))], 1)

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        r = math.sqrt(q.run.arch.d)  # RMS-normalized vectors lie on the circle of radius sqrt(d)
        ax.add_patch(Circle((0, 0), r, fill=False, lw=0.5, ls=":", color="0.5"))
        self.table = TablePoints(self, ax, q)
        self.arrow = self.keep(ax.quiver([0], [0], [1], [0], angles="xy", scale_units="xy", scale=1, color="red",
                                         width=0.012, zorder=5, label="query q"))
        self.length = 0.9 * r
        self.norm = self.keep(ax.text(0.05, 0.03, "", transform=ax.transAxes, fontsize=6, color="red"))

    def update(self, q, i):
        self.table.update(q.tables["z"][i])
        qv = q.params["query"][i]
        n = float(np.hypot(*qv))
        u = qv * (self.length / n) if n > 0 else qv
        self.arrow.set_UVC([u[0]], [u[1]])
        self.norm.set_text(f"query q (|q| = {n:.3g})")


@plugin("norm_emb", Params)
def norm_emb(params: Params):
    """Normalized embeddings Z(x, t) with the query drawn as a red arrow."""
    return NormalizedEmbeddings(params)
