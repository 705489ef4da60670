"""The value transform V Z(x, t): how sequence embeddings are built, and how V can collapse
the pairs that faulty attention still looks at."""

from __future__ import annotations

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import TablePanel


class ValueTransform(TablePanel):
    title = "Value transform V Z(x,t)"
    table = "vz"


@plugin("value", Params)
def value(params: Params):
    """Value transform V Z(x, t) of every (token, position) pair."""
    return ValueTransform(params)
