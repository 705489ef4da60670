"""The fused kernels: a block of training steps, and the evaluation, for each seed on one thread.

Each seed's whole step (the pair table and its norm, attention, MLP, loss, the hand-written
backward of `testbed.engine.gradients`, clipping and the update rule of
`testbed.engine.optimizer`) runs as straight loops over that seed's own numbers, its weights,
gradient and optimizer state in cache; `prange` hands whole seeds to threads. So a seed's bits
are a function of its own inputs: not of the seeds beside it, nor of the number of threads.
Sums run in a fixed order written here (no reassociation: fastmath off), transcendental
functions come from `mathlib` (no libm), so the bits are the same on every x86-64 CPU.

Generic over the float type of the parameters: float32 trains; float64 checks the backward
against autograd (tests/test_fused_engine.py). Sizes (d, h, tokens, positions) are read from
the arrays, so any width the model allows runs here.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from testbed.engine.fused.mathlib import JIT, exp, gelu, like, log

# Norm kinds (`coverage.NORMS` maps plugins to them) and smooth-norm profiles.
IDENTITY, RMS, L2, SMOOTH = 0, 1, 2, 3
LINEAR, CUBIC, QUINTIC = 0, 1, 2
GELU, RELU = 0, 1
ADAM, ADAMW, SGD = 0, 1, 2
# Offsets of the parameters in a seed's flat row (`ParamSpace` order), the `layout` array.
TOK, POS, QUERY, VALUE, W1, B1, W2, B2 = range(8)


@njit(inline="always", **JIT)
def _profile(u2, shape, x):
    """The smooth norm's sigma(r)/r polynomial in u^2 and its derivative in u^2."""
    if shape == LINEAR:
        return like(1.0, x), like(0.0, x)
    if shape == CUBIC:
        return (like(3.0, x) - u2) / like(2.0, x), like(-0.5, x)
    return (like(15.0, x) + u2 * (like(-10.0, x) + like(3.0, x) * u2)) / like(8.0, x), (like(-10.0, x) + like(6.0, x) * u2) / like(8.0, x)


@njit(inline="always", **JIT)
def norm_forward(X, i, Y, kind, prm):
    """Y[i] = norm(X[i]) over the last axis; returns the two numbers its backward needs
    (rms/l2: radius, radius + eps; smooth: w(s), dw/ds). prm = (eps, radius, profile)."""
    d = X.shape[1]
    x0 = X[i, 0]
    if kind == IDENTITY:
        for k in range(d):
            Y[i, k] = X[i, k]
        return x0, x0
    eps = like(prm[0], x0)
    ss = like(0.0, x0)
    for k in range(d):
        ss += X[i, k] * X[i, k]
    if kind == SMOOTH:
        R = like(prm[1], x0)
        R2 = like(prm[1] * prm[1], x0)
        s = ss / like(d, x0)
        u2 = s / R2
        poly, dpoly = _profile(u2, int(prm[2]), x0)
        scale = like(1.0, x0) / (R + eps)
        r_out = math.sqrt(s if s > R2 else R2)
        if s < R2:
            w, dw = poly * scale, dpoly * (scale / R2)
            inner = poly / (R + eps)  # the forward's own expression (`SmoothNorm.__call__`)
        else:
            w = like(1.0, x0) / (r_out + eps)
            dw = like(-0.5, x0) / (r_out * ((r_out + eps) * (r_out + eps)))
            inner = w
        for k in range(d):
            Y[i, k] = X[i, k] * inner
        return w, dw
    r = math.sqrt(ss)
    if kind == RMS:
        r = r * like(1.0 / math.sqrt(d), x0)
    den = r + eps
    for k in range(d):
        Y[i, k] = X[i, k] / den
    return r, den


