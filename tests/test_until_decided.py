"""`testbed compare --until-decided` and `testbed power` end to end on tiny scenarios: a
decision in each direction the tiny runs allow, the report's sequence, the pilot's table, and
bad input (one `error:` line naming the option, exit 2, nothing written)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli, cli_here

import testbed
from testbed.analysis.power import seeds_needed

SMOOTH = {**TINY, "name": "tiny_smooth", "model": {"hidden": 8, "norm": "smooth"}}
HOT = {**TINY, "name": "tiny_hot", "optimizer": {"name": "sgd", "lr": 1e6}}  # every seed diverges
TWIN = {**TINY, "name": "tiny_twin"}  # the same training under another name: no difference at all


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenarios")
    out = {}
    for data in (TINY, SMOOTH, HOT, TWIN):
        out[data["name"]] = root / f"{data['name']}.yaml"
        out[data["name"]].write_text(yaml.safe_dump(data))
    return out


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_real_difference_is_decided_and_reported_with_its_sequence(files, tmp_path):
    """Every seed of tiny_hot diverges, none of tiny's: 'diverged' (lower is better) is worse."""
    out = tmp_path / "hot"
    r = cli("compare", str(files["tiny"]), str(files["tiny_hot"]), "--until-decided", "--metric", "diverged", "--batch", "4", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert "decision: diverged (non-finite loss): tiny_hot is worse than tiny after 12 paired seeds" in r.stdout
    assert "4 seeds: diverged" in r.stderr and "12 seeds: diverged" in r.stderr  # a line per look as it comes
    looks = rows(out / "sequential.csv")
    assert [int(k["seeds"]) for k in looks] == [4, 8, 12]
    assert [k["decision"] for k in looks] == ["undecided", "undecided", "worse"] and float(looks[-1]["low"]) > 0
    assert json.loads((out / "comparison.json").read_text())["seeds"] == "0-11"  # the comparison of every seed it took
    md = (out / "report.md").read_text()
    assert "## Seeds until decided" in md and "figures/sequential.png" in md and "Waudby-Smith & Ramdas" in md
    assert (out / "figures" / "sequential.png").stat().st_size > 10_000


def test_the_python_api_decides_equivalence_and_gives_its_looks(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    heard = []
    result = testbed.until_decided(
        [files["tiny"], files["tiny_twin"]], metric="final_test_acc", margin=0.3, batch=10, out="reports/twin",
        progress=lambda e: heard.append(e) if hasattr(e, "decision") else None,
    )
    assert result.decision == "equivalent" and result.seeds == 20
    table = result.table()
    assert table["seeds"].tolist() == [10, 20] and table["decision"].tolist() == ["undecided", "equivalent"]
    assert (table["difference"] == 0).all() and table["low"].iloc[-1] >= -0.3 and table["high"].iloc[-1] <= 0.3
    assert [e.look.n for e in heard] == [10, 20]
    assert "equivalent to tiny within ±0.300 after 20 paired seeds" in result.sentence
    assert result.comparison.seeds == list(range(20)) and (tmp_path / "reports/twin/sequential.csv").is_file()


def test_the_progress_display_prints_a_line_per_look():
    import io

    from rich.console import Console

    from testbed.analysis.outcomes import BY_KEY
    from testbed.analysis.sequential import Look
    from testbed.cli.progress import ProgressDisplay
    from testbed.comparison.until_decided import Checked, look_line

    look, metric = Look(20, -0.15, -0.3, -0.02, "betting"), BY_KEY["success"]
    out = io.StringIO()
    with ProgressDisplay(Console(file=out, width=200)) as display:
        display(Checked(look, "worse", metric, look_line(look, metric, "worse")))
    assert out.getvalue().strip() == "20 seeds: success (test acc > 0.9) B − A -15 pts, betting interval (-30 pts, -2 pts): worse"


def test_undecided_at_the_budget_and_spikes_by_their_name(files, tmp_path):
    out = tmp_path / "budget"
    r = cli("compare", str(files["tiny"]), str(files["tiny_smooth"]), "--until-decided", "--metric", "spikes_per_seed", "--batch", "3",
            "--max-seeds", "6", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert "loss spikes: undecided at the budget of 6 paired seeds" in r.stdout
    assert "asymptotic" in r.stdout  # an unbounded count: its sequence says it is asymptotic
    assert [k["method"] for k in rows(out / "sequential.csv")] == ["asymptotic", "asymptotic"]


def assert_bad(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_bad_input_names_the_option_and_writes_nothing(files, tmp_path, two_runs):
    out = tmp_path / "never"
    a, b = str(files["tiny"]), str(files["tiny_smooth"])
    common = ("--out", str(out))
    assert_bad(cli_here("compare", a, b, "--margin", "0.1", *common), "--margin", "only with --until-decided")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--seeds", "0-9", *common), "--seeds", "not with --until-decided")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--lr-grid", "1e-3", *common), "--lr-grid")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--metric", "speed", *common), "--metric", "unknown metric 'speed'")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--margin", "0", *common), "--margin", "> 0")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--batch", "1", *common), "--batch")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--batch", "20", "--max-seeds", "10", *common), "--max-seeds")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--alpha", "1.5", *common), "--alpha")
    assert_bad(cli_here("compare", a, b, "--until-decided", "--batch", "many", *common), "--batch")
    assert_bad(cli_here("compare", a, b, str(files["tiny_hot"]), "--until-decided", *common), "--until-decided", "exactly two", "got 3")
    assert_bad(cli_here("compare", str(two_runs / "tiny"), b, "--until-decided", *common), "--until-decided", "run directory")
    assert_bad(cli_here("power", a, b, "--pilot", "3-1", *common), "--pilot")
    assert_bad(cli_here("power", a, b, "--pilot", "0", *common), "--pilot", "at least 2")
    assert_bad(cli_here("power", a, b, "--effect", "speed=1", *common), "--effect", "unknown metric 'speed'")
    assert_bad(cli_here("power", a, b, "--effect", "big", *common), "--effect", "not a number")
    assert_bad(cli_here("power", a, b, "--effect", "success=0", *common), "--effect", "other than 0")
    assert_bad(cli_here("power", a, b, "--power", "1.5", *common), "--power")
    assert_bad(cli_here("power", a, b, "--effect", "5", *common), "--effect", "more than a rate can change")
    assert_bad(cli_here("power", a, *common), "exactly two")
    assert not out.exists()


