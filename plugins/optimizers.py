"""Built-in optimizers as elementwise update rules on (S, P) tensors.

Each uses only correctly rounded operations (mul, add, div, sqrt; no fused multiply-add), so a
seed's update does not depend on which other seeds share the tensor.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, field_validator, model_validator

from testbed.plugin_api import OptimizerParams, UpdateRule, hookimpl, plugin


class AdamParams(OptimizerParams):
    betas: tuple[float, float] = Field((0.9, 0.999), description="moment decay rates, each in [0, 1)")
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient (Adam) or decoupled (AdamW)")

    @field_validator("betas")
    @classmethod
    def _in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError("betas must each be in [0, 1)")
        return betas


class AdamWParams(AdamParams):
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay")


class Adam(UpdateRule):
    """Adam (Kingma & Ba), as torch.optim.Adam computes it; `decoupled` gives AdamW."""

    def __init__(self, params: AdamParams, decoupled: bool):
        self.b1, self.b2 = params.betas
        self.eps = params.eps
        self.wd = params.weight_decay
        self.decoupled = decoupled
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def update(self, flat: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor, step: int) -> None:
        if self.m is None:
            self.m, self.v = torch.zeros_like(flat), torch.zeros_like(flat)
        g = grad
        if self.wd and not self.decoupled:
            g = g + flat * self.wd
        if self.wd and self.decoupled:
            flat.mul_(1.0 - lr * self.wd)
        self.m.mul_(self.b1).add_(g * (1.0 - self.b1))
        self.v.mul_(self.b2).add_(g * g * (1.0 - self.b2))
        bc1 = 1.0 - self.b1**step
        bc2_sqrt = math.sqrt(1.0 - self.b2**step)
        denom = self.v.sqrt().div_(bc2_sqrt).add_(self.eps)
        flat.sub_(self.m / denom * (lr / bc1))


@plugin("adam", AdamParams)
def adam(params: AdamParams):
    """Adam with optional L2 weight decay (defaults: the papers' betas 0.9, 0.999)."""
    return Adam(params, decoupled=False)


@plugin("adamw", AdamWParams)
def adamw(params: AdamWParams):
    """AdamW: Adam with decoupled weight decay (default 0.01)."""
    return Adam(params, decoupled=True)


class SGDParams(OptimizerParams):
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDParams:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class SGD(UpdateRule):
    """SGD with heavy-ball or Nesterov momentum, as torch.optim.SGD (no dampening)."""

    def __init__(self, params: SGDParams):
        self.mu = params.momentum
        self.nesterov = params.nesterov
        self.wd = params.weight_decay
        self.buf: torch.Tensor | None = None

    def update(self, flat: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor, step: int) -> None:
        g = grad + flat * self.wd if self.wd else grad
        if self.mu:
            if self.buf is None:
                self.buf = g.clone()
            else:
                self.buf.mul_(self.mu).add_(g)
            g = g + self.buf * self.mu if self.nesterov else self.buf
        flat.sub_(g * lr)


@plugin("sgd", SGDParams)
def sgd(params: SGDParams):
    """Stochastic gradient descent with momentum."""
    return SGD(params)


@hookimpl
def testbed_optimizers():
    return [adam, adamw, sgd]
