"""`testbed compare A B --until-decided`: train seeds in batches (0 .. batch − 1, then the next
batch, ...) through the run store until the paired difference B − A on one metric is decided,
then write the comparison of every seed it took, with the sequence of intervals and the decision.

After each batch the anytime-valid confidence sequence of `testbed.analysis.sequential` is
updated; it stops at the first look where the interval lies above or below 0 (B better or
worse, read with the metric's direction: fewer spikes is better) or within ±margin
(equivalent), and at `max_seeds` seeds says "undecided". Because the sequence holds at every
look at once, stopping on what it shows keeps the error at alpha: the seeds it took are part
of the answer, not a choice that biases it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.analysis import sequential as sq
from testbed.analysis.outcomes import BY_KEY, Metric
from testbed.analysis.stats import censor
from testbed.comparison import figures, manifest
from testbed.comparison import report as rep
from testbed.comparison.inputs import is_run_dir, resolve
from testbed.comparison.options import UntilDecidedOptions, checked
from testbed.comparison.pairwise import format_difference
from testbed.comparison.result import Comparison
from testbed.comparison.runner import compare
from testbed.comparison.seed_outcomes import outcomes_of
from testbed.errors import UserError
from testbed.rundir import writer as rundir

ALIASES = {"spikes_per_seed": "spikes", "test_acc": "final_test_acc"}
BOUNDED = {"final_test_acc": 1.0}  # continuous metrics with a known range of differences


@dataclass(frozen=True)
class Checked:
    """Progress of `--until-decided`: the sequence after a batch, and what it decides so far."""

    look: sq.Look
    decision: str
    metric: Metric
    text: str  # one line for the terminal


@dataclass
class Sequential:
    """A finished `--until-decided` comparison: the decision on `metric`, the sequence at every
    look, and the comparison (report, statistics) of every seed it took."""

    metric: Metric
    decision: str  # better, worse, equivalent or undecided (for B against A)
    looks: list[sq.Look]
    margin: float
    alpha: float
    max_seeds: int
    comparison: Comparison

    @property
    def seeds(self) -> int:
        return self.looks[-1].n

    @property
    def path(self) -> Path:
        return self.comparison.path

    @property
    def sentence(self) -> str:
        a, b = self.comparison.labels
        return decision_sentence(a, b, self.metric, self.decision, self.looks[-1], self.margin, self.alpha, self.max_seeds)

    def table(self) -> pd.DataFrame:
        """A row per look: seeds, mean difference B − A, the interval, its method, the decision then."""
        rows = [[k.n, k.estimate, k.low, k.high, k.method, sq.decide(k.low, k.high, self.margin, self.metric.better)] for k in self.looks]
        return pd.DataFrame(rows, columns=["seeds", "difference", "low", "high", "method", "decision"])


def metric_of(name: str) -> Metric:
    key = ALIASES.get(name, name)
    if key not in BY_KEY:
        raise UserError(f"--metric: unknown metric {name!r}; one of {', '.join(BY_KEY)} (or spikes_per_seed)")
    return BY_KEY[key]


def bound_of(metric: Metric, censor_at: float) -> float | None:
    """The largest |B − A| the metric allows (None: unbounded, the sequence is asymptotic)."""
    if metric.kind == "binary":
        return 1.0
    if metric.kind == "time":
        return censor_at
    return BOUNDED.get(metric.key)


def until_decided(
    inputs: Sequence[Any],
    options: UntilDecidedOptions = UntilDecidedOptions(),
    *,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress: Callable[[Any], None] | None = None,
    threads: int | None = None,
    store=None,
) -> Sequential:
    """Train the two scenarios of `inputs` batch by batch until B − A on `metric` is decided (see
    the module), then compare every seed it took into the report directory `out`."""
    chosen = metric_of(options.metric)
    margin, max_seeds, batch, alpha = checked(options).margin, options.max_seeds, options.batch, options.alpha
    paths = manifest.expand(list(inputs)).paths
    if len(paths) != 2:
        raise UserError(f"--until-decided: compares exactly two scenarios (A, then B), got {len(paths)}")
    for p in paths:
        if isinstance(p, Path) and is_run_dir(p):
            raise UserError(f"--until-decided: {p} is a run directory; it trains new seeds, so it needs scenario files")
    entries, _ = resolve(paths, list(range(batch)), overrides)
    if out is not None:  # a bad --out is refused before anything trains
        rundir.check_target(Path(out), force)
        rundir.check_creatable(Path(out))
    a, b = (e.label for e in entries)
    differences: list[np.ndarray] = []
    looks: list[sq.Look] = []
    decision = "undecided"
    for start in range(0, max_seeds, batch):
        seeds = list(range(start, min(start + batch, max_seeds)))
        per_seed, censor_at = outcomes_of(entries, seeds, store=store, progress=progress, threads=threads, note=f", seeds {seeds[0]}-{seeds[-1]}")
        differences.append(_differences(per_seed[a][chosen.key], per_seed[b][chosen.key], chosen, censor_at))
        d = np.concatenate(differences)
        ns = np.cumsum([len(x) for x in differences]).tolist()
        looks = sq.sequence(d, ns, alpha, bound_of(chosen, censor_at))
        decision = str(sq.decide(looks[-1].low, looks[-1].high, margin, chosen.better))  # scalars give a str
        if progress is not None:
            progress(Checked(looks[-1], decision, chosen, look_line(looks[-1], chosen, decision)))
        if decision != "undecided":
            break
    n = looks[-1].n
    sentence = decision_sentence(a, b, chosen, decision, looks[-1], margin, alpha, max_seeds)

    def section(stage: Path) -> list:
        return sequential_section(stage, a, b, chosen, looks, decision, sentence, margin, alpha)

    comparison = compare(
        paths, seeds=list(range(n)), overrides=overrides, out=out, force=force, progress=progress, threads=threads, store=store, sections=section
    )
    return Sequential(chosen, decision, looks, margin, alpha, max_seeds, comparison)


def _differences(a: np.ndarray, b: np.ndarray, metric: Metric, censor_at: float) -> np.ndarray:
    """B − A seed by seed (times never reached count as one epoch past the end, as in compare)."""
    if metric.kind == "time":
        a, b = censor(a, censor_at), censor(b, censor_at)
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not np.all(np.isfinite(d)):
        raise UserError(f"--metric {metric.key}: not computed for every seed (a run without step-level losses?)")
    return d


def interval_text(look: sq.Look, metric: Metric) -> str:
    if not (np.isfinite(look.low) and np.isfinite(look.high)):
        return "(−∞, ∞)"
    return f"({format_difference(look.low, metric)}, {format_difference(look.high, metric)})"


def look_line(look: sq.Look, metric: Metric, decision: str) -> str:
    return (f"{look.n} seeds: {metric.label} B − A {format_difference(look.estimate, metric)}, "
            f"{look.method} interval {interval_text(look, metric)}: {decision}")


def decision_sentence(a: str, b: str, metric: Metric, decision: str, look: sq.Look, margin: float, alpha: float, max_seeds: int) -> str:
    """One line: what was decided on which metric, after how many seeds, with the interval."""
    level = f"{1 - alpha:.0%} {'asymptotic ' if look.method == 'asymptotic' else ''}confidence sequence"
    ci = f"{b} − {a} in {interval_text(look, metric)}"
    band = f"±{format_difference(margin, metric).lstrip('+')}"
    said = {
        "better": f"{b} is better than {a}",
        "worse": f"{b} is worse than {a}",
        "equivalent": f"{b} is equivalent to {a} within {band}",
        "undecided": "undecided",
    }[decision]
    seeds = f"at the budget of {max_seeds} paired seeds" if decision == "undecided" else f"after {look.n} paired seeds"
    return f"{metric.label}: {said} {seeds} ({ci}, {level}; {metric.better} is better)."


def sequential_section(stage: Path, a: str, b: str, metric: Metric, looks: list[sq.Look], decision: str, sentence: str, margin: float, alpha: float) -> list:
    """The report's blocks: the decision, a row per look, the figure; and sequential.csv."""
    with open(stage / "sequential.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seeds", "metric", "difference", "low", "high", "method", "decision"])
        for k in looks:
            w.writerow([k.n, metric.key, k.estimate, k.low, k.high, k.method, sq.decide(k.low, k.high, margin, metric.better)])
    rows = [[str(k.n), format_difference(k.estimate, metric), interval_text(k, metric), sq.decide(k.low, k.high, margin, metric.better)] for k in looks]
    (stage / "figures").mkdir(exist_ok=True)
    figure = figures.confidence_sequence(looks, metric, margin, alpha, f"{b} − {a}", decision, stage / "figures" / "sequential.png")
    method = (
        "the hedged betting confidence sequence of Waudby-Smith & Ramdas (2023), exact for differences bounded by the metric's range"
        if looks[-1].method == "betting"
        else "the asymptotic confidence sequence of Waudby-Smith et al. (2024): the metric is unbounded, so its coverage holds as the seeds grow"
    )
    return [
        rep.Heading("Seeds until decided"),
        rep.Paragraph(
            f"Decision: {sentence} Seeds were trained in batches, and after each the interval of the mean paired difference was updated: "
            f"{method}. It holds at every look at once with probability {1 - alpha:.0%}, so stopping on it keeps the error at {alpha:g}. "
            f"It stops when the interval excludes 0 (better or worse) or lies within ±{format_difference(margin, metric).lstrip('+')} (equivalent). "
            "The tables below compare every seed it took with the fixed-n tests; their p-values do not account for the stopping."
        ),
        rep.Table(["seeds", f"{b} − {a}", f"{1 - alpha:.0%} confidence sequence", "decision"], rows, f"{metric.label}: the interval after each batch"),
        rep.Figure(figure.relative_to(stage), f"{metric.label}: the confidence sequence of {b} − {a} against the number of seeds"),
    ]
