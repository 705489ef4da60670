"""The Python API as a notebook uses it: load a scenario, train it, read the run back as
DataFrames, compare runs; from a fresh working directory with relative paths, printing
nothing unless asked to, and recording where every run came from (run.json)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import warnings
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY

import testbed
from testbed.engine import threads

SMOOTH = {**TINY, "name": "tiny_smooth", "model": {"hidden": 8, "norm": "smooth"}}
REPO = Path(__file__).resolve().parents[1]


def write_scenarios(root: Path) -> None:
    (root / "scenarios").mkdir()
    for data in (TINY, SMOOTH):
        (root / "scenarios" / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """The README's example, run in a fresh working directory with relative paths, with
    everything it prints (and every warning it raises) caught."""
    root = tmp_path_factory.mktemp("notebook")
    write_scenarios(root)
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp.chdir(root)
        sc = testbed.load_scenario("scenarios/tiny.yaml", seeds="0-3", **{"training.epochs": 5})
        run = testbed.run(sc, out="runs/x")
        other = testbed.run(testbed.load_scenario("scenarios/tiny_smooth.yaml", seeds="0-3", **{"training.epochs": 5}), out="runs/y")
        loaded = testbed.load_run("runs/x")
        cmp = testbed.compare([run, "runs/y"], out="reports/xy")
        table = cmp.table()
    return SimpleNamespace(root=root, sc=sc, run=run, other=other, loaded=loaded, cmp=cmp, table=table,
                           printed=out.getvalue() + err.getvalue(), warnings=[str(w.message) for w in caught])


def test_the_api_prints_nothing_and_warns_nothing(notebook):
    assert notebook.printed == ""
    assert notebook.warnings == []


def test_relative_paths_are_relative_to_the_working_directory(notebook):
    assert notebook.run.path == Path("runs/x") and notebook.cmp.path == Path("reports/xy")
    for folder in ("runs/x", "runs/y", "reports/xy"):
        assert (notebook.root / folder).is_dir()
    assert sorted(p.name for p in notebook.root.iterdir()) == ["reports", "runs", "scenarios"]


def test_load_scenario_applies_seeds_and_dotted_fields(notebook, tmp_path):
    assert notebook.sc.seeds == [0, 1, 2, 3] and notebook.sc.training.epochs == 5
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(TINY))
    sc = testbed.load_scenario(path, seeds=range(2), **{"model.norm": {"name": "smooth", "radius": 0.5}, "optimizer.lr": 0.01})
    assert sc.seeds == [0, 1] and sc.model.norm.radius == 0.5 and sc.optimizer.lr == 0.01
    with pytest.raises(testbed.UserError, match="optimizer.lr: must be > 0"):
        testbed.load_scenario(path, **{"optimizer.lr": -1})


def test_frames_hold_what_the_files_hold(notebook):
    run, root = notebook.run, notebook.root
    with open(root / "runs/x/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    m = run.metrics
    assert list(m.columns) == ["seed", "epoch", "p", "train_loss", "train_acc", "test_loss", "test_acc"]
    assert m.shape == (len(rows), 7) == (4 * 6, 7)  # 4 seeds, epochs 0-5
    for name in m.columns:
        assert m[name].tolist() == [float(r[name]) for r in rows], name  # exactly the written values
    assert m["seed"].dtype == np.int64 and m["epoch"].dtype == np.int64

    with np.load(root / "runs/x/step_loss.npz") as z:
        loss, epoch, seeds = z["loss"], z["epoch"], z["seeds"]
    assert run.step_loss.shape == loss.shape == (5 * 3, 4)  # 48 sequences / 16 per batch = 3 steps per epoch
    assert run.step_loss.columns.tolist() == seeds.tolist() == [0, 1, 2, 3]
    assert run.step_loss.index.name == "step" and run.step_loss.columns.name == "seed"
    np.testing.assert_array_equal(run.step_loss.to_numpy(), loss)
    np.testing.assert_array_equal(run.step_epoch.to_numpy(), epoch)

    summary = json.loads((root / "runs/x/summary.json").read_text())
    assert run.summary_json == summary
    assert run.summary.shape == (4, len(summary["per_seed"]))
    for name, values in summary["per_seed"].items():
        assert run.summary[name].tolist() == values, name

    spikes = run.spikes
    assert list(spikes.columns) == ["seed", "start", "peak", "end", "epoch", "baseline", "peak_loss", "ratio", "diverged"]
    assert len(spikes) == sum(summary["per_seed"]["spikes"])

    snap = run.snapshots  # TINY keeps a snapshot every 2 epochs, and the last
    assert snap.epochs.tolist() == [0, 2, 4, 5] and snap.seeds == [0, 1, 2, 3]
    assert snap.params["tok_emb"].shape == (4, 4, 2, 2)


def test_load_run_gives_the_frames_run_returned(notebook):
    run, loaded = notebook.run, notebook.loaded
    assert isinstance(run, testbed.Run) and isinstance(loaded, testbed.Run)
    for name in ("metrics", "step_loss", "summary", "spikes"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(run, name))
    assert loaded.scenario == run.scenario == notebook.sc


def test_compare_table_holds_the_statistics_of_the_report(notebook):
    cmp, table = notebook.cmp, notebook.table
    assert cmp.labels == ["tiny", "tiny_smooth"] and cmp.seeds == [0, 1, 2, 3]
    assert {label: str(run.path) for label, run in cmp.runs.items()} == {"tiny": "runs/x", "tiny_smooth": "runs/y"}
    written = pd.read_csv(notebook.root / "reports/xy/statistics.csv")
    assert len(table) == len(written) > 0
    assert list(table.columns[:-1]) == list(written.columns) and table.columns[-1] == "verdict"
    for name in ("row", "scenario", "metric", "statistic"):
        assert table[name].tolist() == written[name].tolist(), name
    for name in ("n", "value", "spread", "ci_low", "ci_high", "p", "p_holm"):
        np.testing.assert_array_equal(table[name].to_numpy(float), written[name].to_numpy(float), err_msg=name)
    paired = table[table["row"] == "paired"]
    assert set(paired["verdict"]) <= {"better", "worse", "same"} and paired["p"].notna().all()
    assert paired["test"].tolist() == written.loc[written["row"] == "paired", "test"].tolist()
    # the verdict column says what the report's verdict sentence says
    sentence = cmp.verdicts[("tiny", "tiny_smooth")]
    assert ("no detectable difference on any metric" in sentence) == (paired["verdict"] == "same").all()
    assert sentence in (notebook.root / "reports/xy/report.md").read_text()
    per_seed = cmp.outcomes()
    assert per_seed.shape == (2 * 4, 2 + len(paired)) and set(per_seed["scenario"]) == {"tiny", "tiny_smooth"}


def test_run_json_records_where_the_run_came_from(notebook):
    prov = notebook.run.provenance
    assert prov == json.loads((notebook.root / "runs/x/run.json").read_text())
    assert prov["testbed"] == testbed.__version__
    assert prov["python"] == platform.python_version()
    assert prov["torch"] == torch.__version__ and prov["numpy"] == np.__version__
    # the thread count the run itself used (testbed.engine.threads), not the caller's
    assert prov["threads"] == threads.choose(len(notebook.run.seeds)) and prov["device"] == "cpu"
    started, finished = datetime.fromisoformat(prov["started"]), datetime.fromisoformat(prov["finished"])
    assert started.tzinfo is not None and started <= finished
    built_in = {"distribution": "testbed", "version": testbed.__version__}
    assert prov["plugins"] == [
        {"kind": "norm", "name": "rms", **built_in},
        {"kind": "activation", "name": "gelu", **built_in},
        {"kind": "optimizer", "name": "adam", **built_in},
        {"kind": "curriculum", "name": "constant", **built_in},
        *({"kind": "probe", "name": name, **built_in} for name in ("metrics", "step_loss", "spikes", "snapshots")),
    ]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode != 0:
        assert prov["git"] is None
    else:
        assert prov["git"]["commit"] == head.stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        assert prov["git"]["dirty"] == bool(status.strip())


def test_progress_is_drawn_only_when_asked(tmp_path, monkeypatch, capfd):
    write_scenarios(tmp_path)
    monkeypatch.chdir(tmp_path)
    sc = testbed.load_scenario("scenarios/tiny.yaml", **{"training.epochs": 3})
    events = []
    testbed.run(sc, out="runs/events", progress=events.append)
    assert capfd.readouterr() == ("", "")
    assert [e.epoch for e in events] == [0, 1, 2, 3] and {e.epochs for e in events} == {3}
    assert events[0].evaluation is None and events[-1].evaluation.test_acc.shape == (3,)  # TINY: seeds 0-2
    testbed.run(sc, out="runs/bar", progress=True, store=False)  # the store would train nothing again
    out, err = capfd.readouterr()
    assert out == "" and "tiny (3 seeds): epoch 3/3" in err  # not a terminal: a line every tenth of the run


def test_compare_takes_scenario_objects_and_files_and_keyword_options(tmp_path, monkeypatch):
    write_scenarios(tmp_path)
    monkeypatch.chdir(tmp_path)
    sc = testbed.load_scenario("scenarios/tiny.yaml")
    with pytest.raises(TypeError):
        testbed.compare([sc, "scenarios/tiny_smooth.yaml"], "0-1")  # options are keyword-only
    with pytest.raises(TypeError):
        testbed.run(sc, "runs/positional")
    cmp = testbed.compare([sc, "scenarios/tiny_smooth.yaml"], seeds=[0, 1], overrides={"training.epochs": 2}, out="reports/mixed")
    assert cmp.labels == ["tiny", "tiny_smooth"] and cmp.seeds == [0, 1]
    for label, run in cmp.runs.items():
        assert run.path == Path("reports/mixed/runs") / label and run.scenario.training.epochs == 2
        assert run.metrics["epoch"].max() == 2
    md = (tmp_path / "reports/mixed/report.md").read_text()
    assert "scenario object" in md and "scenarios/tiny_smooth.yaml" in md
    with pytest.raises(testbed.UserError, match="at least two"):
        testbed.compare([sc], out="reports/never")
    assert not (tmp_path / "reports/never").exists()


def test_missing_and_broken_files_are_one_line_errors_naming_the_file(notebook, tmp_path):
    with pytest.raises(testbed.UserError, match="no such run directory"):
        testbed.load_run(tmp_path / "nowhere")
    run_dir = tmp_path / "run"
    shutil.copytree(notebook.root / "runs/x", run_dir)
    (run_dir / "metrics.csv").write_text("seed,epoch\n0,zero\n")
    (run_dir / "step_loss.npz").write_bytes(b"not a zip file")
    (run_dir / "summary.json").write_text("{oops")
    run = testbed.load_run(run_dir)
    for attribute, file in (("metrics", "metrics.csv"), ("step_loss", "step_loss.npz"), ("summary", "summary.json"),
                            ("grad_norms", "grad_norms.npz")):
        with pytest.raises(testbed.UserError) as info:
            getattr(run, attribute)
        message = str(info.value)
        assert file in message and "\n" not in message, message
    with pytest.raises(testbed.UserError, match="grad_norms probe"):
        _ = run.grad_norms


def test_importing_testbed_changes_no_global_state():
    """torch's threads and default dtype, matplotlib's backend and numpy's error handling are
    the caller's; importing testbed and every name of its API leaves them as they were."""
    code = """
import json, matplotlib, numpy, torch
matplotlib.use("svg")
torch.set_num_threads(3)
before = (numpy.geterr(), torch.get_default_dtype())
import testbed, testbed.api
for name in testbed.__all__:
    getattr(testbed, name)
after = (numpy.geterr(), torch.get_default_dtype())
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert torch.get_num_threads() == 3, torch.get_num_threads()
assert before == after, (before, after)
print(json.dumps(sorted(n for n in dir(testbed) if not n.startswith("_"))))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "agg"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == sorted(n for n in testbed.__all__ if not n.startswith("_"))
    assert {"load_scenario", "run", "load_run", "compare", "Run", "Comparison"} <= set(testbed.__all__)


def test_until_decided_and_power_take_the_options_model_of_the_command_line(tmp_path):
    """One options object per command, shared by the command line, the API and the work: its
    fields as keywords or the object, every problem at once, before anything trains."""
    pair = [tmp_path / "a.yaml", tmp_path / "b.yaml"]  # never read: the options are refused first
    with pytest.raises(testbed.UserError, match="unknown option 'margn'; the options are metric, margin, max_seeds, batch, alpha"):
        testbed.until_decided(pair, margn=0.1)
    with pytest.raises(testbed.UserError, match="not both"):
        testbed.until_decided(pair, testbed.UntilDecidedOptions(batch=4), margin=0.1)
    with pytest.raises(testbed.UserError) as refused:
        testbed.until_decided(pair, testbed.UntilDecidedOptions(margin=-1, batch=1, alpha=2))
    assert str(refused.value).splitlines() == ["--margin: must be > 0, got -1", "--batch: must be at least 2 seeds, got 1",
                                               "--alpha: must be in (0, 1), got 2"]
    with pytest.raises(testbed.UserError) as refused:
        testbed.power(pair, power=1.5, alpha=0)
    assert str(refused.value).splitlines() == ["--power: must be in (0, 1), got 1.5", "--alpha: must be in (0, 1), got 0"]
    assert testbed.PowerOptions().pilot == "0-19" and testbed.UntilDecidedOptions().metric == "success"
    assert not list(tmp_path.iterdir())
