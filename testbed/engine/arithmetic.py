"""Sums and matrix products whose rounding depends on nothing but a seed's own numbers: not on
the seeds beside it, the thread count, or the machine.

**On the CPU (`PORTABLE`)** the same scenario and seed give the same bits on every x86-64 CPU
with AVX2, whatever its vendor, vector width or BLAS code path. torch's own kernels did not:

- matrix products went to MKL, which picks its kernels (and their order of additions and use
  of fused multiply-adds) by the CPU: the same run gave other step losses on an AMD EPYC than
  on the machine its digests were recorded on, and under `MKL_CBWR=COMPATIBLE`;
- GELU went to oneDNN, whose JIT code depends on the vector width (`ONEDNN_MAX_CPU_ISA=AVX2`
  gave other bits than AVX-512);
- ATen's `log_softmax`, `softmax` and `sigmoid` kernels round differently under AVX2 and
  AVX-512 (`ATEN_CPU_CAPABILITY`).

So here a product is an elementwise product summed by torch's reduction kernel (`bmm`), the
softmaxes are written out of `exp`, `log` and sums, and the activations of elementwise
functions (`plugins/activations.py`). Elementwise `+ - * / sqrt` are correctly rounded on
every CPU; ATen's sums and its `exp`, `log`, `erf` and `tanh` give the same bits under its AVX2
and AVX-512 kernels (tests/test_portable_bits.py checks every one of these claims by running a
short scenario under each kernel selection one machine can emulate). Without AVX2 (ATen's
`default` kernels, scalar libm) the bits differ; across torch builds they may differ too.

**Off the CPU (`PAIRWISE`)** cuBLAS picks its batched matrix-product kernel, and the reduction
kernels their split of the work, by the shape of the whole tensor, and a seed's step losses
changed in their last bits between 1 and 300 seeds (an H200, torch 2.11). There every sum of
more than two terms is a fixed pairwise tree of elementwise additions: terms 2i and 2i+1, then
those sums pairwise, and so on; a matrix product is an elementwise product summed so. An
elementwise kernel computes each element on its own, so the rounding is a function of the
seed's own numbers. Zeros appended to a sum change nothing (x + 0 = x), so a seed's sum over
its own sequences is the same whatever the padding its companions impose.

The two compute the same functions; their results differ in the last bits, so results are
identical per device, not across devices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The CPU arithmetic's identity, part of the run store's key: results computed under another
# mode are other numbers. ("cpu-native-1": torch's kernels, MKL and oneDNN, before 0.3.0.)
DETERMINISM = "cpu-portable-1"

WIDE = 8  # a side of a product this long or longer is worth vectorising along


def _contiguous_last(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


class _FixedOrder:
    """What both arithmetics build from their own `sum` and `bmm` (each a fixed order)."""

    @classmethod
    def sum(cls, x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        raise NotImplementedError  # each arithmetic sums in its own fixed order

    @classmethod
    def bmm(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # each arithmetic multiplies in its own fixed order

    @classmethod
    def mean(cls, x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        return cls.sum(x, dim, keepdim) / x.shape[dim]

    @classmethod
    def norm(cls, x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        return cls.sum(x * x, dim, keepdim).sqrt()

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
        """(S, N, V) logits, (S, N) labels -> (S, N) losses."""
        return cls.log_softmax(logits).gather(-1, labels.unsqueeze(-1)).squeeze(-1).neg()


class Portable(_FixedOrder):
    """The CPU's arithmetic: no BLAS, no oneDNN, no kernel whose rounding depends on the CPU,
    and every sum of more than two terms an inner reduction.

    torch's sum adds a contiguous row in an order fixed by its length alone (the same under
    its AVX2 and AVX-512 kernels, whatever the other rows), but sums along an outer axis in
    another order. Where the axis summed is not contiguous, the terms are copied so that it is:
    a sum's rounding never depends on the layout of its tensor (which changes with the number
    of seeds and sequences), only on the terms."""

    pairwise = False

    @staticmethod
    def sum(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
        if x.shape[dim] > 2:  # one or two terms round once whatever the order
            x = _contiguous_last(x.movedim(dim, -1)).sum(-1)
            return x.unsqueeze(dim) if keepdim else x
        return x.sum(dim, keepdim=keepdim)

    @classmethod
    def bmm(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(S, n, k) @ (S, k, m): the products a_ij b_jl summed over j by `sum`.

        Up to two terms the order does not matter, and the products are laid out for speed:
        along a long output side held contiguously (the sequences, in this model's layout:
        every activation then stays sequence-innermost, and the elementwise operations after
        a product run along it too). Beyond two, the products are laid out with j innermost."""
        n, k, m = a.shape[-2], a.shape[-1], b.shape[-1]
        if k > 2:
            products = _contiguous_last(a).unsqueeze(-2) * _contiguous_last(b.transpose(-1, -2)).unsqueeze(-3)
            return products.sum(-1)  # (S, n, m, k) summed along its rows
        if n >= WIDE and a.stride(-2) == 1:  # along n: C^T = B^T A^T
            return cls._along_m(b.transpose(-1, -2), a.transpose(-1, -2)).transpose(-1, -2)
        if m >= WIDE and b.stride(-1) == 1:
            return cls._along_m(a, b)
        if n > m:
            return cls._along_m(b.transpose(-1, -2), a.transpose(-1, -2).contiguous()).transpose(-1, -2)
        return cls._along_m(a, b.contiguous())

    @staticmethod
    def _along_m(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(S, n, k) @ (S, k, m), k <= 2, b's rows contiguous: the (S, n, k, m) products summed
        over k."""
        return (b.unsqueeze(-3) * a.unsqueeze(-1)).sum(-2)  # b first: the products take its layout

    @classmethod
    def attention_sum(cls, z_table: torch.Tensor, index: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """(S, N, d): sum over t of attn[s, t, n] z_table[s, index[s, t, n]], the L terms of each
        sum gathered innermost."""
        S, L, N = index.shape
        d = z_table.shape[-1]
        rows = index.transpose(1, 2).reshape(S, 1, N * L).expand(S, d, N * L)
        z = z_table.transpose(1, 2).contiguous().gather(2, rows).view(S, d, N, L)
        return (z * attn.transpose(1, 2).unsqueeze(1)).sum(-1).transpose(1, 2)

    @staticmethod
    def scatter_sum(rows: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(S, rows): out[s, r] = the sum of values[s, t, n] over the (t, n) with index r, where
        `index` (S, L, N) never repeats a row within one (s, n). (scatter_add runs through
        each seed's entries in order, one scalar addition at a time.)"""
        S = index.shape[0]
        return values.new_zeros(S, rows).scatter_add_(1, index.reshape(S, -1), values.reshape(S, -1))

    @staticmethod
    def weighted_total(values: torch.Tensor, weight: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """(S,) the sum of values * weight over each seed's entries 0..last, in float64."""
        # A running sum up to each seed's last entry: unlike sum(), its rounding does not depend
        # on the padding, hence not on the other seeds.
        running = (values.to(weight.device).double() * weight).cumsum(1)
        return running.gather(1, last.unsqueeze(1)).squeeze(1)


class Pairwise(_FixedOrder):
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
    def bmm(cls, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(S, n, k) @ (S, k, m): the (S, n, m, k) products summed over k."""
        return cls.sum(a.unsqueeze(2) * b.transpose(-1, -2).unsqueeze(1), -1)

    @classmethod
    def attention_sum(cls, z_table: torch.Tensor, index: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """(S, N, d): sum over t of attn[s, t, n] z_table[s, index[s, t, n]], a tree over t."""
        S, L, N = index.shape
        d = z_table.shape[-1]
        z = z_table.gather(1, index.reshape(S, L * N, 1).expand(S, L * N, d)).view(S, L, N, d)
        return cls.sum(z * attn.unsqueeze(-1), 1)

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


PORTABLE = Portable()
PAIRWISE = Pairwise()


def of(x: torch.Tensor) -> Portable | Pairwise:
    """The arithmetic for tensors on `x`'s device: the portable one on the CPU, pairwise trees
    elsewhere."""
    return PORTABLE if x.device.type == "cpu" else PAIRWISE
