"""Why one optimizer step made the loss jump: the numbers of the two mechanisms of the first
paper's section 4.3, and a cause label by a documented rule.

A spike step s (the first elevated step of a spike) has the weights W_before that entered step
s - 1 (normal loss), W_after = W_before + Delta that entered step s (elevated loss), and the
batch B of step s. Everything below is measured on that batch, every spike of a run at once
(the spike axis plays the seed axis of `testbed.engine.model.forward`).

Loss jump per parameter group: L_B(W_before + Delta_g) - L_B(W_before), Delta_g the step's
update restricted to group g (token embeddings, position embeddings, query, value, MLP), beside
the whole jump L_B(W_after) - L_B(W_before). What the groups do not explain alone is their
interaction (`jump_interaction`).

(i) Norm curvature near the origin. At each norm site (the embedding norm on E[x] + P[t], the
MLP norm on the attention output xi), over the batch: the smallest input radius |x| (L2)
before the step, and the largest angle an input (hence its normalised vector) turned in the
step. The rule reads the move of the norm's *output*, in units of the RMS radius (1 for the
RMS norm's outputs): |f(x_after) - f(x_before)| / sqrt(d), at most 2 for a reversal. A step
comparable to |x| turns the RMS norm's output by a large angle; the smoothed norm shrinks its
output near the origin, so the same turn moves it little.

(ii) Sequences near the MLP's decision boundary. For each sequence, its margin mu = logit of
its label - the largest other logit, as a function of its embedding xi (through the MLP norm,
the MLP, the residual and the tied unembedding), and the first-order distance of xi to the
boundary mu = 0: |mu| / |grad_xi mu|, divided by |xi| (relative). The assemblers u_i (columns
of fc2) before the step: the largest norm, the sum of norms and their coherence,
lambda_max(sum u_i u_i^T) / sum |u_i|^2 (1: all collinear; 1/d: spread evenly).

The culprit is the batch's sequence whose loss rose most in the step. The step's share of the
spike is jump / (L_B(W_after) - baseline), baseline the detector's loss level before the spike:
how much of the batch's elevated loss this step's update made (near 0 when the batch was
already that bad before the step; `wrong_before` and `wrong_after` count the batch's
misclassified sequences before and after it). Cause rule (`Rule`), with the reason in `cause_reason`:

  0. other (reason not_this_step): the step's share is below `min_step_share`: the update did
     not make the elevated loss, so neither mechanism of the step is its cause.
  1. norm_curvature: the culprit's normalised input moved by at least `norm_move` (RMS units)
     at either site (at the embedding norm: the largest move over its positions).
  2. mlp_boundary: otherwise, the culprit lay within `boundary` (relative distance) of the MLP
     decision boundary before the step, or the MLP's update alone explains at least
     `mlp_share` of the whole jump.
  3. other (reason neither).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from testbed.engine import arithmetic
from testbed.engine.model import Architecture, ParamSpace, forward, head

GROUPS: dict[str, tuple[str, ...]] = {
    "tok_emb": ("tok_emb",),
    "pos_emb": ("pos_emb",),
    "query": ("query",),
    "value": ("value",),
    "mlp": ("mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"),
}
CAUSES = ("norm_curvature", "mlp_boundary", "other")


@dataclass(frozen=True)
class Rule:
    """Thresholds of the cause rule (module docstring)."""

    norm_move: float = 0.5  # RMS units: a 29 degree turn of an RMS-normalised vector
    boundary: float = 0.05  # relative distance |mu| / (|grad mu| |xi|)
    mlp_share: float = 0.5
    min_step_share: float = 0.5

    def label(self, norm_move: np.ndarray, boundary: np.ndarray, mlp_share: np.ndarray, step_share: np.ndarray | None = None) -> np.ndarray:
        return self.explain(norm_move, boundary, mlp_share, step_share)[0]

    def explain(self, norm_move, boundary, mlp_share, step_share=None) -> tuple[np.ndarray, np.ndarray]:
        """(cause, reason) per step, by the rule of the module docstring (NaN compares false)."""
        cause = np.full(np.shape(norm_move), "other", dtype=object)
        reason = np.full(np.shape(norm_move), "neither", dtype=object)
        near, mlp = boundary <= self.boundary, mlp_share >= self.mlp_share
        cause[near | mlp] = "mlp_boundary"
        reason[mlp] = "mlp_update"
        reason[near] = "boundary"
        turned = norm_move >= self.norm_move
        cause[turned], reason[turned] = "norm_curvature", "norm_move"
        if step_share is not None:
            elsewhere = ~(step_share >= self.min_step_share)
            cause[elsewhere], reason[elsewhere] = "other", "not_this_step"
        return cause, reason


def _turn_degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between vectors along the last axis, in degrees (stable for small angles)."""
    dot = (a * b).sum(-1)
    cross = (a.pow(2).sum(-1) * b.pow(2).sum(-1) - dot * dot).clamp_min(0).sqrt()
    return torch.rad2deg(torch.atan2(cross, dot))


