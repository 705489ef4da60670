"""Anytime-valid confidence sequences for the mean paired difference B − A of a metric, and the
decision `compare --until-decided` stops on.

Why a confidence sequence: training seeds in batches and stopping once the answer looks clear
is a look at the data after every batch. A fixed-n test re-run at every look rejects a true
null far more often than alpha, the more looks the more often (tests/test_sequential.py
measures it). A confidence sequence (C_t) covers the true mean at every t at once with
probability at least 1 − alpha, so a decision taken at a look chosen from the data keeps its
error at alpha.

- Bounded metrics (success and divergence in {0, 1}, final test accuracy in [0, 1], epochs to
  an accuracy in [0, end + 1]; a paired difference then lies in [−B, B]): the hedged betting
  confidence sequence of Waudby-Smith & Ramdas (2023, JRSS-B, "Estimating means of bounded
  random variables by betting": the hedged capital process with predictable plug-in bets). It
  is exact for any distribution on the range, needs no normality (outcomes here are bimodal),
  and it adapts to the variance: paired binary outcomes are mostly concordant, their
  differences mostly zero, and there it is much tighter than a Hoeffding or empirical-Bernstein
  sequence (Howard et al. 2021; the comparisons in Waudby-Smith & Ramdas). Seeds are the
  expensive part, so the tightest valid sequence is worth its small grid computation.
- Unbounded metrics (spike counts and sizes, losses): no bound, no exact sequence. Their
  sequence is the asymptotic one of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024, Ann.
  Stat., "Time-uniform central limit theory and asymptotic confidence sequences"): Robbins'
  normal-mixture boundary around the running mean with the running standard deviation. Its
  coverage holds as the seeds grow, not at every n, and it is labelled "asymptotic" wherever
  shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Decision = Literal["better", "worse", "equivalent", "undecided"]

GRID = 399  # candidate means of the betting sequence: a step of B/200 (0.005 of a difference in [−1, 1])
BET_CAP = 0.5  # c of Waudby-Smith & Ramdas: bets at most half the wealth a candidate mean allows
TUNED_FOR = 100  # the number of seeds where the asymptotic sequence is narrowest (Robbins' mixture)


@dataclass(frozen=True)
class Look:
    """The sequence after `n` paired seeds: the mean difference B − A and the interval
    (low, high) that holds the true mean difference at every look at once, at level alpha."""

    n: int
    estimate: float
    low: float
    high: float
    method: str  # "betting" (exact) or "asymptotic"


def betting(d: np.ndarray, bound: float, alpha: float, looks: Sequence[int], grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """(low, high), each (..., len(looks)): the hedged betting confidence sequence for the mean
    of `d` (..., n), every value in [−bound, bound], after the first `looks` values.

    Each candidate mean m of x = (d + B) / 2B in [0, 1] bets on x above m and, with the other half
    of its wealth, below: K(m) = (K+ + K−)/2, K± = prod(1 ± λ±(x − m)), a nonnegative martingale
    under m; m is rejected for good once K(m) >= 1/alpha (Ville's inequality: the true mean is
    ever rejected with probability at most alpha, so the running intersection stays valid). The
    bets λ are predictable: from the values before, sqrt(2 log(2/α) / (σ̂² t log(1 + t))), capped
    at c/m and c/(1 − m) so wealth stays positive. The interval is open at its ends, the nearest
    rejected candidates: it holds every candidate not rejected, so a finer grid only narrows it."""
    x = (np.asarray(d, dtype=float) + bound) / (2 * bound)
    n = x.shape[-1]
    m = np.arange(1, grid + 1) / (grid + 1)  # candidates, ends excluded (a bet there is capped at 0)
    cap_up, cap_down = BET_CAP / m, BET_CAP / (1 - m)
    log_up = np.zeros(x.shape[:-1] + (grid,))
    log_down = np.zeros_like(log_up)
    rejected = np.zeros(log_up.shape, dtype=bool)
    var = np.full(x.shape[:-1], 0.25)  # σ̂² before any value: the prior 1/4 (of μ̂: 1/2), as Waudby-Smith & Ramdas
    total, squares = np.zeros(x.shape[:-1]), np.full(x.shape[:-1], 0.25)
    threshold = math.log(1 / alpha) + math.log(2)
    wanted = {t: i for i, t in enumerate(looks)}
    low = np.zeros(x.shape[:-1] + (len(looks),))
    high = np.zeros_like(low)
    for t in range(1, n + 1):
        gap = x[..., t - 1, None] - m
        bet = np.sqrt(2 * math.log(2 / alpha) / (var * t * math.log(1 + t)))[..., None]
        log_up += np.log1p(np.minimum(bet, cap_up) * gap)
        log_down += np.log1p(-np.minimum(bet, cap_down) * gap)
        rejected |= np.logaddexp(log_up, log_down) >= threshold
        total += x[..., t - 1]
        mean = (0.5 + total) / (t + 1)
        squares += (x[..., t - 1] - mean) ** 2
        var = squares / (t + 1)
        if t in wanted:
            lo, hi = _hull(rejected, m)
            low[..., wanted[t]], high[..., wanted[t]] = lo * 2 * bound - bound, hi * 2 * bound - bound
    return low, high


def _hull(rejected: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The open interval between the nearest rejected candidates around those not rejected (0
    and 1 where none is rejected on a side; the whole range if every one is: no answer)."""
    accepted = ~rejected
    any_left = accepted.any(axis=-1)
    first = np.argmax(accepted, axis=-1)
    last = m.size - 1 - np.argmax(accepted[..., ::-1], axis=-1)
    edges = np.concatenate([[0.0], m, [1.0]])  # edges[i] is the candidate below m[i]
    lo = np.where(any_left, edges[first], 0.0)
    hi = np.where(any_left, edges[last + 2], 1.0)
    return lo, hi


