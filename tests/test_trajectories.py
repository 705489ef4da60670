"""`testbed trajectories`: the joint map of parameter trajectories. What users rely on: the PCA
is the PCA (checked against numpy's covariance eigenvectors), one csv row per run, seed and
snapshot, identical runs land on identical points, the same input gives the same csv, the
command works from any working directory, and bad input is one line with exit status 2."""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TINY, cli

import testbed
from testbed.config.scenario import curriculum_switches
from testbed.trajectory import projection

# TINY's snapshots every 2 epochs (0, 2, 4), with a vocabulary switch to mark
SWITCHING = copy.deepcopy(TINY) | {"curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3}]}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two runs of the same scenario and seeds, trained separately (not served from a store)."""
    root = tmp_path_factory.mktemp("traj")
    (root / "tiny.yaml").write_text(yaml.safe_dump(SWITCHING))
    sc = testbed.load_scenario(root / "tiny.yaml")
    return tuple(testbed.run(sc, out=root / name, store=False).path for name in ("a", "b"))


def stacked(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every (seed, snapshot) of a run as a row of its parameters, flattened in name order,
    seed-major as the csv; and the epochs."""
    with np.load(run / "snapshots.npz") as z:
        names = sorted(k for k in z.files if k.startswith("param/"))
        epochs = z["epochs"]
        parts = [z[n].reshape(len(epochs), z[n].shape[1], -1) for n in names]
    return np.concatenate(parts, axis=2).transpose(1, 0, 2).reshape(-1, sum(p.shape[2] for p in parts)), epochs


def reference_pca(x: np.ndarray) -> np.ndarray:
    """The top two principal components from the covariance's eigenvectors, with the sign fixed
    as the map fixes it (each component's largest loading positive)."""
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    top = vectors[:, np.argsort(values)[::-1][:2]].T
    top *= np.sign(top[np.arange(2), np.argmax(np.abs(top), axis=1)])[:, None]
    return (x - x.mean(axis=0)) @ top.T


def test_pca_equals_the_covariance_eigenvectors():
    x = np.random.default_rng(0).normal(size=(40, 7)) * np.arange(1, 8)
    xy, explained = projection.pca(x)
    np.testing.assert_allclose(xy, reference_pca(x), atol=1e-9)
    variances = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(explained, variances[:2] / variances.sum())


def test_map_of_a_run_is_the_pca_of_its_stacked_snapshots_one_row_per_seed_and_snapshot(runs, tmp_path):
    a, _ = runs
    result = testbed.trajectories([a], out=tmp_path / "map", color="test_acc")
    table = result.table()
    x, epochs = stacked(a)
    seeds = testbed.load_run(a).snapshots.seeds
    assert list(table.columns) == ["run", "seed", "epoch", "x", "y", "test_acc"]
    assert len(table) == len(seeds) * len(epochs) == len(x)
    assert list(zip(table.seed, table.epoch)) == [(s, e) for s in seeds for e in epochs]
    np.testing.assert_allclose(table[["x", "y"]].to_numpy(), reference_pca(x), atol=1e-9)
    metrics = testbed.load_run(a).metrics.set_index(["seed", "epoch"])["test_acc"]
    np.testing.assert_array_equal(table.test_acc, [metrics.get((s, e), np.nan) for s, e in zip(table.seed, table.epoch)])
    assert {"trajectories.png", "report.md"} <= {p.name for p in result.path.iterdir()}
    report = (result.path / "report.md").read_text()
    assert "p 2→3 at epoch 3" in report and "![" in report


def test_identical_runs_overlap_and_the_map_is_deterministic(runs, tmp_path):
    a, b = runs
    first = testbed.trajectories([a, b], out=tmp_path / "one")
    second = testbed.trajectories([a, b], out=tmp_path / "two")
    assert (first.path / "trajectories.csv").read_bytes() == (second.path / "trajectories.csv").read_bytes()
    table = first.table()
    assert set(table.run) == {"a", "b"} and len(table) == 2 * len(stacked(a)[0])
    ta, tb = (table[table.run == r][["seed", "epoch", "x", "y"]].reset_index(drop=True) for r in ("a", "b"))
    pd.testing.assert_frame_equal(ta, tb)


def test_curriculum_switch_epochs_come_from_the_plugin(tmp_path):
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(TINY | {"curriculum": {"name": "pretrain", "p": 2, "epochs": 2}, "task": TINY["task"] | {"p": 3}}))
    assert curriculum_switches(testbed.load_scenario(tmp_path / "pre.yaml")) == [(3, 2, 3)]
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(TINY))
    assert curriculum_switches(testbed.load_scenario(tmp_path / "flat.yaml")) == []


def test_bad_inputs_are_one_line_errors(runs, tmp_path):
    a, _ = runs
    bare = tmp_path / "bare"
    shutil.copytree(a, bare)
    (bare / "snapshots.npz").unlink()
    with pytest.raises(testbed.UserError, match="no snapshots.npz .*snapshots probe writes it"):
        testbed.trajectories([bare], out=tmp_path / "x")
    with pytest.raises(testbed.UserError, match="no snapshots of seed 7"):
        testbed.trajectories([a], seeds="0,7", out=tmp_path / "x")
    single = tmp_path / "single"
    shutil.copytree(a, single)
    with np.load(a / "snapshots.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(single / "snapshots.npz", **{k: v[:1] if k.startswith("param/") or k == "epochs" else v for k, v in arrays.items()})
    with pytest.raises(testbed.UserError, match="1 point"):
        testbed.trajectories([single], seeds="0", out=tmp_path / "x")
    wide = tmp_path / "wide"
    shutil.copytree(a, wide)
    name = sorted(k for k in arrays if k.startswith("param/"))[0]
    np.savez(wide / "snapshots.npz", **(arrays | {name: np.concatenate([arrays[name]] * 2, axis=-1)}))
    with pytest.raises(testbed.UserError, match=f"parameter '{name.removeprefix('param/')}' has shape"):
        testbed.trajectories([a, wide], out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_snapshots_of_a_diverged_seed_are_left_out_of_the_projection(runs, tmp_path):
    a, _ = runs
    diverged = tmp_path / "diverged"
    shutil.copytree(a, diverged)
    with np.load(a / "snapshots.npz") as z:
        arrays = {k: z[k].copy() for k in z.files}
    for k in arrays:
        if k.startswith("param/"):
            arrays[k][-1, 1] = np.nan  # seed 1's last snapshot
    np.savez(diverged / "snapshots.npz", **arrays)
    table = testbed.trajectories([diverged], out=tmp_path / "map").table()
    lost = table.x.isna()
    assert list(table[lost].seed) == [1] and list(table[lost].epoch) == [arrays["epochs"][-1]]
    x, _ = stacked(a)
    np.testing.assert_allclose(table[~lost][["x", "y"]].to_numpy(), reference_pca(x[~lost.to_numpy()]), atol=1e-6)


def test_tsne_without_scikit_learn_names_the_install(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(testbed.UserError, match=r"pip install 'testbed\[maps\]'"):
        testbed.trajectories([runs[0]], method="tsne", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_tsne_gives_finite_coordinates_for_every_point(runs, tmp_path):
    pytest.importorskip("sklearn")
    a, b = runs
    table = testbed.trajectories([a, b], method="tsne", perplexity=4, color="epoch", out=tmp_path / "map").table()
    assert len(table) == 2 * len(stacked(a)[0])
    assert np.isfinite(table[["x", "y"]].to_numpy()).all()


def test_cli_from_another_directory_with_relative_paths_and_exit_2_on_bad_input(runs, tmp_path):
    a, b = runs
    work = tmp_path / "work"
    work.mkdir()
    proc = cli("trajectories", os.path.relpath(a, work), os.path.relpath(b, work), "--seeds", "0-1", "--color", "epoch", "--out", "maps/m", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "maps/m"
    assert len(pd.read_csv(work / "maps/m/trajectories.csv")) == 2 * 2 * len(stacked(a)[1])
    assert (work / "maps/m/trajectories.png").stat().st_size > 0
    bad = cli("trajectories", os.path.relpath(a, work), "--seeds", "9", "--out", "maps/n", cwd=work)
    assert bad.returncode == 2, bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "seed 9" in lines[0], bad.stderr
    assert not (work / "maps/n").exists()
