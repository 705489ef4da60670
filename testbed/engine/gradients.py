"""The training step's loss and gradient, with the backward pass written out by hand.

Autograd on the CPU costs more in bookkeeping than this model costs in arithmetic, so the
training step derives every gradient explicitly (about thirty tensor operations for all seeds
at once) and writes them into the flat (S, P) gradient. Only the pluggable pieces, the two
norms and the activation, go through autograd locally, unless the plugin overrides
`vjp(x, y, grad)` (`testbed.plugin_api.differentiable`). `testbed.engine.model.forward` is the
reference this is tested against.
"""

from __future__ import annotations

import math

import torch

from testbed.engine import arithmetic
from testbed.engine.model import Architecture, attend, attention_mass, scored_embeddings
from testbed.plugin_api.differentiable import forward_and_backward


def loss_and_grad(
    arch: Architecture, p: dict[str, torch.Tensor], index: torch.Tensor, labels: torch.Tensor, scored: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy per seed (S,) and the gradient of their sum as a flat (S, P) tensor,
    in `ParamSpace` order. `index` is position-major (S, L, N), see `pair_index`; `scored`:
    only the first `scored` tokens get logits (see `forward`)."""
    S, L, N = index.shape
    d = arch.d
    E, P, q, V = p["tok_emb"], p["pos_emb"], p["query"], p["value"]
    W1, b1, W2, b2 = p["mlp.fc1.weight"], p["mlp.fc1.bias"], p["mlp.fc2.weight"], p["mlp.fc2.bias"]
    n_tok = E.shape[1]
    VL = n_tok * L
    c = 1.0 / math.sqrt(d)
    ops = arithmetic.of(E)  # fixed-order sums: portable on the CPU, pairwise trees elsewhere

    # Forward, keeping what the backward needs.
    x_table = E.unsqueeze(2) + P.unsqueeze(1)  # (S, V, L, d)
    z_table, norm1_back = forward_and_backward(arch.embedding_norm, x_table)
    zt = z_table.reshape(S, VL, d)
    qs = q * c
    _, a, zbar = attend(zt, qs, index)  # a (S, L, N)
    mass = attention_mass(zt, index, a)  # (S, VL, N)
    xi = ops.bmm(zbar, V.transpose(1, 2))
    m, norm2_back = forward_and_backward(arch.mlp_norm, xi)
    pre = ops.baddbmm(b1.unsqueeze(1), m, W1.transpose(1, 2))  # (S, N, h)
    hid, act_back = forward_and_backward(arch.activation, pre)
    zeta = ops.baddbmm(b2.unsqueeze(1), hid, W2.transpose(1, 2)).add_(xi)  # (S, N, d)
    Eo = scored_embeddings(E, scored)  # the unembedding: all of E, or its first rows
    logp = ops.log_softmax(ops.bmm(zeta, Eo.transpose(1, 2)))  # (S, N, V)
    target = labels.unsqueeze(-1)
    losses = ops.mean(logp.gather(-1, target).squeeze(-1), 1).neg_()

    # Backward of sum over seeds of the mean loss.
    dlogits = logp.exp_().scatter_add_(-1, target, torch.full_like(target, -1.0, dtype=logp.dtype)).mul_(1.0 / N)
    dE_out = ops.bmm(dlogits.transpose(1, 2), zeta)  # (S, V, d)
    dzeta = ops.bmm(dlogits, Eo)  # (S, N, d)
    db2 = ops.sum(dzeta, 1)
    dW2 = ops.bmm(dzeta.transpose(1, 2), hid)  # (S, d, h)
    dpre = act_back(ops.bmm(dzeta, W2))  # (S, N, h)
    db1 = ops.sum(dpre, 1)
    dW1 = ops.bmm(dpre.transpose(1, 2), m)  # (S, h, d)
    dxi = norm2_back(ops.bmm(dpre, W1)).add_(dzeta)  # (S, N, d)
    dV = ops.bmm(dxi.transpose(1, 2), zbar)  # (S, d, d)
    dzbar = ops.bmm(dxi, V)  # (S, N, d)
    # Through zbar = mass^T z_table: to the table directly, and to each position's weight.
    dzt = ops.bmm(mass, dzbar)  # (S, VL, d)
    da = ops.bmm(zt, dzbar.transpose(1, 2)).gather(1, index)  # (S, L, N)
    dscore = a * (da - ops.sum(a * da, 1, keepdim=True))
    # Through the softmax and the score table (each seed's row summed in order).
    dscore_t = ops.scatter_sum(VL, index, dscore).unsqueeze(-1)  # (S, VL, 1)
    dq = ops.sum(dscore_t * zt, 1).mul_(c)  # (S, d)
    dx = norm1_back((dzt + dscore_t * qs.unsqueeze(1)).view(S, n_tok, L, d))
    if Eo is E:
        dE = dE_out.add_(ops.sum(dx, 2))
    else:  # the rows without logits get the gradient through the attention only
        dE = ops.sum(dx, 2)
        dE[:, : Eo.shape[1]] += dE_out
    dP = ops.sum(dx, 1)
    grad = torch.cat([t.reshape(S, -1) for t in (dE, dP, dq, dV, dW1, db1, dW2, db2)], 1)
    return losses, grad


_compiled = None


def compiled_loss_and_grad():
    """`loss_and_grad` compiled by torch.compile (inductor; shapes static, so a shorter last
    batch compiles once more), one per process. Opt-in (`training.compile`): the fused kernels
    round differently from the default step, so results are close to it, not bit-identical, and
    a seed's results may depend on the seeds beside it; tests/test_compiled_step.py checks it
    against the reference forward and autograd."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(loss_and_grad, dynamic=False)
    return _compiled
