"""The sequential comparison by simulation: synthetic paired outcomes where the truth is known,
looked at after every batch of seeds as `compare --until-decided` does.

With no true difference, the confidence sequence's rate of false decisions ("better" or
"worse" at any look) stays at or below alpha, while the naive procedure (a paired t-test re-run
after every batch, stopping at the first p < alpha) exceeds it; with a true difference the
sequence decides the right way, and with a truth inside the margin it reaches equivalence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from testbed.analysis import sequential as sq

ALPHA = 0.05
REPLICATIONS = 1000
BATCH = 20
LOOKS = list(range(BATCH, 201, BATCH))  # 10 looks, 200 seeds at most


def success(rng, rate_a: float, rate_b: float, n: int, replications: int = REPLICATIONS) -> tuple[np.ndarray, np.ndarray]:
    """(R, n) paired successes: a seed's luck is shared by A and B half of the time."""
    u = rng.random((replications, n))
    v = np.where(rng.random((replications, n)) < 0.5, u, rng.random((replications, n)))
    return (u < rate_a).astype(float), (v < rate_b).astype(float)


def accuracy(rng, rate_a: float, rate_b: float, n: int, replications: int = REPLICATIONS) -> tuple[np.ndarray, np.ndarray]:
    """(R, n) paired final accuracies shaped like the real ones: near chance or near perfect."""
    def draw(rate, luck):
        learned = luck < rate
        return np.where(learned, rng.uniform(0.95, 1.0, luck.shape), rng.uniform(0.45, 0.55, luck.shape))

    u = rng.random((replications, n))
    v = np.where(rng.random((replications, n)) < 0.5, u, rng.random((replications, n)))
    return draw(rate_a, u), draw(rate_b, v)


def first_decision(decisions: np.ndarray) -> np.ndarray:
    """(R,) the decision at the first look that is not 'undecided' (where the procedure stops)."""
    decided = decisions != "undecided"
    first = np.argmax(decided, axis=-1)
    return np.where(decided.any(axis=-1), np.take_along_axis(decisions, first[:, None], axis=-1)[:, 0], "undecided")


def sequential_decisions(d: np.ndarray, bound: float | None, margin: float = 0.05, better: str = "higher") -> np.ndarray:
    if bound is None:
        low, high = sq.asymptotic(d, ALPHA, LOOKS)
    else:
        low, high = sq.betting(d, bound, ALPHA, LOOKS)
    return first_decision(sq.decide(low, high, margin, better))


def naive_rejects(d: np.ndarray) -> np.ndarray:
    """(R,) whether a paired t-test at some look had p < alpha (a repeated fixed-n test)."""
    hit = np.zeros(d.shape[0], dtype=bool)
    for t in LOOKS:
        with np.errstate(invalid="ignore", divide="ignore"):
            p = stats.ttest_1samp(d[:, :t], 0.0, axis=-1).pvalue
        hit |= np.nan_to_num(p, nan=1.0) < ALPHA
    return hit


