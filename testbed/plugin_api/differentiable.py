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
    """A function of one tensor that the training step differentiates: what the `Norm` and
    `Activation` contracts share.

    Why a backward of its own: the reference engine's training step (`testbed.engine.gradients`)
    derives every gradient by hand, because autograd's bookkeeping costs more than this small
    model's arithmetic, and a pluggable function is the one piece it cannot derive. Each step
    calls `forward_and_vjp(x)` where the class overrides `vjp`, else runs `__call__` under
    autograd on a detached copy of x; either way it keeps the output and later maps
    d(loss)/d(output) back to d(loss)/dx. Without `vjp` a plugin is correct, only slower.

    Where it runs: in every training step and every evaluation, on `training.device`, in
    float32, the seed axis first (evaluation may pass a group of the seeds at a time); `testbed
    render`, spike forensics and the loss barrier call it again on the CPU, with frames or grid
    points in place of seeds. So it may not modify its input in place, keep state that changes
    between calls, draw random numbers, or let one seed's rows influence another's. A scenario
    using a third-party norm or activation trains on the reference engine: the fused engine
    implements the built-ins only (`training.engine: auto` falls back by itself).
    """

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Required. The output, a new tensor of x's shape and dtype on x's device; x stays
        unchanged. Called with autograd on or off (it must not depend on which)."""

    def vjp(self, x: torch.Tensor, y: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """Optional. d(loss)/dx given `grad` = d(loss)/dy, where y = self(x); all three of x's
        shape, and so is the result: a new tensor (or `grad` itself), leaving x, y and grad
        unchanged. It must agree with autograd on `__call__` (test it in float64).

        Overriding it takes the plugin off autograd in the training step (the engine then calls
        `forward_and_vjp`). The default differentiates `__call__` by autograd, so `vjp` works
        on any norm or activation (what tests compare a closed form with)."""
        return autograd_forward(self, x)[1](grad)

    def forward_and_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Backward]:
        """Optional, and used only where `vjp` is overridden too: (y, backward) with y = self(x)
        and backward(grad) = vjp(x, y, grad). The training step calls it once per site and step,
        runs the forward with y and later backward with d(loss)/dy.

        The default calls `__call__` and then `vjp`, which computes what both share twice (a
        norm's radius); override it to keep those from the forward for the backward. It must
        give the very values, bit for bit, of `__call__` and `vjp`: evaluation and rendering
        use `__call__`, the training step this."""
        y = self(x)
        return y, lambda g: self.vjp(x, y, g)

    @classmethod
    def has_own_vjp(cls) -> bool:
        """Whether the class overrides `vjp` (then the training step uses `forward_and_vjp`,
        else autograd). The engine's question; not to be overridden."""
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
