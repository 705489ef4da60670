"""Sequence embeddings xi of the probe sentences: colour by prefix, marker by class. Learning
shows as these points gathering into one cluster per prefix count pattern."""

from __future__ import annotations

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import SentencePanel


class SequenceEmbeddings(SentencePanel):
    title = "Sequence embeddings xi"
    quantity = "xi"
    include_origin = False  # the clusters matter here, not the distance to the origin


@plugin("seq_emb", Params)
def seq_emb(params: Params):
    """Sequence embeddings xi of the probe sentences (colour: prefix, marker: class)."""
    return SequenceEmbeddings(params)
