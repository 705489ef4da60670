"""Warm start (`model.init: {run: DIR}`): each seed starts from the same seed of a finished run,
the token embeddings the source lacks drawn as this model draws them; bad sources are one line."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from conftest import TINY, cli_here

import testbed
from testbed.store.store_key import identity

SOURCE = dict(TINY, probes=[{"name": "snapshots", "every": 1}], seeds="0-3")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A p = 2 run of 4 epochs with every epoch's snapshot."""
    out = tmp_path_factory.mktemp("warm") / "pretrain"
    testbed.run(testbed.load_scenario(_write(out.parent / "pretrain.yaml", SOURCE)), out=out, store=False)
    return out


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def _snapshots(run):
    with np.load(run / "snapshots.npz") as z:
        return {k: z[k] for k in z.files}


def test_each_seed_starts_from_its_own_seed_of_the_source_and_new_tokens_are_drawn_afresh(tmp_path, source):
    finetune = dict(TINY, task=dict(TINY["task"], p=4), model={"hidden": 8, "init": {"run": str(source), "epoch": 3}},
                    probes=[{"name": "snapshots", "every": 1}], seeds="1,3", training={"epochs": 2, "batch_size": 16})
    run = testbed.run(testbed.load_scenario(_write(tmp_path / "ft.yaml", finetune)), out=tmp_path / "ft", store=False)
    scratch = dict(finetune, model={"hidden": 8})
    testbed.run(testbed.load_scenario(_write(tmp_path / "scratch.yaml", scratch)), out=tmp_path / "scratch", store=False)
    src, ft, own = _snapshots(source), _snapshots(run.path), _snapshots(tmp_path / "scratch")
    e = list(src["epochs"]).index(3)
    for name in ("pos_emb", "query", "value", "mlp.fc1.weight", "mlp.fc2.bias"):
        np.testing.assert_array_equal(ft[f"param/{name}"][0], src[f"param/{name}"][e][[1, 3]])
    np.testing.assert_array_equal(ft["param/tok_emb"][0, :, :2], src["param/tok_emb"][e][[1, 3]])  # tokens 0 and 1
    np.testing.assert_array_equal(ft["param/tok_emb"][0, :, 2:], own["param/tok_emb"][0, :, 2:])  # 2 and 3: this model's draws


def test_keep_tokens_draws_some_of_the_sources_embeddings_afresh(tmp_path, source):
    """The papers' code builds the p = 2 model with a third embedding; `keep_tokens: 2` starts
    fine-tuning with that third embedding redrawn."""
    wide = dict(SOURCE, model={"hidden": 8, "n_tokens": 3})
    src = tmp_path / "wide"
    testbed.run(testbed.load_scenario(_write(tmp_path / "wide.yaml", wide)), out=src, store=False)
    ft = dict(TINY, task=dict(TINY["task"], p=3), model={"hidden": 8, "init": {"run": str(src), "keep_tokens": 2}},
              probes=[{"name": "snapshots", "every": 1}], training={"epochs": 1, "batch_size": 16}, seeds="0")
    out = testbed.run(testbed.load_scenario(_write(tmp_path / "ft.yaml", ft)), out=tmp_path / "ft", store=False).path
    last = _snapshots(src)["param/tok_emb"][-1, 0]
    first = _snapshots(out)["param/tok_emb"][0, 0]
    np.testing.assert_array_equal(first[:2], last[:2])
    assert not np.array_equal(first[2], last[2])


