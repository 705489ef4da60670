"""The value transform V Z(x, t): how sequence embeddings are built, and how V can collapse
the pairs that faulty attention still looks at."""

from __future__ import annotations

from testbed.plugin import Params, plugin
from testbed.render.panel import Panel, TablePoints, position_legend


class ValueTransform(Panel):
    title = "Value transform V Z(x,t)"

    def points(self, q):
        t = q.tables["vz"]
        return t.reshape(t.shape[0], -1, 2)

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.table = TablePoints(self, ax, q)
        position_legend(ax, q.run.k)

    def update(self, q, i):
        self.table.update(q.tables["vz"][i])


@plugin("value", Params)
def value(params: Params):
    """Value transform V Z(x, t) of every (token, position) pair."""
    return ValueTransform(params)
