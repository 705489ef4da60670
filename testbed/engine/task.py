"""Sparse modular addition: y = (x_1 + ... + x_k) mod p for sequences x of L tokens in Z/pZ.

Datasets carry the seed axis: tokens (S, N, L), labels (S, N). Each seed's sample derives from
(seed, p) alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from testbed.engine.seeding import generator

ENUMERATE_BELOW = 1 << 20  # complements of smaller spaces are enumerated, larger ones rejection-sampled


def labels(tokens: torch.Tensor, k: int, p: int) -> torch.Tensor:
    """The sum of the first k tokens mod p, over the last axis."""
    return tokens[..., :k].sum(-1) % p


@dataclass(frozen=True)
class Split:
    tokens: torch.Tensor  # (S, N, L) int64
    labels: torch.Tensor  # (S, N) int64


@dataclass(frozen=True)
class Dataset:
    p: int
    sparsity: int
    train: Split
    test: Split

    def labels(self, tokens: torch.Tensor) -> torch.Tensor:
        return labels(tokens, self.sparsity, self.p)


def encode(tokens: torch.Tensor, p: int) -> torch.Tensor:
    """Sequences as integers (only used where p**L < 2**62)."""
    weights = p ** torch.arange(tokens.shape[-1], dtype=torch.int64)
    return (tokens * weights).sum(-1)


def decode(codes: torch.Tensor, p: int, L: int) -> torch.Tensor:
    return (codes[:, None] // p ** torch.arange(L, dtype=torch.int64)) % p


def distinct(tokens: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of tokens (N, L) and, for each row, the index of its distinct row."""
    L = tokens.shape[-1]
    if p**L < 1 << 62:  # as integers: much faster than unique over rows
        codes, inverse = torch.unique(encode(tokens, p), return_inverse=True)
        return decode(codes, p, L), inverse
    return torch.unique(tokens, dim=0, return_inverse=True)


def _disjoint_sample(train: torch.Tensor, n: int, p: int, g: torch.Generator) -> torch.Tensor:
    """n sequences drawn uniformly (with replacement) among those absent from `train`."""
    L = train.shape[-1]
    space = p**L
    if space <= ENUMERATE_BELOW:
        absent = torch.ones(space, dtype=torch.bool)
        absent[encode(train, p)] = False
        codes = absent.nonzero().squeeze(1)
        if codes.numel() == 0:
            raise ValueError("no sequence is absent from the training set")
        return decode(codes[torch.randint(codes.numel(), (n,), generator=g)], p, L)
    seen = {bytes(row) for row in train.to(torch.uint8).numpy()}
    out: list[torch.Tensor] = []
    while len(out) < n:
        cand = torch.randint(p, (n, L), generator=g)
        out.extend(row for row in cand if bytes(row.to(torch.uint8).numpy()) not in seen)
    return torch.stack(out[:n])


def make_dataset(seeds: list[int], p: int, seq_len: int, sparsity: int, n_train: int, n_test: int, test_split: str) -> Dataset:
    """Training and test samples for every seed (a loop over seeds, at set-up time only), each
    drawn straight into its row of the (S, N, L) tensors (no per-seed copies to stack: at
    10,000 seeds those doubled the peak memory)."""
    tr = torch.empty(len(seeds), n_train, seq_len, dtype=torch.int64)
    te = torch.empty(len(seeds), n_test, seq_len, dtype=torch.int64)
    for i, seed in enumerate(seeds):
        tr[i] = torch.randint(p, (n_train, seq_len), generator=generator(seed, "train", p))
        g_test = generator(seed, "test", p)
        if test_split == "iid":
            te[i] = torch.randint(p, (n_test, seq_len), generator=g_test)
        else:
            te[i] = _disjoint_sample(tr[i], n_test, p, g_test)
    return Dataset(p, sparsity, Split(tr, labels(tr, sparsity, p)), Split(te, labels(te, sparsity, p)))