@pytest.fixture(scope="module")
def two_runs(files, tmp_path_factory) -> Path:
    """Run directories of tiny and tiny_hot on seeds 0-5 (reused by `power`)."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("tiny", "tiny_hot"):
        r = cli("run", str(files[name]), "--seeds", "0-5", "--out", str(root / name), "-q")
        assert r.returncode == 0, r.stderr
    return root


def test_power_from_a_pilot_prints_and_writes_the_seeds_needed(files, two_runs, tmp_path):
    out = tmp_path / "power"
    r = cli("power", str(two_runs / "tiny"), str(files["tiny_hot"]), "--pilot", "0-5", "--effect", "success=0.2", "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    assert "seeds needed" in r.stdout and "80% power" in r.stdout
    table = {row["metric"]: row for row in rows(out / "power.csv")}
    assert set(table) >= {"success", "final_test_acc", "spikes", "diverged"}
    # every pilot seed diverged in B, none in A: a difference of 100 points, seen on 6 seeds
    assert float(table["diverged"]["pilot_difference"]) == 1.0 and float(table["diverged"]["seeds_needed"]) <= 6
    assert table["success"]["effect_from"] == "given" and float(table["success"]["effect"]) == 0.2
    # no pilot seed succeeded: the 20 points are assumed to come from seeds B gains only
    assert float(table["success"]["spread"]) == 0 and float(table["success"]["seeds_needed"]) == seeds_needed("binary", 0.2, 0.0, 0.05) > 30
    assert table["final_test_acc"]["effect_from"] == "pilot"
    assert "Power: tiny_hot vs tiny" in (out / "power.md").read_text()
