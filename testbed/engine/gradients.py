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

from testbed.engine.model import Architecture, attend, scored_embeddings
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

    # Forward, keeping what the backward needs.
    x_table = E.unsqueeze(2) + P.unsqueeze(1)  # (S, V, L, d)
    z_table, norm1_back = forward_and_backward(arch.embedding_norm, x_table)
    zt = z_table.reshape(S, VL, d)
    qs = q * c
    _, a, mass, zbar = attend(zt, qs, index)  # a (S, L, N), mass (S, VL, N)
    xi = torch.matmul(zbar, V.transpose(1, 2))
    m, norm2_back = forward_and_backward(arch.mlp_norm, xi)
    pre = torch.baddbmm(b1.unsqueeze(1), m, W1.transpose(1, 2))  # (S, N, h)
    hid, act_back = forward_and_backward(arch.activation, pre)
    zeta = torch.baddbmm(b2.unsqueeze(1), hid, W2.transpose(1, 2)).add_(xi)  # (S, N, d)
    Eo = scored_embeddings(E, scored)  # the unembedding: all of E, or its first rows
    logp = torch.log_softmax(torch.matmul(zeta, Eo.transpose(1, 2)), -1)  # (S, N, V)
    target = labels.unsqueeze(-1)
    losses = logp.gather(-1, target).squeeze(-1).mean(1).neg_()

    # Backward of sum over seeds of the mean loss.
    dlogits = logp.exp_().scatter_add_(-1, target, torch.full_like(target, -1.0, dtype=logp.dtype)).mul_(1.0 / N)
    dE_out = torch.matmul(dlogits.transpose(1, 2), zeta)  # (S, V, d)
    dzeta = torch.matmul(dlogits, Eo)  # (S, N, d)
    db2 = dzeta.sum(1)
    dW2 = torch.matmul(dzeta.transpose(1, 2), hid)  # (S, d, h)
    dpre = act_back(torch.matmul(dzeta, W2))  # (S, N, h)
    db1 = dpre.sum(1)
    dW1 = torch.matmul(dpre.transpose(1, 2), m)  # (S, h, d)
    dxi = norm2_back(torch.matmul(dpre, W1)).add_(dzeta)  # (S, N, d)
    dV = torch.matmul(dxi.transpose(1, 2), zbar)  # (S, d, d)
    dzbar = torch.matmul(dxi, V)  # (S, N, d)
    # Through zbar = mass^T z_table: to the table directly, and to each position's weight.
    dzt = torch.matmul(mass, dzbar)  # (S, VL, d)
    flat = index.reshape(S, L * N)
    da = torch.matmul(zt, dzbar.transpose(1, 2)).gather(1, index)  # (S, L, N)
    dscore = a * (da - (a * da).sum(1, keepdim=True))
    # Through the softmax and the score table (each seed's row summed in order).
    dscore_t = zt.new_zeros(S, VL).scatter_add_(1, flat, dscore.view(S, L * N)).unsqueeze(-1)  # (S, VL, 1)
    dq = (dscore_t * zt).sum(1).mul_(c)  # (S, d)
    dx = norm1_back((dzt + dscore_t * qs.unsqueeze(1)).view(S, n_tok, L, d))
    if Eo is E:
        dE = dE_out + dx.sum(2)
    else:  # the rows without logits get the gradient through the attention only
        dE = dx.sum(2)
        dE[:, : Eo.shape[1]] += dE_out
    dP = dx.sum(1)
    grad = torch.cat([t.reshape(S, -1) for t in (dE, dP, dq, dV, dW1, db1, dW2, db2)], 1)
    return losses, grad
