"""The tables `testbed run`, `testbed compare` and `testbed barrier` print, drawn by rich: a run's final metrics,
and a comparison's tables and verdicts (the same tables as its report)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table as RichTable

from testbed.rundir.summary import SUCCESS_ACC

if TYPE_CHECKING:
    from testbed.comparison import report as rep
    from testbed.comparison.result import Comparison


def _pm(d: dict[str, float]) -> str:
    return f"{d['mean']:.3f} ± {d['std']:.3f}"


def run_table(summaries: list[dict[str, Any]], served: bool = False) -> RichTable:
    """One row per run (summary.json): seeds, final accuracies (mean ± sd, range), success rate,
    spikes, and the training time, or "served" when the run store gave every seed (its training
    time was spent before, `store_line` says when)."""
    t = RichTable(
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
            "served" if served else f"{s['seconds']:.1f} s",
        )
    return t


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


def rich_table(table: rep.Table, title: str | None = None) -> RichTable:
    """A table of the comparison report, for the terminal."""
    t = RichTable(title=title or table.caption or None, title_justify="left")
    for i, h in enumerate(table.header):
        t.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for row in table.rows:
        t.add_row(*row)
    return t


def show_comparison(comparison: Comparison, console: Console) -> None:
    """The report's tables, the verdicts and where the report is."""
    from testbed.comparison import report as rep
    from testbed.comparison.pairwise import pairs

    a = comparison.analysis
    console.print(rich_table(rep.scenario_table(a)))
    for x, y in pairs(a.labels):
        console.print(rich_table(rep.pair_table(a, x, y)))
    for table in comparison.sweep_tables:
        console.print(rich_table(table))
    for x, y in pairs(a.labels):
        console.print(f"verdict: {a.verdicts[(x, y)]}", highlight=False, soft_wrap=True)
    console.print(f"report: {comparison.path / 'report.md'} (and report.html), {comparison.seconds:.0f} s", highlight=False, soft_wrap=True)


def show_sequential(decided, console: Console) -> None:
    """`compare --until-decided`: the interval after each batch, and the decision."""
    from testbed.analysis.sequential import decide
    from testbed.comparison.pairwise import format_difference
    from testbed.comparison.until_decided import interval_text

    a, b = decided.comparison.labels
    m = decided.metric
    t = RichTable(title=f"{m.label}: {b} − {a} after each batch ({1 - decided.alpha:.0%} {decided.looks[-1].method} confidence sequence)",
                  title_justify="left")
    for name in ("seeds", f"{b} − {a}", "interval", "decision"):
        t.add_column(name, justify="right")
    for k in decided.looks:
        t.add_row(str(k.n), format_difference(k.estimate, m), interval_text(k, m), str(decide(k.low, k.high, decided.margin, m.better)))
    console.print(t)
    console.print(f"decision: {decided.sentence}", highlight=False, soft_wrap=True)


def store_line(stored: dict, summary: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None) -> str:
    """What the run store did for a run: 'run store runs/store/<key>: trained seeds 4-9; seeds
    0-3 from the store', or, when it trained nothing, 'trained nothing; seeds 0-3 served from the
    store (trained in 83.6 s on 2026-12-05 16:20:11)' (from `summary` and run.json's `provenance`)."""
    trained = [part["seeds"] for part in stored["parts"] if part["trained_now"]]
    reused = [part["seeds"] for part in stored["parts"] if not part["trained_now"]]
    said = ([f"trained seeds {','.join(trained)}"] if trained else ["trained nothing"]) + ([f"seeds {','.join(reused)} from the store"] if reused else [])
    if not trained and summary is not None and provenance is not None:
        when = str(provenance.get("finished", "")).replace("T", " ")
        said[-1] = f"seeds {','.join(reused)} served from the store (trained in {summary['seconds']:.1f} s{f' on {when}' if when else ''})"
    return f"run store {stored['root']}/{stored['key']}: {'; '.join(said)}"


def store_table(rows: list[dict]) -> RichTable:
    """`testbed store ls`: one row per entry of the run store."""
    table = RichTable(title="run store", title_justify="left")
    for name in ("key", "scenario", "seeds", "runs", "stopped", "size", "testbed", "usable"):
        table.add_column(name, justify="right" if name in ("runs", "stopped", "size") else "left")
    for r in rows:
        table.add_row(
            r["key"], r["name"], f"{r['seeds']} ({r['n_seeds']})", str(r["runs"]), str(r["stopped"]),
            f"{r['bytes'] / 1e6:.1f} MB", r["testbed"], "yes" if r["current"] else "no (gc removes it)",
        )
    return table


def study_table(result) -> RichTable:
    """`testbed sweep`: one row per cell, the headline metrics over seeds."""
    frame = result.cells()
    table = RichTable(title="study cells (mean over seeds)", title_justify="left")
    for name in ("cell", "seeds", "final test acc", "success", "spikes", "diverged"):
        table.add_column(name, justify="left" if name == "cell" else "right")
    for _, row in frame.iterrows():
        table.add_row(
            str(row["label"]), str(int(row["n_seeds"])), f"{row['final_test_acc_mean']:.3f}", f"{row['success_mean']:.0%}",
            f"{row['spikes_mean']:.2f}", f"{row['diverged_mean']:.0%}",
        )
    return table


def barrier_table(result) -> RichTable:
    """`testbed barrier`: the barrier height of each pair and split."""
    table = RichTable(title=f"loss barriers (task p = {result.p})", title_justify="left")
    for name in ("pair", "seed_a", "seed_b", "epoch_a", "epoch_b", "split", "loss at 0", "loss at 1", "barrier", "t_max"):
        table.add_column(name, justify="left" if name == "split" else "right")
    for r in result.barriers.itertuples():
        table.add_row(
            str(r.pair), str(r.seed_a), str(r.seed_b), str(r.epoch_a), str(r.epoch_b), r.split,
            f"{r.loss_0:.4g}", f"{r.loss_1:.4g}", f"{r.barrier:.4g}", f"{r.t_max:.3g}",
        )
    return table
