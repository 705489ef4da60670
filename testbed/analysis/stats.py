"""Statistics of paired seeds: per-scenario estimates with 95% confidence intervals, paired
differences with their intervals and p-values, and the verdict.

Outcomes on this task are far from normal: final accuracy is bimodal (chance or perfect), spike
counts are mostly zero, times to accuracy are censored where a seed never gets there. So:

- continuous and count metrics: mean with a BCa bootstrap interval; paired difference of means
  with a paired (seed-resampling) bootstrap interval and the Wilcoxon signed-rank test (Pratt's
  handling of zero differences, which ties make common);
- success (binary): rate with a Wilson interval; paired difference of rates with a bootstrap
  interval and the exact McNemar test on the discordant seeds;
- epochs to an accuracy (time): seeds that never get there are censored at one epoch past the
  end, and the restricted mean (the mean of min(time, end + 1), standard for censored times)
  is compared like a continuous metric; most seeds may never get there, which would leave a
  median, and a median difference, stuck at "never".

p-values of one pair of scenarios are Holm-adjusted across its metrics before the verdict.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from testbed.analysis.outcomes import Kind, Metric

CONFIDENCE = 0.95
ALPHA = 0.05
N_RESAMPLES = 9999
BOOTSTRAP_SEED = 20240101  # fixed, so a report is reproducible to the digit


@dataclass(frozen=True)
class Estimate:
    """One scenario's metric over its seeds."""

    n: int
    estimate: float  # see `statistic`
    statistic: str  # "mean", "rate" or "restricted mean" (times, censored at the end)
    spread: float  # standard deviation (NaN for rates)
    low: float
    high: float
    reached: int | None = None  # time metrics: seeds that got there


@dataclass(frozen=True)
class PairedTest:
    """Scenario b minus scenario a over the same seeds."""

    n: int
    difference: float
    low: float
    high: float
    p: float
    test: str
    p_adjusted: float = math.nan
    detectable: float = math.nan  # the smallest |difference| these seeds detect with 80% power (testbed.analysis.power)


def censor(values: np.ndarray, at: float) -> np.ndarray:
    """Time metrics: never reached (NaN) -> `at`, a value later than any epoch."""
    return np.where(np.isnan(values), at, values)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)



def _bootstrap(data: tuple[np.ndarray, ...], statistic, method: str) -> tuple[float, float]:
    """The bootstrap, vectorized over resamples (statistics take an `axis=-1` form)."""
    if all(np.ptp(d) == 0 for d in data):
        v = float(statistic(*data))
        return v, v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(
            data,
            statistic,
            paired=len(data) > 1,
            vectorized=True,
            n_resamples=N_RESAMPLES,
            confidence_level=CONFIDENCE,
            method=method,
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)) and method != "percentile":
        return _bootstrap(data, statistic, "percentile")
    return lo, hi


def estimate(values: np.ndarray, kind: Kind, censor_at: float = math.inf) -> Estimate:
    """Mean (continuous, count), rate (binary) or restricted mean (time) with a 95% interval."""
    x = np.asarray(values, dtype=float)
    reached = None
    if kind == "time":
        reached = int(np.isfinite(x).sum())
        x = censor(x, censor_at)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Estimate(0, math.nan, "mean", math.nan, math.nan, math.nan)
    if kind == "binary":
        k = int(round(x.sum()))
        ci = stats.binomtest(k, x.size).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
        return Estimate(x.size, k / x.size, "rate", math.nan, float(ci.low), float(ci.high))
    sd = float(x.std(ddof=1)) if x.size > 1 else 0.0
    lo, hi = _bootstrap((x,), _mean, "BCa") if x.size > 1 else (float(x[0]), float(x[0]))
    return Estimate(x.size, float(x.mean()), "restricted mean" if kind == "time" else "mean", sd, lo, hi, reached)


def _mean_difference(a, b, axis=-1):
    return np.mean(b - a, axis=axis)


