"""Sums and matrix products whose rounding does not depend on how many seeds share a tensor.

On the CPU torch's own kernels compute each seed's values the same way whatever the seed
count (tests/test_replicas.py), so there the step and the evaluation use them (`NATIVE`). On a
GPU they do not: cuBLAS picks its batched matrix-product kernel, and the reduction kernels
their split of the work, by the shape of the whole tensor, and a seed's step losses changed in
their last bits between 1 and 300 seeds (an H200, torch 2.11). Off the CPU every sum of more
than two terms is therefore a fixed pairwise tree of elementwise additions (`PAIRWISE`): terms
2i and 2i+1, then those sums pairwise, and so on; a matrix product is an elementwise product
summed so. An elementwise kernel computes each element on its own, so the rounding is a
function of the seed's own numbers. Zeros appended to a sum change nothing (x + 0 = x), so a
seed's sum over its own sequences is the same whatever the padding its companions impose.

The two compute the same functions; their results differ in the last bits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The arithmetic's identity, part of the run store's key: results computed under another mode
# are other numbers. (Bumped whenever the default CPU path's rounding changes.)
DETERMINISM = "cpu-native-1"


class Native:
    """torch's kernels: seed-invariant on the CPU, and what every CPU result was computed with."""

    pairwise = False

    @staticmethod
    def sum(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        return x.sum(dim, keepdim=keepdim)

    @staticmethod
    def mean(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        return x.mean(dim, keepdim=keepdim)

    @staticmethod
    def norm(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        return torch.linalg.vector_norm(x, dim=dim, keepdim=keepdim)

    @staticmethod
    def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.bmm(a, b)

    @staticmethod
    def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)

    @staticmethod
    def baddbmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(bias, a, b)

    @staticmethod
    def log_softmax(x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x, -1)

    @staticmethod
    def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(S, N, V) logits, (S, N) labels -> (S, N) losses."""
        return F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")

    @staticmethod
    def scatter_sum(rows: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(S, rows): out[s, r] = the sum of values[s, t, n] over the (t, n) with index r, where
        `index` (S, L, N) never repeats a row within one (s, n)."""
        S = index.shape[0]
        return values.new_zeros(S, rows).scatter_add_(1, index.reshape(S, -1), values.reshape(S, -1))

    @staticmethod
    def weighted_total(values: torch.Tensor, weight: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """(S,) the sum of values * weight over each seed's entries 0..last, in float64."""
        # A running sum up to each seed's last entry: unlike sum(), its rounding does not depend
        # on the padding, hence not on the other seeds.
        running = (values.to(weight.device).double() * weight).cumsum(1)
        return running.gather(1, last.unsqueeze(1)).squeeze(1)


class Pairwise:
    """Every sum a fixed pairwise tree of elementwise additions: seed-invariant on any device."""

    pairwise = True

    @staticmethod
    def sum(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        x = x.movedim(dim, -1)
        while x.shape[-1] > 1:
            if x.shape[-1] % 2:
                x = F.pad(x, (0, 1))
            x = x[..., 0::2] + x[..., 1::2]
        if x.shape[-1] == 0:
            x = x.new_zeros(*x.shape[:-1], 1)
        x = x.movedim(-1, dim)
        return x if keepdim else x.squeeze(dim)

    @classmethod
    def mean(cls, x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        return cls.sum(x, dim, keepdim) / x.shape[dim]

    @classmethod
    def norm(cls, x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        return cls.sum(x * x, dim, keepdim).sqrt()

    @classmethod
    def bmm(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(S, n, k) @ (S, k, m): the (S, n, m, k) products summed over k."""
        return cls.sum(a.unsqueeze(2) * b.transpose(-1, -2).unsqueeze(1), -1)

    @classmethod
    def matmul(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cls.bmm(a, b)

    @classmethod
    def baddbmm(cls, bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cls.bmm(a, b) + bias

    @classmethod
    def log_softmax(cls, x: torch.Tensor) -> torch.Tensor:
        shifted = x - x.amax(-1, keepdim=True)  # a maximum is exact in any order
        return shifted - cls.sum(shifted.exp(), -1, keepdim=True).log()

    @classmethod
    def cross_entropy(cls, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cls.log_softmax(logits).gather(-1, labels.unsqueeze(-1)).squeeze(-1).neg()

    @classmethod
    def scatter_sum(cls, rows: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        # each (s, n) puts its L values in distinct rows: no collision to add, then a tree over n
        S, L, N = index.shape
        return cls.sum(values.new_zeros(S, rows, N).scatter_(1, index, values), -1)

    @classmethod
    def weighted_total(cls, values: torch.Tensor, weight: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        own = torch.arange(weight.shape[1], device=weight.device) <= last.unsqueeze(1)  # the padding adds exact zeros
        terms = torch.where(own, values.to(weight.device).double() * weight, 0.0)
        return cls.sum(terms, 1)


NATIVE = Native()
PAIRWISE = Pairwise()


def of(x: torch.Tensor) -> Native | Pairwise:
    """The arithmetic for tensors on `x`'s device: torch's kernels on the CPU, pairwise trees
    elsewhere."""
    return NATIVE if x.device.type == "cpu" else PAIRWISE
