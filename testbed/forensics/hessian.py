"""Sharpness: the largest eigenvalue of the loss Hessian, per seed and vectorized over seeds.

Hessian-vector products go through the reference forward (`testbed.engine.model.forward`) by
double backward: the gradient of the summed per-seed losses is built once with its graph, and
each product H v is the gradient of <grad, v>. Seeds do not interact, so one product serves
every seed (row s of the result is H_s v_s).

The largest eigenvalue comes from Lanczos iterations with full reorthogonalisation on the
(S, P) seed-stacked vectors (P is a few hundred here, so keeping every Lanczos vector is
cheap and `iterations = P` gives the exact spectrum's top). Its start vector is drawn from
`generator(seed, "sharpness")`, so a seed's value does not depend on the seeds beside it.

Two quantities (Cohen et al. 2022, 2023):

  - sharpness: lambda_max(H), H the Hessian of the loss. Gradient descent at step size eta is
    stable along the top eigenvector while lambda_max(H) < 2 / eta ("edge of stability").
  - preconditioned sharpness (Adam): lambda_max(P^-1 H) with P = diag((sqrt(v_hat) + eps) / m),
    v_hat Adam's bias-corrected second moment and m the per-coordinate learning-rate multiplier
    (1 without multipliers), so that Adam's step is eta P^-1 m_hat. P^-1 H is similar to the
    symmetric P^-1/2 H P^-1/2, whose top eigenvalue Lanczos finds. Adam with momentum beta1
    is stable while it is below (2 + 2 beta1) / ((1 - beta1) eta) (38 / eta at beta1 = 0.9).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from testbed.engine.model import Architecture, ParamSpace, forward, per_seed_loss
from testbed.engine.seeding import generator

MatVec = Callable[[torch.Tensor], torch.Tensor]


def loss_function(arch: Architecture, space: ParamSpace, index: torch.Tensor, labels: torch.Tensor,
                  scored: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """flat (S, P) -> mean cross-entropy per seed (S,) on sequences `index` (S, L, N), `labels`
    (S, N), the output layer scoring the first `scored` tokens (None: all), as in `forward`."""

    def loss(flat: torch.Tensor) -> torch.Tensor:
        return per_seed_loss(forward(arch, space.views(flat), index, scored=scored), labels)

    return loss


def hessian_operator(loss: Callable[[torch.Tensor], torch.Tensor], flat: torch.Tensor, dtype: torch.dtype = torch.float32) -> MatVec:
    """v (S, P) -> H v (S, P), each seed's Hessian at `flat` applied to its row, computed in
    `dtype` (float32: six times faster than float64 here, and as exact as the weights)."""
    x = flat.detach().to(dtype).requires_grad_(True)
    (g,) = torch.autograd.grad(loss(x).sum(), x, create_graph=True)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        (hv,) = torch.autograd.grad(g, x, grad_outputs=v.to(g.dtype), retain_graph=True)
        return hv

    return hvp


def lanczos_top(matvec: MatVec, start: torch.Tensor, iterations: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The largest eigenvalue (S,) of the symmetric operators `matvec` (row s: operator s) from
    `iterations` Lanczos steps from `start` (S, P), restricted to the coordinates where `mask`
    (P,) is true. A row whose Krylov space is exhausted restarts from a fresh vector orthogonal
    to the previous ones (its tridiagonal matrix goes block diagonal), so the result is exact
    once `iterations` reaches the number of coordinates."""
    S, P = start.shape
    m = torch.ones(P, dtype=torch.bool) if mask is None else mask.bool()
    w_mask = m.to(start.dtype).double()
    n = min(iterations, int(m.sum()))
    q = start.double() * w_mask
    q = q / q.norm(dim=1, keepdim=True)
    basis = [q]
    alphas, betas = [], []
    fresh = torch.Generator().manual_seed(0)
    for k in range(n):
        w = matvec(q).double() * w_mask
        a = (w * q).sum(1)
        alphas.append(a)
        if k == n - 1:
            break
        w = _orthogonalised(w, basis)  # full reorthogonalisation
        beta = w.norm(dim=1)
        dead = beta <= 1e-10 * (1.0 + a.abs())
        if bool(dead.any()):
            r = _orthogonalised(torch.randn(S, P, generator=fresh, dtype=torch.float64) * w_mask, basis)
            w = torch.where(dead.unsqueeze(1), r, w)
            beta = torch.where(dead, torch.zeros_like(beta), beta)
        betas.append(beta)
        q = w / w.norm(dim=1, keepdim=True)
        basis.append(q)
    T = torch.diag_embed(torch.stack(alphas, 1))
    if betas:
        off = torch.stack(betas, 1)
        T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    bad = ~torch.isfinite(T).all(2).all(1)  # a seed whose weights or loss are not finite (diverged)
    top = torch.linalg.eigvalsh(torch.where(bad.view(-1, 1, 1), torch.zeros_like(T), T))[:, -1]
    return top.masked_fill(bad, float("nan"))


def _orthogonalised(x: torch.Tensor, basis: list[torch.Tensor]) -> torch.Tensor:
    """x (S, P) with its components along the orthonormal rows of `basis` removed, row by row
    (Gram-Schmidt twice: once leaves rounding errors that grow over the iterations)."""
    for _ in range(2):
        for b in basis:
            x = x - (x * b).sum(1, keepdim=True) * b
    return x


def start_vectors(seeds: list[int], P: int) -> torch.Tensor:
    """(S, P) Lanczos start vectors, each from its seed's own stream."""
    return torch.stack([torch.randn(P, generator=generator(seed, "sharpness"), dtype=torch.float64) for seed in seeds])


def sharpness(
    arch: Architecture,
    space: ParamSpace,
    flat: torch.Tensor,
    index: torch.Tensor,
    labels: torch.Tensor,
    seeds: list[int],
    *,
    preconditioner: torch.Tensor | None = None,
    iterations: int = 20,
    dtype: torch.dtype = torch.float32,
    scored: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(lambda_max(H) (S,), lambda_max(P^-1 H) (S,) or None) at weights `flat` (S, P) for the
    loss on `index` (S, L, N), `labels` (S, N). `preconditioner` is P's diagonal (S, P) (see the
    module docstring); parameters the architecture leaves out are not counted. Lanczos works in
    float64 whatever `dtype` the Hessian-vector products use."""
    hvp = hessian_operator(loss_function(arch, space, index, labels, scored), flat, dtype)
    mask = torch.ones(space.size, dtype=torch.bool)
    for name in arch.absent():
        mask[space.slices[name]] = False
    start = start_vectors(seeds, space.size)
    top = lanczos_top(hvp, start, iterations, mask)
    if preconditioner is None:
        return top.float(), None
    root = preconditioner.double().rsqrt()
    pre = lanczos_top(lambda v: root * hvp(root * v), start, iterations, mask)
    return top.float(), pre.float()


def adam_preconditioner(v: torch.Tensor, step: int, beta2: float, eps: float, multipliers: torch.Tensor | None = None) -> torch.Tensor:
    """P's diagonal (S, P) for Adam's second moment `v` (S, P) after `step` updates:
    (sqrt(v / (1 - beta2^step)) + eps) / multiplier."""
    p = (v / (1.0 - beta2**step)).sqrt() + eps
    return p if multipliers is None else p / multipliers
