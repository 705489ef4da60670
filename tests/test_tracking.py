"""The `tensorboard` and `mlflow` probes, read back with the libraries' own readers: the
parameters are the resolved scenario, each seed's metric history is its rows of metrics.csv,
the artifacts are the run directory's files. Without the `tracking` extra only the tests of
what happens when it is missing run."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli_here

METRICS = ("p", "train_loss", "train_acc", "test_loss", "test_acc")
SEEDS = [0, 1, 2]  # TINY's "0-2"


def scenario_with(probes: list) -> dict:
    return dict(TINY, probes=probes)


def metrics_csv(run: Path, seed: int, epochs: set[int]) -> dict[str, list[tuple[int, float]]]:
    """One seed's (epoch, value) series of every metric, from metrics.csv, at `epochs`."""
    with open(run / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if int(r["seed"]) == seed and int(r["epoch"]) in epochs]
    return {name: [(int(r["epoch"]), float(r[name])) for r in rows] for name in METRICS}


def assert_same_series(logged: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    """The same epochs, and the same values up to metrics.csv's six significant digits."""
    assert [epoch for epoch, _ in logged] == [epoch for epoch, _ in expected]
    assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-5, abs=1e-7)


def parsed(text):
    """A logged parameter back to its YAML value: the probes log strings as they are and every
    other value as JSON."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def unflatten(params: dict) -> dict:
    """Dotted keys (`optimizer.betas.0`) back to the nested mapping scenario.yaml holds."""
    root: dict = {}
    for key, value in params.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parsed(value)

    def lists(node):
        if not isinstance(node, dict) or not node:
            return node
        if all(k.isdigit() for k in node):
            return [lists(node[str(i)]) for i in range(len(node))]
        return {k: lists(v) for k, v in node.items()}

    return lists(root)


def resolved_scenario(run: Path) -> dict:
    return yaml.safe_load((run / "scenario.yaml").read_text())


def train(write_scenario, monkeypatch, cwd: Path, probes: list, out: str):
    """`testbed run scenario.yaml --out OUT` typed in `cwd`, with relative paths."""
    path = write_scenario(scenario_with(probes))
    monkeypatch.chdir(cwd)
    return cli_here("run", os.path.relpath(path, cwd), "--out", out, "-q")


def assert_one_line_error(result, *fragments: str, status: int = 2) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- without the extra ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "probe, hidden",
    [("tensorboard", ["torch.utils.tensorboard", "tensorboard"]), ("mlflow", ["mlflow"])],
)
def test_missing_library_is_one_line_and_exit_2(tmp_path, write_scenario, monkeypatch, probe, hidden):
    for module in hidden:  # `import module` raises ImportError, as if it were not installed
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = train(write_scenario, monkeypatch, tmp_path, ["metrics", probe], "runs/x")
    assert_one_line_error(result, f"probe '{probe}'", "pip install 'testbed[tracking]'")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert not (tmp_path / "mlflow.db").exists()


def test_tensorboard_log_dir_must_stay_in_the_run_directory(tmp_path, write_scenario, monkeypatch):
    result = train(write_scenario, monkeypatch, tmp_path, [{"name": "tensorboard", "log_dir": "../elsewhere"}], "runs/x")
    assert_one_line_error(result, "probes.0.log_dir", "inside the run directory")
    assert not (tmp_path / "runs").exists()


# --- tensorboard ---------------------------------------------------------------------------


def hparams_of(accumulator) -> dict:
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: getattr(value, value.WhichOneof("kind")) for key, value in values.items()}


def test_tensorboard_event_files_hold_metrics_csv_and_the_scenario(tmp_path, write_scenario, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(write_scenario, monkeypatch, tmp_path, ["metrics", {"name": "tensorboard", "every": 3}], "runs/tb")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "tb"
    logs = run / "tensorboard"
    assert sorted(p.name for p in logs.iterdir()) == [f"seed_{s}" for s in SEEDS]
    for seed in SEEDS:
        accumulator = EventAccumulator(str(logs / f"seed_{seed}"))
        accumulator.Reload()
        expected = metrics_csv(run, seed, {0, 3, 4})  # every 3 epochs, and the last (4)
        for name in METRICS:
            assert [epoch for epoch, _ in expected[name]] == [0, 3, 4]
            assert_same_series([(e.step, e.value) for e in accumulator.Scalars(name)], expected[name])
        hparams = hparams_of(accumulator)
        assert hparams.pop("seed") == seed
        assert unflatten(hparams) == resolved_scenario(run)


# --- mlflow --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    """One folder whose ./mlflow.db the MLflow tests share: creating a SQLite store runs
    MLflow's schema migrations, seconds each time."""
    return tmp_path_factory.mktemp("mlflow_store")


