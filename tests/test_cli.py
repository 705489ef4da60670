"""The command line through the installed entry point: run, validate, schema, plugins, and
bad input (exit status 2, one line per problem, no traceback, nothing written)."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CLIPPED_RMS_PACKAGE, TINY, cli, third_party_package

import testbed


def assert_user_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_run_writes_a_complete_run_directory(tmp_path, write_scenario):
    path = write_scenario(TINY)
    out = tmp_path / "run"
    proc = cli("run", str(path), "--out", str(out), "--seeds", "1,4", "--set", "training.epochs=3")
    assert proc.returncode == 0, proc.stderr
    assert "tiny" in proc.stdout and "success" in proc.stdout
    for name in ("scenario.yaml", "metrics.csv", "summary.json", "step_loss.npz", "spikes.csv", "snapshots.npz", "curves.png"):
        assert (out / name).is_file(), name
    resolved = yaml.safe_load((out / "scenario.yaml").read_text())
    assert resolved["seeds"] == "1,4" and resolved["training"]["epochs"] == 3
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"seed", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"} <= set(rows[0])
    assert {int(r["seed"]) for r in rows} == {1, 4}
    assert {int(r["epoch"]) for r in rows} == {0, 1, 2, 3}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [1, 4]
    assert len(summary["per_seed"]["test_acc"]) == 2
    steps = np.load(out / "step_loss.npz")["loss"]
    assert steps.shape == (3 * 3, 2)  # 48 sequences / 16 per batch = 3 steps per epoch
    assert np.isfinite(steps).all()
    # The resolved scenario is itself a valid scenario file.
    assert cli("validate", str(out / "scenario.yaml")).returncode == 0
    # Nothing but the run directory was created next to it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "scenario.yaml"]


def test_run_into_an_unwritable_place_is_a_user_error(tmp_path, write_scenario):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert_user_error(cli("run", str(write_scenario(TINY)), "--out", str(blocker / "run")), str(blocker))


def test_run_refuses_to_overwrite_and_leaves_nothing(tmp_path, write_scenario):
    path = write_scenario(TINY)
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_user_error(cli("run", str(path), "--out", str(out)), "--out", "not empty")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"task": {"sparsity": 7}}, "task.sparsity: must be <= task.seq_len"),
        ({"task": {"p": 1}}, "task.p: must be >= 2"),
        ({"task": {"colour": "red"}}, "task.colour: unknown key"),
        ({"model": {"norm": {"name": "smooth", "radius": 0}}}, "model.norm.radius: must be > 0"),
        ({"model": {"norm": "rsm"}}, "unknown norm 'rsm': did you mean 'rms'"),
        ({"optimizer": {"name": "adam", "lr": -1}}, "optimizer.lr: must be > 0"),
        ({"optimizer": {"name": "adam", "lr_multipliers": {"attention": 2}}}, "optimizer.lr_multipliers.attention"),
        ({"training": {"batch_size": 1000}}, "training.batch_size"),
        ({"seeds": "9-3"}, "seeds"),
        ({"probes": ["metrics", "metrics"]}, "probe 'metrics' is listed twice"),
    ],
)
def test_validate_reports_the_path_of_each_error(write_scenario, change, needle):
    data = copy.deepcopy(TINY)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    proc = cli("validate", str(write_scenario(data)))
    assert_user_error(proc, needle)


def test_validate_reports_every_error_on_its_own_line(write_scenario):
    data = copy.deepcopy(TINY)
    data["task"]["p"] = 0
    data["training"]["epochs"] = 0
    data["model"]["activation"] = "gelux"
    proc = cli("validate", str(write_scenario(data)))
    assert_user_error(proc, "task.p", "training.epochs", "model.activation")
    assert len(proc.stderr.strip().splitlines()) == 3


@pytest.mark.parametrize(
    "content, args, needle",
    [
        (None, [], "no such file"),
        ("task: [1, 2\n", [], "invalid YAML"),
        ("- just\n- a list\n", [], "expected a mapping"),
        ("", [], "is empty"),
        ("  \n\n", [], "is empty"),
        ("# nothing but a comment\n", [], "only comments"),
        (TINY, ["--set", "training.epochs"], "expected KEY=VALUE"),
        (TINY, ["--set", "seeds.x=1"], "--set seeds.x=1"),
        (TINY, ["--seeds", "a-b"], "--seeds"),
        (TINY, ["--bogus"], "No such option"),
    ],
)
def test_run_bad_input_exits_2_without_writing(tmp_path, write_scenario, content, args, needle):
    path = tmp_path / "missing.yaml" if content is None else write_scenario(content)
    out = tmp_path / "out"
    proc = cli("run", str(path), "--out", str(out), *args)
    assert_user_error(proc, needle)
    assert not out.exists()
    assert not list(tmp_path.glob(".*partial"))


def test_schema_describes_every_plugin_and_its_parameters():
    proc = cli("schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    text = json.dumps(schema)
    for name in ("rms", "smooth", "l2", "identity", "adam", "adamw", "sgd", "gelu", "vocab_schedule", "spikes"):
        assert f'"{name}"' in text, name
    assert "radius" in text and "clip_grad_norm" in text and "lr_multipliers" in text
    assert set(schema["properties"]) >= {"task", "model", "optimizer", "training", "curriculum", "probes", "seeds"}


def test_plugins_lists_every_kind_name_and_source():
    proc = cli("plugins")
    assert proc.returncode == 0, proc.stderr
    for kind, names in {
        "norm": ["rms", "l2", "smooth", "identity"],
        "optimizer": ["adam", "adamw", "sgd"],
        "activation": ["gelu", "relu", "silu", "tanh"],
        "curriculum": ["constant", "vocab_schedule"],
        "probe": ["metrics", "step_loss", "grad_norms", "snapshots", "spikes"],
    }.items():
        assert kind in proc.stdout
        for name in names:
            assert name in proc.stdout, name
    assert f"testbed {testbed.__version__}" in proc.stdout
    assert "radius=1.0" in proc.stdout
    assert_user_error(cli("plugins", "--kind", "normz"), "unknown kind")





def test_third_party_package_adds_a_plugin_through_its_entry_point(tmp_path, write_scenario):
    """A package that testbed has never heard of ships a norm with an entry point."""
    env = third_party_package(tmp_path, "acme_norms", CLIPPED_RMS_PACKAGE, "acme-norms", "0.3")

    listing = cli("plugins", "--kind", "norm", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "clipped_rms" in listing.stdout and "acme-norms 0.3" in listing.stdout

    data = copy.deepcopy(TINY)
    data["model"]["norm"] = {"name": "clipped_rms", "limit": 1.5}
    out = tmp_path / "run"
    proc = cli("run", str(write_scenario(data)), "--out", str(out), "--quiet", env=env)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((out / "scenario.yaml").read_text())["model"]["norm"] == {"name": "clipped_rms", "limit": 1.5}
    # and run.json says which distribution and version the norm came from
    plugins = json.loads((out / "run.json").read_text())["plugins"]
    assert {"kind": "norm", "name": "clipped_rms", "distribution": "acme-norms", "version": "0.3"} in plugins

    data["model"]["norm"] = {"name": "clipped_rms", "limit": -1}
    assert_user_error(cli("validate", str(write_scenario(data)), env=env), "model.norm.limit: must be > 0")


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_scenario_is_valid(path):
    from testbed.config import scenario as scenario_mod

    sc = scenario_mod.load(path)
    assert sc.name == path.stem
