"""The report of a comparison, written once as a list of blocks and rendered twice: report.md
(figures linked from figures/) and a self-contained report.html (figures inlined), plus the
machine-readable tables comparison.csv, statistics.csv and, with a learning-rate grid,
lr_sweep.csv."""

from __future__ import annotations

import base64
import csv
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from testbed.analysis.power import POWER
from testbed.analysis.stats import ALPHA, CONFIDENCE, direction, format_p
from testbed.comparison.lr_sweep import SweepResult, paired_difference
from testbed.comparison.pairwise import (
    Analysis,
    difference_name,
    format_detectable,
    format_difference,
    format_estimate,
    statistic_name,
)


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path  # relative to the report directory
    caption: str


@dataclass
class Report:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    out = [f"# {report.title}", ""]
    for b in report.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"*{b.caption}*", ""]
            out.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
            out.append("|" + "|".join(" --- " for _ in b.header) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            out += [f"![{b.caption}]({b.path.as_posix()})", "", f"*{b.caption}*", ""]
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: 0.3em; }
img { max-width: 100%; }
figcaption { font-style: italic; color: #555; }
"""


def to_html(report: Report, root: Path) -> str:
    """Self-contained: figures are inlined as base64 PNG."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(report.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
    ]
    for b in report.blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
            head = "".join(f"<th>{e(h)}</th>" for h in b.header)
            cap = f"<caption>{e(b.caption)}</caption>" if b.caption else ""
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode((root / b.path).read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{e(b.caption)}" src="data:image/png;base64,{data}"><figcaption>{e(b.caption)}</figcaption></figure>')
    out.append("</body></html>")
    return "\n".join(out)


def scenario_table(analysis: Analysis) -> Table:
    header = ["metric", "statistic"] + analysis.labels
    rows = []
    for m in analysis.metrics:
        cells = [format_estimate(analysis.estimates[label][m.key], m, analysis.censor_at) for label in analysis.labels]
        rows.append([m.label, statistic_name(m)] + cells)
    caption = f"Per scenario over {len(analysis.seeds)} seeds: estimate, spread and [{CONFIDENCE:.0%} confidence interval]"
    return Table(header, rows, caption)


def pair_table(analysis: Analysis, a: str, b: str) -> Table:
    header = ["metric", "of", f"{b} − {a}", f"{CONFIDENCE:.0%} CI", "p", "Holm p", "test", "reading", "detectable"]
    rows = []
    for m in analysis.metrics:
        t = analysis.tests[(a, b)][m.key]
        said = direction(m, t)
        verdict = {"better": f"{b} better", "worse": f"{b} worse", "same": "none detected"}[said]
        rows.append([
            m.label,
            difference_name(m),
            format_difference(t.difference, m),
            f"[{format_difference(t.low, m)}, {format_difference(t.high, m)}]",
            format_p(t.p),
            format_p(t.p_adjusted),
            t.test,
            verdict,
            format_detectable(t.detectable, m) if said == "same" else "",
        ])
    return Table(
        header, rows,
        f"{b} minus {a}, paired by seed ({t.n} seeds); reading: at Holm p < {ALPHA}; detectable: where none was detected, the smallest "
        f"difference these seeds detect with {POWER:.0%} power at p < {ALPHA} (one metric alone)",
    )


def sweep_tables(sweeps: dict[str, SweepResult]) -> list[Table]:
    labels = list(sweeps)
    lrs = next(iter(sweeps.values())).lrs
    header = ["scenario"] + [f"lr {lr:g}" for lr in lrs] + ["sensitivity (train) [95% CI]", "sensitivity (test) [95% CI]"]
    loss_rows = []
    for label in labels:
        sw = sweeps[label]
        cells = [f"{sw.final['train'][i].mean():.4f} / {sw.success[i].mean():.0%}" for i in range(len(lrs))]
        sens = [f"{v:.4f} [{lo:.4f}, {hi:.4f}]" for v, lo, hi in (sw.sensitivity["train"], sw.sensitivity["test"])]
        loss_rows.append([label] + cells + sens)
    tables = [Table(header, loss_rows, "Mean final train loss / success rate at each learning rate, and Wortsman's learning-rate sensitivity (lower is more stable)")]
    pair_rows = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            row = [f"{b} − {a}"]
            for split in ("train", "test"):
                v, lo, hi = paired_difference(sweeps[a], sweeps[b], split)
                row.append(f"{v:+.4f} [{lo:+.4f}, {hi:+.4f}]")
            pair_rows.append(row)
    if pair_rows:
        tables.append(Table(["pair", "sensitivity difference (train) [95% CI]", "(test) [95% CI]"], pair_rows, "Paired by seed (bootstrap over seeds)"))
    return tables


def write_comparison_csv(path: Path, analysis: Analysis, outcomes: dict[str, dict[str, np.ndarray]]) -> None:
    """One row per scenario, seed and metric (never-reached times are empty)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "seed", "metric", "value"])
        for label in analysis.labels:
            for m in analysis.metrics:
                for seed, value in zip(analysis.seeds, outcomes[label][m.key]):
                    w.writerow([label, seed, m.key, "" if np.isnan(value) else f"{value:.6g}"])


def write_statistics_csv(path: Path, analysis: Analysis) -> None:
    """Every estimate and every paired test, as numbers."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "scenario", "versus", "metric", "n", "statistic", "value", "spread", "ci_low", "ci_high", "p", "p_holm", "test", "detectable"])
        for label in analysis.labels:
            for m in analysis.metrics:
                e = analysis.estimates[label][m.key]
                w.writerow(["estimate", label, "", m.key, e.n, e.statistic, e.estimate, e.spread, e.low, e.high, "", "", "", ""])
        for (a, b), tests in analysis.tests.items():
            for m in analysis.metrics:
                t = tests[m.key]
                w.writerow(["paired", b, a, m.key, t.n, difference_name(m), t.difference, "", t.low, t.high, t.p, t.p_adjusted, t.test, t.detectable])


def write_sweep_csv(path: Path, seeds: list[int], sweeps: dict[str, SweepResult]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "lr", "seed", "metric", "value"])
        for label, sw in sweeps.items():
            for i, lr in enumerate(sw.lrs):
                for j, seed in enumerate(seeds):
                    for key, value in (
                        ("final_train_loss", sw.final["train"][i, j]),
                        ("final_test_loss", sw.final["test"][i, j]),
                        ("initial_train_loss", sw.initial["train"][i, j]),
                        ("success", sw.success[i, j]),
                    ):
                        w.writerow([label, f"{lr:g}", seed, key, f"{value:.6g}"])