def asymptotic(d: np.ndarray, alpha: float, looks: Sequence[int], tuned_for: int = TUNED_FOR) -> tuple[np.ndarray, np.ndarray]:
    """(low, high), each (..., len(looks)): the asymptotic confidence sequence (Waudby-Smith et
    al. 2024, Robbins' normal mixture), mean ± sd · sqrt(2(tρ² + 1)/(t²ρ²) · log(sqrt(tρ² + 1)/α)), with ρ chosen
    to make it narrowest at `tuned_for` seeds (Howard et al. 2021's choice of ρ). Until the differences have a
    spread (two values at least, not all equal) it is the whole line: no answer yet."""
    d = np.asarray(d, dtype=float)
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuned_for
    t = np.asarray(looks, dtype=float)
    sums = np.cumsum(d, axis=-1)[..., np.asarray(looks) - 1]
    squares = np.cumsum(d**2, axis=-1)[..., np.asarray(looks) - 1]
    mean = sums / t
    var = np.maximum(squares - t * mean**2, 0.0) / np.maximum(t - 1, 1)
    radius = np.sqrt(var) * np.sqrt(2 * (t * rho2 + 1) / (t**2 * rho2) * np.log(np.sqrt(t * rho2 + 1) / alpha))
    radius = np.where((t >= 2) & (var > 0), radius, np.inf)  # no spread yet: nothing to base it on
    return mean - radius, mean + radius


def sequence(d: np.ndarray, looks: Sequence[int], alpha: float, bound: float | None) -> list[Look]:
    """The sequence at each look of the paired differences `d` (in seed order): betting where
    |d| <= `bound` is known, asymptotic where `bound` is None."""
    d = np.asarray(d, dtype=float)
    if bound is not None:
        if np.any(np.abs(d) > bound * (1 + 1e-12)):
            raise ValueError(f"a paired difference exceeds the bound {bound:g}")
        low, high = betting(d, bound, alpha, looks)
        method = "betting"
    else:
        low, high = asymptotic(d, alpha, looks)
        method = "asymptotic"
    return [Look(t, float(d[:t].mean()), float(lo), float(hi), method) for t, lo, hi in zip(looks, low, high)]


def decide(low, high, margin: float, better: Literal["higher", "lower"] = "higher"):
    """What the interval (low, high) of B − A decides (arrays give arrays): 'better' or 'worse'
    (it excludes 0; `better` says which direction is good), 'equivalent' (it lies within
    ±margin), else 'undecided'. An interval both away from 0 and inside the margin is a
    (small) difference: 'better' or 'worse'."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    above, below = low > 0, high < 0
    up, down = ("better", "worse") if better == "higher" else ("worse", "better")
    inside = (low >= -margin) & (high <= margin)
    out = np.select([above & ~below, below & ~above, inside], [up, down, "equivalent"], "undecided")
    return str(out) if out.ndim == 0 else out
