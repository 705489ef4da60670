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
    return {
        "scenario": scenario_name,
        "seeds": list(result.seeds),
        "epochs": epochs,
        "steps": result.steps,
        "seconds": round(result.seconds, 3),
        "final_p": final.p,
        "success_threshold": SUCCESS_ACC,
        "per_seed": per_seed,
        "aggregate": aggregate(per_seed),
    }


def aggregate(per_seed: dict[str, list]) -> dict[str, Any]:
    """The aggregates of summary.json over its per-seed table."""
    test_acc = np.asarray(per_seed["test_acc"])
    out: dict[str, Any] = {k: describe(per_seed[k]) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    out["success_rate"] = float((test_acc > SUCCESS_ACC).mean())
    final_nonfinite = ~np.isfinite(np.asarray(per_seed["train_loss"], dtype=float))
    out["diverged"] = int((final_nonfinite | (np.asarray(per_seed["diverged_step"]) >= 0)).sum())
    if "spikes" in per_seed:
        spikes = np.asarray(per_seed["spikes"])
        out["spikes_total"] = int(spikes.sum())
        out["seeds_with_spikes"] = int((spikes > 0).sum())
        out["spikes_per_seed"] = describe(spikes.tolist())
    return out


def combine(parts: list[tuple[dict[str, Any], list[int]]], seeds: list[int], scenario_name: str) -> dict[str, Any]:
    """summary.json of the run of `seeds` made of runs of the same scenario on other seed sets
    (`parts`: each one's summary.json and the seeds taken from it): the per-seed rows of each
    seed, the aggregates over them, and the training seconds of the parts added up."""
    rows: dict[int, dict[str, Any]] = {}
    columns = list(parts[0][0]["per_seed"])
    for summary, taken in parts:
        table = summary["per_seed"]
        if list(table) != columns:
            raise ValueError("the runs combined have different summary columns")
        index = {int(s): i for i, s in enumerate(table["seed"])}
        for seed in taken:
            rows[int(seed)] = {c: table[c][index[int(seed)]] for c in columns}
    per_seed = {c: [rows[int(s)][c] for s in seeds] for c in columns}
    first = parts[0][0]
    return {
        **{k: v for k, v in first.items() if k != "failures"},
        "scenario": scenario_name,
        "seeds": list(seeds),
        "seconds": round(sum(summary["seconds"] for summary, _ in parts), 3),
        "per_seed": per_seed,
        "aggregate": aggregate(per_seed),
    }