def paired(a: np.ndarray, b: np.ndarray, kind: Kind, censor_at: float = math.inf) -> PairedTest:
    """b - a over seeds present (finite) in both, with the test suited to the metric's kind."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if kind == "time":
        a, b = censor(a, censor_at), censor(b, censor_at)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = a.size
    if n == 0:
        return PairedTest(0, math.nan, math.nan, math.nan, math.nan, "none")
    diff = float(_mean_difference(a, b))
    lo, hi = _bootstrap((a, b), _mean_difference, "BCa") if n > 1 else (diff, diff)
    if kind == "binary":
        gained = int(((b > 0.5) & (a < 0.5)).sum())
        lost = int(((a > 0.5) & (b < 0.5)).sum())
        p = stats.binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
        return PairedTest(n, diff, lo, hi, float(p), "McNemar exact")
    d = b - a
    if not np.any(d != 0):
        return PairedTest(n, diff, lo, hi, 1.0, "Wilcoxon signed-rank")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = stats.wilcoxon(a, b, zero_method="pratt").pvalue  # type: ignore[attr-defined]  # scipy types its result as a bare tuple
    return PairedTest(n, diff, lo, hi, float(p), "Wilcoxon signed-rank")


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx])]
    m = order.size
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def adjust(tests: dict[str, PairedTest]) -> dict[str, PairedTest]:
    """The same tests with `p_adjusted` filled in (Holm over the metrics of one pair)."""
    keys = list(tests)
    adjusted = holm([tests[k].p for k in keys])
    return {k: PairedTest(**{**tests[k].__dict__, "p_adjusted": q}) for k, q in zip(keys, adjusted)}


def direction(metric: Metric, test: PairedTest) -> str:
    """'better', 'worse' or 'same' for scenario b relative to a, at ALPHA after adjustment."""
    if not (test.p_adjusted < ALPHA) or test.difference == 0 or not np.isfinite(test.difference):
        return "same"
    higher = test.difference > 0
    return "better" if higher == (metric.better == "higher") else "worse"


def format_p(p: float) -> str:
    if not np.isfinite(p):
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def p_text(p: float) -> str:
    """'p = 0.012' or 'p < 0.0001'."""
    text = format_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def verdict(a: str, b: str, metrics: list[Metric], tests: dict[str, PairedTest]) -> str:
    """One line: where b is better or worse than a, or that no difference is detectable."""
    n = max((t.n for t in tests.values()), default=0)
    better = [m for m in metrics if direction(m, tests[m.key]) == "better"]
    worse = [m for m in metrics if direction(m, tests[m.key]) == "worse"]
    head = f"{b} vs {a} ({n} paired seeds)"
    if not better and not worse:
        smallest = min((t.p_adjusted for t in tests.values() if np.isfinite(t.p_adjusted)), default=math.nan)
        return f"{head}: no detectable difference on any metric (smallest adjusted {p_text(smallest)})." + _could_detect(metrics, tests)

    def said(ms: list[Metric]) -> str:
        return ", ".join(f"{m.label} ({_signed(tests[m.key].difference, m)}, {p_text(tests[m.key].p_adjusted)})" for m in ms)

    parts = []
    if better:
        parts.append(f"{b} is better on {said(better)}")
    if worse:
        parts.append(f"{b} is worse on {said(worse)}")
    rest = len(metrics) - len(better) - len(worse)
    tail = f"; no detectable difference on the other {rest} metric{'s' if rest != 1 else ''}" if rest else ""
    return f"{head}: " + "; ".join(parts) + tail + "." + _could_detect(metrics, tests)


HEADLINE = ("success", "final_test_acc", "spikes")  # the metrics whose detectable difference the verdict states


def _could_detect(metrics: list[Metric], tests: dict[str, PairedTest]) -> str:
    """' Where none was detected, these seeds detect (80% power) differences of success ±58
    points, ...' for the headline metrics: what 'no detectable difference' was worth."""
    def size(value: float, metric: Metric) -> str:
        if not np.isfinite(value):
            return "none at all"
        return f"±{value * 100:.0f} points" if metric.kind == "binary" else f"±{value:{metric.fmt}}"

    said = [
        f"{m.label} {size(tests[m.key].detectable, m)}"
        for m in metrics
        if m.key in HEADLINE and direction(m, tests[m.key]) == "same" and not np.isnan(tests[m.key].detectable)
    ]
    return f" Where none was detected, these seeds detect (80% power) differences of {', '.join(said)}." if said else ""


def _signed(value: float, metric: Metric) -> str:
    if metric.kind == "binary":
        return f"{value * 100:+.0f} points"
    return f"{value:+{metric.fmt}}"
