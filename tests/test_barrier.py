"""`testbed barrier`: the ends of a line are the runs' own evaluation, a run against itself has
no barrier, the barrier height is the excess over the chord, pair-seeds evaluates one line per
common seed exactly as each point alone, and bad input is one line with exit status 2."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY, cli, cli_here

import testbed
from testbed.loss_barrier import interpolation
from testbed.loss_barrier.barrier_command import choose_pairs
from testbed.render import rundata


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs: A on seeds 0-2, B with another learning rate on seeds 1-3 (common: 1, 2)."""
    root = tmp_path_factory.mktemp("barrier-runs")
    a = testbed.run(testbed.load_scenario(_write(root / "a.yaml", TINY)), out=root / "ra", store=False)
    b_scenario = dict(TINY, seeds="1-3", optimizer={"name": "adamw", "lr": 0.01})
    b = testbed.run(testbed.load_scenario(_write(root / "b.yaml", b_scenario)), out=root / "rb", store=False)
    return root, a, b


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def _final(run, seed):
    m = run.metrics
    return m[(m["seed"] == seed) & (m["epoch"] == m["epoch"].max())].iloc[0]


def test_the_ends_are_the_runs_own_evaluation(runs, tmp_path):
    root, a, b = runs
    result = testbed.barrier(a, b, pair_seeds=True, points=5, out=tmp_path / "rep")
    curves = result.curves
    assert sorted(set(curves["pair"])) == [0, 1]  # one line per common seed
    assert list(result.barriers[result.barriers.split == "train"]["seed_a"]) == [1, 2]
    for seed in (1, 2):
        for split in ("train", "test"):
            line = curves[(curves.seed_a == seed) & (curves.split == split)].set_index("t")
            assert len(line) == 5
            for t, run in ((0.0, a), (1.0, b)):
                assert line.loc[t, "loss"] == pytest.approx(_final(run, seed)[f"{split}_loss"], abs=1e-6)
                assert line.loc[t, "acc"] == pytest.approx(_final(run, seed)[f"{split}_acc"], abs=1e-6)
    for name in ("barrier.csv", "barriers.csv", "barrier.png", "report.md"):
        assert (result.path / name).is_file()
    written = pd.read_csv(result.path / "barrier.csv")
    assert list(written.columns[:3]) == ["pair", "seed_a", "seed_b"] and {"t", "split", "loss", "acc"} <= set(written.columns)
    assert "p = 2" in (result.path / "report.md").read_text()


def test_a_run_against_itself_has_no_barrier(runs, tmp_path):
    root, a, _ = runs
    result = testbed.barrier(a.path, a.path, seed=1, points=7, extend=0.5, out=tmp_path / "rep")
    assert (result.barriers["barrier"] == 0.0).all()
    for split in ("train", "test"):
        loss = result.curves[result.curves.split == split]["loss"]
        assert loss.nunique() == 1 and loss.iloc[0] == pytest.approx(_final(a, 1)[f"{split}_loss"], abs=1e-6)
    assert {0.0, 1.0, -0.5, 1.5} <= set(result.curves["t"])


def test_the_barrier_is_the_largest_excess_over_the_chord():
    t = np.linspace(-0.5, 1.5, 21)
    loss = 2.0 - t + 0.3 * np.sin(np.pi * t) + 10.0 * ((t < 0) | (t > 1))  # outside [0, 1] does not count
    l0, l1, height, where = interpolation.barrier_height(t, loss)
    assert (l0, l1) == pytest.approx((2.0, 1.0))
    assert height == pytest.approx(0.3) and where == pytest.approx(0.5)
    assert interpolation.barrier_height([0.0, 0.5, 1.0], [1.0, 0.2, 0.0])[2:] == (0.0, 0.0)  # convex: none


