"""What an activation plugin builds: the elementwise nonlinearity of the model's MLP."""

from __future__ import annotations

from abc import abstractmethod

import torch

from testbed.plugin_api.differentiable import Differentiable


class Activation(Differentiable):
    """Base class of MLP activations. Required: `__call__(x)`; optional: `vjp(x, y, grad)` and
    `forward_and_vjp(x)` (see `Differentiable` for when each is called, why the backward is
    hand-written, and what none may do).

    `x` holds the MLP's pre-activations, (S, N, hidden) in training (N the batch size, or a
    piece of the data set in evaluation; other leading shapes when `testbed render` draws
    fields). The function must be elementwise: each output depends on the input at the same
    position only, so `vjp` multiplies `grad` by the derivative at x.
    """

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Required. x -> act(x) elementwise, same shape and dtype. Do not modify x in place."""
