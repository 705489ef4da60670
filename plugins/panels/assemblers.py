"""MLP assemblers u_i (columns of fc2): heavy or many correlated assemblers make the MLP's
response steep, one of the papers' causes of loss spikes."""

from __future__ import annotations

from testbed.plugin_api.base import Params, plugin
from testbed_plugins.panels.receptors import NeuronVectors


class Assemblers(NeuronVectors):
    title = "MLP assemblers u_i"

    def vectors(self, q):
        return q.params["mlp.fc2.weight"].transpose(0, 2, 1)


@plugin("assemblers", Params)
def assemblers(params: Params):
    """MLP assemblers u_i, same colour as the neuron's receptor."""
    return Assemblers(params)
