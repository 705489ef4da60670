"""Built-in MLP activations."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from testbed.hookspecs import hookimpl
from testbed.plugin import Params, plugin


class GeluParams(Params):
    approximate: Literal["none", "tanh"] = Field("none", description="exact (erf) or tanh approximation")


@plugin("gelu", GeluParams)
def gelu(params: GeluParams):
    """x * Phi(x), Phi the Gaussian CDF (the papers' choice)."""
    approximate = params.approximate
    return lambda x: torch.nn.functional.gelu(x, approximate=approximate)


@plugin("relu")
def relu(params: Params):
    """max(x, 0)."""
    return torch.relu


@plugin("silu")
def silu(params: Params):
    """x * sigmoid(x)."""
    return torch.nn.functional.silu


@plugin("tanh")
def tanh(params: Params):
    """tanh(x)."""
    return torch.tanh


@hookimpl
def testbed_activations():
    return [gelu, relu, silu, tanh]
