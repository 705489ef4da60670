"""The spike detector on synthetic step losses where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.analysis.spike_detector import SpikeParams, detect

PARAMS = SpikeParams()


def decaying_noisy_loss(steps: int, seed: int, floor: float = 1e-3) -> np.ndarray:
    """A loss falling from 0.7 towards a floor with multiplicative minibatch noise (10%)."""
    rng = np.random.default_rng(seed)
    trend = floor + 0.7 * np.exp(-np.arange(steps) / (steps / 4))
    return trend * np.exp(rng.normal(0.0, 0.1, steps))


@given(seed=st.integers(0, 10_000))
@settings(max_examples=25, deadline=None)
def test_noise_alone_is_not_a_spike(seed):
    loss = decaying_noisy_loss(3000, seed)[:, None]
    assert detect(loss, [0], PARAMS) == []


@given(seed=st.integers(0, 10_000), positions=st.lists(st.integers(200, 2900), min_size=1, max_size=4, unique=True))
@settings(max_examples=25, deadline=None)
def test_planted_spikes_are_found_once_each_at_their_peak(seed, positions):
    positions = sorted(positions)
    if any(b - a <= 120 for a, b in zip(positions, positions[1:])):
        return  # keep planted spikes apart: each needs a clean window before it
    loss = decaying_noisy_loss(3000, seed)
    for p in positions:
        loss[p : p + 3] = [0.5, 1.5, 0.4]  # a jump, its peak, a partial recovery
    found = detect(loss[:, None], [7], PARAMS)
    assert [s.peak for s in found] == [p + 1 for p in positions]
    assert all(s.seed == 7 and s.peak_loss == pytest.approx(1.5) and s.ratio > 2 for s in found)


def test_elevated_steps_close_together_form_one_spike():
    loss = np.full(400, 0.01) * np.exp(np.random.default_rng(0).normal(0, 0.05, 400))
    loss[200], loss[210] = 0.8, 0.9  # two steps, 10 apart (< merge_gap)
    loss[300] = 0.7
    spikes = detect(loss[:, None], [0], PARAMS)
    assert [(s.start, s.peak, s.end) for s in spikes] == [(200, 210, 210), (300, 300, 300)]
    assert len(detect(loss[:, None], [0], SpikeParams(merge_gap=3))) == 3


def test_small_absolute_jumps_late_in_training_are_not_spikes():
    """1e-4 -> 5e-4 is a large ratio but far below min_delta."""
    loss = np.full(300, 1e-4)
    loss[150] = 5e-4
    assert detect(loss[:, None], [0], PARAMS) == []


def test_non_finite_losses_count_as_spikes():
    loss = np.full(200, 0.3)
    loss[120:] = np.nan
    spikes = detect(loss[:, None], [0], PARAMS)
    assert len(spikes) == 1 and spikes[0].start == 120


def test_seeds_are_detected_independently():
    a = decaying_noisy_loss(1000, 1)
    b = decaying_noisy_loss(1000, 2)
    b[600] = 2.0
    both = detect(np.stack([a, b], 1), [3, 9], PARAMS)
    assert [(s.seed, s.peak) for s in both] == [(9, 600)]
    alone = detect(b[:, None], [9], PARAMS)
    assert [(s.seed, s.peak, s.baseline) for s in alone] == [(s.seed, s.peak, s.baseline) for s in both]


@given(seed=st.integers(0, 10_000), n_bad=st.integers(0, 5), floor=st.sampled_from([1e-4, 1e-2, 0.3]))
@settings(max_examples=30, deadline=None)
def test_candidate_shortcut_matches_the_full_trailing_statistics(seed, n_bad, floor):
    """`elevated` computes medians only where the trailing minimum allows a spike; it must flag
    exactly the steps the definition (medians at every step) flags, NaN and inf losses included."""
    from testbed.analysis.spike_detector import elevated, elevated_reference

    rng = np.random.default_rng(seed)
    loss = np.stack([decaying_noisy_loss(1500, seed + j, floor) for j in range(3)], axis=1)
    for _ in range(12):
        t, j = rng.integers(0, 1500), rng.integers(0, 3)
        loss[t : t + rng.integers(1, 30), j] *= rng.uniform(1.5, 400)
    for _ in range(n_bad):
        loss[rng.integers(0, 1500), rng.integers(0, 3)] = rng.choice([np.nan, np.inf])
    mask, base = elevated(loss, PARAMS)
    np.testing.assert_array_equal(mask, elevated_reference(loss, PARAMS))
    assert np.isfinite(base[mask & np.isfinite(loss)]).all()
