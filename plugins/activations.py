"""Built-in MLP activations, each with its derivative for the hand-written training step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field

from testbed.plugin_api import Activation, Params, hookimpl, plugin

aten = torch.ops.aten


class TorchActivation(Activation):
    """An elementwise torch function and its vector-Jacobian product vjp(x, y, grad) (ATen's
    backward of the same function, so the hand-written step matches autograd exactly)."""

    def __init__(self, fn: Callable, vjp: Callable):
        self.fn, self._vjp = fn, vjp

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return self._vjp(x, y, grad)


class GeluParams(Params):
    approximate: Literal["none", "tanh"] = Field("none", description="exact (erf) or tanh approximation")


@plugin("gelu", GeluParams)
def gelu(params: GeluParams):
    """x * Phi(x), Phi the Gaussian CDF (the papers' choice)."""
    a = params.approximate
    return TorchActivation(lambda x: aten.gelu(x, approximate=a), lambda x, y, g: aten.gelu_backward(g, x, approximate=a))


@plugin("relu")
def relu(params: Params):
    """max(x, 0)."""
    return TorchActivation(torch.relu, lambda x, y, g: aten.threshold_backward(g, y, 0))


@plugin("silu")
def silu(params: Params):
    """x * sigmoid(x)."""
    return TorchActivation(aten.silu, lambda x, y, g: aten.silu_backward(g, x))


@plugin("tanh")
def tanh(params: Params):
    """tanh(x)."""
    return TorchActivation(torch.tanh, lambda x, y, g: aten.tanh_backward(g, y))


@hookimpl
def testbed_activations():
    return [gelu, relu, silu, tanh]
