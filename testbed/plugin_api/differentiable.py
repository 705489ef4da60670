"""What norms and activations share: a function applied inside the hand-written training step,
differentiated there by the plugin's own vector-Jacobian product when it has one, by autograd
otherwise. The training step derives every other gradient by hand (see
`testbed.engine.gradients`), so these pluggable pieces are the only place autograd may run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

Backward = Callable[[torch.Tensor], torch.Tensor]


class Differentiable(ABC):
    """A function of one tensor with an optional hand-written backward pass."""

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The output, of x's shape. Do not modify x in place."""

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """d(loss)/dx given grad = d(loss)/dy, where y = self(x); all three of x's shape.

        Optional. By default autograd differentiates `__call__` (in training, from the very
        forward pass whose output the model uses, so nothing is computed twice). Override it
        with a closed form to save autograd's bookkeeping; return a new tensor (or `grad`
        itself) and leave x, y and grad unchanged."""
        return autograd_forward(self, x)[1](grad)

    def forward_and_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        """self(x) and the map grad -> vjp(x, self(x), grad).

        Optional: a plugin with its own `vjp` may override it to keep what the forward pass
        computed for the backward (a norm's radius) instead of computing it twice. It must give
        the very values of `__call__` and `vjp`."""
        y = self(x)
        return y, lambda g: self.vjp(x, y, g)

    @classmethod
    def has_own_vjp(cls) -> bool:
        return cls.vjp is not Differentiable.vjp


def autograd_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
    """fn(x), detached, and the map from d(loss)/d(output) to d(loss)/dx through autograd."""
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(leaf)
    if y is leaf:  # the identity: nothing to differentiate
        return x, lambda g: g
    return y.detach(), lambda g: torch.autograd.grad(y, leaf, g)[0]


def forward_and_backward(fn: Differentiable, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
    """fn(x) and the map from d(loss)/d(output) to d(loss)/dx: the plugin's own vjp when it
    overrides it, else autograd from this same forward pass."""
    if fn.has_own_vjp():
        return fn.forward_and_vjp(x)
    return autograd_forward(fn, x)
