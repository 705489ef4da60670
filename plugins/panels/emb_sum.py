"""E(x) + P(t) for every (token, position) pair, before the norm."""

from __future__ import annotations

from testbed.plugin import Params, plugin
from testbed.render.panel import Panel, TablePoints, position_legend


class EmbeddingSum(Panel):
    title = "Embeddings E(x) + P(t)"

    def points(self, q):
        t = q.tables["x"]
        return t.reshape(t.shape[0], -1, 2)

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.table = TablePoints(self, ax, q)
        position_legend(ax, q.run.k)

    def update(self, q, i):
        self.table.update(q.tables["x"][i])


@plugin("emb_sum", Params)
def emb_sum(params: Params):
    """E(x) + P(t), labelled (x, t) on a few positions."""
    return EmbeddingSum(params)