@njit(inline="always", **JIT)
def norm_backward(G, i, X, Y, a0, a1, kind, out, j):
    """out[j] = d(loss)/dX[i] given G[i] = d(loss)/dY[i] (see `norm_forward`)."""
    d = X.shape[1]
    g0 = G[i, 0]
    if kind == IDENTITY:
        for k in range(d):
            out[j, k] = G[i, k]
        return
    dot = like(0.0, g0)
    if kind == SMOOTH:  # dx = w g + x w'(s) (2/d) (g . x)
        for k in range(d):
            dot += G[i, k] * X[i, k]
        c = a1 * dot * like(2.0 / d, g0)
        for k in range(d):
            out[j, k] = G[i, k] * a0 + X[i, k] * c
        return
    for k in range(d):  # dx = g / den - y (g . y) / (r n), n = d (rms) or 1 (l2)
        dot += G[i, k] * Y[i, k]
    n = like(d if kind == RMS else 1, g0)
    c = dot / (a0 * n)
    for k in range(d):
        out[j, k] = G[i, k] / a1 - Y[i, k] * c


@njit(**JIT)
def _table(p, layout, d, L, X, Z, aux, sc, norm1, prm1):
    """The seed's pair table: X[x L + t] = E[x] + P[t], Z its norm, sc the scaled scores."""
    n_tok = (layout[POS] - layout[TOK]) // d
    c = like(1.0 / math.sqrt(d), p)
    for x in range(n_tok):
        for t in range(L):
            r = x * L + t
            for k in range(d):
                X[r, k] = p[layout[TOK] + x * d + k] + p[layout[POS] + t * d + k]
            aux[r, 0], aux[r, 1] = norm_forward(X, r, Z, norm1, prm1)
            s = like(0.0, p)
            for k in range(d):
                s += Z[r, k] * (p[layout[QUERY] + k] * c)
            sc[r] = s


@njit(inline="always", **JIT)
def fold_sum(buf):
    """The sum of buf (its length a multiple of 8, zero padded) in a fixed order: eight running
    sums, lane l adding elements l, l + 8, l + 16, ... in turn, then the eight folded pairwise
    (l + 4 onto l, l + 2 onto l, 1 onto 0). The lanes are independent, so the loop vectorises
    without reassociating anything."""
    a0, a1, a2, a3, a4, a5, a6, a7 = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]
    for i in range(8, buf.shape[0], 8):
        a0 += buf[i]
        a1 += buf[i + 1]
        a2 += buf[i + 2]
        a3 += buf[i + 3]
        a4 += buf[i + 4]
        a5 += buf[i + 5]
        a6 += buf[i + 6]
        a7 += buf[i + 7]
    return ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))


@njit(inline="always", **JIT)
def _attend(rows, sc, Z, a, shift, zbar, count, L, d):
    """Softmax over each sequence's positions of its rows' scores (a[n]), and zbar[n] =
    sum_t a_t z_t, for sequences 0..count-1: the scores and their maxima first, then every
    exp of the tile in one flat loop (so that it vectorises), then the sums per sequence."""
    for n in range(count):
        mx = sc[rows[n, 0]]
        for t in range(L):
            a[n, t] = sc[rows[n, t]]
            if a[n, t] > mx or a[n, t] != a[n, t]:
                mx = a[n, t]
        for t in range(L):
            shift[n, t] = mx
    flat_a = a.reshape(a.size)
    flat_shift = shift.reshape(shift.size)
    for i in range(count * L):
        flat_a[i] = exp(flat_a[i] - flat_shift[i])
    for n in range(count):
        total = like(0.0, sc[0])
        for t in range(L):
            total += a[n, t]
        for t in range(L):
            a[n, t] = a[n, t] / total
        for k in range(d):
            zbar[n, k] = like(0.0, total)
        for t in range(L):
            for k in range(d):
                zbar[n, k] += a[n, t] * Z[rows[n, t], k]


@njit(inline="always", **JIT)
def _mlp_input(p, layout, d, zbar, xi, mv, n, norm2, prm2):
    """xi[n] = V zbar[n] and its MLP norm mv[n]; returns the norm's backward numbers."""
    for i in range(d):
        s = like(0.0, p)
        for k in range(d):
            s += zbar[n, k] * p[layout[VALUE] + i * d + k]
        xi[n, i] = s
    return norm_forward(xi, n, mv, norm2, prm2)


