"""Power of the report's paired tests: the seeds a difference needs, checked by simulating the
tests themselves (exact McNemar, Wilcoxon signed-rank), and the smallest detectable difference
every compare report gives where it detected none."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from testbed.analysis import power as pw
from testbed.comparison.pairwise import analyze
from testbed.comparison.report import pair_table

ALPHA = 0.05


def mcnemar_power(n: int, gained: float, lost: float, reps: int, rng) -> float:
    """Share of simulated comparisons of n seeds where the exact McNemar test has p < alpha."""
    counts = rng.multinomial(n, [gained, lost, 1 - gained - lost], size=reps)
    up, down = counts[:, 0], counts[:, 1]
    k = np.minimum(up, down)
    p = np.minimum(1.0, 2 * stats.binom.cdf(k, up + down, 0.5))
    return float(np.mean(np.where(up + down > 0, p, 1.0) < ALPHA))


def wilcoxon_power(n: int, effect: float, sd: float, reps: int, rng) -> float:
    d = rng.normal(effect, sd, (reps, n))
    return float(np.mean(stats.wilcoxon(d, axis=-1).pvalue < ALPHA))


def test_seeds_needed_give_the_power_promised_to_the_simulated_tests():
    rng = np.random.default_rng(11)
    # success: B gains 25% of seeds and loses 10% (difference +15 points, 35% discordant)
    n = int(pw.seeds_needed("binary", 0.15, 0.35, ALPHA))
    simulated = mcnemar_power(n, 0.25, 0.10, 4000, rng)
    assert simulated >= 0.78 and abs(simulated - pw.mcnemar_power(n, 0.15, 0.35, ALPHA)) < 0.025
    assert mcnemar_power(n // 2, 0.25, 0.10, 4000, rng) < 0.7  # half as many seeds are not enough
    # a continuous metric: differences with mean 0.1 and sd 0.3
    n = int(pw.seeds_needed("continuous", 0.1, 0.3, ALPHA))
    assert 0.8 <= wilcoxon_power(n, 0.1, 0.3, 2000, rng)
    assert wilcoxon_power(n // 2, 0.1, 0.3, 2000, rng) < 0.7


@pytest.mark.parametrize("kind, spread", [("binary", 0.4), ("binary", 0.0), ("continuous", 0.27), ("count", 12.0)])
def test_detectable_difference_is_the_inverse_of_seeds_needed(kind, spread):
    for n in (12, 100, 400):
        mde = pw.detectable(kind, n, spread, ALPHA)
        assert mde > 0
        needed = pw.seeds_needed(kind, mde, spread, ALPHA)
        assert abs(needed - n) <= max(2, 0.03 * n), (n, mde, needed)
        assert pw.detectable(kind, 4 * n, spread, ALPHA) < mde  # more seeds, smaller differences


def test_no_effect_or_no_spread_are_said_not_invented():
    assert pw.seeds_needed("continuous", 0.0, 0.3, ALPHA) == math.inf
    assert pw.seeds_needed("binary", 0.1, math.nan, ALPHA) == math.inf
    assert math.isnan(pw.detectable("continuous", 50, 0.0, ALPHA))
    assert math.isnan(pw.detectable("binary", 1, 0.3, ALPHA))
    assert pw.detectable("binary", 3, 0.5, ALPHA) == math.inf  # 3 seeds cannot detect any change of rate


def test_a_report_without_a_detected_difference_says_what_it_could_have_detected():
    rng = np.random.default_rng(1)
    n = 12
    acc = np.where(rng.random(n) < 0.3, 1.0, 0.5)
    a = {"final_test_acc": acc, "success": (acc > 0.9).astype(float)}
    b = {"final_test_acc": np.where(rng.random(n) < 0.3, 1.0, 0.5)}
    b["success"] = (b["final_test_acc"] > 0.9).astype(float)
    from testbed.analysis.outcomes import BY_KEY

    metrics = (BY_KEY["final_test_acc"], BY_KEY["success"])
    result = analyze({"a": a, "b": b}, list(range(n)), last_epoch=100, metrics=metrics)
    tests = result.tests[("a", "b")]
    spread, _ = pw.spread(a["success"], b["success"], "binary")
    assert tests["success"].detectable == pytest.approx(pw.detectable("binary", n, spread, ALPHA))
    table = pair_table(result, "a", "b")
    col = table.header.index("detectable")
    for row in table.rows:
        assert row[col].startswith("±") and "none detected" in row
    assert "80% power" in table.caption
    # a detected difference leaves the cell empty: it was detected
    b2 = {"final_test_acc": np.full(40, 1.0), "success": np.ones(40)}
    a2 = {"final_test_acc": np.full(40, 0.5), "success": np.zeros(40)}
    table = pair_table(analyze({"a": a2, "b": b2}, list(range(40)), last_epoch=100, metrics=metrics), "a", "b")
    assert all(row[col] == "" for row in table.rows)
