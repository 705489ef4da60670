"""Per-run summary: final metrics per seed, their aggregates, and the terminal table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.table import Table

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


def divergence_lines(summary: dict[str, Any]) -> list[str]:
    """What the terminal says of diverged seeds: how many, and where each first had a non-finite
    loss (empty when none diverged)."""
    per_seed = summary["per_seed"]
    where = [
        (seed, epoch, step)
        for seed, epoch, step in zip(per_seed["seed"], per_seed.get("diverged_epoch", []), per_seed.get("diverged_step", []))
        if step >= 0
    ]
    n = summary["aggregate"].get("diverged", 0)
    if not n:
        return []
    shown = ", ".join(f"seed {seed} at epoch {epoch} (step {step})" for seed, epoch, step in where[:10])
    more = f", and {len(where) - 10} more" if len(where) > 10 else ""
    first = f": first non-finite loss of {shown}{more}" if where else " (non-finite final loss)"
    return [f"{n} of {len(per_seed['seed'])} seeds diverged{first}; see spikes.csv (diverged = 1) and summary.json"]


def _pm(d: dict[str, float]) -> str:
    return f"{d['mean']:.3f} ± {d['std']:.3f}"


def table(summaries: list[dict[str, Any]]) -> Table:
    """One row per scenario: seeds, final accuracies (mean ± sd, range), success rate, spikes."""
    t = Table(
        title="Final metrics (mean ± sd over seeds)",
        caption=f"success: test accuracy > {SUCCESS_ACC}; spikes: testbed.analysis.spike_detector detector on step losses",
    )
    for col in ("scenario", "seeds", "train acc", "test acc", "test acc range", "success", "loss spikes", "time"):
        t.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)
    for s in summaries:
        agg = s["aggregate"]
        tr, te = agg["train_acc"], agg["test_acc"]
        n = len(s["seeds"])
        spikes = f"{agg['spikes_total']} in {agg['seeds_with_spikes']}/{n} seeds" if "spikes_total" in agg else "-"
        t.add_row(
            s["scenario"],
            str(n),
            _pm(tr),
            _pm(te),
            f"{te['min']:.2f}–{te['max']:.2f}",
            f"{agg['success_rate']:.0%} ({round(agg['success_rate'] * n)}/{n})",
            spikes,
            f"{s['seconds']:.1f} s",
        )
    return t