def test_the_vectorized_lines_equal_each_point_alone(runs):
    root, a, b = runs
    ra, rb = rundata.load(a.path), rundata.load(b.path)
    pairs = choose_pairs(ra, rb, two_runs=True, seed=None, pair=None, pair_seeds=True, epochs=None)
    t = interpolation.grid(6, 0.2)
    flat = interpolation.interpolate(pairs, t)
    data = [pr.data_seed for pr in pairs for _ in t]
    together = interpolation.evaluate_rows(rb, 2, flat, data)
    alone = [interpolation.evaluate_rows(rb, 2, flat[i : i + 1], data[i : i + 1]) for i in range(len(flat))]
    for key, values in together.items():
        np.testing.assert_allclose(values, [row[key][0] for row in alone], rtol=0, atol=1e-7)


def test_the_command_line_from_another_folder(runs, tmp_path):
    root, _, _ = runs
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copytree(root / "ra", work / "ra")
    shutil.copytree(root / "rb", work / "rb")
    proc = cli("barrier", "ra", "rb", "--seed", "2", "--points", "3", "--split", "test", "--out", "rep", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert "barrier" in proc.stdout and "rep" in proc.stdout
    curves = pd.read_csv(work / "rep" / "barrier.csv")
    assert set(curves["split"]) == {"test"} and len(curves) == 3 and set(curves["seed_a"]) == {2}


def test_bad_input_is_one_line_naming_it(runs, tmp_path):
    root, a, _ = runs
    bare = tmp_path / "bare"
    shutil.copytree(root / "ra", bare)
    (bare / "snapshots.npz").unlink()
    narrow = testbed.run(
        testbed.load_scenario(_write(tmp_path / "n.yaml", dict(TINY, model={"hidden": 4}, training={"epochs": 2, "batch_size": 16}))),
        out=tmp_path / "narrow", store=False,
    )
    relu = tmp_path / "relu"  # the same shapes, another function of them
    shutil.copytree(root / "ra", relu)
    text = (relu / "scenario.yaml").read_text()
    (relu / "scenario.yaml").write_text(text.replace("activation:\n    name: gelu\n    approximate: none", "activation:\n    name: relu"))
    ra = str(root / "ra")
    cases = [
        ((str(bare), ra), ["bare", "no snapshots.npz", "the snapshots probe writes it"]),
        ((ra, str(narrow.path)), ["narrow", "mlp.fc1.weight"]),
        ((ra, str(relu)), ["relu", "model.activation"]),
        ((ra, ra, "--seed", "7"), ["--seed 7", "ra"]),
        ((ra, "--epochs", "1,4"), ["--epochs 1", "0, 2, 4"]),
        ((ra, "--pair", "0,9"), ["--pair 9"]),
        ((ra, "--seeds", "0,1"), ["--seeds 0,1", "--pair A,B"]),  # the old spelling: a hint to the new one
        ((ra, ra, "--points", "1"), ["--points 1"]),
        ((ra, ra, "--split", "valid"), ["--split valid"]),
    ]
    for args, words in cases:
        proc = cli_here("barrier", *args, "--out", str(tmp_path / "never"))
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, proc.stderr)
        assert all(w in lines[0] for w in words), (args, lines[0])
    proc = cli_here("barrier", ra, "--seed", "1")
    assert proc.returncode == 2 and "--pair A,B" in proc.stderr
    assert not (tmp_path / "never").exists()


def test_two_seeds_of_one_run_are_a_pair_and_quiet_prints_only_the_report(runs, tmp_path, monkeypatch):
    root, _, _ = runs
    shutil.copytree(root / "ra", tmp_path / "ra")
    monkeypatch.chdir(tmp_path)
    proc = cli_here("barrier", "ra", "--pair", "1,2", "--points", "3", "--out", "rep", "-q", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["rep"]  # no table: the path a script reads
    curves = pd.read_csv(tmp_path / "rep" / "barrier.csv")
    assert set(curves["seed_a"]) == {1} and set(curves["seed_b"]) == {2}
    again = cli_here("barrier", "ra", "--pair", "1,2", "--points", "3", "--out", "rep", "-q")
    assert again.returncode == 2 and "--force" in again.stderr
    assert cli_here("barrier", "ra", "--pair", "1,2", "--points", "3", "--out", "rep", "-q", "--force").returncode == 0
