"""Statistics of `testbed compare` on synthetic per-seed tables where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.analysis import spike_detector as detector
from testbed.analysis import stats
from testbed.analysis.outcomes import BY_KEY, METRICS, RunData, first_epoch_at, outcomes
from testbed.comparison.pairwise import analyze


def synthetic(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-seed outcomes shaped like the real ones: bimodal accuracy, mostly-zero spike counts,
    censored times."""
    learned = rng.random(n) < 0.3
    acc = np.where(learned, rng.uniform(0.95, 1.0, n), rng.uniform(0.45, 0.55, n))
    spikes = rng.poisson(0.5, n).astype(float)
    t9 = np.where(learned, rng.integers(100, 900, n).astype(float), np.nan)
    loss = np.where(learned, rng.uniform(1e-4, 1e-2, n), rng.uniform(0.6, 0.7, n))
    return {
        "final_test_acc": acc,
        "success": (acc > 0.9).astype(float),
        "epochs_to_0.9": t9,
        "epochs_to_1.0": np.where(learned & (acc == 1.0), t9, np.nan),
        "spikes": spikes,
        "spike_size": spikes * rng.uniform(0.1, 1.0, n),
        "worst_spike": np.where(spikes > 0, rng.uniform(0.1, 1.0, n), 0.0),
        "train_loss_auc": loss * 2,
        "final_train_loss": loss,
        "final_test_loss": loss * 1.1,
        "diverged": (rng.random(n) < 0.05).astype(float),
    }


def copy(table):
    return {k: v.copy() for k, v in table.items()}


@pytest.mark.parametrize("n", [20, 100])
def test_identical_scenarios_give_no_detectable_difference(n):
    a = synthetic(np.random.default_rng(1), n)
    result = analyze({"a": a, "b": copy(a)}, list(range(n)), last_epoch=1000)
    verdict = result.verdicts[("a", "b")]
    assert "no detectable difference on any metric" in verdict
    for t in result.tests[("a", "b")].values():
        assert t.difference == 0 and t.p == 1.0 and t.low == t.high == 0


def test_independent_noise_is_not_called_a_difference():
    """Two draws from one distribution (different seeds' luck) must not look different."""
    rng = np.random.default_rng(7)
    false_alarms = 0
    for _ in range(20):
        a, b = synthetic(rng, 60), synthetic(rng, 60)
        result = analyze({"a": a, "b": b}, list(range(60)), last_epoch=1000)
        false_alarms += "no detectable difference" not in result.verdicts[("a", "b")]
    assert false_alarms <= 3  # Holm keeps the per-pair error rate near 5%


def test_planted_accuracy_shift_is_detected_as_better():
    rng = np.random.default_rng(2)
    a = synthetic(rng, 100)
    b = copy(a)
    b["final_test_acc"] = np.minimum(1.0, a["final_test_acc"] + rng.uniform(0.02, 0.08, 100))
    result = analyze({"a": a, "b": b}, list(range(100)), last_epoch=1000)
    t = result.tests[("a", "b")]["final_test_acc"]
    assert t.p_adjusted < 1e-6 and 0.02 < t.low <= t.difference <= t.high < 0.08
    assert stats.direction(BY_KEY["final_test_acc"], t) == "better"
    assert "b is better on final test accuracy" in result.verdicts[("a", "b")]


def test_planted_spike_reduction_is_better_and_increase_is_worse():
    rng = np.random.default_rng(3)
    a = synthetic(rng, 100)
    a["spikes"] = rng.poisson(2.0, 100).astype(float)
    fewer = copy(a)
    fewer["spikes"] = np.maximum(0, a["spikes"] - rng.integers(1, 3, 100))
    result = analyze({"a": a, "fewer": fewer}, list(range(100)), last_epoch=1000)
    assert stats.direction(BY_KEY["spikes"], result.tests[("a", "fewer")]["spikes"]) == "better"
    result = analyze({"fewer": fewer, "a": a}, list(range(100)), last_epoch=1000)
    assert stats.direction(BY_KEY["spikes"], result.tests[("fewer", "a")]["spikes"]) == "worse"
    assert "a is worse on loss spikes" in result.verdicts[("fewer", "a")]


def test_success_uses_mcnemar_on_discordant_seeds():
    a = np.zeros(40)
    b = np.zeros(40)
    b[:12] = 1.0  # 12 seeds gained, none lost: p = 2 * 0.5**12
    t = stats.paired(a, b, "binary")
    assert t.test == "McNemar exact"
    assert t.difference == pytest.approx(0.3)
    assert t.p == pytest.approx(2 * 0.5**12)
    b[12:14] = 0  # unchanged
    a[20], b[20] = 1.0, 0.0  # one lost
    assert stats.paired(a, b, "binary").p > 2 * 0.5**12