METHOD = [
    "Pairing: every scenario runs on the same seeds, and a seed fixes its training and test data, its initialisation (per parameter) and its batch order, so differences are taken seed by seed.",
    "Means (continuous metrics, counts) carry a BCa bootstrap interval; success rates a Wilson interval.",
    "Epochs to an accuracy: a seed that never reaches it is censored at one epoch past the end, and the restricted mean (mean of min(epochs, end + 1)) is reported, with the number of seeds that got there.",
    "Paired tests: Wilcoxon signed-rank (Pratt's treatment of zero differences) for continuous metrics, counts and times; exact McNemar test on the discordant seeds for success. Intervals of paired differences resample seeds (paired BCa bootstrap).",
    f"p-values of one pair are Holm-adjusted across its metrics; a difference is reported when the adjusted p is below {ALPHA}. 'No detectable difference' means that, not that the scenarios are equal.",
    f"Detectable: for a metric without a detected difference, the smallest difference its seeds detect with {POWER:.0%} power at p < {ALPHA} for that metric alone (Holm across metrics asks somewhat more): McNemar's from the share of discordant seeds (Connor 1987), Wilcoxon's from the standard deviation of the paired differences, as the paired t-test's at 0.864 of the seeds (Wilcoxon's least efficiency against t). `testbed power` gives the seeds a given difference needs.",
    "Spikes are detected on step-level training losses by testbed.analysis.spike_detector with its default parameters, the same for every scenario; a spike's size is its peak loss minus the trailing-median baseline before it.",
    "A seed that diverges (a non-finite loss) is counted in 'diverged', and its losses count as its loss at initialisation (as in Wortsman et al. 2024), so it is neither dropped nor infinite.",
    "Train-loss AUC per epoch: the area under the train-loss curve over evaluated epochs, divided by the number of epochs (the mean train loss over training).",
]
