"""Transformed sequences zeta = xi + MLP(norm(xi)) of the probe sentences: the MLP should carry
each cluster towards the token embedding of its class."""

from __future__ import annotations

from testbed.plugin import Params, plugin
from testbed.render.panel import Panel, SentencePoints, class_legend


class TransformedSequences(Panel):
    title = "Transformed sequences zeta"

    def points(self, q):
        return q.trace["zeta"]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.pts = SentencePoints(self, ax, q)
        class_legend(ax, q.run.p)

    def update(self, q, i):
        self.pts.update(q.trace["zeta"][i])


@plugin("zeta", Params)
def zeta(params: Params):
    """Transformed sequences zeta of the probe sentences."""
    return TransformedSequences(params)
