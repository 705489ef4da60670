"""The analysis of a finished study (testbed.study.sweep_report.analyse) on real, tiny runs: its
tables hold exactly the outcomes `testbed compare` computes, its summary is the summary of its
table, its figures and report are all there, and analysing again writes the same files."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from conftest import TINY

import testbed
from testbed.analysis import stats
from testbed.analysis.outcomes import METRICS, RunData, outcomes
from testbed.study.sweep_report import analyse
from testbed.study.sweep_table import Cell

SEEDS = [0, 1, 2]
AXES = ["model.hidden", "optimizer.lr"]
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(**fields):
    flat = {f"{section}.{k}": v for section in ("task", "model", "training") for k, v in TINY[section].items()}
    flat.update({"training.epochs": 3, "probes": ["metrics", "step_loss", "spikes"]}, **fields)
    return testbed.load_scenario("scenarios/baseline.yaml", seeds="0-2", **flat)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """Four cells, model.hidden x optimizer.lr, each a real run of seeds 0-2."""
    root = tmp_path_factory.mktemp("study")
    found = []
    for i, (hidden, lr) in enumerate(itertools.product([4, 8], [1e-3, 1e-1])):
        run = testbed.run(tiny(**{"model.hidden": hidden, "optimizer.lr": lr}), out=root / f"cell{i}", threads=1)
        found.append(Cell(i, f"model.hidden={hidden}, optimizer.lr={lr:g}", {"model.hidden": hidden, "optimizer.lr": lr}, run))
    return found


@pytest.fixture(scope="module")
def study(cells, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    events = []
    result = analyse(cells, AXES, SEEDS, out, title="Study: tiny", intro=["study file: tiny.yaml", "4 cells trained, 0 reused"], progress=events.append)
    return result, events


def test_sweep_csv_holds_the_outcomes_of_compare_for_every_cell_seed_and_metric(cells, study):
    result, _ = study
    table = pd.read_csv(result.path / "sweep.csv")
    assert list(table.columns) == ["cell", "label", *AXES, "seed", "metric", "value"]
    assert len(table) == len(cells) * len(SEEDS) * len(METRICS)
    for c in cells:
        expected = outcomes(RunData.of(c.run, SEEDS))
        rows = table[table["cell"] == c.index]
        assert set(rows["label"]) == {c.label}
        assert rows["model.hidden"].unique().tolist() == [c.values["model.hidden"]]
        assert rows["optimizer.lr"].unique().tolist() == [c.values["optimizer.lr"]]
        for m in METRICS:
            got = rows[rows["metric"] == m.key].set_index("seed").loc[SEEDS, "value"].to_numpy()
            # exactly: the file holds every float in full, NaN (never reached) as an empty field
            np.testing.assert_array_equal(got, np.asarray(expected[m.key], dtype=float))
    pd.testing.assert_frame_equal(table, result.table(), check_dtype=False)


def test_cells_csv_summarizes_sweep_csv(cells, study):
    result, _ = study
    table = pd.read_csv(result.path / "sweep.csv")
    summary = pd.read_csv(result.path / "cells.csv")
    pd.testing.assert_frame_equal(summary, result.cells(), check_dtype=False)
    assert summary["cell"].tolist() == [c.index for c in cells]
    assert (summary["n_seeds"] == len(SEEDS)).all()
    assert (summary["last_epoch"] == 3).all()
    for _, row in summary.iterrows():
        mine = table[table["cell"] == row["cell"]]
        for m in METRICS:
            values = mine[mine["metric"] == m.key]["value"].to_numpy()
            if m.kind == "time":  # never reached counts as one epoch past the end
                assert row[f"{m.key}_reached"] == np.isfinite(values).sum()
                values = np.where(np.isnan(values), row["last_epoch"] + 1, values)
            assert row[f"{m.key}_mean"] == pytest.approx(values.mean(), rel=1e-12, abs=1e-15)
            assert row[f"{m.key}_sd"] == pytest.approx(values.std(ddof=1), rel=1e-12, abs=1e-15)
            assert row[f"{m.key}_median"] == pytest.approx(np.median(values), rel=1e-12, abs=1e-15)
            assert row[f"{m.key}_q25"] <= row[f"{m.key}_median"] <= row[f"{m.key}_q75"]
            if m.kind == "binary":
                rate = stats.estimate(values, "binary")
                assert (row[f"{m.key}_wilson_lo"], row[f"{m.key}_wilson_hi"]) == pytest.approx((rate.low, rate.high))
                assert row[f"{m.key}_wilson_lo"] <= row[f"{m.key}_mean"] <= row[f"{m.key}_wilson_hi"]


def test_figures_and_report(cells, study):
    result, events = study
    figures = sorted((result.path / "figures").iterdir())
    assert [f.name for f in figures] == ["01_model.hidden.png", "02_optimizer.lr.png", "heatmap.png"]
    assert all(f.read_bytes().startswith(PNG) for f in figures)
    assert [p.as_posix() for p in result.figures] == [f"figures/{f.name}" for f in figures]
    md = (result.path / "report.md").read_text()
    assert md.startswith("# Study: tiny")
    assert "study file: tiny.yaml" in md and "4 cells trained, 0 reused" in md
    for f in figures:
        assert f"](figures/{f.name})" in md
    for c in cells:
        assert c.label in md
    assert "## Method" in md and "initialisation" in md
    html = (result.path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    # progress: every cell, in order, from the calling thread
    assert [(e.done, e.cells, e.label) for e in events] == [(i + 1, len(cells), c.label) for i, c in enumerate(cells)]


def test_analysing_again_writes_the_same_tables_and_report(cells, study, tmp_path):
    """From the run directories alone, one cell at a time instead of two: the same files."""
    result, _ = study
    reread = [Cell(c.index, c.label, c.values, testbed.load_run(c.run.path)) for c in cells]
    analyse(reread, AXES, SEEDS, tmp_path, title="Study: tiny", intro=["study file: tiny.yaml", "4 cells trained, 0 reused"], workers=1)
    for name in ("sweep.csv", "cells.csv", "report.md"):
        assert (tmp_path / name).read_bytes() == (result.path / name).read_bytes(), name
    # the caller's runs are left as they were: the step losses read are not kept in them
    assert all("step_loss" not in vars(c.run) for c in reread)


def test_one_axis_has_no_heatmap_and_seeds_may_be_a_subset(cells, tmp_path):
    one = [Cell(i, f"model.hidden={c.values['model.hidden']}", {"model.hidden": c.values["model.hidden"]}, c.run) for i, c in enumerate(cells[::2])]
    result = analyse(one, ["model.hidden"], [2, 0], tmp_path, title="one axis")
    assert [f.name for f in (tmp_path / "figures").iterdir()] == ["01_model.hidden.png"]
    table = result.table()
    assert table["seed"].unique().tolist() == [2, 0]
    assert len(table) == 2 * 2 * len(METRICS)


def test_categorical_and_three_axes(cells, tmp_path):
    """Axis values of any JSON type (here invented for the runs at hand: analysis reads only
    the runs): dicts and lists as compact JSON in the tables, categories in study order."""
    norms = [{"name": "smooth", "radius": 0.5}, "rms"]
    values = [{"model.norm": norms[i % 2], "scenario": ["a", "b"][i // 2], "training.betas": [0.9, [0.99, 0.999, 0.95, 0.98][i]]} for i in range(4)]
    axes = ["model.norm", "scenario", "training.betas"]
    mixed = [Cell(i, f"cell {i}", v, c.run) for i, (v, c) in enumerate(zip(values, cells))]
    result = analyse(mixed, axes, SEEDS, tmp_path, title="categories")
    table = pd.read_csv(tmp_path / "sweep.csv")
    assert table[table["cell"] == 0]["model.norm"].unique().tolist() == ['{"name":"smooth","radius":0.5}']
    assert table[table["cell"] == 1]["model.norm"].unique().tolist() == ["rms"]
    assert table[table["cell"] == 3]["training.betas"].unique().tolist() == ["[0.9,0.98]"]
    assert sorted(f.name for f in (tmp_path / "figures").iterdir()) == ["01_model.norm.png", "02_scenario.png", "03_training.betas.png"]
    assert len(result.report.blocks) > 0


def test_a_cell_without_the_seeds_is_named(cells, tmp_path):
    with pytest.raises(testbed.UserError, match=r"cell0: no seed 7 \(cell 0: model.hidden=4, optimizer.lr=0.001\)"):
        analyse(cells[:2], AXES, [0, 7], tmp_path, title="x")


def test_an_axis_named_like_a_column_is_refused(cells, tmp_path):
    bad = [Cell(0, "x", {"seed": 1}, cells[0].run)]
    with pytest.raises(ValueError, match="axis seed"):
        analyse(bad, ["seed"], SEEDS, tmp_path, title="x")