def test_a_relative_source_is_found_from_the_scenario_file_or_the_working_directory(tmp_path, source, monkeypatch):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "pre").symlink_to(source)
    ft = dict(TINY, model={"hidden": 8, "init": {"run": "../runs/pre"}}, training={"epochs": 1, "batch_size": 16}, seeds="0")
    path = _write(folder / "ft.yaml", ft)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert testbed.load_scenario(path).model.init.run == str((tmp_path / "runs" / "pre").resolve())
    monkeypatch.chdir(tmp_path)
    plain = _write(folder / "plain.yaml", dict(ft, model={"hidden": 8}))
    proc = cli_here("validate", str(plain), "--set", "model.init={run: runs/pre}")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "init, model, seeds, message",
    [
        ({"run": "nowhere"}, {}, "0", "nowhere: no such run directory"),
        ({"run": "SOURCE"}, {"hidden": 16}, "0", "model.init.run: SOURCE has other shapes: mlp.fc1.weight [8, 2] (this model [16, 2]), mlp.fc1.bias [8]"),
        ({"run": "SOURCE"}, {}, "2-5", "model.init.run: SOURCE has no seed 4, 5 (it has 0, 1, 2, 3)"),
        ({"run": "SOURCE", "epoch": 7}, {}, "0", "model.init.epoch: SOURCE has no snapshot of epoch 7 (it has 0, 1, 2, 3, 4)"),
        ({"run": "SOURCE", "keep_tokens": 3}, {}, "0", "model.init.keep_tokens: must be <= 2"),
        ({"run": "EMPTY"}, {}, "0", "needs the snapshots probe"),
    ],
)
def test_a_source_that_cannot_start_the_model_is_one_line(tmp_path, source, init, model, seeds, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    places = {"SOURCE": str(source), "EMPTY": str(empty)}
    init = {k: places.get(v, v) if isinstance(v, str) else v for k, v in init.items()}
    data = dict(TINY, model={"hidden": 8, **model, "init": init}, seeds=seeds)
    proc = cli_here("run", str(_write(tmp_path / "ft.yaml", data)), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    for name, where in places.items():
        message = message.replace(name, where)
    assert message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_store_keys_a_warm_start_by_the_sources_weights_not_its_path(tmp_path, source):
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "snapshots.npz").write_bytes((source / "snapshots.npz").read_bytes())

    def key(run, epoch=None):
        data = copy.deepcopy(dict(TINY, model={"hidden": 8, "init": {"run": str(run), "epoch": epoch}}))
        return identity(testbed.load_scenario(_write(tmp_path / "k.yaml", data)))

    assert key(source) == key(copy_dir)
    assert key(source, 2) != key(source, 3)
    assert "run" not in key(source)["scenario"]["model"]["init"]


def test_a_source_scenario_is_trained_once_by_the_store_and_shared_by_every_run_from_it(tmp_path, source):
    """`model.init: {scenario: FILE}`: the source's run on the same seeds comes from the store,
    trained the first time only; fine-tuning from it equals fine-tuning from that run's directory."""
    from testbed.store.run_store import RunStore

    folder = tmp_path / "scenarios"
    folder.mkdir()
    _write(folder / "pretrain.yaml", SOURCE)
    finetune = dict(TINY, name="ft", task=dict(TINY["task"], p=3), model={"hidden": 8, "init": {"scenario": "pretrain.yaml"}},
                    probes=["metrics", {"name": "snapshots", "every": 1}], seeds="0-3", training={"epochs": 2, "batch_size": 16})
    a = testbed.run(testbed.load_scenario(_write(folder / "ft3.yaml", finetune)), out=tmp_path / "ft3")
    b = testbed.run(testbed.load_scenario(_write(folder / "ft4.yaml", dict(finetune, task=dict(TINY["task"], p=4)))), out=tmp_path / "ft4")
    by_name = {}
    for entry in RunStore().entries():
        by_name.setdefault(entry.info()["name"], []).append(entry)
    (pre,) = by_name["tiny"]
    assert len(pre.shards()) == 1  # trained once, for both fine-tunings
    served = b.scenario.model.init.run
    assert served.startswith(str(pre.path)) and a.scenario.model.init.run == served
    direct = dict(finetune, model={"hidden": 8, "init": {"run": str(source)}})
    c = testbed.run(testbed.load_scenario(_write(folder / "direct.yaml", direct)), out=tmp_path / "direct", store=False)
    for name in ("param/tok_emb", "param/query", "param/mlp.fc1.weight"):
        np.testing.assert_array_equal(_snapshots(a.path)[name], _snapshots(c.path)[name])  # the same weights, every epoch


@pytest.mark.parametrize(
    "source_data, message",
    [
        (dict(SOURCE, probes=["metrics"]), "has no snapshots probe"),
        (dict(SOURCE, model={"hidden": 0}), "model.init.scenario: model.hidden: "),
        ("SELF", "starts from itself"),
    ],
)
def test_a_source_scenario_that_cannot_serve_is_one_line(tmp_path, source_data, message):
    ft = dict(TINY, model={"hidden": 8, "init": {"scenario": "source.yaml"}})
    _write(tmp_path / "source.yaml", ft if source_data == "SELF" else source_data)
    proc = cli_here("validate", str(_write(tmp_path / "ft.yaml", ft)))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_source_another_process_is_serving_is_waited_for_and_shared(tmp_path, monkeypatch):
    """Two sweeps fine-tuning from one source on the same seeds: the second waits for the
    first's lock on the served run instead of failing, then uses that run."""
    from testbed.rundir import writer
    from testbed.store import serve as serve_mod

    _write(tmp_path / "pretrain.yaml", SOURCE)
    ft = dict(TINY, model={"hidden": 8, "init": {"scenario": "pretrain.yaml"}}, seeds="0-1", training={"epochs": 1, "batch_size": 16})
    scenario = testbed.load_scenario(_write(tmp_path / "ft.yaml", ft))
    first = serve_mod.bound(scenario)  # serves the source
    answers = iter([True, True, False])  # the lock is held twice more, then released
    monkeypatch.setattr(writer, "is_locked", lambda path: next(answers))
    monkeypatch.setattr(serve_mod, "LOCK_POLL_SECONDS", 0.0)
    second = serve_mod.bound(scenario)
    assert second.model.init.run == first.model.init.run and next(answers, "done") == "done"
