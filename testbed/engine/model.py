"""The papers' one-layer transformer, written functionally over a leading seed axis.

All parameters of S replicas live in one flat tensor of shape (S, P); each named parameter is a
view (S, *shape) of it, so an optimizer updates every parameter of every seed with a handful of
elementwise operations, and a snapshot is one copy.

    z_t  = norm_1(E[x_t] + P[t])                       (S, N, L, d)
    a    = softmax_t(z_t . q / sqrt(d))                 (S, N, L)
    xi   = V sum_t a_t z_t                              (S, N, d)
    zeta = xi + fc2(act(fc1(norm_2(xi))))               (S, N, d)
    logits = E zeta                                     (S, N, n_tokens)  (unembedding tied to E)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from testbed.engine import arithmetic
from testbed.engine.seeding import generator

if TYPE_CHECKING:
    from testbed.plugin_api.differentiable import Differentiable

Fn = Callable[[torch.Tensor], torch.Tensor]

# Parameter names, in storage order; also the module names for lr multipliers and gradient norms.
PARAM_GROUPS = (
    "tok_emb",
    "pos_emb",
    "query",
    "value",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)


@dataclass(frozen=True)
class Architecture:
    d: int
    hidden: int
    n_tokens: int
    seq_len: int
    embedding_norm: Differentiable  # the plugins' objects: callables with a vjp
    mlp_norm: Differentiable
    activation: Differentiable
    mlp_bias: bool = True  # false: fc1 and fc2 have no bias (their parameters are held at 0, see `absent`)

    def absent(self) -> tuple[str, ...]:
        """Parameters the model does not have: kept in the flat tensor (so that shapes, snapshots,
        gradients and checkpoints stay one layout) but held at exactly 0 with a zero gradient."""
        return () if self.mlp_bias else ("mlp.fc1.bias", "mlp.fc2.bias")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return parameter_shapes(self.d, self.hidden, self.n_tokens, self.seq_len)


def parameter_shapes(d: int, h: int, n_tokens: int, seq_len: int) -> dict[str, tuple[int, ...]]:
    """Each parameter's shape, in storage order; they depend on the sizes alone (a warm start's
    source is checked against them before any model is built)."""
    return {
        "tok_emb": (n_tokens, d),
        "pos_emb": (seq_len, d),
        "query": (d,),
        "value": (d, d),
        "mlp.fc1.weight": (h, d),
        "mlp.fc1.bias": (h,),
        "mlp.fc2.weight": (d, h),
        "mlp.fc2.bias": (d,),
    }


class ParamSpace:
    """Names, shapes and offsets of the parameters inside the flat (S, P) tensor."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.shapes = shapes
        self.slices: dict[str, slice] = {}
        offset = 0
        for name, shape in shapes.items():
            size = math.prod(shape)
            self.slices[name] = slice(offset, offset + size)
            offset += size
        self.size = offset

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        S = flat.shape[0]
        return {n: flat[:, sl].view(S, *self.shapes[n]) for n, sl in self.slices.items()}

    def per_coordinate(self, values: dict[str, float], default: float = 1.0) -> torch.Tensor:
        """(P,) tensor giving each coordinate the value of the most specific matching key
        ('mlp' matches 'mlp.fc1.weight'; 'mlp.fc1.weight' beats 'mlp')."""
        out = torch.full((self.size,), float(default))
        for name, sl in self.slices.items():
            best = None
            for key, v in values.items():
                if (name == key or name.startswith(key + ".")) and (best is None or len(key) > len(best[0])):
                    best = (key, v)
            if best is not None:
                out[sl] = float(best[1])
        return out

    def init(self, seeds: list[int]) -> torch.Tensor:
        """PyTorch's default initialisation, each parameter from its own (seed, name) stream:
        embeddings N(0, 1); linear maps (query and value as bias-free Linear layers) and their
        biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

        Widths share their units' draws: every MLP parameter is drawn hidden unit by hidden
        unit, so width h gets the first h units of the draws of any larger width. fc1's bound
        does not depend on h, so its rows and biases are the very same numbers; fc2's bound
        1/sqrt(h) does, so fc2 is drawn as unit-uniform values in [-1, 1), a (h, d) stream
        whose row j is unit j's outgoing weights, times the bound (see `_width_scaled`)."""
        flat = torch.empty(len(seeds), self.size)
        for i, seed in enumerate(seeds):
            for name, sl in self.slices.items():
                shape = self.shapes[name]
                g = generator(seed, "init", name)
                if name in ("tok_emb", "pos_emb"):
                    values = standard_normal(shape, g)
                elif name in WIDTH_SCALED:
                    values = _width_scaled(name, shape, 1.0 / math.sqrt(_fan_in(name, self.shapes)), g)
                else:
                    fan_in = _fan_in(name, self.shapes)
                    bound = 1.0 / math.sqrt(fan_in)
                    values = symmetric_uniform(shape, bound, g)
                flat[i, sl] = values.reshape(-1)
        return flat


