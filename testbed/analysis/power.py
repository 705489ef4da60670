"""Power of the paired tests of `testbed compare`: how many seeds a difference needs, and the
smallest difference a comparison's seeds could have detected (its minimum detectable effect).

"No detectable difference" on 12 seeds says little when 12 seeds could only have detected a
30-point change; these numbers say how much. Both are for the fixed-n tests of the report at
one metric's alpha (the verdict's Holm adjustment across metrics asks a little more):

- success and other binary metrics, the exact McNemar test: its exact power, summed over the
  number of discordant seeds (binomial in n with the share ψ of discordant seeds, at least |δ|:
  a difference of δ needs that many seeds to differ) and over how they split (binomial, B's
  gains at (ψ + δ)/2ψ). Connor's (1987) normal approximation, which starts the search, promises
  80% where the exact test gives about 76%;
- continuous metrics, counts and times, the Wilcoxon signed-rank test: the paired t-test's n
  (noncentral t) divided by 0.864, the smallest asymptotic relative efficiency of Wilcoxon
  against t over all distributions (Hodges & Lehmann 1956), so the n holds whatever the
  shape of the differences (for the mostly-zero, heavy-tailed counts here Wilcoxon needs
  fewer). The spread is the standard deviation of the paired differences.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from testbed.analysis.outcomes import Kind
from testbed.analysis.stats import censor

POWER = 0.8
WILCOXON_EFFICIENCY = 0.864  # Hodges & Lehmann's lower bound of Wilcoxon's efficiency against t
MAX_SEEDS = 10**7  # beyond this a difference counts as undetectable ("never")
EXACT_UP_TO = 20_000  # seeds up to which McNemar's power is summed exactly (beyond, Connor's approximation)


def spread(a: np.ndarray, b: np.ndarray, kind: Kind, censor_at: float = math.inf) -> tuple[float, int]:
    """(spread, seeds) of paired outcomes over the seeds finite in both: the share of
    discordant seeds for binary metrics, else the standard deviation of b − a."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if kind == "time":
        a, b = censor(a, censor_at), censor(b, censor_at)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if a.size < 2:
        return math.nan, int(a.size)
    if kind == "binary":
        return float(np.mean((a > 0.5) != (b > 0.5))), int(a.size)
    return float(np.std(b - a, ddof=1)), int(a.size)


def _mcnemar_n(effect: float, discordant: float, alpha: float, power: float) -> float:
    """Connor's approximate n (a start for the exact search)."""
    psi = max(discordant, abs(effect))
    za, zb = float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))
    return (za * math.sqrt(psi) + zb * math.sqrt(max(psi - effect**2, 0.0))) ** 2 / effect**2


def mcnemar_power(n: int, effect: float, discordant: float, alpha: float) -> float:
    """The exact McNemar test's power on n paired seeds (two-sided, p < alpha)."""
    psi = min(max(discordant, abs(effect)), 1.0)
    if psi == 0:
        return 0.0
    up = (psi + abs(effect)) / 2 / psi  # of a discordant seed, the chance it is a gain
    d = np.arange(n + 1)
    lowest = stats.binom.ppf(alpha / 2, d, 0.5) - 1  # rejected where min(gains, losses) <= lowest
    reject = stats.binom.cdf(lowest, d, up) + stats.binom.sf(d - lowest - 1, d, up)
    return float(np.sum(stats.binom.pmf(d, n, psi) * np.where(d > 0, reject, 0.0)))


def _mcnemar_exact_n(effect: float, discordant: float, alpha: float, power: float) -> float:
    approximate = _mcnemar_n(effect, discordant, alpha, power)
    if approximate > EXACT_UP_TO:  # so many discordant seeds that the normal approximation is the test
        return approximate
    n = max(2, math.floor(approximate * 0.9))
    while n < MAX_SEEDS and mcnemar_power(n, effect, discordant, alpha) < power:
        n += max(1, n // 200)
    return n


def _t_power(n: int, effect: float, sd: float, alpha: float) -> float:
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(effect) * math.sqrt(n) / sd
    return float(stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc))


def _t_n(effect: float, sd: float, alpha: float, power: float) -> int:
    """The smallest n at which the paired t-test has `power` (normal start, then noncentral t)."""
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = max(2, math.ceil(((za + zb) * sd / abs(effect)) ** 2))
    while n < MAX_SEEDS and _t_power(n, effect, sd, alpha) < power:
        n += 1
    return n


def seeds_needed(kind: Kind, effect: float, spread: float, alpha: float, power: float = POWER) -> float:
    """Paired seeds (per scenario) for the report's test of this kind to detect `effect` with
    `power` at two-sided `alpha`; inf where it cannot (no effect, or no spread known)."""
    if not (np.isfinite(effect) and np.isfinite(spread)) or effect == 0:
        return math.inf
    if kind == "binary":
        n = _mcnemar_exact_n(effect, spread, alpha, power)
    elif spread == 0:
        return 2.0  # no spread at all: any difference shows on the first seeds
    else:
        n = _t_n(effect, spread, alpha, power) / WILCOXON_EFFICIENCY
    return float(math.ceil(n)) if n < MAX_SEEDS else math.inf


def detectable(kind: Kind, n: int, spread: float, alpha: float, power: float = POWER) -> float:
    """The smallest difference (in the metric's units, > 0) that `n` paired seeds with this
    spread detect with `power` at two-sided `alpha`; NaN where nothing says (n < 2, no spread
    of a continuous metric)."""
    if n < 2 or not np.isfinite(spread):
        return math.nan
    if kind == "binary":
        if mcnemar_power(n, 1.0, spread, alpha) < power:
            return math.inf  # not even every seed flipping would do
        lo, hi = 0.0, 1.0  # bisection: the power grows with the difference
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mcnemar_power(n, mid, spread, alpha) < power else (lo, mid)
        return hi
    if spread == 0:
        return math.nan
    efficient = n * WILCOXON_EFFICIENCY
    if efficient < 2:
        return math.inf
    df = efficient - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * spread / math.sqrt(efficient))
