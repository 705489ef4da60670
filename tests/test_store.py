"""The run store: a scenario's seeds are trained once, runs of disjoint seed sets combine into
exactly the files a run of their union writes, and `store ls` / `gc` see and prune it."""

from __future__ import annotations

import json
import os

import yaml
from conftest import TINY, assert_npz_equal, cli

import testbed
from testbed.store import store_key
from testbed.store.run_store import RunStore

SPIKY = {  # SGD with a large rate and momentum: loss jumps, whose weights spike_steps keeps
    **TINY,
    "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True},
    "training": {"epochs": 5, "batch_size": 16},
    "probes": ["metrics", "step_loss", "spikes", {"name": "snapshots", "every": 2, "spike_steps": True}, "grad_norms"],
}


def scenario(tmp_path, seeds, **fields):
    path = tmp_path / "tiny.yaml"
    if not path.exists():
        path.write_text(yaml.safe_dump(SPIKY))
    return testbed.load_scenario(path, seeds=seeds, **fields)


def trained(events: list) -> list:
    """The runs that trained, from progress events (one label per run)."""
    return sorted({e.label for e in events})


def test_seeds_combine_into_the_files_of_one_run(tmp_path):
    direct = testbed.run(scenario(tmp_path, "0-4"), out=tmp_path / "direct", store=False)
    testbed.run(scenario(tmp_path, "0-1"), out=tmp_path / "a")
    testbed.run(scenario(tmp_path, "3-5"), out=tmp_path / "b")
    events: list = []
    combined = testbed.run(scenario(tmp_path, "0-4"), out=tmp_path / "c", progress=events.append)
    assert trained(events) == ["tiny (1 seeds)"]  # only seed 2 was missing
    for name in ("metrics.csv", "spikes.csv"):
        assert (combined.path / name).read_bytes() == (direct.path / name).read_bytes(), name
    for name in ("step_loss.npz", "snapshots.npz", "spike_steps.npz", "grad_norms.npz"):
        assert_npz_equal(direct.path / name, combined.path / name)
    assert len(direct.spike_steps["seed"]) > 0  # the weights around spikes were combined, not just empty arrays
    assert combined.summary.equals(direct.summary)
    assert combined.summary_json["aggregate"] == direct.summary_json["aggregate"]
    parts = combined.provenance["store"]["parts"]
    assert [(p["seeds"], p["trained_now"]) for p in parts] == [("0-1", False), ("3-4", False), ("2", True)]


def test_asking_again_trains_nothing_and_a_subset_is_served(tmp_path):
    testbed.run(scenario(tmp_path, "0-3"), out=tmp_path / "first")
    events: list = []
    again = testbed.run(scenario(tmp_path, "0-3"), out=tmp_path / "again", progress=events.append)
    subset = testbed.run(scenario(tmp_path, "1-2"), out=tmp_path / "subset", progress=events.append)
    assert events == []
    assert (again.path / "metrics.csv").read_bytes() == (tmp_path / "first" / "metrics.csv").read_bytes()
    assert subset.seeds == [1, 2] and sorted(subset.metrics.seed.unique()) == [1, 2]
    assert len(RunStore().entries()[0].shards()) == 1


def test_the_key_ignores_names_and_seeds_but_not_what_trains(tmp_path):
    base = scenario(tmp_path, "0-3")
    renamed = scenario(tmp_path, "5-9", name="other", description="same training", **{"output.root": "elsewhere"})
    changed = scenario(tmp_path, "0-3", **{"optimizer.lr": 0.01})
    key = lambda sc: store_key.digest(store_key.identity(sc))  # noqa: E731
    assert key(base) == key(renamed)
    assert key(base) != key(changed)


def test_a_run_named_otherwise_is_served_under_its_own_name(tmp_path):
    testbed.run(scenario(tmp_path, "0-1"), out=tmp_path / "a")
    events: list = []
    other = testbed.run(scenario(tmp_path, "0-1", name="renamed"), out=tmp_path / "b", progress=events.append)
    assert events == []
    assert other.scenario.name == "renamed" and other.summary_json["scenario"] == "renamed"


def test_store_ls_and_gc_from_the_command_line(tmp_path):
    store = tmp_path / "st"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert cli("run", str(path), "--store", str(store), "-q", cwd=tmp_path).returncode == 0
    listed = cli("store", "ls", "--store", str(store))
    assert listed.returncode == 0 and "tiny" in listed.stdout and "0-2 (3)" in listed.stdout
    entry = RunStore(store).entries()[0]
    stray = entry.path / ".seeds-7.partial"
    stray.mkdir()  # a training stopped midway that nobody writes
    lock = entry.path / ".seeds-7.lock"
    lock.write_text("4711\n")  # what kill -9 leaves of a writer's lock
    kept = cli("store", "gc", "--store", str(store))
    assert kept.returncode == 0 and not stray.exists() and not lock.exists() and entry.path.is_dir()
    info = json.loads((entry.path / "entry.json").read_text())
    info["identity"]["testbed"] = "0.0.0"  # runs of another version can never be served again
    (entry.path / "entry.json").write_text(json.dumps(info))
    dry = cli("store", "gc", "--dry-run", "--store", str(store))
    assert dry.returncode == 0 and "would remove 1 item" in dry.stdout and entry.path.is_dir()
    assert cli("store", "gc", "--store", str(store)).returncode == 0
    assert not entry.path.exists()


def test_run_store_is_relative_to_where_the_user_is(tmp_path, monkeypatch):
    monkeypatch.delenv("TESTBED_STORE")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    done = cli("run", "tiny.yaml", "-q", "--out", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "store").is_dir() and (tmp_path / "r" / "metrics.csv").is_file()
    assert "trained seeds 0-2" in done.stdout


def test_a_run_directory_shares_no_file_with_the_store(tmp_path):
    """A user appending to their run's metrics.csv once changed the store's file (a hard link)."""
    first = testbed.run(scenario(tmp_path, "0-1"), out=tmp_path / "a")
    shard = RunStore().entries()[0].shards()[0].path
    stored = (shard / "metrics.csv").read_bytes()
    assert not os.path.samefile(first.path / "metrics.csv", shard / "metrics.csv")
    with open(first.path / "metrics.csv", "a") as f:
        f.write("bogus\n")
    assert (shard / "metrics.csv").read_bytes() == stored
    again = testbed.run(scenario(tmp_path, "0-1"), out=tmp_path / "b")
    assert (again.path / "metrics.csv").read_bytes() == stored
