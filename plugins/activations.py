"""Built-in MLP activations, each with its derivative for the hand-written training step.

Each is written out of elementwise torch functions whose rounding is the same on every x86-64
CPU with AVX2 (`+ - * /`, exp, erf, tanh: see testbed.engine.arithmetic): torch's own `gelu`
goes to oneDNN, whose code differs between AVX2 and AVX-512 CPUs, and its `silu` and `sigmoid`
kernels round differently under the two. The derivatives are the closed forms of the very
functions computed, so the hand-written step agrees with autograd (tests/test_gradients.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field

from testbed.plugin_api import Activation, Params, hookimpl, plugin

Backward = Callable[[torch.Tensor], torch.Tensor]

SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715  # the tanh approximation's coefficient (Hendrycks & Gimpel)


class Elementwise(Activation):
    """An activation given by `forward_and_vjp(x) -> (y, backward)`, where backward maps
    d(loss)/dy to d(loss)/dx from what the forward pass kept. The forward pass works out of
    place (autograd differentiates it in the reference model); the backward may work in place
    on the tensors it makes."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_and_vjp(x)[0]

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return self.forward_and_vjp(x)[1](grad)

    def forward_and_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        raise NotImplementedError


class Gelu(Elementwise):
    """x Phi(x), Phi the standard normal CDF: exactly through erf, or through tanh."""

    def __init__(self, approximate: str):
        self.approximate = approximate

    def forward_and_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        if self.approximate == "tanh":
            return self._tanh(x)
        cdf = ((x * SQRT_HALF).erf() + 1.0) * 0.5
        y = x * cdf

        def backward(g: torch.Tensor) -> torch.Tensor:
            # d/dx x Phi(x) = Phi(x) + x phi(x)
            pdf = (x * x).mul_(-0.5).exp_().mul_(INV_SQRT_2PI)
            return g * pdf.mul_(x).add_(cdf)

        return y, backward

    @staticmethod
    def _tanh(x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        x2 = x * x
        t = ((x2 * GELU_CUBIC + 1.0) * x * SQRT_2_OVER_PI).tanh()  # tanh(c (x + a x^3))
        half = (t + 1.0) * 0.5
        y = x * half

        def backward(g: torch.Tensor) -> torch.Tensor:
            # d/dx x (1 + t) / 2 = (1 + t) / 2 + x (1 - t^2) c (1 + 3 a x^2) / 2
            inner = (x2 * (3.0 * GELU_CUBIC)).add_(1.0).mul_(SQRT_2_OVER_PI * 0.5)
            return g * (1.0 - t * t).mul_(inner).mul_(x).add_(half)

        return y, backward


class GeluParams(Params):
    approximate: Literal["none", "tanh"] = Field("none", description="exact (erf) or tanh approximation")


@plugin("gelu", GeluParams)
def gelu(params: GeluParams):
    """x * Phi(x), Phi the Gaussian CDF (the papers' choice)."""
    return Gelu(params.approximate)


class Relu(Elementwise):
    def forward_and_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        y = torch.relu(x)
        return y, lambda g: torch.where(y > 0, g, 0.0)


@plugin("relu")
def relu(params: Params):
    """max(x, 0)."""
    return Relu()


class Silu(Elementwise):
    def forward_and_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        s = (x.neg().exp() + 1.0).reciprocal()  # sigmoid(x), written out
        y = x * s

        def backward(g: torch.Tensor) -> torch.Tensor:
            # d/dx x s(x) = s (1 + x (1 - s))
            return g * (1.0 - s).mul_(x).add_(1.0).mul_(s)

        return y, backward


@plugin("silu")
def silu(params: Params):
    """x * sigmoid(x)."""
    return Silu()


class Tanh(Elementwise):
    def forward_and_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        y = torch.tanh(x)
        return y, lambda g: g * (1.0 - y * y)


@plugin("tanh")
def tanh(params: Params):
    """tanh(x)."""
    return Tanh()


@hookimpl
def testbed_activations():
    return [gelu, relu, silu, tanh]
