"""Transformed sequences zeta = xi + MLP(norm(xi)) of the probe sentences: the MLP should carry
each cluster towards the token embedding of its class."""

from __future__ import annotations

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import SentencePanel


class TransformedSequences(SentencePanel):
    title = "Transformed sequences zeta"
    quantity = "zeta"


@plugin("zeta", Params)
def zeta(params: Params):
    """Transformed sequences zeta of the probe sentences."""
    return TransformedSequences(params)
