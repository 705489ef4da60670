"""The sparsity probe (fraction of MLP hidden activations below each eps) and the figures of
`testbed render --sparsity` and `--grad-norms`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY, assert_npz_equal, cli_here

import testbed
from testbed.engine.loop import build
from testbed.engine.model import forward, pair_index
from testbed.engine.task import make_dataset
from testbed.errors import RunFailure
from testbed.rundir.reader import Run

PROBES = ["metrics", {"name": "sparsity", "every": 2}, {"name": "grad_norms", "per": "step"}]
SWITCH = {"curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3}]}}  # epoch 4 trains on p = 3


def scenario(tmp_path, seeds="0-2", **fields):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "probes": PROBES, **fields}))
    return testbed.load_scenario(path, seeds=seeds)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sparsity")
    path = tmp / "tiny.yaml"
    probes = [*PROBES, {"name": "snapshots", "every": 2}]
    path.write_text(yaml.safe_dump({**TINY, "probes": probes, **SWITCH}))
    return testbed.run(testbed.load_scenario(path), out=tmp / "run", store=False)


def direct_fraction(run: Run, epoch: int, eps: np.ndarray) -> np.ndarray:
    """(S, E): the model's forward with trace on each seed's training sequences, from the
    snapshot of `epoch`, counted directly."""
    sc = run.scenario
    c = build(sc)
    p = c.curriculum.p_at(max(epoch, 1))
    ds = make_dataset(run.seeds, p, sc.task.seq_len, sc.task.sparsity, sc.task.n_train, sc.task.n_test, sc.task.test_split)
    snap = run.snapshots
    i = list(snap.epochs).index(epoch)
    views = {name: torch.from_numpy(values[i]) for name, values in snap.params.items()}
    trace = {}
    with torch.no_grad():
        forward(c.arch, views, pair_index(ds.train.tokens, c.arch.n_tokens), trace)
    hidden = trace["hidden"].abs().reshape(len(run.seeds), -1).numpy()  # (S, N * h)
    return (hidden[:, :, None] < eps[None, None, :]).mean(1)


def test_the_fraction_is_a_direct_count_over_the_training_sequences(tiny_run):
    sp = tiny_run.sparsity
    assert list(sp.epochs) == [0, 2, 4] and sp.seeds == [0, 1, 2]
    assert sp.eps.shape == (29,) and sp.eps[0] == pytest.approx(1e-5) and sp.eps[-1] == pytest.approx(1e2)
    assert np.allclose(np.diff(np.log10(sp.eps)), 0.25)  # 4 per decade
    assert sp.fraction.shape == (3, 3, 29)
    for k, epoch in enumerate(sp.epochs):  # epoch 4 is on p = 3: the probe follows the curriculum
        np.testing.assert_array_equal(sp.fraction[k], direct_fraction(tiny_run, int(epoch), sp.eps))
    assert np.all(np.diff(sp.fraction, axis=2) >= 0)  # non-decreasing in eps
    assert sp.fraction[..., 0].max() < 0.5 and sp.fraction[..., -1].min() == 1.0  # GELU's outputs are rarely tiny, never 100


def test_chosen_epochs_and_eps_grid(tmp_path):
    sc = scenario(tmp_path, seeds="0", probes=[{"name": "sparsity", "epochs": [1, 3], "n_eps": 8}])
    sp = testbed.run(sc, out=tmp_path / "run", store=False).sparsity
    assert list(sp.epochs) == [1, 3] and len(sp.eps) == 8 and sp.fraction.shape == (2, 1, 8)


def test_seed_sets_combine_into_the_file_of_one_run(tmp_path):
    direct = testbed.run(scenario(tmp_path, "0-2"), out=tmp_path / "direct", store=False)
    testbed.run(scenario(tmp_path, "0-1"), out=tmp_path / "a")
    testbed.run(scenario(tmp_path, "2"), out=tmp_path / "b")
    events: list = []
    combined = testbed.run(scenario(tmp_path, "0-2"), out=tmp_path / "c", progress=events.append)
    assert events == []  # served from the two runs, nothing trained
    assert_npz_equal(direct.path / "sparsity.npz", combined.path / "sparsity.npz")


class Stop(Exception):
    pass


def test_a_stopped_and_resumed_run_measures_as_an_uninterrupted_one(tmp_path):
    sc = scenario(tmp_path, "0-1", **SWITCH)
    reference = testbed.run(sc, out=tmp_path / "reference", checkpoint_every="off", store=False)

    def stop(event) -> None:
        if event.resumed_from is None and event.epoch == 3:
            raise Stop

    with pytest.raises(RunFailure):
        testbed.run(sc, out=tmp_path / "stopped", checkpoint_every=1, progress=stop, store=False)
    run = testbed.run(sc, out=tmp_path / "stopped", checkpoint_every=1, store=False)
    with np.load(reference.path / "sparsity.npz") as want, np.load(run.path / "sparsity.npz") as got:
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_the_figures_are_pngs(tiny_run, tmp_path):
    for flag, name in (("--sparsity", "sparsity.png"), ("--grad-norms", "grad_norms.png")):
        proc = cli_here("render", str(tiny_run.path), flag, "--out", str(tmp_path / name), "--dpi", "40")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = testbed.figure(tiny_run, "grad_norms", out=tmp_path / "api.png", dpi=40)
    assert written == tmp_path / "api.png" and written.read_bytes()[:4] == b"\x89PNG"


def test_grad_norms_per_epoch_draw_too(tmp_path):
    sc = scenario(tmp_path, "0-1", probes=["metrics", "grad_norms"])
    run = testbed.run(sc, out=tmp_path / "run", store=False)
    assert testbed.figure(run, "grad_norms", dpi=40).read_bytes()[:4] == b"\x89PNG"
    assert (run.path / "render" / "grad_norms.png").is_file()


def one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_a_run_without_the_probes_file_is_one_line_naming_the_probe(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    shutil.copytree(tiny_run.path, run)
    (run / "sparsity.npz").unlink()
    (run / "grad_norms.npz").unlink()
    one_line_error(cli_here("render", "run", "--sparsity"), "no sparsity.npz", "the sparsity probe writes it")
    one_line_error(cli_here("render", "run", "--grad-norms"), "no grad_norms.npz", "the grad_norms probe writes it")
    one_line_error(cli_here("render", "run", "--sparsity", "--grad-norms"), "choose one")
    one_line_error(cli_here("render", "run", "--sparsity", "--seed", "1"), "--sparsity", "--seed")
    assert not (run / "render").exists()