@njit(inline="always", **JIT)
def _mlp(p, layout, d, h, xi, mv, n, pre, hid, slope, act, zeta, logit, scored, W1T, buf):
    """The MLP of sequence n with the residual (zeta[n]) and its logits (logit[n])."""
    for j in range(h):
        pre[n, j] = like(0.0, p)
    for k in range(d):
        mk = mv[n, k]
        for j in range(h):
            pre[n, j] += mk * W1T[k, j]
    for j in range(h):
        pre[n, j] += p[layout[B1] + j]
    if act == GELU:
        for j in range(h):
            hid[n, j], slope[n, j] = gelu(pre[n, j])  # type: ignore[misc]  # numba ships no types: pyright reads a njit dispatcher's call as never returning
    else:
        for j in range(h):
            hid[n, j] = pre[n, j] if pre[n, j] > like(0.0, p) else like(0.0, p)
            slope[n, j] = like(1.0, p) if pre[n, j] > like(0.0, p) else like(0.0, p)
    o2 = layout[W2]
    for k in range(d):
        for j in range(h):
            buf[j] = hid[n, j] * p[o2 + k * h + j]
        zeta[n, k] = fold_sum(buf) + p[layout[B2] + k] + xi[n, k]
    for v in range(scored):
        s = like(0.0, p)
        for k in range(d):
            s += zeta[n, k] * p[layout[TOK] + v * d + k]
        logit[n, v] = s


@njit(inline="always", **JIT)
def _log_softmax_parts(logit, n, scored):
    """The largest of logit[n] and the sum of exp(logit - largest)."""
    mx = logit[n, 0]
    for v in range(1, scored):
        if logit[n, v] > mx or logit[n, v] != logit[n, v]:
            mx = logit[n, v]
    total = like(0.0, mx)
    for v in range(scored):
        total += exp(logit[n, v] - mx)
    return mx, total


@njit(inline="always", **JIT)
def _forward(p, layout, rows, count, L, d, h, sc, Z, a, shift, zbar, xi, mv, aux2, pre, hid, slope, zeta, logit, scored, norm2, prm2, act, W1T, buf):
    """The forward pass of sequences 0..count-1 (their table rows in `rows`), phase by phase
    over all of them: each phase is a short chain of dependent operations per sequence, and
    consecutive sequences are independent, so the CPU overlaps them (one long chain per
    sequence would leave it waiting on latencies)."""
    _attend(rows, sc, Z, a, shift, zbar, count, L, d)
    for n in range(count):
        aux2[n, 0], aux2[n, 1] = _mlp_input(p, layout, d, zbar, xi, mv, n, norm2, prm2)
    for n in range(count):
        _mlp(p, layout, d, h, xi, mv, n, pre, hid, slope, act, zeta, logit, scored, W1T, buf)


