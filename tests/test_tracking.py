"""The `tensorboard` probe, read back with TensorBoard's own event reader: the
hyperparameters are the resolved scenario, each seed's scalars are its rows of metrics.csv.
Without the `tracking` extra only the tests of what happens when it is missing run."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY
from conftest import cli_here

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


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- without the extra ---------------------------------------------------------------------


@pytest.mark.parametrize("probe, hidden", [("tensorboard", ["torch.utils.tensorboard", "tensorboard"])])
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