def test_wilson_interval_of_a_rate():
    e = stats.estimate(np.array([1.0] * 4 + [0.0] * 16), "binary")
    assert e.estimate == pytest.approx(0.2)
    assert e.low == pytest.approx(0.0807, abs=1e-3) and e.high == pytest.approx(0.4160, abs=1e-3)
    none = stats.estimate(np.zeros(10), "binary")
    assert none.estimate == 0 and none.low == 0 and 0.2 < none.high < 0.35


def test_censored_times_count_as_later_than_any_epoch():
    never = np.full(30, np.nan)
    fast = np.full(30, 200.0)
    e = stats.estimate(never, "time", censor_at=1001)
    assert e.reached == 0 and e.estimate == 1001
    t = stats.paired(never, fast, "time", censor_at=1001)
    assert t.difference == -801 and t.p < 1e-4
    assert stats.direction(BY_KEY["epochs_to_0.9"], stats.adjust({"x": t})["x"]) == "better"


def test_mean_interval_covers_the_mean_and_is_reproducible():
    x = np.random.default_rng(5).exponential(1.0, 80)
    e1, e2 = stats.estimate(x, "continuous"), stats.estimate(x, "continuous")
    assert e1 == e2
    assert e1.low < x.mean() < e1.high
    assert e1.spread == pytest.approx(x.std(ddof=1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=1, max_size=12))
def test_holm_adjustment_is_monotone_and_at_least_the_raw_p(ps):
    adjusted = stats.holm(ps)
    order = np.argsort(ps, kind="stable")
    assert all(q >= p - 1e-12 and q <= 1.0 for p, q in zip(ps, adjusted))
    sorted_q = [adjusted[i] for i in order]
    assert all(x <= y + 1e-12 for x, y in zip(sorted_q, sorted_q[1:]))
    assert min(adjusted) == pytest.approx(min(1.0, len(ps) * min(ps)))


def test_holm_keeps_nan():
    assert math.isnan(stats.holm([0.01, math.nan])[1])
    assert stats.holm([0.01, math.nan])[0] == pytest.approx(0.01)


def run_data(test_acc: np.ndarray, step_loss: np.ndarray) -> RunData:
    """A RunData over evaluated epochs 0..E-1 with given test accuracy and step losses."""
    E, S = test_acc.shape
    loss = np.full((E, S), 0.5)
    seeds = list(range(S))
    return RunData(
        path=None,
        seeds=seeds,
        epochs=np.arange(E),
        curves={"train_loss": loss, "train_acc": test_acc, "test_loss": loss, "test_acc": test_acc},
        step_loss=step_loss,
        spikes=detector.detect(step_loss, seeds, detector.SpikeParams()),
    )


def test_outcomes_read_times_spikes_and_final_values():
    acc = np.array([[0.5, 0.5], [0.92, 0.5], [1.0, 0.6], [1.0, 0.7]])
    steps = np.full((400, 2), 0.3) + np.random.default_rng(0).normal(0, 0.001, (400, 2))
    steps[200:203, 1] = 2.0  # one spike of height ~1.7 in seed 1
    out = outcomes(run_data(acc, steps))
    assert set(out) == {m.key for m in METRICS}
    np.testing.assert_array_equal(out["final_test_acc"], [1.0, 0.7])
    np.testing.assert_array_equal(out["success"], [1.0, 0.0])
    np.testing.assert_array_equal(out["epochs_to_0.9"], [1.0, np.nan])
    np.testing.assert_array_equal(out["epochs_to_1.0"], [2.0, np.nan])
    np.testing.assert_array_equal(out["spikes"], [0, 1])
    assert out["worst_spike"][1] == pytest.approx(1.7, abs=0.01)
    assert out["spike_size"][1] == out["worst_spike"][1]
    np.testing.assert_allclose(out["train_loss_auc"], [0.5, 0.5])


def test_first_epoch_at_ignores_later_drops():
    acc = np.array([[0.1], [0.95], [0.5], [0.99]])
    assert first_epoch_at(np.array([0, 10, 20, 30]), acc, 0.9)[0] == 10


def test_a_diverged_seed_is_counted_and_its_losses_count_as_initial():
    acc = np.array([[0.5, 0.5], [0.6, 0.5], [0.7, 0.5]])
    steps = np.full((300, 2), 0.3) + np.random.default_rng(1).normal(0, 0.001, (300, 2))
    steps[250:, 1] = np.nan  # seed 1 diverges
    run = run_data(acc, steps)
    run.curves["train_loss"] = np.array([[0.7, 0.69], [0.4, 0.5], [0.2, np.nan]])
    run.curves["test_loss"] = run.curves["train_loss"].copy()
    out = outcomes(run)
    np.testing.assert_array_equal(out["diverged"], [0.0, 1.0])
    np.testing.assert_allclose(out["final_train_loss"], [0.2, 0.69])
    assert np.isfinite(out["train_loss_auc"]).all() and np.isfinite(out["worst_spike"]).all()
    assert out["spikes"][1] == 1 and out["worst_spike"][1] == pytest.approx(0.69 - 0.3, abs=0.01)