@njit(**JIT)
def _loss_and_grad(p, g, layout, rows_all, labels_all, samples, L, scored, norm1, prm1, norm2, prm2, act, w):
    """The seed's mean loss over the batch `samples` and its gradient into g (zeroed here);
    `w` holds the scratch arrays (see `_scratch`)."""
    X, Z, aux, sc, dZ, dsc, rows, a, da, zbar, xi, mv, aux2, zeta, dzeta, dm, dxi, dzbar, pre, hid, slope, dpre, logit, dEo, gx, W1T, dW1T, buf, dsc_shift = w
    d = Z.shape[1]
    h = dpre.shape[0]
    VL = Z.shape[0]
    V = VL // L
    N = samples.shape[0]
    inv_n = like(1.0 / N, p)
    c = like(1.0 / math.sqrt(d), p)
    _table(p, layout, d, L, X, Z, aux, sc, norm1, prm1)
    _transpose_w1(p, layout, d, h, W1T)
    for i in range(g.shape[0]):
        g[i] = like(0.0, p)
    for k in range(d):
        for j in range(h):
            dW1T[k, j] = like(0.0, p)
    for r in range(VL):
        dsc[r] = like(0.0, p)
        for k in range(d):
            dZ[r, k] = like(0.0, p)
    for v in range(V):
        for k in range(d):
            dEo[v, k] = like(0.0, p)
    for n in range(N):
        for t in range(L):
            rows[n, t] = rows_all[t, samples[n]]
    _forward(p, layout, rows, N, L, d, h, sc, Z, a, dsc_shift, zbar, xi, mv, aux2, pre, hid, slope, zeta, logit, scored, norm2, prm2, act, W1T, buf)
    total = 0.0
    for n in range(N):
        y = labels_all[samples[n]]
        mx, se = _log_softmax_parts(logit, n, scored)
        total += log(np.float64(se)) + np.float64(mx) - np.float64(logit[n, y])
        # backward of the mean loss: dlogits = (softmax - onehot) / N
        for k in range(d):
            dzeta[n, k] = like(0.0, p)
        for v in range(scored):
            dl = (exp(logit[n, v] - mx) / se - (like(1.0, p) if v == y else like(0.0, p))) * inv_n
            for k in range(d):
                dEo[v, k] += dl * zeta[n, k]
                dzeta[n, k] += dl * p[layout[TOK] + v * d + k]
    for n in range(N):
        for k in range(d):
            g[layout[B2] + k] += dzeta[n, k]
            for j in range(h):
                g[layout[W2] + k * h + j] += dzeta[n, k] * hid[n, j]
        for j in range(h):
            dpre[j] = like(0.0, p)
        for k in range(d):
            for j in range(h):
                dpre[j] += dzeta[n, k] * p[layout[W2] + k * h + j]
        for j in range(h):
            dpre[j] = dpre[j] * slope[n, j]
            g[layout[B1] + j] += dpre[j]
        for k in range(d):
            mk = mv[n, k]
            for j in range(h):
                dW1T[k, j] += dpre[j] * mk
        for k in range(d):
            for j in range(h):
                buf[j] = dpre[j] * W1T[k, j]
            dm[n, k] = fold_sum(buf)
    for n in range(N):
        norm_backward(dm, n, xi, mv, aux2[n, 0], aux2[n, 1], norm2, dxi, n)
        for i in range(d):
            dxi[n, i] += dzeta[n, i]
            for k in range(d):
                g[layout[VALUE] + i * d + k] += dxi[n, i] * zbar[n, k]
        for k in range(d):
            s = like(0.0, p)
            for i in range(d):
                s += dxi[n, i] * p[layout[VALUE] + i * d + k]
            dzbar[n, k] = s
    for n in range(N):
        sda = like(0.0, p)
        for t in range(L):
            r = rows[n, t]
            s = like(0.0, p)
            for k in range(d):
                dZ[r, k] += a[n, t] * dzbar[n, k]
                s += Z[r, k] * dzbar[n, k]
            da[t] = s
            sda += a[n, t] * s
        for t in range(L):
            dsc[rows[n, t]] += a[n, t] * (da[t] - sda)
    for j in range(h):
        for k in range(d):
            g[layout[W1] + j * d + k] = dW1T[k, j]
    # through the score table and the embedding norm to E, P and the query
    for k in range(d):
        s = like(0.0, p)
        for r in range(VL):
            s += dsc[r] * Z[r, k]
        g[layout[QUERY] + k] = s * c
    for r in range(VL):
        for k in range(d):
            dZ[r, k] += dsc[r] * (p[layout[QUERY] + k] * c)
        norm_backward(dZ, r, X, Z, aux[r, 0], aux[r, 1], norm1, gx, r)
    for x in range(V):
        for k in range(d):
            s = dEo[x, k] if x < scored else like(0.0, p)
            for t in range(L):
                s += gx[x * L + t, k]
            g[layout[TOK] + x * d + k] = s
    for t in range(L):
        for k in range(d):
            s = like(0.0, p)
            for x in range(V):
                s += gx[x * L + t, k]
            g[layout[POS] + t * d + k] = s
    return like(total / N, p)


@njit(inline="always", **JIT)
def _transpose_w1(p, layout, d, h, W1T):
    """fc1's weight (h, d) as (d, h), so that the loops over hidden units read it in order."""
    for j in range(h):
        for k in range(d):
            W1T[k, j] = p[layout[W1] + j * d + k]


