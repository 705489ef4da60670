"""The first paper's idealized circuit (section 3.1, Figure 1) as hand-set weights that solve
sparse modular addition, selected by `model.init: ideal`.

- Position embeddings collapse to two points: P(t) = (0, c) for the k summed positions and
  (0, -c) for the others, so the output cannot depend on the order of the summed tokens or on
  the suffix.
- Token embeddings sit on the unit circle at distinct angles, small beside c.
- The query points along (0, 1): summed positions score high, the others low; with an RMS
  norm, c = 4 and |q| = 40 the suffix gets a weight of about e^-48, nothing in float32 (a
  layout with c = 20 and a short query serves norms that do not normalize).
- V is the identity, so xi is the attention-weighted mean of the prefix's Z(x, t): one point
  per count pattern of the prefix, C(k + p - 1, k) clusters.
- The MLP reads the direction of xi (it is pre-normed). Projected on a well-chosen direction the
  clusters are distinct numbers x_1 < ... < x_M; one neuron per gap (its threshold midway)
  makes the MLP a piecewise-linear function of x, and its assemblers are solved so that zeta
  lands exactly on R E(y)/|E(y)| for every cluster's class y: the tied decoding then gives
  that class a margin of R |E| (1 - cos(2 pi / n_tokens)).

Every cluster is computed with the model's own norm and activation, so the circuit holds for
any installed norm and activation that keep the clusters apart (tested for p = 2, 3).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from testbed.engine.model import Architecture, ParamSpace, forward, pair_index
from testbed.errors import UserError

RADIUS_OUT, SHARPNESS = 8.0, 16.0
# (c, |q|): a norm maps E + P to the circle and needs a long query; without a norm the scores
# grow with |E + P|, so the prefix tokens' scores only stay alike with a larger c and short q
LAYOUTS = ((4.0, 40.0), (20.0, 2.5))
LEAK = 1e-12  # the most attention a suffix position may keep
DIRECTIONS = 180
ATTEMPTS = 16


def _count_patterns(k: int, p: int) -> np.ndarray:
    """One prefix per multiset of k tokens from [p], sorted: (M, k)."""
    return np.array(list(itertools.combinations_with_replacement(range(p), k)), dtype=np.int64).reshape(-1, k)


def _embedding_weights(arch: Architecture, k: int, angles: np.ndarray, c_pos: float, query: float) -> dict[str, torch.Tensor]:
    L, d, h = arch.seq_len, arch.d, arch.hidden
    pos = np.zeros((L, d))
    pos[:k, 1], pos[k:, 1] = c_pos, -c_pos
    return {
        "tok_emb": torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1), dtype=torch.float32),
        "pos_emb": torch.tensor(pos, dtype=torch.float32),
        "query": torch.tensor([0.0, query]),
        "value": torch.eye(d),
        "mlp.fc1.weight": torch.zeros(h, d),
        "mlp.fc1.bias": torch.zeros(h),
        "mlp.fc2.weight": torch.zeros(d, h),
        "mlp.fc2.bias": torch.zeros(d),
    }


def _trace(arch: Architecture, weights: dict[str, torch.Tensor], tokens: np.ndarray) -> dict[str, torch.Tensor]:
    p = {n: w.unsqueeze(0) for n, w in weights.items()}
    trace: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        forward(arch, p, pair_index(torch.from_numpy(tokens).unsqueeze(0), arch.n_tokens), trace)
    return trace


def _best_direction(m: np.ndarray) -> tuple[np.ndarray, float]:
    """The unit direction along which the points m (M, 2) are farthest apart (min gap)."""
    best, best_gap = np.array([1.0, 0.0]), -1.0  # replaced at the first direction (every gap beats -1)
    for a in np.linspace(0, math.pi, DIRECTIONS, endpoint=False):
        w = np.array([math.cos(a), math.sin(a)])
        x = np.sort(m @ w)
        gap = float(np.diff(x).min()) if len(x) > 1 else 1.0
        if gap > best_gap:
            best, best_gap = w, gap
    return best, best_gap


def weights(arch: Architecture, k: int, p: int) -> dict[str, torch.Tensor]:
    """The idealized circuit's parameters (unbatched, name -> shape of arch.shapes())."""
    if arch.d != 2:
        raise UserError(f"model.init: ideal is built for d = 2, not d = {arch.d}")
    if k > arch.seq_len:
        raise UserError("model.init: ideal needs task.sparsity <= task.seq_len")
    prefixes = _count_patterns(k, p)
    M = len(prefixes)
    if arch.hidden < M - 1:
        raise UserError(f"model.init: ideal needs model.hidden >= {M - 1} (one neuron per gap between the {M} prefix count patterns)")
    tokens = np.concatenate([prefixes, np.zeros((M, arch.seq_len - k), np.int64)], 1)
    classes = prefixes.sum(1) % p
    rng = np.random.default_rng(0)
    V = arch.n_tokens
    best = None
    for attempt, (c_pos, query) in itertools.product(range(ATTEMPTS), LAYOUTS):
        # evenly spaced tokens first; then turned and jittered until the clusters separate well
        angles = 2 * math.pi * np.arange(V) / V + (0.3 * attempt + rng.uniform(-0.15, 0.15, V) * (attempt > 0))
        w_emb = _embedding_weights(arch, k, angles, c_pos, query)
        tr = _trace(arch, w_emb, tokens)
        if k < arch.seq_len and float(tr["attn"][0, k:].max()) > LEAK:
            continue
        m = tr["mlp_in"][0].double().numpy()
        direction, gap = _best_direction(m)
        if best is None or gap > best[0]:
            best = (gap, angles, w_emb, tr, direction)
        if gap > 0.05:
            break
    if best is None or not best[0] > 1e-5:
        raise UserError(f"model.init: ideal cannot separate the {M} prefix patterns of p = {p}, k = {k} in the plane with this norm")
    gap, angles, w, tr, direction = best
    xi = tr["xi"][0].double().numpy()
    m = tr["mlp_in"][0].double().numpy()
    x = m @ direction
    order = np.argsort(x)
    xs = x[order]
    knots = (xs[1:] + xs[:-1]) / 2
    a = SHARPNESS / gap  # every cluster lies at least SHARPNESS / 2 from every knot, in units of the pre-activation
    n = M - 1
    pre = a * (x[:, None] - knots[None, :])  # (M, n)
    hid = arch.activation(torch.from_numpy(pre)).double().numpy()
    E = np.stack([np.cos(angles), np.sin(angles)], 1)
    target = RADIUS_OUT * E[classes]  # (M, 2) where zeta must land
    A = np.concatenate([hid, np.ones((M, 1))], 1)  # (M, n + 1)
    sol, *_ = np.linalg.lstsq(A, target - xi, rcond=None)
    fc1w = torch.zeros(arch.hidden, 2, dtype=torch.float64)
    fc1b = torch.zeros(arch.hidden, dtype=torch.float64)
    fc2w = torch.zeros(2, arch.hidden, dtype=torch.float64)
    fc1w[:n] = torch.from_numpy(a * np.tile(direction, (n, 1)))
    fc1b[:n] = torch.from_numpy(-a * knots)
    fc2w[:, :n] = torch.from_numpy(sol[:n].T)
    w["mlp.fc1.weight"], w["mlp.fc1.bias"] = fc1w.float(), fc1b.float()
    w["mlp.fc2.weight"], w["mlp.fc2.bias"] = fc2w.float(), torch.from_numpy(sol[n]).float()
    return w


def flat_weights(arch: Architecture, space: ParamSpace, k: int, p: int, n_seeds: int) -> torch.Tensor:
    """The idealized circuit for every seed (all alike): a (S, P) tensor of `space`."""
    w = weights(arch, k, p)
    flat = torch.empty(n_seeds, space.size)
    for name, sl in space.slices.items():
        flat[:, sl] = w[name].reshape(1, -1)
    return flat
