"""What a norm plugin builds: the normalisation at the model's two norm sites."""

from __future__ import annotations

from abc import abstractmethod

import torch

from testbed.plugin_api.differentiable import Differentiable


class Norm(Differentiable):
    """Base class of norms. Required: `__call__(x)`. Optional: `vjp(x, y, grad)` (default:
    autograd differentiates `__call__`).

    `x` is a float tensor of shape (..., d): every leading axis, the seed axis first, is a
    batch axis, and the norm acts on the last (embedding) axis of each row alone. It is
    applied at both sites of the model unless a scenario sets them apart: `embedding_norm` on
    the table of every token and position embedding sum E[v] + P[t], (S, n_tokens, L, d), and
    `mlp_norm` on the attention output xi before the MLP, (S, N, d); `testbed render` applies
    it to other shapes (frames instead of seeds, grids of points). A row's result must not
    depend on other rows, or seeds would influence one another. Nor may its last bits: on a GPU
    torch's reductions round a row's sum differently with the number of rows, so sum over the
    embedding axis with `arithmetic.of(x).sum` / `.mean` / `.norm` (from testbed.plugin_api),
    which is torch's own reduction on the CPU and a fixed pairwise tree elsewhere.
    """

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d) -> the normalised x, same shape and dtype. Do not modify x in place."""
