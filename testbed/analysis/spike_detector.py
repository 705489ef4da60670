"""Loss-spike detection on step-level losses.

The baseline of step t is the median loss of the `window` steps before it (at least
`min_history` of them), and its noise the scaled median absolute deviation (MAD) of that window.
Step t is *elevated* when its loss exceeds the baseline

  - by a factor of at least `ratio`,
  - by at least `min_delta` (so that 1e-4 -> 3e-4 late in training is not a spike), and
  - by at least `z` noise units (so that minibatch noise while the loss falls is not a spike).

A non-finite loss counts as elevated. Elevated steps at most `merge_gap` steps apart form one
spike, reported with its first, peak and last step, the baseline before it and the peak loss.
Trailing medians keep one spike from hiding the next.

A seed whose loss turns non-finite has *diverged*: from its first non-finite step on, nothing is
a spike any more (the weights are gone), and one spike marked `diverged` is reported at that
step, with the finite losses before it as its baseline (NaN when the very first step diverged),
whether or not the seed had enough history for an ordinary spike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from pydantic import Field

from testbed.plugin_api.base import Params


class SpikeParams(Params):
    window: int = Field(default=50, ge=2, description="steps in the trailing median baseline")
    min_history: int = Field(default=10, ge=1, description="steps of history needed before detecting")
    ratio: float = Field(default=2.0, gt=1, description="loss / baseline above which a step is elevated")
    min_delta: float = Field(default=0.05, ge=0, description="loss - baseline above which a step is elevated")
    z: float = Field(default=6.0, ge=0, description="loss - baseline above this many robust standard deviations (1.4826 MAD)")
    merge_gap: int = Field(default=20, ge=0, description="elevated steps at most this far apart form one spike")


@dataclass(frozen=True)
class Spike:
    seed: int
    start: int  # step index (from 0) of the first elevated step
    peak: int  # step index of the highest loss
    end: int  # step index of the last elevated step
    baseline: float
    peak_loss: float
    diverged: bool = False  # the loss turned non-finite at `start` and the seed never recovers a meaning

    @property
    def ratio(self) -> float:
        return self.peak_loss / self.baseline if self.baseline > 0 else float("inf")

    def row(self) -> dict:
        return asdict(self) | {"ratio": self.ratio, "diverged": int(self.diverged)}


def trailing_stats(losses: np.ndarray, window: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """(T, S) -> median and robust standard deviation (1.4826 MAD) of the `window` previous
    steps of each step (NaN where there are none)."""
    T, S = losses.shape
    x = torch.from_numpy(np.where(np.isfinite(losses), losses, np.inf).astype(np.float32))
    padded = torch.cat([torch.full((window, S), float("nan")), x], 0)
    median, spread = torch.empty(T, S), torch.empty(T, S)
    for lo in range(0, T, chunk):
        hi = min(T, lo + chunk)
        win = padded[lo : hi + window - 1].unfold(0, window, 1)[: hi - lo]  # windows ending before each step
        med = torch.nanmedian(win, dim=-1).values
        median[lo:hi] = med
        spread[lo:hi] = 1.4826 * torch.nanmedian((win - med.unsqueeze(-1)).abs(), dim=-1).values
    return median.numpy(), spread.numpy()


def elevated(losses: np.ndarray, params: SpikeParams) -> tuple[np.ndarray, np.ndarray]:
    """(elevated mask, baseline), both (T, S); the baseline is computed only at candidate steps
    (NaN elsewhere).

    The median of a window is at least its minimum, so a step can only beat `ratio` x baseline
    and baseline + `min_delta` if it beats them with the window's minimum in place of its median.
    The trailing minimum is cheap; medians are then taken only at those candidates, which are a
    small fraction of the steps. Same numbers as `trailing_stats` everywhere, at a fraction of the
    cost (tests/test_spikes.py checks the two agree)."""
    T, S = losses.shape
    w = params.window
    finite = np.isfinite(losses)
    x = torch.from_numpy(np.where(finite, losses, np.inf).astype(np.float32))
    history = np.minimum(np.arange(T), w)[:, None]
    lowest = torch.cat([torch.full((w, S), float("inf")), x], 0).unfold(0, w, 1)[:T].amin(-1).numpy()
    with np.errstate(invalid="ignore"):
        candidate = (history >= params.min_history) & (
            ((losses > params.ratio * lowest) & (losses - lowest > params.min_delta)) | ~finite
        )
    steps, cols = np.nonzero(candidate)
    base = np.full((T, S), np.nan, dtype=np.float32)
    mask = np.zeros((T, S), dtype=bool)
    if steps.size == 0:
        return mask, base
    padded = torch.cat([torch.full((w, S), float("nan")), x], 0)
    win = padded[torch.from_numpy(steps)[:, None] + torch.arange(w), torch.from_numpy(cols)[:, None]]  # (n, w)
    med = torch.nanmedian(win, dim=-1).values
    spread = (1.4826 * torch.nanmedian((win - med.unsqueeze(-1)).abs(), dim=-1).values).numpy()
    med = med.numpy()
    loss = losses[steps, cols]
    with np.errstate(invalid="ignore"):
        excess = loss - med
        high = (loss > params.ratio * med) & (excess > params.min_delta) & (excess > params.z * spread)
    base[steps, cols] = med
    mask[steps, cols] = np.isfinite(med) & (high | ~finite[steps, cols])
    return mask, base


def elevated_reference(losses: np.ndarray, params: SpikeParams) -> np.ndarray:
    """The elevated mask from the trailing statistics of every step (the definition; slow)."""
    base, spread = trailing_stats(losses, params.window)
    finite = np.isfinite(losses)
    history = np.minimum(np.arange(losses.shape[0]), params.window)[:, None]
    ok = (history >= params.min_history) & np.isfinite(base)
    with np.errstate(invalid="ignore"):
        excess = losses - base
        high = (losses > params.ratio * base) & (excess > params.min_delta) & (excess > params.z * spread)
    return ok & (high | ~finite)


def first_nonfinite(losses: np.ndarray) -> np.ndarray:
    """(S,) index of each seed's first non-finite step loss, -1 where every loss is finite."""
    bad = ~np.isfinite(losses)
    return np.where(bad.any(axis=0), np.argmax(bad, axis=0), -1)