def naive_mcnemar_rejects(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(R,) whether the report's own test of success, the exact McNemar test, re-run at every
    look had p < alpha."""
    hit = np.zeros(a.shape[0], dtype=bool)
    for t in LOOKS:
        gained = (b[:, :t] > a[:, :t]).sum(axis=-1)
        lost = (a[:, :t] > b[:, :t]).sum(axis=-1)
        p = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(gained, lost), gained + lost, 0.5))
        hit |= (gained + lost > 0) & (p < ALPHA)
    return hit


@pytest.mark.parametrize("outcome", ["success", "accuracy"])
def test_no_true_difference_keeps_false_decisions_at_alpha_while_the_naive_test_exceeds_it(outcome):
    rng = np.random.default_rng(20261205)
    a, b = (success if outcome == "success" else accuracy)(rng, 0.3, 0.3, LOOKS[-1])
    d = b - a
    false = np.isin(sequential_decisions(d, 1.0), ["better", "worse"]).mean()
    naive = naive_rejects(d).mean()
    print(f"{outcome}: {REPLICATIONS} replications, {len(LOOKS)} looks: sequential {false:.3f}, naive {naive:.3f} (alpha {ALPHA})")
    assert false <= ALPHA
    assert naive > ALPHA
    if outcome == "success":
        mcnemar = naive_mcnemar_rejects(a, b).mean()
        print(f"success: the report's exact McNemar test re-run at every look: {mcnemar:.3f}")
        assert mcnemar > ALPHA


def test_asymptotic_sequence_of_counts_keeps_alpha_in_simulation():
    """Spike counts (unbounded, mostly zero): the asymptotic sequence; its guarantee is only
    asymptotic, so this checks it at the seed counts used, on counts shaped like the real ones."""
    rng = np.random.default_rng(7)
    n = LOOKS[-1]
    heavy = rng.random((REPLICATIONS, n, 2)) < 0.3
    counts = np.where(heavy, rng.poisson(5.0, (REPLICATIONS, n, 2)), 0).astype(float)
    d = counts[..., 1] - counts[..., 0]
    false = np.isin(sequential_decisions(d, None, better="lower"), ["better", "worse"]).mean()
    naive = naive_rejects(d).mean()
    print(f"spikes (asymptotic): sequential {false:.3f}, naive {naive:.3f}")
    assert false <= ALPHA
    assert naive > ALPHA


def test_a_true_difference_is_decided_the_right_way():
    rng = np.random.default_rng(3)
    a, b = success(rng, 0.2, 0.5, LOOKS[-1], replications=200)
    decisions = sequential_decisions(b - a, 1.0)
    assert (decisions == "better").mean() >= 0.9 and not (decisions == "worse").any()
    # the same difference read for a metric where lower is better (B has more spikes: worse)
    decisions = sequential_decisions(b - a, 1.0, better="lower")
    assert (decisions == "worse").mean() >= 0.9 and not (decisions == "better").any()
    # and a worse B is called worse
    decisions = sequential_decisions(a - b, 1.0)
    assert (decisions == "worse").mean() >= 0.9 and not (decisions == "better").any()


def test_a_truth_inside_the_margin_is_decided_equivalent():
    """B = A give or take 0.01 of accuracy on every seed (a harmless change): inside ±0.05."""
    rng = np.random.default_rng(4)
    a, _ = accuracy(rng, 0.3, 0.3, LOOKS[-1], replications=200)
    b = np.clip(a + rng.uniform(-0.01, 0.012, a.shape), 0, 1)
    decisions = sequential_decisions(b - a, 1.0, margin=0.05)
    assert (decisions == "equivalent").mean() >= 0.9
    assert not np.isin(decisions, ["worse"]).any()


def test_the_interval_is_open_at_rejected_candidates_and_narrows_with_seeds():
    d = np.random.default_rng(5).permutation(np.r_[np.ones(30), np.zeros(170)])  # a mean of 0.15
    low, high = sq.betting(d, 1.0, ALPHA, [20, 100, 200])
    assert np.all(low < 0.15) and np.all(high > 0.15)
    assert np.all(np.diff(high - low) <= 0)  # a running intersection never widens
    looks = sq.sequence(d, [20, 200], ALPHA, 1.0)
    assert looks[-1].n == 200 and looks[-1].estimate == pytest.approx(0.15) and looks[-1].method == "betting"
    with pytest.raises(ValueError, match="exceeds the bound"):
        sq.sequence(d * 2, [20], ALPHA, 1.0)


def test_decide_reads_direction_and_margin():
    assert sq.decide(0.01, 0.3, 0.05) == "better"
    assert sq.decide(0.01, 0.3, 0.05, "lower") == "worse"
    assert sq.decide(-0.3, -0.01, 0.05, "lower") == "better"
    assert sq.decide(-0.04, 0.03, 0.05) == "equivalent"
    assert sq.decide(-0.04, 0.3, 0.05) == "undecided"
    assert list(sq.decide([0.1, -0.2], [0.2, 0.2], 0.05)) == ["better", "undecided"]
