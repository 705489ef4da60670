"""What an activation plugin builds: the elementwise nonlinearity of the model's MLP."""

from __future__ import annotations

from abc import abstractmethod

import torch

from testbed.plugin_api.differentiable import Differentiable


class Activation(Differentiable):
    """Base class of MLP activations. Required: `__call__(x)`. Optional: `vjp(x, y, grad)`
    (default: autograd differentiates `__call__`).

    `x` holds the MLP's pre-activations, (S, N, hidden) in training (other leading shapes when
    `testbed render` draws fields). The function must be elementwise: each output depends on
    the input at the same position only.
    """

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x -> act(x) elementwise, same shape and dtype. Do not modify x in place."""