def _per_sequence_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return arithmetic.of(logits).cross_entropy(logits, labels)  # (K, N)


def boundary_distance(arch: Architecture, p: dict[str, torch.Tensor], xi: torch.Tensor, labels: torch.Tensor,
                      scored: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(margin mu (K, N), relative first-order distance of xi to mu = 0 (K, N))."""
    x = xi.detach().double().requires_grad_(True)
    logits = head(arch, {k: v.double() for k, v in p.items()}, x, scored)
    true = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    other = logits.scatter(-1, labels.unsqueeze(-1), float("-inf")).amax(-1)
    mu = true - other
    (g,) = torch.autograd.grad(mu.sum(), x)  # sequences are independent: row n is grad of mu_n
    dist = mu.detach().abs() / g.norm(dim=-1).clamp_min(1e-30)
    return mu.detach().float(), (dist / x.detach().norm(dim=-1).clamp_min(1e-30)).float()


def assembler_stats(w2: torch.Tensor) -> dict[str, torch.Tensor]:
    """fc2 weights (K, d, h) -> largest and summed assembler norm, and coherence, each (K,)."""
    norms = w2.norm(dim=1)  # (K, h)
    second = torch.matmul(w2, w2.transpose(1, 2))  # (K, d, d) = sum_i u_i u_i^T
    total = norms.pow(2).sum(1)
    bad = ~torch.isfinite(second).all(2).all(1)  # diverged weights
    top = torch.linalg.eigvalsh(torch.where(bad.view(-1, 1, 1), torch.zeros_like(second), second))[:, -1]
    return {
        "assembler_max_norm": norms.amax(1),
        "assembler_sum_norm": norms.sum(1),
        "assembler_coherence": (top / total.clamp_min(1e-30)).masked_fill(bad, float("nan")),
    }


def attribute(
    arch: Architecture,
    space: ParamSpace,
    before: torch.Tensor,
    after: torch.Tensor,
    index: torch.Tensor,
    labels: torch.Tensor,
    rule: Rule = Rule(),
    baseline: np.ndarray | None = None,
    scored: int | None = None,
) -> dict[str, np.ndarray]:
    """The forensics of K steps: weights `before` and `after` (K, P), the batch of the step
    whose loss jumped as pair rows `index` (K, L, B) and `labels` (K, B), and the loss level
    before each spike `baseline` (K,) (without it, every step counts as the spike's maker);
    `scored`: the tokens the output layer scores, as in `forward`.
    Returns columns, each (K,) (module docstring)."""
    K, d = before.shape[0], arch.d
    before, after = before.float(), after.float()
    cols: dict[str, np.ndarray] = {}
    with torch.no_grad():
        variants = [before, after]
        for names in GROUPS.values():
            v = before.clone()
            for name in names:
                v[:, space.slices[name]] = after[:, space.slices[name]]
            variants.append(v)
        n = len(variants)
        logits = forward(arch, space.views(torch.cat(variants)), index.repeat(n, 1, 1), scored=scored)
        seq_loss = _per_sequence_loss(logits, labels.repeat(n, 1)).view(n, K, -1)
        loss = seq_loss.double().mean(-1)  # (n, K)
        cols["loss_before"] = loss[0].numpy()
        cols["loss_after"] = loss[1].numpy()
        total = loss[1] - loss[0]
        cols["jump"] = total.numpy()
        explained = loss[2:] - loss[0]  # (G, K)
        for g, name in enumerate(GROUPS):
            cols[f"jump_{name}"] = explained[g].numpy()
        cols["jump_interaction"] = (total - explained.sum(0)).numpy()
        names = np.array(list(GROUPS))
        cols["top_group"] = names[explained.argmax(0).numpy()]
        mlp_share = (explained[list(GROUPS).index("mlp")] / total.where(total > 0, torch.nan)).numpy()

        rise = seq_loss[1] - seq_loss[0]  # (K, B)
        culprit = rise.argmax(1)
        cols["culprit_rise"] = rise.gather(1, culprit.unsqueeze(1)).squeeze(1).double().numpy()
        cols["flipped"] = ((logits[K : 2 * K].argmax(-1) != logits[:K].argmax(-1)).sum(1)).numpy()
        cols["wrong_before"] = (logits[:K].argmax(-1) != labels).sum(1).numpy()
        cols["wrong_after"] = (logits[K : 2 * K].argmax(-1) != labels).sum(1).numpy()

        tb: dict[str, torch.Tensor] = {}
        ta: dict[str, torch.Tensor] = {}
        forward(arch, space.views(before), index, trace=tb, scored=scored)
        forward(arch, space.views(after), index, trace=ta, scored=scored)
        # Site 1: the embedding norm on the (token, position) pairs the batch uses.
        xb, xa = tb["x_table"].reshape(K, -1, d), ta["x_table"].reshape(K, -1, d)
        zb, za = tb["z_table"].reshape(K, -1, d), ta["z_table"].reshape(K, -1, d)
        rows = index.reshape(K, -1)
        used = torch.zeros(xb.shape[:2], dtype=torch.bool).scatter_(1, rows, True)
        radius1 = xb.norm(dim=-1)
        turn1 = _turn_degrees(xb, xa)
        move1 = (za - zb).norm(dim=-1) / math.sqrt(d)  # (K, VL)
        cols["norm1_min_radius"] = radius1.masked_fill(~used, torch.inf).amin(1).numpy()
        cols["norm1_max_turn"] = turn1.masked_fill(~used, 0.0).amax(1).numpy()
        # Site 2: the MLP norm on each sequence's attention output xi.
        xib, xia = tb["xi"], ta["xi"]
        move2 = (ta["mlp_in"] - tb["mlp_in"]).norm(dim=-1) / math.sqrt(d)  # (K, B)
        cols["norm2_min_radius"] = xib.norm(dim=-1).amin(1).numpy()
        cols["norm2_max_turn"] = _turn_degrees(xib, xia).amax(1).numpy()
        # The culprit's largest normalised move: its own positions at site 1, its xi at site 2.
        own = index.gather(2, culprit.view(K, 1, 1).expand(K, index.shape[1], 1)).squeeze(2)  # (K, L) its pair rows
        c_move1 = move1.gather(1, own).amax(1)
        c_move2 = move2.gather(1, culprit.unsqueeze(1)).squeeze(1)
        cols["culprit_norm_move"] = torch.maximum(c_move1, c_move2).numpy()
        cols["culprit_norm_site"] = np.where((c_move1 >= c_move2).numpy(), "embedding", "mlp")

    p_before = space.views(before)
    _, rel = boundary_distance(arch, p_before, tb["xi"], labels, scored)
    cols["boundary_min_distance"] = rel.amin(1).numpy()
    cols["culprit_boundary_distance"] = rel.gather(1, culprit.unsqueeze(1)).squeeze(1).numpy()
    for name, value in assembler_stats(p_before["mlp.fc2.weight"]).items():
        cols[name] = value.numpy()
    share = None
    if baseline is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            share = cols["jump"] / (cols["loss_after"] - np.asarray(baseline, dtype=float))
        cols["step_share"] = share
    cols["cause"], cols["cause_reason"] = rule.explain(cols["culprit_norm_move"], cols["culprit_boundary_distance"],
                                                       np.nan_to_num(mlp_share, nan=0.0), share)
    return cols
