"""What a norm plugin builds: the normalisation at the model's two norm sites."""

from __future__ import annotations

from abc import abstractmethod

import torch

from testbed.plugin_api.differentiable import Differentiable


class Norm(Differentiable):
    """Base class of norms: the normalisation at the model's two norm sites. Required:
    `__call__(x)`; optional: `vjp(x, y, grad)` and `forward_and_vjp(x)` (see `Differentiable`
    for when each is called, why the backward is hand-written, and what none may do).

    `x` is a float tensor of shape (..., d): every leading axis, the seed axis first, is a
    batch axis, and the norm acts on the last (embedding) axis of each row alone. One object is
    built per site. `embedding_norm` gets, once per step (and per piece of an evaluation), the
    table of every token and position embedding sum E[v] + P[t], (S, n_tokens, L, d); `mlp_norm`
    gets the attention output xi before the MLP, (S, N, d) with N the batch size (or a piece of
    the data set in evaluation); `testbed render` applies it to other shapes (frames instead of
    seeds, grids of points).

    A row's result must not depend on other rows, or seeds would influence one another. Nor may
    its last bits: on a GPU torch's reductions round a row's sum differently with the number of
    rows, so sum over the embedding axis with `arithmetic.of(x).sum` / `.mean` / `.norm` (from
    testbed.plugin_api), which is torch's own reduction on the CPU and a fixed pairwise tree
    elsewhere.
    """

    @abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Required. x (..., d) -> the normalised x, same shape and dtype, each row (last axis)
        on its own. Do not modify x in place."""