def client_for(db: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{db}")


def runs_of(client, experiment: str):
    """(parent run, {seed: child run}) of the one testbed run logged in `experiment`."""
    from mlflow.entities import ViewType

    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], run_view_type=ViewType.ALL)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    children = {int(r.data.params["seed"]): r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert len(runs) == 1 + len(children)
    return parents[0], children


def history(client, run, name: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))


def test_mlflow_logs_scenario_metrics_and_run_directory_to_the_default_store(store_dir, write_scenario, monkeypatch):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    probes = ["metrics", "step_loss", "tensorboard", "mlflow"]
    result = train(write_scenario, monkeypatch, store_dir, probes, "runs/default")
    assert result.returncode == 0, result.stderr
    run = store_dir / "runs" / "default"

    client = client_for(store_dir / "mlflow.db")  # the default store: ./mlflow.db
    parent, children = runs_of(client, "testbed")
    assert parent.info.run_name == "default"
    assert parent.data.tags["testbed.run_dir"] == str(run.resolve())
    assert unflatten(parent.data.params) == resolved_scenario(run)
    assert sorted(children) == SEEDS
    for seed, child in children.items():
        assert child.info.status == "FINISHED"
        assert child.data.params == {**parent.data.params, "seed": str(seed)}
        expected = metrics_csv(run, seed, set(range(5)))
        for name in METRICS:
            assert [epoch for epoch, _ in expected[name]] == [0, 1, 2, 3, 4]
            assert_same_series(history(client, child, name), expected[name])
    assert parent.info.status == "FINISHED"

    # The run directory as it was when the probe finished: the earlier probes' files, not the
    # summary and figure written after every probe.
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert artifacts == {"scenario.yaml", "metrics.csv", "step_loss.npz", "tensorboard"}
    assert (run / "summary.json").exists() and (run / "curves.png").exists()
    copy = Path(client.download_artifacts(parent.info.run_id, "metrics.csv", str(store_dir)))
    assert copy.read_bytes() == (run / "metrics.csv").read_bytes()
    assert (store_dir / "mlruns").is_dir()  # MLflow's default artifact root, next to mlflow.db


def test_mlflow_tracking_uri_experiment_and_no_artifacts(store_dir, tmp_path, write_scenario, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_dir / 'mlflow.db'}")
    probe = {"name": "mlflow", "experiment": "from env", "every": 2, "artifacts": False}
    result = train(write_scenario, monkeypatch, tmp_path, ["metrics", probe], "runs/env")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()

    client = client_for(store_dir / "mlflow.db")
    parent, children = runs_of(client, "from env")
    assert client.list_artifacts(parent.info.run_id) == []
    for seed, child in children.items():
        expected = metrics_csv(tmp_path / "runs" / "env", seed, {0, 2, 4})
        assert [epoch for epoch, _ in expected["test_loss"]] == [0, 2, 4]
        assert_same_series(history(client, child, "test_loss"), expected["test_loss"])


def test_mlflow_deleted_experiment_is_one_line_and_keeps_the_trained_run(store_dir, tmp_path, write_scenario, monkeypatch):
    """The experiment is found deleted only when the probe logs, after training: the failure is
    the work's (exit 1), and the run is kept without the probe's outputs."""
    pytest.importorskip("mlflow")
    from mlflow.entities import ViewType

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store_dir / 'mlflow.db'}")
    client = client_for(store_dir / "mlflow.db")
    experiment = client.create_experiment("deleted one")
    client.delete_experiment(experiment)
    result = train(write_scenario, monkeypatch, tmp_path, ["metrics", {"name": "mlflow", "experiment": "deleted one"}], "runs/x")
    assert_one_line_error(result, "probe 'mlflow'", "failed in finish", "experiment 'deleted one' is deleted", status=1)
    summary = json.loads((tmp_path / "runs/x/summary.json").read_text())
    assert [(f["name"], f["phase"]) for f in summary["failures"]] == [("mlflow", "finish")]
    assert (tmp_path / "runs/x/metrics.csv").is_file()
    assert client.search_runs([experiment], run_view_type=ViewType.ALL) == []
