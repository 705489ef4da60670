"""Sequence embeddings xi of the probe sentences: colour by prefix, marker by class. Learning
shows as these points gathering into one cluster per prefix count pattern."""

from __future__ import annotations

from testbed.plugin import Params, plugin
from testbed.render.panel import Panel, SentencePoints, class_legend


class SequenceEmbeddings(Panel):
    title = "Sequence embeddings xi"

    include_origin = False  # the clusters matter here, not the distance to the origin

    def points(self, q):
        return q.trace["xi"]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.pts = SentencePoints(self, ax, q)
        class_legend(ax, q.run.p)

    def update(self, q, i):
        self.pts.update(q.trace["xi"][i])


@plugin("seq_emb", Params)
def seq_emb(params: Params):
    """Sequence embeddings xi of the probe sentences (colour: prefix, marker: class)."""
    return SequenceEmbeddings(params)
