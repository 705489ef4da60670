"""Spikes per cause per scenario, for `testbed compare` (and any caller with forensics tables):
per seed, the number of spikes of each cause and their total size (peak - baseline loss), the
scenario means with 95% intervals and the paired differences (b - a over the same seeds, with
the paired bootstrap interval and the Wilcoxon signed-rank test of `testbed.analysis.stats`)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from testbed.forensics.attribution import CAUSES

MEASURES = {"count": "spikes per seed", "size": "total spike size per seed"}


def per_seed(table: pd.DataFrame, seeds: list[int]) -> dict[tuple[str, str], np.ndarray]:
    """{(cause, 'count' | 'size'): (S,) values in `seeds` order}, spikes of other seeds left out."""
    t = table[table["seed"].isin(seeds)]
    size = (t["peak_loss"] - t["baseline"]).to_numpy(dtype=float)  # type: ignore[attr-defined]  # pandas' types do not follow this column through
    out: dict[tuple[str, str], np.ndarray] = {}
    for cause in CAUSES:
        mine = (t["cause"] == cause).to_numpy()
        count = cast(pd.Series, pd.Series(1.0, index=t.index[mine]).groupby(t["seed"][mine]).sum())  # a sum per group is a Series
        total = cast(pd.Series, pd.Series(np.nan_to_num(size[mine], nan=0.0, posinf=0.0), index=t.index[mine]).groupby(t["seed"][mine]).sum())
        out[(cause, "count")] = count.reindex(seeds, fill_value=0.0).to_numpy()
        out[(cause, "size")] = total.reindex(seeds, fill_value=0.0).to_numpy()
    return out


def tables(causes: dict[str, pd.DataFrame], seeds: list[int], paired: bool = True):
    """The report's tables (`testbed.comparison.report.Table`): per scenario and cause, and (with
    `paired`) the paired differences of every later scenario against the first."""
    from testbed.analysis import stats
    from testbed.comparison.report import Table

    labels = list(causes)
    values = {label: per_seed(t, seeds) for label, t in causes.items()}
    rows = []
    for label in labels:
        for cause in CAUSES:
            cells = [label, cause]
            for measure in MEASURES:
                e = stats.estimate(values[label][(cause, measure)], "count")
                cells.append(f"{e.estimate:.3g} [{e.low:.3g}, {e.high:.3g}]")
            cells.append(str(int(values[label][(cause, "count")].sum())))
            rows.append(cells)
    out = [Table(["scenario", "cause", "spikes per seed", "total size per seed", "spikes in all"], rows,
                 "Spikes per cause: means over seeds with 95% bootstrap intervals")]
    a = labels[0]
    for b in labels[1:] if paired else []:
        diff_rows = []
        for cause in CAUSES:
            cells = [cause]
            for measure in MEASURES:
                t = stats.paired(values[a][(cause, measure)], values[b][(cause, measure)], "count")
                cells.append(f"{t.difference:+.3g} [{t.low:+.3g}, {t.high:+.3g}]")
                cells.append(stats.format_p(t.p))
            diff_rows.append(cells)
        out.append(Table(["cause", "Δ spikes per seed", "p", "Δ total size per seed", "p"], diff_rows,
                         f"Paired differences per cause, {b} − {a} over the same seeds (bootstrap 95% interval, Wilcoxon signed-rank p)"))
    return out


def forensics_of(run_path: Path, write_to: Path, compute: bool = True) -> tuple[pd.DataFrame | None, str]:
    """A run's forensics table for a comparison: its spike_causes.csv if `testbed spikes` wrote
    one, else computed now (replaying what spike_steps.npz lacks; without the sharpness, the
    costly part) into `write_to`, if the run kept spike_steps.npz; else None. With a word on
    where it came from. With `compute` false, only a spike_causes.csv already there counts."""
    from testbed.forensics.spike_causes import spike_causes
    from testbed.rundir.reader import Run

    run = Run(run_path)
    if run.has("spike_causes.csv"):
        return run.spike_causes, "its spike_causes.csv"
    if not compute:
        return None, "no spike_causes.csv (testbed spikes writes it)"
    if not (run.has("spike_steps.npz") and run.has("spikes.csv") and run.has("step_loss.npz")):
        return None, "no spike_steps.npz (add spike_steps: true to the snapshots probe, or run testbed spikes on it)"
    write_to.parent.mkdir(parents=True, exist_ok=True)
    result = spike_causes(run, out=write_to, with_sharpness=False)
    return result.table, f"computed here ({result.kept} kept, {result.replayed} replayed, {result.seconds:.0f} s)"


def section(runs: dict[str, Path | None], seeds: list[int], folder: Path, compute: bool = False) -> list:
    """The report blocks "Spikes by cause" for runs {label: run directory}, from their
    spike_causes.csv; with `compute`, forensics a run lacks are computed here (replaying what
    spike_steps.npz does not hold costs about another training, hence opt-in: `testbed compare
    --spike-causes`) and written to `folder`/<label>.csv."""
    from testbed.comparison.report import Heading, Paragraph

    found, said = {}, []
    for label, path in runs.items():
        if path is None:
            return []
        table, where = forensics_of(Path(path), folder / f"{''.join(c if c.isalnum() else '_' for c in label)}.csv", compute=compute)
        if table is None:
            hint = "" if compute else "; `testbed compare --spike-causes` computes them (replaying the spike steps), or `testbed spikes RUN` once per run"
            return [Heading("Spikes by cause"), Paragraph(f"Not computed: {label} has {where}{hint}.")]
        found[label] = table
        said.append(f"{label}: {where}")
    text = ("Each spike of each run's spikes.csv (the compared seeds only) labelled by the forensics of its step "
            "(testbed spikes; rule in testbed.forensics.attribution): norm_curvature when the step moved a normalised input of the "
            "sequence whose loss rose most by half its radius or more, mlp_boundary when that sequence lay near the MLP's "
            "decision boundary or the MLP's own update explains most of the jump, other otherwise, and other too when the "
            "step made less than half of the spike's elevated loss (its batch was already that bad before it). Size: peak minus "
            "baseline loss. Forensics: " + "; ".join(said) + ". " + _reasons(found))
    return [Heading("Spikes by cause"), Paragraph(text), *tables(found, seeds)]


def sweep_section(cells: dict[str, Path], seeds: list[int], folder: Path) -> list:
    """The sweep report's "Spikes by cause": per cell and cause, the spikes per seed and their
    total size with 95% intervals (a sweep estimates cells; it tests no differences), for the
    cells whose runs have spike_causes.csv (`testbed spikes` on a cell's run writes it; a sweep
    does not compute it: replaying every cell's spikes would cost about another training of the
    study). Empty where no cell has one."""
    from testbed.comparison.report import Heading, Paragraph

    found, skipped = {}, []
    for label, path in cells.items():
        table, where = forensics_of(Path(path), folder / f"cell_{len(found) + len(skipped)}.csv", compute=False)
        if table is None:
            skipped.append(label)
        else:
            found[label] = table
    if not found:
        return []
    text = ("Each spike of each cell's run labelled by the forensics of its step (testbed spikes; rule in "
            "testbed.forensics.attribution): norm_curvature, mlp_boundary or other. Size: peak minus baseline loss."
            + (f" Cells without spike_causes.csv, left out: {'; '.join(skipped)}." if skipped else ""))
    return [Heading("Spikes by cause"), Paragraph(text), *tables(found, seeds, paired=False)]


def _reasons(found: dict[str, pd.DataFrame]) -> str:
    """One sentence: how many spikes of each scenario the rule labelled for each reason."""
    parts = []
    for label, t in found.items():
        if "cause_reason" in t:
            counts = t["cause_reason"].value_counts()
            parts.append(f"{label}: " + ", ".join(f"{reason} {int(n)}" for reason, n in counts.items()))
    return ("Reasons (cause_reason): " + "; ".join(parts) + ".") if parts else ""