def _divergence(losses: np.ndarray, seed: int, j: int, at: int, window: int) -> Spike:
    before = losses[max(0, at - window) : at, j]
    before = before[np.isfinite(before)]
    baseline = float(np.median(before)) if before.size else float("nan")
    bad = ~np.isfinite(losses[at:, j])
    end = at + (int(np.argmin(bad)) - 1 if not bad.all() else bad.size - 1)  # the end of the first non-finite stretch
    return Spike(seed, int(at), int(at), int(end), baseline, float(losses[at, j]), diverged=True)


def detect(losses: np.ndarray, seeds: list[int], params: SpikeParams) -> list[Spike]:
    """Spikes in step losses (T, S), seed by seed; a diverged seed ends with its divergence."""
    mask, base = elevated(losses, params)
    diverged_at = first_nonfinite(losses)
    spikes: list[Spike] = []
    for j, seed in enumerate(seeds):
        at = int(diverged_at[j])
        steps = np.flatnonzero(mask[:, j])
        if at >= 0:
            steps = steps[steps < at]
        if steps.size:
            breaks = np.flatnonzero(np.diff(steps) > params.merge_gap)
            for group in np.split(steps, breaks + 1):
                seg = losses[group[0] : group[-1] + 1, j]
                peak = group[0] + int(np.argmax(seg))
                spikes.append(Spike(seed, int(group[0]), int(peak), int(group[-1]), float(base[group[0], j]), float(losses[peak, j])))
        if at >= 0:
            spikes.append(_divergence(losses, seed, j, at, params.window))
    return spikes
