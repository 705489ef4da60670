"""E(x) + P(t) for every (token, position) pair, before the norm."""

from __future__ import annotations

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import TablePanel


class EmbeddingSum(TablePanel):
    title = "Embeddings E(x) + P(t)"
    table = "x"


@plugin("emb_sum", Params)
def emb_sum(params: Params):
    """E(x) + P(t), labelled (x, t) on a few positions."""
    return EmbeddingSum(params)