@njit(**JIT)
def _scratch(p, V, L, d, h, T):
    """Every array one seed's step (T sequences) or evaluation (tiles of T) works in, allocated
    once per seed and call."""
    VL = V * L
    f = p.dtype
    h8 = -(-h // 8) * 8
    return (
        np.empty((VL, d), f), np.empty((VL, d), f), np.empty((VL, 2), f), np.empty(VL, f),  # X, Z, aux, sc
        np.empty((VL, d), f), np.empty(VL, f), np.empty((T, L), np.uint32), np.empty((T, L), f), np.empty(L, f),  # dZ, dsc, rows, a, da
        np.empty((T, d), f), np.empty((T, d), f), np.empty((T, d), f), np.empty((T, 2), f), np.empty((T, d), f),  # zbar, xi, mv, aux2, zeta
        np.empty((T, d), f), np.empty((T, d), f), np.empty((T, d), f), np.empty((T, d), f),  # dzeta, dm, dxi, dzbar
        np.empty((T, h), f), np.empty((T, h), f), np.empty((T, h), f), np.empty(h, f),  # pre, hid, slope, dpre
        np.empty((T, V), f), np.empty((V, d), f), np.empty((VL, d), f),  # logit, dEo, gx
        np.empty((d, h), f), np.empty((d, h), f), np.zeros(h8, f),  # W1T, dW1T, buf (zero padded)
        np.empty((T, L), f),  # shift: each score's sequence maximum
    )


@njit(**JIT)
def _update(p, g, m1, m2, base_lr, factor, bc1, bc2_sqrt, opt, oprm, absent, fresh):
    """Clipping and the update rule, as `Optimizer.step` and plugins/optimizers.py compute
    them (elementwise, in order); absent parameters stay 0 with a zero gradient."""
    P = p.shape[0]
    for i in range(absent.shape[0]):
        g[absent[i]] = like(0.0, p)
    clip = oprm[6]
    if clip >= 0.0:
        ss = 0.0
        for i in range(P):
            ss += np.float64(g[i]) * np.float64(g[i])
        scale = like(clip, p) / (like(math.sqrt(ss), p) + like(1e-6, p))
        if scale < like(1.0, p):
            for i in range(P):
                g[i] = g[i] * scale
    wd = like(oprm[3], p)
    use_wd = oprm[3] != 0.0
    if opt == SGD:
        mu = like(oprm[4], p)
        for i in range(P):
            lr = base_lr[i] * like(factor, p) if factor != 1.0 else base_lr[i]
            gi = g[i] + p[i] * wd if use_wd else g[i]
            if oprm[4] != 0.0:
                m1[i] = gi if fresh else m1[i] * mu + gi
                gi = gi + m1[i] * mu if oprm[5] != 0.0 else m1[i]
            p[i] = p[i] - gi * lr
    else:
        b1, b2, eps = like(oprm[0], p), like(oprm[1], p), like(oprm[2], p)
        c1, c2 = like(1.0 - oprm[0], p), like(1.0 - oprm[1], p)
        for i in range(P):
            lr = base_lr[i] * like(factor, p) if factor != 1.0 else base_lr[i]
            gi = g[i]
            if use_wd and opt == ADAM:
                gi = gi + p[i] * wd
            if use_wd and opt == ADAMW:
                p[i] = p[i] * (like(1.0, p) - lr * wd)
            m1[i] = m1[i] * b1 + gi * c1
            m2[i] = m2[i] * b2 + gi * gi * c2
            denom = math.sqrt(m2[i]) / like(bc2_sqrt, p) + eps
            p[i] = p[i] - m1[i] / denom * (lr / like(bc1, p))
    for i in range(absent.shape[0]):
        p[absent[i]] = like(0.0, p)


@njit(parallel=True, **JIT)
def train_steps(flat, m1, m2, grad_out, losses, loss_row, layout, rows, labels, perm, first, B, n_steps, scored,
                norm1, prm1, norm2, prm2, act, base_lr, factors, bc1s, bc2s, opt, oprm, absent, fresh, keep_grad):
    """`n_steps` training steps of every seed, seed s on one thread: step i takes samples
    perm[s, first + i B : + B] of (S, L, n) rows and (S, n) labels, writes its loss to
    losses[loss_row + i, s] and (keep_grad) its applied gradient to grad_out[s], and updates
    flat[s] with the moments m1[s], m2[s] (the rule's state). factors, bc1s, bc2s: each step's
    warm-up factor and bias corrections."""
    S = flat.shape[0]
    L = rows.shape[1]
    n = perm.shape[1]
    d = (layout[QUERY + 1] - layout[QUERY])
    h = layout[B1 + 1] - layout[B1]
    V = (layout[POS] - layout[TOK]) // d
    for s in prange(S):
        p = flat[s]
        w = _scratch(p, V, L, d, h, min(B, n))
        g = np.empty_like(p)
        for i in range(n_steps):
            lo = first + i * B
            hi = min(lo + B, n)
            loss = _loss_and_grad(p, g, layout, rows[s], labels[s], perm[s, lo:hi], L, scored, norm1, prm1, norm2, prm2, act, w)
            losses[loss_row + i, s] = loss
            _update(p, g, m1[s], m2[s], base_lr, factors[i], bc1s[i], bc2s[i], opt, oprm, absent, fresh and i == 0)
            if keep_grad:
                for j in range(g.shape[0]):
                    grad_out[s, j] = g[j]


@njit(**JIT)
def loss_and_grad(flat, grad, layout, rows, labels, L, scored, norm1, prm1, norm2, prm2, act):
    """Losses (S,) and gradients (S, P) of one batch (S, L, N) rows and (S, N) labels, without
    an update: what the gradient tests compare with autograd."""
    S = flat.shape[0]
    N = rows.shape[2]
    d = layout[QUERY + 1] - layout[QUERY]
    h = layout[B1 + 1] - layout[B1]
    V = (layout[POS] - layout[TOK]) // d
    out = np.empty(S, flat.dtype)
    samples = np.arange(N)
    for s in range(S):
        w = _scratch(flat[s], V, L, d, h, N)
        out[s] = _loss_and_grad(flat[s], grad[s], layout, rows[s], labels[s], samples, L, scored, norm1, prm1, norm2, prm2, act, w)
    return out


EVAL_TILE = 64  # sequences per phase of the evaluation's forward pass (see `_forward`)


@njit(parallel=True, **JIT)
def evaluate(flat, layout, rows, labels, last, train_weight, test_weight, scored, norm1, prm1, norm2, prm2, act, out):
    """out[s] = (train loss, train accuracy, test loss, test accuracy) of seed s: its distinct
    sequences 0..last[s] ((S, L, U) rows, (S, U) labels), each loss and hit weighted by its
    multiplicity in each sample, summed in float64 in order (as `stage.evaluate`)."""
    S = flat.shape[0]
    L = rows.shape[1]
    d = layout[QUERY + 1] - layout[QUERY]
    h = layout[B1 + 1] - layout[B1]
    V = (layout[POS] - layout[TOK]) // d
    T = EVAL_TILE
    for s in prange(S):
        p = flat[s]
        w = _scratch(p, V, L, d, h, T)
        X, Z, aux, sc, seq, a, zbar, xi, mv, aux2, zeta = w[0], w[1], w[2], w[3], w[6], w[7], w[9], w[10], w[11], w[12], w[13]
        pre, hid, slope, logit, W1T, buf = w[18], w[19], w[20], w[22], w[25], w[27]
        _table(p, layout, d, L, X, Z, aux, sc, norm1, prm1)
        _transpose_w1(p, layout, d, h, W1T)
        tl, ta, vl, va = 0.0, 0.0, 0.0, 0.0
        count = last[s] + 1
        for lo in range(0, count, T):
            m = min(T, count - lo)
            for n in range(m):
                for t in range(L):
                    seq[n, t] = rows[s, t, lo + n]
            _forward(p, layout, seq, m, L, d, h, sc, Z, a, w[28], zbar, xi, mv, aux2, pre, hid, slope, zeta, logit, scored, norm2, prm2, act, W1T, buf)
            for n in range(m):
                u = lo + n
                y = labels[s, u]
                mx, se = _log_softmax_parts(logit, n, scored)
                loss = np.float64(like(log(np.float64(se)) + np.float64(mx) - np.float64(logit[n, y]), p))
                best = 0
                for v in range(1, scored):
                    if logit[n, v] > logit[n, best]:
                        best = v
                hit = 1.0 if best == y else 0.0
                tl += loss * train_weight[s, u]
                ta += hit * train_weight[s, u]
                vl += loss * test_weight[s, u]
                va += hit * test_weight[s, u]
        out[s, 0], out[s, 1], out[s, 2], out[s, 3] = tl, ta, vl, va
