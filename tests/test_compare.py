"""`testbed compare` end to end on tiny scenarios: pairing, report contents, reuse of run
directories, the learning-rate grid, and bad input."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TINY, cli, cli_here

from testbed.analysis.outcomes import METRICS
from testbed.config import scenario as scenario_mod
from testbed.engine.task import make_dataset

SMOOTH = {**TINY, "name": "tiny_smooth", "model": {"hidden": 8, "norm": "smooth"}}
WIDE = {**TINY, "name": "tiny_wide", "model": {"hidden": 12}, "optimizer": {"name": "sgd", "lr": 0.05}}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenarios")
    out = {}
    for data in (TINY, SMOOTH, WIDE):
        out[data["name"]] = root / f"{data['name']}.yaml"
        out[data["name"]].write_text(yaml.safe_dump(data))
    return out


@pytest.fixture(scope="module")
def two(files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "two"
    r = cli("compare", str(files["tiny"]), str(files["tiny_smooth"]), "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    return out


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def check_report(out: Path, labels: list[str], n_seeds: int) -> str:
    """Every promised file exists, figures referenced by report.md exist, the html needs no
    other file, comparison.csv has a row per scenario, seed and metric."""
    md = (out / "report.md").read_text()
    for label in labels:
        assert label in md
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    names = {Path(f).name for f in figures}
    assert {"loss.png", "accuracy.png", "spike_raster.png", "distributions.png"} <= names
    assert sum(n.startswith("paired_") for n in names) == len(labels) * (len(labels) - 1) // 2
    for f in figures:
        assert (out / f).stat().st_size > 10_000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert not re.search(r'src="(?!data:)', html)
    rows = read_rows(out / "comparison.csv")
    assert len(rows) == len(labels) * n_seeds * len(METRICS)
    assert {r["scenario"] for r in rows} == set(labels)
    stats_rows = read_rows(out / "statistics.csv")
    assert sum(r["row"] == "paired" for r in stats_rows) == len(METRICS) * len(labels) * (len(labels) - 1) // 2
    return md


def test_two_scenarios_report_is_complete(two):
    md = check_report(two, ["tiny", "tiny_smooth"], 3)
    assert "## Verdict" in md and "tiny_smooth vs tiny (3 paired seeds)" in md
    for name in ("tiny", "tiny_smooth"):
        assert (two / "runs" / name / "snapshots.npz").exists()
    assert not list(two.parent.glob(".*partial"))


def test_same_seed_same_data_and_initialisation_in_both_scenarios(two):
    """Pairing: where shapes match, a seed's initial weights are identical across scenarios;
    its data depends on the seed and task only."""
    a = np.load(two / "runs" / "tiny" / "snapshots.npz")
    b = np.load(two / "runs" / "tiny_smooth" / "snapshots.npz")
    for key in a.files:
        if key.startswith("param/"):
            np.testing.assert_array_equal(a[key][0], b[key][0])
    assert not np.array_equal(a["param/tok_emb"][-1], b["param/tok_emb"][-1])  # and they trained differently
    t = TINY["task"]
    d1 = make_dataset([0, 1, 2], t["p"], t["seq_len"], t["sparsity"], t["n_train"], t["n_test"], "iid")
    d2 = make_dataset([1], t["p"], t["seq_len"], t["sparsity"], t["n_train"], t["n_test"], "iid")
    assert np.array_equal(d1.train.tokens[1].numpy(), d2.train.tokens[0].numpy())
    assert np.array_equal(d1.test.tokens[1].numpy(), d2.test.tokens[0].numpy())


def test_pairing_holds_for_parameters_whose_shapes_match(tmp_path, files):
    out = tmp_path / "wide"
    r = cli_here("compare", str(files["tiny"]), str(files["tiny_wide"]), "--out", str(out), "-q", "--seeds", "1-2")
    assert r.returncode == 0, r.stderr
    a = np.load(out / "runs" / "tiny" / "snapshots.npz")
    b = np.load(out / "runs" / "tiny_wide" / "snapshots.npz")
    np.testing.assert_array_equal(a["seeds"], [1, 2])
    for key in ("param/tok_emb", "param/pos_emb", "param/query", "param/value"):
        np.testing.assert_array_equal(a[key][0], b[key][0])
    assert a["param/mlp.fc1.weight"].shape != b["param/mlp.fc1.weight"].shape


def test_run_directories_are_reused_not_retrained(two, tmp_path):
    out = tmp_path / "again"
    runs = two / "runs"
    r = cli_here("compare", str(runs / "tiny"), str(runs / "tiny_smooth"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "epoch" not in r.stderr  # no training progress
    assert not (out / "runs").exists()
    md = check_report(out, ["tiny", "tiny_smooth"], 3)
    assert "(reused)" in md
    assert read_rows(out / "comparison.csv") == read_rows(two / "comparison.csv")
    assert read_rows(out / "statistics.csv") == read_rows(two / "statistics.csv")


def test_three_scenarios_mixing_a_file_and_run_directories(two, files, tmp_path):
    out = tmp_path / "three"
    runs = two / "runs"
    r = cli_here("compare", str(runs / "tiny"), str(runs / "tiny_smooth"), str(files["tiny_wide"]), "--out", str(out), "--seeds", "0-1")
    assert r.returncode == 0, r.stderr
    md = check_report(out, ["tiny", "tiny_smooth", "tiny_wide"], 2)
    assert (out / "runs" / "tiny_wide").is_dir() and not (out / "runs" / "tiny").exists()
    for pair in ("tiny_smooth vs tiny", "tiny_wide vs tiny", "tiny_wide vs tiny_smooth"):
        assert pair in md and pair in r.stdout
    rows = read_rows(out / "comparison.csv")
    assert {r["seed"] for r in rows} == {"0", "1"}


def test_same_scenario_twice_gets_distinct_labels(files, tmp_path):
    out = tmp_path / "dup"
    r = cli_here("compare", str(files["tiny"]), str(files["tiny"]), "--out", str(out), "-q", "--seeds", "0-1")
    assert r.returncode == 0, r.stderr
    labels = {row["scenario"] for row in read_rows(out / "comparison.csv")}
    assert len(labels) == 2
    assert "no detectable difference on any metric" in r.stdout  # the same runs, seed for seed


def test_lr_grid_trains_every_rate_and_reports_sensitivity(files, tmp_path):
    out = tmp_path / "grid"
    own = scenario_mod.load(files["tiny"]).optimizer.lr
    r = cli_here("compare", str(files["tiny"]), str(files["tiny_smooth"]), "--out", str(out), "-q", "--lr-grid", f"{own},0.05")
    assert r.returncode == 0, r.stderr
    trained = sorted(p.name for p in (out / "runs").iterdir())
    assert trained == ["tiny", "tiny-lr0.05", "tiny_smooth", "tiny_smooth-lr0.05"]  # the own rate is the main run
    md = (out / "report.md").read_text()
    assert "## Learning-rate sensitivity" in md and "figures/lr_sensitivity.png" in md
    rows = read_rows(out / "lr_sweep.csv")
    assert {(r["scenario"], r["lr"]) for r in rows} == {(s, lr) for s in ("tiny", "tiny_smooth") for lr in (f"{own:g}", "0.05")}
    assert "sensitivity" in r.stdout
    # the report directory is itself an input: re-analysed, grid included, nothing retrained
    again = tmp_path / "again"
    r = cli_here("compare", str(out), "--out", str(again), "-q")
    assert r.returncode == 0, r.stderr
    assert not (again / "runs").exists()
    for name in ("lr_sweep.csv", "comparison.csv", "statistics.csv"):
        assert (again / name).read_text() == (out / name).read_text()


def assert_bad(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f in lines[0]


def test_bad_input(files, tmp_path):
    out = tmp_path / "never"
    assert_bad(cli_here("compare", str(files["tiny"]), "--out", str(out)), "at least two", "got 1")
    assert_bad(cli_here("compare", str(files["tiny"]), str(tmp_path / "missing.yaml"), "--out", str(out)), "missing.yaml", "no such file")
    other = dict(TINY, task={**TINY["task"], "p": 3})
    (tmp_path / "p3.yaml").write_text(yaml.safe_dump(other))
    assert_bad(cli_here("compare", str(files["tiny"]), str(tmp_path / "p3.yaml"), "--out", str(out)), "p3.yaml", "final p: 3 vs 2")
    assert_bad(cli_here("compare", str(files["tiny"]), str(files["tiny_smooth"]), "--lr-grid", "1e-3,abc", "--out", str(out)), "--lr-grid")
    assert_bad(cli_here("compare", str(files["tiny"]), str(files["tiny_smooth"]), "--seeds", "3-1", "--out", str(out)), "--seeds")
    (tmp_path / "empty_dir").mkdir()
    assert_bad(cli_here("compare", str(files["tiny"]), str(tmp_path / "empty_dir"), "--out", str(out)), "not a run directory")
    assert not out.exists()


def test_run_directory_without_the_needed_seeds_or_files(two, files, tmp_path):
    out = tmp_path / "never"
    runs = two / "runs"
    assert_bad(cli_here("compare", str(runs / "tiny"), str(files["tiny_smooth"]), "--seeds", "0-5", "--out", str(out)), "has no seeds 3-5")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "scenario.yaml").write_text((runs / "tiny" / "scenario.yaml").read_text())
    assert_bad(cli_here("compare", str(broken), str(files["tiny"]), "--out", str(out)), "metrics.csv", "metrics probe")
    assert_bad(cli_here("compare", str(runs / "tiny"), str(runs / "tiny_smooth"), "--set", "training.epochs=2", "--out", str(out)), "--set", "run director")
    assert not out.exists()


def test_a_run_without_step_losses_is_compared_on_every_metric_its_data_allows(two, files, tmp_path):
    """A run that kept only metrics.csv (no step_loss probe) is not refused: every metric of
    the evaluated curves is tested, the spike metrics are left out, and the report says why."""
    runs = two / "runs"
    lean = tmp_path / "lean"
    lean.mkdir()
    for name in ("scenario.yaml", "metrics.csv", "summary.json"):
        (lean / name).write_text((runs / "tiny_smooth" / name).read_text())
    out = tmp_path / "report"
    proc = cli_here("compare", str(runs / "tiny"), str(lean), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    tested = {r["metric"] for r in read_rows(out / "statistics.csv") if r["row"] == "paired"}
    assert tested == {m.key for m in METRICS if not m.needs_steps}
    full = {r["metric"]: r for r in read_rows(two / "statistics.csv") if r["row"] == "paired"}
    lean_rows = {r["metric"]: r for r in read_rows(out / "statistics.csv") if r["row"] == "paired"}
    assert lean_rows["final_test_acc"]["value"] == full["final_test_acc"]["value"]  # the same runs, the same numbers
    md = (out / "report.md").read_text()
    assert "Not computed: loss spikes, total spike size (loss jump), worst spike (loss jump)" in md and "lean" in md
