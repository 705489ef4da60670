"""`testbed power A B --pilot 0-19`: from pilot seeds of two scenarios, the paired seeds each
metric of `testbed compare` needs for its test to detect a difference with 80% power, either
the difference the pilot saw or one the user names (`--effect`).

A pilot's own difference is a noisy guess (on 20 seeds a success rate moves by 10 points), so
the table shows it beside its seeds; naming the smallest difference that matters is the
sounder question, and `compare --until-decided` answers the comparison itself without
choosing n at all."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from testbed.analysis import power as pw
from testbed.analysis.outcomes import BY_KEY, METRICS, Metric
from testbed.comparison import manifest
from testbed.comparison import report as rep
from testbed.comparison.inputs import resolve
from testbed.comparison.options import PowerOptions, checked
from testbed.comparison.pairwise import format_difference
from testbed.comparison.runner import slug
from testbed.comparison.seed_outcomes import outcomes_of
from testbed.config.scenario import format_seeds, parse_seeds
from testbed.errors import UserError
from testbed.rundir import writer as rundir

COLUMNS = ["metric", "pilot_seeds", "pilot_difference", "spread", "spread_of", "effect", "effect_from", "seeds_needed", "test"]


@dataclass
class PowerResult:
    """`testbed power`: a row per metric (see `table()`), written to `path` (power.csv, power.md)."""

    labels: list[str]
    pilot: list[int]
    power: float
    alpha: float
    rows: list[list]
    path: Path

    def table(self) -> pd.DataFrame:
        """metric, pilot_seeds, pilot_difference (B − A), spread (sd of the differences, or the
        share of discordant seeds), effect (the difference powered for) and where it comes
        from (pilot or given), seeds_needed (paired, per scenario; inf: never), test."""
        return pd.DataFrame(self.rows, columns=COLUMNS)


def parse_effects(effect: None | float | str | Sequence[str] | Mapping[str, float]) -> tuple[float | None, dict[str, float]]:
    """(an effect for every metric, or None; metric key -> effect) from `--effect` values:
    '0.1' (every metric, in its own units) or 'success=0.1' (repeatable)."""
    if effect is None:
        return None, {}
    if isinstance(effect, (int, float)):
        return float(effect), {}
    if isinstance(effect, Mapping):
        items = [f"{k}={v}" for k, v in effect.items()]
    else:
        items = [effect] if isinstance(effect, str) else list(effect)
    every, per = None, {}
    for item in items:
        key, _, value = str(item).rpartition("=")
        if key and key not in BY_KEY:
            raise UserError(f"--effect: unknown metric {key!r} in {item!r}; one of {', '.join(BY_KEY)}")
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"--effect: {item!r} is not a number or METRIC=NUMBER") from None
        if not math.isfinite(number) or number == 0:
            raise UserError(f"--effect: {item!r} must be a finite difference other than 0")
        if key:
            per[key] = number
        else:
            every = number
    return every, per


def power(
    inputs: Sequence[Any],
    options: PowerOptions = PowerOptions(),
    *,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress: Callable[[Any], None] | None = None,
    threads: int | None = None,
    store=None,
) -> PowerResult:
    """Serve the pilot seeds of A and B (scenario files trained through the run store, or run
    directories holding them), and for every metric the seeds needed; written to `out`
    (default reports/power-<a>-vs-<b>-<time>) as power.csv and power.md."""
    pilot, effect, power, alpha = checked(options).pilot, options.effect, options.power, options.alpha
    try:
        seeds = parse_seeds(pilot if isinstance(pilot, str) else list(pilot))
    except ValueError as exc:
        raise UserError(f"--pilot: {exc}") from None
    if len(seeds) < 2:
        raise UserError(f"--pilot: needs at least 2 seeds for a spread, got {len(seeds)}")
    every, per = parse_effects(effect)
    for m in METRICS:
        chosen = per.get(m.key, every)
        if chosen is not None and m.kind == "binary" and abs(chosen) > 1:
            raise UserError(f"--effect: {chosen:g} is more than a rate can change ({m.key}: at most 1); give it per metric, e.g. --effect spikes={chosen:g}")
    paths = manifest.expand(list(inputs)).paths
    if len(paths) != 2:
        raise UserError(f"power: compares exactly two scenarios (A, then B), got {len(paths)}")
    entries, _ = resolve(paths, seeds, overrides)
    a, b = (e.label for e in entries)
    path = Path(out) if out is not None else rundir.default_path("reports", f"power-{slug(a)}-vs-{slug(b)}")
    rundir.check_target(path, force)
    rundir.check_creatable(path)
    per_seed, censor_at = outcomes_of(entries, seeds, store=store, progress=progress, threads=threads, note=", pilot")
    rows = []
    for m in METRICS:
        x, y = per_seed[a][m.key], per_seed[b][m.key]
        spread, n = pw.spread(x, y, m.kind, censor_at)
        observed = _difference(x, y, m, censor_at)
        chosen = per.get(m.key, every)
        target, source = (chosen, "given") if chosen is not None else (observed, "pilot")
        needed = pw.seeds_needed(m.kind, target, spread, alpha, power)
        rows.append([m.key, n, observed, spread, "discordant share" if m.kind == "binary" else "sd of differences", target, source, needed,
                     "exact McNemar" if m.kind == "binary" else "Wilcoxon signed-rank"])
    result = PowerResult([a, b], seeds, power, alpha, rows, path)
    with rundir.staged(path, force) as stage:
        _write(stage, result)
    return result


def _difference(a: np.ndarray, b: np.ndarray, metric: Metric, censor_at: float) -> float:
    from testbed.analysis.stats import censor

    if metric.kind == "time":
        a, b = censor(a, censor_at), censor(b, censor_at)
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else math.nan


def format_seeds_needed(n: float) -> str:
    return "never" if not np.isfinite(n) else f"{int(n)}"


def power_table(result: PowerResult) -> rep.Table:
    """The table `testbed power` prints and writes into power.md."""
    a, b = result.labels
    rows = []
    for key, _seeds, observed, spread, spread_of, target, source, needed, test in result.rows:
        m = BY_KEY[key]
        spread_text = "-" if not np.isfinite(spread) else f"{spread:.0%}" if m.kind == "binary" else f"{spread:{m.fmt}}"
        rows.append([m.label, format_difference(observed, m), f"{spread_text} ({spread_of})", f"{format_difference(target, m)} ({source})",
                     format_seeds_needed(needed), test])
    caption = (f"Paired seeds per scenario for {result.power:.0%} power at two-sided p < {result.alpha:g} (one metric alone), "
               f"from {len(result.pilot)} pilot seeds ({format_seeds(result.pilot)}) of {b} − {a}")
    return rep.Table(["metric", f"pilot {b} − {a}", "spread", "effect", "seeds needed", "test"], rows, caption)


def _write(stage: Path, result: PowerResult) -> None:
    with open(stage / "power.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(result.rows)
    report = rep.Report(f"Power: {result.labels[1]} vs {result.labels[0]}")
    report.add(
        power_table(result),
        rep.Paragraph(
            "Seeds needed: for success and other binary metrics, the exact McNemar test's power from the share of discordant seeds; "
            "for the others, the paired t-test's seeds divided by 0.864, Wilcoxon's least efficiency against t. 'never': the pilot saw "
            "no difference (give one with --effect), or it would take over ten million seeds. "
            "A pilot's difference is itself uncertain; `compare --until-decided` needs no n."
        ),
    )
    (stage / "power.md").write_text(rep.to_markdown(report))
