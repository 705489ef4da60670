"""From per-seed outcomes to the comparison's statistics: an estimate per scenario and metric,
a paired test per pair of scenarios and metric, and a verdict per pair."""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from testbed.analysis import power, stats
from testbed.analysis.outcomes import METRICS, Metric

Outcomes = dict[str, dict[str, np.ndarray]]  # label -> metric key -> (S,)


@dataclass(frozen=True)
class Analysis:
    labels: list[str]
    seeds: list[int]
    metrics: tuple[Metric, ...]
    censor_at: float  # time metrics: the value standing for "never reached"
    estimates: dict[str, dict[str, stats.Estimate]]  # label -> key -> estimate
    tests: dict[tuple[str, str], dict[str, stats.PairedTest]]  # (a, b) -> key -> b - a
    verdicts: dict[tuple[str, str], str]


def pairs(labels: list[str]) -> list[tuple[str, str]]:
    """Every pair, earlier input first: with the baseline given first, each pair reads
    'later scenario vs baseline'."""
    return list(combinations(labels, 2))


def analyze(outcomes: Outcomes, seeds: list[int], last_epoch: int, metrics: tuple[Metric, ...] = METRICS) -> Analysis:
    labels = list(outcomes)
    censor_at = float(last_epoch + 1)
    estimates = {
        label: {m.key: stats.estimate(outcomes[label][m.key], m.kind, censor_at) for m in metrics} for label in labels
    }
    tests, verdicts = {}, {}
    for a, b in pairs(labels):
        raw = {m.key: stats.paired(outcomes[a][m.key], outcomes[b][m.key], m.kind, censor_at) for m in metrics}
        adjusted = stats.adjust(raw)
        tests[(a, b)] = {m.key: _with_detectable(adjusted[m.key], m, outcomes[a][m.key], outcomes[b][m.key], censor_at) for m in metrics}
        verdicts[(a, b)] = stats.verdict(a, b, list(metrics), tests[(a, b)])
    return Analysis(labels, list(seeds), metrics, censor_at, estimates, tests, verdicts)


def _with_detectable(test: stats.PairedTest, metric: Metric, a: np.ndarray, b: np.ndarray, censor_at: float) -> stats.PairedTest:
    """The test with the smallest difference its seeds detect with 80% power at the report's
    alpha, from the spread of these paired outcomes."""
    spread, n = power.spread(a, b, metric.kind, censor_at)
    return replace(test, detectable=power.detectable(metric.kind, n, spread, stats.ALPHA))


def format_value(value: float, metric: Metric, censor_at: float) -> str:
    if not np.isfinite(value):
        return "-"
    if metric.kind == "time" and value >= censor_at:
        return "never"
    if metric.kind == "binary":
        return f"{value:.0%}"
    return f"{value:{metric.fmt}}"


def format_estimate(e: stats.Estimate, metric: Metric, censor_at: float) -> str:
    """'0.628 ± 0.206 [0.538, 0.716]', '20% [9%, 38%]' or '812 ± 310 (12/20 reached) [690, 930]'."""
    v = lambda x: format_value(x, metric, censor_at)  # noqa: E731
    if e.n == 0:
        return "-"
    ci = f"[{v(e.low)}, {v(e.high)}]"
    if e.statistic == "rate":
        return f"{v(e.estimate)} {ci}"
    reached = f" ({e.reached}/{e.n} reached)" if e.reached is not None else ""
    return f"{v(e.estimate)} ± {e.spread:{metric.fmt}}{reached} {ci}"


def format_difference(value: float, metric: Metric) -> str:
    if not np.isfinite(value):
        return "-"
    if metric.kind == "binary":
        return f"{value * 100:+.0f} pts"
    return f"{value:+{metric.fmt}}"


def format_detectable(value: float, metric: Metric) -> str:
    """'±18 pts' or '±0.082'; 'none' where not even the largest difference would show."""
    if np.isnan(value):
        return "-"
    if not np.isfinite(value):
        return "none"
    if metric.kind == "binary":
        return f"±{value * 100:.0f} pts"
    return f"±{value:{metric.fmt}}"


def statistic_name(metric: Metric) -> str:
    return {"binary": "rate", "time": "restricted mean ± sd"}.get(metric.kind, "mean ± sd")


def difference_name(metric: Metric) -> str:
    return {"binary": "rate", "time": "restricted mean"}.get(metric.kind, "mean")
