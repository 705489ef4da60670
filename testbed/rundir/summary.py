"""Per-run summary (summary.json): final metrics per seed and their aggregates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SUCCESS_ACC = 0.9  # the papers' success criterion: test accuracy above 0.9


def describe(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "median": math.nan, "max": math.nan}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "min": float(finite.min()),
        "median": float(np.median(finite)),
        "max": float(finite.max()),
    }


def build(scenario_name: str, result, epochs: int) -> dict[str, Any]:
    """The content of summary.json."""
    final = result.final
    per_seed: dict[str, list] = {
        "seed": list(result.seeds),
        "train_loss": final.train_loss.tolist(),
        "train_acc": final.train_acc.tolist(),
        "test_loss": final.test_loss.tolist(),
        "test_acc": final.test_acc.tolist(),
    }
    per_seed.update(result.columns)
    per_seed["diverged_step"] = list(result.diverged_step)
    per_seed["diverged_epoch"] = result.diverged_epoch()
    test_acc = np.asarray(per_seed["test_acc"])
    aggregate: dict[str, Any] = {k: describe(per_seed[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    aggregate["success_rate"] = float((test_acc > SUCCESS_ACC).mean())
    final_nonfinite = ~np.isfinite(np.asarray(per_seed["train_loss"]))
    aggregate["diverged"] = int((final_nonfinite | (np.asarray(result.diverged_step) >= 0)).sum())
    if "spikes" in per_seed:
        spikes = np.asarray(per_seed["spikes"])
        aggregate["spikes_total"] = int(spikes.sum())
        aggregate["seeds_with_spikes"] = int((spikes > 0).sum())
        aggregate["spikes_per_seed"] = describe(spikes.tolist())
    return {
        "scenario": scenario_name,
        "seeds": list(result.seeds),
        "epochs": epochs,
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "final_p": final.p,
        "success_threshold": SUCCESS_ACC,
        "per_seed": per_seed,
        "aggregate": aggregate,
    }