def standard_normal(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """N(0, 1) draws computed in float64 and rounded once to float32. torch's float32 normal
    sampler takes another code path on CPUs with AVX2 (vectorised log and cos) than on those
    without and on ARM, so its bits depend on the machine; the float64 sampler is the same
    scalar code everywhere, and a last-bit difference of the C library's log or cos in float64
    survives the rounding to float32 only about once in 2^29 draws."""
    return torch.randn(shape, generator=g, dtype=torch.float64).float()


def symmetric_uniform(shape: tuple[int, ...], bound: float, g: torch.Generator) -> torch.Tensor:
    """U(-bound, bound): unit draws in [-1, 1) times `bound`, the product rounded once to float32.
    torch's uniform_(a, b) computes draw * (b - a) + a, which the AVX2 build of its kernels
    fuses into one multiply-add (one rounding) and other builds do not (two); for [-1, 1) the
    product draw * 2 is exact, so both give the same bits, and the scaling is ours."""
    unit = torch.empty(shape).uniform_(-1.0, 1.0, generator=g)
    return (unit.double() * bound).float()


# Parameters whose initial bound depends on the hidden width h (fan_in h): drawn as unit-uniform
# values times the bound, so that every width shares the unit draws exactly.
WIDTH_SCALED = ("mlp.fc2.weight", "mlp.fc2.bias")


def _width_scaled(name: str, shape: tuple[int, ...], bound: float, g: torch.Generator) -> torch.Tensor:
    """Unit-uniform draws in [-1, 1) times `bound`, the product rounded once to float32.
    fc2.weight (d, h) is drawn unit-major, as (h, d), and transposed, so that hidden unit j's
    outgoing weights are the j-th d draws of the stream whatever h is. (torch's CPU uniform_
    fills a tensor one draw per element in order, so a shorter draw is a prefix of a longer
    one; tests/test_consistency.py checks this up to h = 4096.)"""
    drawn = shape[::-1] if name.endswith(".weight") else shape
    values = symmetric_uniform(drawn, bound, g)
    return values.t() if name.endswith(".weight") else values


def _fan_in(name: str, shapes: dict[str, tuple[int, ...]]) -> int:
    if name == "query":  # Linear(d, 1)
        return shapes["query"][0]
    if name.endswith(".bias"):
        return shapes[name.replace(".bias", ".weight")][1]
    return shapes[name][-1]


def forward(
    arch: Architecture,
    p: dict[str, torch.Tensor],
    index: torch.Tensor,
    trace: dict[str, torch.Tensor] | None = None,
    scored: int | None = None,
) -> torch.Tensor:
    """Logits (S, N, n_tokens) for sequences given position-major as `pair_index` rows (S, L, N);
    with `scored`, only the first `scored` tokens' logits (S, N, scored) (a curriculum that
    restricts the logits to the active vocabulary).

    z_t depends only on the pair (x_t, t), so the embedding norm and the attention scores are
    computed once on each seed's table of its n_tokens * L pairs (see `attend`). With `trace`,
    every intermediate is stored in it."""
    S, L, N = index.shape
    d = arch.d
    E = p["tok_emb"]
    ops = arithmetic.of(E)
    x_table = E.unsqueeze(2) + p["pos_emb"].unsqueeze(1)  # (S, V, L, d)
    z_table = arch.embedding_norm(x_table).reshape(S, -1, d)
    q = p["query"] * (1.0 / math.sqrt(d))
    scores, attn, zbar = attend(z_table, q, index)
    xi = ops.matmul(zbar, p["value"].transpose(1, 2))
    logits = head(arch, p, xi, scored, trace)
    if trace is not None:
        z = z_table.gather(1, index.reshape(S, L * N, 1).expand(S, L * N, d)).view(S, L, N, d)
        trace.update(x_table=x_table, z_table=z_table, z=z, scores=scores, attn=attn, xi=xi, logits=logits)
    return logits


def head(arch: Architecture, p: dict[str, torch.Tensor], xi: torch.Tensor, scored: int | None = None,
         trace: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits (S, N, V) from the attention outputs xi (S, N, d): the MLP norm, the MLP, the
    residual and the tied unembedding (the part of `forward` after attention; the forensics
    differentiate it in xi). With `trace`, its intermediates are stored in it."""
    ops = arithmetic.of(xi)
    m = arch.mlp_norm(xi)
    pre = ops.baddbmm(p["mlp.fc1.bias"].unsqueeze(1), m, p["mlp.fc1.weight"].transpose(1, 2))
    hid = arch.activation(pre)
    zeta = ops.baddbmm(p["mlp.fc2.bias"].unsqueeze(1), hid, p["mlp.fc2.weight"].transpose(1, 2)) + xi
    if trace is not None:
        trace.update(mlp_in=m, pre=pre, hidden=hid, zeta=zeta)
    return ops.matmul(zeta, scored_embeddings(p["tok_emb"], scored).transpose(1, 2))


def scored_embeddings(E: torch.Tensor, scored: int | None) -> torch.Tensor:
    """The unembedding rows (S, V', d) whose logits are computed: all, or the first `scored`."""
    return E if scored is None or scored >= E.shape[1] else E[:, :scored]


def attend(z_table: torch.Tensor, q: torch.Tensor, index: torch.Tensor):
    """Attention of sequences (S, L, N) over their rows of the pair table z_table (S, V*L, d)
    with the scaled query q (S, d): scores and weights (S, L, N), and the attention output
    sum_t a_t z_t (S, N, d)."""
    S, L, N = index.shape
    ops = arithmetic.of(z_table)
    scores = ops.bmm(z_table, q.unsqueeze(-1)).squeeze(-1).gather(1, index.reshape(S, L * N)).view(S, L, N)
    attn = softmax_positions(scores)
    return scores, attn, ops.attention_sum(z_table, index, attn)


def attention_mass(z_table: torch.Tensor, index: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """The weight (S, V*L, N) each sequence puts on each row of the pair table: the attention
    output is z_table^T mass, and the training step's backward runs through it (no scatter
    for z). A sequence's positions are distinct table rows, so no two weights land on one entry."""
    S, _, N = index.shape
    return z_table.new_zeros(S, z_table.shape[1], N).scatter_(1, index, attn)


def softmax_positions(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over axis 1 of (S, L, N), written out: torch.softmax over a non-last axis splits
    its work across threads at boundaries that depend on S, so a seed's attention would change
    in the last bits with the number of seeds beside it; these elementwise operations and
    reductions over the outer axis do not."""
    e = (scores - scores.amax(1, keepdim=True)).exp_()
    return e / arithmetic.of(e).sum(e, 1, keepdim=True)


def pair_index(tokens: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Tokens (S, N, L) -> position-major rows (S, L, N) of each seed's (n_tokens * L) table of
    (token, position) pairs: row x * L + t."""
    L = tokens.shape[-1]
    return (tokens * L + torch.arange(L)).transpose(1, 2).contiguous()


def per_seed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per seed: (S, N, V), (S, N) -> (S,)."""
    ops = arithmetic.of(logits)
    return ops.mean(ops.cross_entropy(logits, labels), 1)
