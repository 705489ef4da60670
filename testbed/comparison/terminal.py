"""The comparison on the terminal: the report's tables and verdicts, drawn by rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable

from testbed.comparison import report as rep
from testbed.comparison.pairwise import pairs
from testbed.comparison.runner import ComparisonOutput


def rich_table(table: rep.Table, title: str | None = None) -> RichTable:
    t = RichTable(title=title or table.caption or None, title_justify="left")
    for i, h in enumerate(table.header):
        t.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for row in table.rows:
        t.add_row(*row)
    return t


def show(output: ComparisonOutput, console: Console) -> None:
    a = output.analysis
    console.print(rich_table(rep.scenario_table(a)))
    for x, y in pairs(a.labels):
        console.print(rich_table(rep.pair_table(a, x, y)))
    for table in output.sweep_tables:
        console.print(rich_table(table))
    for x, y in pairs(a.labels):
        console.print(f"verdict: {a.verdicts[(x, y)]}", highlight=False, soft_wrap=True)
    console.print(f"report: {output.path / 'report.md'} (and report.html), {output.seconds:.0f} s", highlight=False, soft_wrap=True)
