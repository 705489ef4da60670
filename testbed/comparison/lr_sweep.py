"""Learning-rate sensitivity after Wortsman et al. (2024), "Small-scale proxies for large-scale
Transformer training instabilities": train each scenario at every learning rate of a grid and
summarise how much the final loss degrades away from the best learning rate,

    sensitivity = mean over lr of [ min(L(lr), L0) - min over lr of L(lr) ],

where L(lr) is the final loss averaged over seeds and L0 the loss at initialisation (a run that
diverges, or ends worse than it started, counts as L0). Lower is more stable. The paper uses the
final validation loss of language models, where it tracks the training loss; here the test loss
also carries generalisation, which swings with the seed, so the sensitivity is computed on the
final train loss, and on the test loss as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from testbed.analysis.outcomes import RunData
from testbed.analysis.stats import BOOTSTRAP_SEED, CONFIDENCE, N_RESAMPLES
from testbed.config.schema import Scenario
from testbed.errors import UserError
from testbed.rundir import scenarios
from testbed.rundir.summary import SUCCESS_ACC


def parse_grid(spec: str) -> list[float]:
    """'1e-3,3e-3,1e-2' -> sorted unique positive learning rates."""
    try:
        values = sorted({float(v) for v in spec.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"--lr-grid: expected comma-separated learning rates like 1e-3,3e-3,1e-2, not {spec!r}") from None
    if len(values) < 2 or any(not (v > 0 and np.isfinite(v)) for v in values):
        raise UserError(f"--lr-grid: needs at least two positive learning rates, got {spec!r}")
    return values


def with_lr(scenario: Scenario, lr: float):
    return scenarios.revised(scenario, optimizer={**scenario.optimizer.model_dump(mode="json"), "lr": lr})


def lr_of(scenario: Scenario) -> float:
    return float(scenario.optimizer.lr)


def clipped_final(run: RunData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(final loss, initial loss), both (S,): a non-finite or worse-than-initial final loss
    counts as the initial loss."""
    loss = run.curves[f"{split}_loss"]
    initial, final = loss[0], loss[-1]
    return np.where(np.isfinite(final), np.minimum(final, initial), initial), initial


def sensitivity(final: np.ndarray, initial: np.ndarray, axis: int = -1) -> np.ndarray:
    """final (n_lr, S, ...) and initial (n_lr, S, ...): Wortsman's number over the seed axis."""
    mean_final = final.mean(axis=axis)  # (n_lr, ...)
    mean_initial = initial.mean(axis=axis)
    return (np.minimum(mean_final, mean_initial) - mean_final.min(axis=0)).mean(axis=0)


@dataclass(frozen=True)
class SweepResult:
    lrs: list[float]
    final: dict[str, np.ndarray]  # split -> (n_lr, S) clipped final loss
    initial: dict[str, np.ndarray]  # split -> (n_lr, S)
    success: np.ndarray  # (n_lr, S) 0/1
    sensitivity: dict[str, tuple[float, float, float]]  # split -> (value, low, high)


def _interval(final: np.ndarray, initial: np.ndarray) -> tuple[float, float, float]:
    value = float(sensitivity(final, initial))
    if final.shape[1] < 2 or np.ptp(final) == 0:
        return value, value, value

    def stat(f, i, axis=-1):
        return sensitivity(f, i, axis=axis)

    res = stats.bootstrap(
        (final, initial), stat, paired=True, axis=-1, n_resamples=N_RESAMPLES // 5,
        confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(lrs: list[float], runs: list[RunData]) -> SweepResult:
    """One scenario's runs, one per learning rate in `lrs`, on the same seeds."""
    final, initial = {}, {}
    for split in ("train", "test"):
        pairs = [clipped_final(r, split) for r in runs]
        final[split] = np.stack([f for f, _ in pairs])
        initial[split] = np.stack([i for _, i in pairs])
    success = np.stack([(r.curves["test_acc"][-1] > SUCCESS_ACC).astype(float) for r in runs])
    sens = {split: _interval(final[split], initial[split]) for split in final}
    return SweepResult(lrs, final, initial, success, sens)


def paired_difference(a: SweepResult, b: SweepResult, split: str) -> tuple[float, float, float]:
    """Sensitivity of b minus that of a, with a bootstrap interval over shared seeds."""
    fa, ia, fb, ib = a.final[split], a.initial[split], b.final[split], b.initial[split]
    value = float(sensitivity(fb, ib) - sensitivity(fa, ia))
    if fa.shape[1] < 2:
        return value, value, value

    def stat(fa, ia, fb, ib, axis=-1):
        return sensitivity(fb, ib, axis=axis) - sensitivity(fa, ia, axis=axis)

    res = stats.bootstrap(
        (fa, ia, fb, ib), stat, paired=True, axis=-1, n_resamples=N_RESAMPLES // 5,
        confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)
