"""Fault injection: a third-party package whose plugins raise where a scenario tells them to
(a probe in each of its hooks, an optimizer's update, a norm in the training step, a
curriculum's p_at, a panel's update), run through the command line as a user types it. Each
failure must come out as one line naming the plugin, its distribution, the phase, the epoch
and the step, with exit status 1, the traceback in error.log, and exactly what is complete
kept: nothing when the failure came before training, the staging folder when training
stopped midway, the whole run minus the probe's file when a probe failed in finish. A plugin's
OSError is a failure of the plugin (exit 1); a bad --out is the user's (exit 2)."""

from __future__ import annotations

import copy
import json
import pickle
import sys

import pytest
import yaml
from conftest import TINY, cli_here, third_party_package

from testbed.config import scenario as scenario_mod
from testbed.errors import PluginError
from testbed.plugin_api import registry as registry_mod
from testbed.rundir.reader import Run

SOURCE = '''
"""Plugins that raise where their parameters say."""

from typing import Literal

from testbed.plugin_api import Curriculum, Norm, OptimizerParams, Panel, Params, Probe, UpdateRule, hookimpl, plugin


def boom(where, os_error=False):
    if os_error:
        raise FileNotFoundError(2, "No such file or directory", "/nonexistent/acme.cfg")
    raise ValueError(f"boom in {where}")


class FaultParams(Params):
    fail_in: Literal["nowhere", "build", "start", "eval_epochs", "after_step", "after_epoch", "finish"] = "nowhere"
    epoch: int = 2  # after_step and after_epoch fail at this epoch
    os_error: bool = False


class FaultyProbe(Probe):
    def __init__(self, p):
        self.p = p

    def start(self, info):
        super().start(info)
        if self.p.fail_in == "start":
            boom("start", self.p.os_error)

    def eval_epochs(self, epochs):
        if self.p.fail_in == "eval_epochs":
            boom("eval_epochs")
        return set()

    def after_step(self, step, epoch, loss, grad):
        if self.p.fail_in == "after_step" and epoch == self.p.epoch:
            boom("after_step")

    def after_epoch(self, epoch, flat, evaluation):
        if self.p.fail_in == "after_epoch" and epoch == self.p.epoch:
            boom("after_epoch", self.p.os_error)

    def finish(self, out):
        (out / "faulty.csv").write_text("seed,value\\n0,")  # begun, never completed
        if self.p.fail_in == "finish":
            boom("finish")
        return {"faulty": [0] * len(self.info.seeds)}


@plugin("faulty", FaultParams)
def faulty(params):
    """A probe that raises in the hook its parameters name."""
    if params.fail_in == "build":
        boom("build")
    return FaultyProbe(params)


class NormParams(Params):
    fail_in: Literal["nowhere", "build", "forward"] = "nowhere"


class FaultyNorm(Norm):
    def __init__(self, fail):
        self.fail = fail

    def __call__(self, x):
        if self.fail and x.requires_grad:  # in the training step, not in evaluation
            raise RuntimeError("norm boom")
        return x / (x.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()


@plugin("faulty_norm", NormParams)
def faulty_norm(params):
    """RMS norm that raises in the training step."""
    if params.fail_in == "build":
        boom("build")
    return FaultyNorm(params.fail_in == "forward")


class SgdParams(OptimizerParams):
    fail_at_step: int = 0


class FaultySGD(UpdateRule):
    def __init__(self, fail_at_step):
        self.fail_at_step = fail_at_step

    def update(self, flat, grad, lr, step):
        if step == self.fail_at_step:
            boom("update")
        flat.sub_(lr * grad)


@plugin("faulty_sgd", SgdParams)
def faulty_sgd(params):
    """Plain SGD that raises at a chosen step."""
    return FaultySGD(params.fail_at_step)


class CurriculumParams(Params):
    fail_at_epoch: int = 0


class FaultyCurriculum(Curriculum):
    def __init__(self, fail_at_epoch):
        self.fail_at_epoch = fail_at_epoch

    def p_at(self, epoch):
        if epoch == self.fail_at_epoch:
            boom("p_at")
        return 2

    def vocab_sizes(self):
        return [2]


@plugin("faulty_curriculum", CurriculumParams)
def faulty_curriculum(params, task):
    """p = 2 throughout, raising at a chosen epoch."""
    return FaultyCurriculum(params.fail_at_epoch)


class FaultyPanel(Panel):
    title = "faulty"
    geometric = False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.line = self.keep(ax.plot([0, 1], [0, 1])[0])

    def update(self, q, i):
        raise ValueError("panel boom")


@plugin("faulty_panel")
def faulty_panel(params):
    """A panel that raises when it draws a frame."""
    return FaultyPanel(params)


@hookimpl
def testbed_probes():
    return [faulty]


@hookimpl
def testbed_norms():
    return [faulty_norm]


@hookimpl
def testbed_optimizers():
    return [faulty_sgd]


@hookimpl
def testbed_curricula():
    return [faulty_curriculum]


@hookimpl
def testbed_panels():
    return [faulty_panel]
'''

NAMED = "(acme-faults 0.1)"
DEBUG_HINT = " (testbed --debug shows the traceback)"


def _reload_plugins() -> None:
    registry_mod.default_registry.cache_clear()
    scenario_mod.scenario_model.cache_clear()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """acme-faults installed in this process, as pip would leave it (in-process commands are
    quick; the registry is reloaded with it, and without it afterwards)."""
    root = tmp_path_factory.mktemp("acme")
    site = third_party_package(root, "acme_faults", SOURCE, "acme-faults", "0.1", entry_point="acme_faults")["PYTHONPATH"]
    sys.path.insert(0, site)
    _reload_plugins()
    yield
    sys.path.remove(site)
    sys.modules.pop("acme_faults", None)
    _reload_plugins()


@pytest.fixture
def work(installed, tmp_path, monkeypatch):
    """A working directory holding tiny.yaml (TINY plus the faulty probe, failing nowhere)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TESTBED_DEBUG", raising=False)
    data = copy.deepcopy(TINY)
    data["probes"] = ["metrics", "step_loss", "spikes", {"name": "faulty"}]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def run(*sets: str, out: str = "runs/x", debug: bool = False):
    args = ["--debug"] if debug else []
    args += ["run", "--no-store", "tiny.yaml", "--out", out, "-q"]
    for s in sets:
        args += ["--set", s]
    return cli_here(*args)


def the_error(proc, status: int = 1) -> str:
    """The one line on stderr (after the progress display, which -q turns off)."""
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def entries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("phase", ["build", "start", "eval_epochs"])
def test_a_failure_before_training_writes_nothing(work, phase):
    line = the_error(run(f"probes.3.fail_in={phase}", out="runs/deeper/x"))
    assert line == f"error: probe 'faulty' {NAMED} failed in {phase}: ValueError: boom in {phase}; no run directory was written{DEBUG_HINT}"
    assert entries(work) == ["tiny.yaml"], "not even the empty folders made for --out"


def test_a_norm_that_fails_to_build_is_named(work):
    line = the_error(run("model.mlp_norm=faulty_norm", "model.mlp_norm.fail_in=build"))
    assert line == f"error: norm 'faulty_norm' {NAMED} failed in build: ValueError: boom in build; no run directory was written{DEBUG_HINT}"
    assert entries(work) == ["tiny.yaml"]


MIDWAY = [
    # (overrides, the failing plugin and where, the error)
    (["probes.3.fail_in=after_step"], f"probe 'faulty' {NAMED} failed in after_step at epoch 2 (step 4)", "ValueError: boom in after_step"),
    (["probes.3.fail_in=after_epoch"], f"probe 'faulty' {NAMED} failed in after_epoch at epoch 2 (step 6)", "ValueError: boom in after_epoch"),
    (
        ["probes.3.fail_in=after_epoch", "probes.3.epoch=0"],
        f"probe 'faulty' {NAMED} failed in after_epoch at epoch 0 (step 0)",
        "ValueError: boom in after_epoch",
    ),
    (
        ["optimizer=faulty_sgd", "optimizer.fail_at_step=5"],
        f"optimizer 'faulty_sgd' {NAMED} failed in update at epoch 2 (step 5)",
        "ValueError: boom in update",
    ),
    (
        ["model.norm=faulty_norm", "model.norm.fail_in=forward"],
        f"norm 'faulty_norm' {NAMED} failed in the training step at epoch 1 (step 1)",
        "RuntimeError: norm boom",
    ),
    (
        ["curriculum=faulty_curriculum", "curriculum.fail_at_epoch=3"],
        f"curriculum 'faulty_curriculum' {NAMED} failed in p_at at epoch 3 (step 6)",
        "ValueError: boom in p_at",
    ),
]


@pytest.mark.parametrize("sets, failed, error", MIDWAY, ids=["after_step", "after_epoch", "after_epoch_0", "update", "norm", "p_at"])
def test_a_failure_midway_keeps_the_staging_folder_with_the_traceback(work, sets, failed, error):
    line = the_error(run(*sets))
    assert line == f"error: {failed}: {error}; the unfinished run is kept in runs/.x.partial (traceback in runs/.x.partial/error.log)"
    assert entries(work / "runs") == [".x.partial"], "no run directory: the run did not finish"
    stage = work / "runs" / ".x.partial"
    assert entries(stage) == ["error.log", "scenario.yaml"]
    log = (stage / "error.log").read_text()
    assert log.startswith(line.removeprefix("error: ") + "\n")
    assert "Traceback (most recent call last)" in log and 'acme_faults.py"' in log and log.rstrip().endswith(error)


def test_a_probe_failing_in_finish_loses_only_its_own_outputs(work):
    proc = run("probes.3.fail_in=finish")
    line = the_error(proc)
    assert line == (
        f"error: probe 'faulty' {NAMED} failed in finish: ValueError: boom in finish; the run is in runs/x without this "
        "probe's outputs (summary.json lists the failure; traceback in runs/x/error.log)"
    )
    out = work / "runs" / "x"
    assert entries(work / "runs") == ["x"]
    assert entries(out) == ["curves.png", "error.log", "metrics.csv", "run.json", "scenario.yaml", "spikes.csv", "step_loss.npz", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failures"] == [
        {"kind": "probe", "name": "faulty", "source": "acme-faults 0.1", "phase": "finish", "epoch": None, "step": None, "error": "ValueError: boom in finish"}
    ]
    run_ = Run(out)  # the rest of the run reads back whole, the failed probe's column absent
    assert run_.summary["seed"].tolist() == [0, 1, 2] and "faulty" not in run_.summary.columns
    assert run_.metrics["epoch"].max() == 4 and run_.step_loss.shape == (12, 3)
    assert "boom in finish" in (out / "error.log").read_text()

    complete = run("probes.3.fail_in=nowhere", out="runs/y")  # the same run without the failure
    assert complete.returncode == 0, complete.stderr
    assert (work / "runs" / "y" / "faulty.csv").is_file() and "failures" not in json.loads((work / "runs" / "y" / "summary.json").read_text())
    assert (out / "metrics.csv").read_bytes() == (work / "runs" / "y" / "metrics.csv").read_bytes()


def test_a_figure_failing_at_the_end_keeps_the_run(work, monkeypatch):
    from testbed.rundir import curves

    def broken(*args):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(curves, "curves", broken)
    line = the_error(run())
    assert line == (
        "error: drawing curves.png failed: RuntimeError: no fonts; the run is in runs/x without curves.png "
        "(summary.json lists the failure; traceback in runs/x/error.log)"
    )
    summary = json.loads((work / "runs" / "x" / "summary.json").read_text())
    assert summary["failures"] == [{"phase": "drawing curves.png", "epoch": None, "step": None, "error": "RuntimeError: no fonts"}]
    assert len(summary["per_seed"]["test_acc"]) == 3 and (work / "runs" / "x" / "faulty.csv").is_file()


def test_an_os_error_raised_by_a_plugin_is_its_failure_not_bad_input(work):
    line = the_error(run("probes.3.fail_in=after_epoch", "probes.3.os_error=true"))
    assert line.startswith(
        f"error: probe 'faulty' {NAMED} failed in after_epoch at epoch 2 (step 6): "
        "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/acme.cfg'; the unfinished run is kept in runs/.x.partial"
    )
    line = the_error(run("probes.3.fail_in=start", "probes.3.os_error=true", out="runs/y"))
    assert line.startswith(f"error: probe 'faulty' {NAMED} failed in start: FileNotFoundError: ")


def test_an_out_path_that_cannot_be_created_is_bad_input(work):
    (work / "a-file").write_text("in the way")
    line = the_error(run(out="a-file/run"), status=2)
    assert line.startswith("error: cannot create a-file/run: a-file: ")
    assert entries(work) == ["a-file", "tiny.yaml"]


@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_prints_the_traceback_too(work, monkeypatch, how):
    if how == "environment":
        monkeypatch.setenv("TESTBED_DEBUG", "1")
    proc = run("probes.3.fail_in=build", debug=how == "option")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and lines[-2] == "ValueError: boom in build"
    assert lines[-1] == f"error: probe 'faulty' {NAMED} failed in build: ValueError: boom in build; no run directory was written"


def test_a_panel_failing_in_render_is_named(work):
    assert run("probes=[metrics, step_loss, {name: snapshots, every: 2}]").returncode == 0
    proc = cli_here("render", "runs/x", "--panels", "faulty_panel,seq_emb", "--out", "frame.png")
    assert the_error(proc) == f"error: panel 'faulty_panel' {NAMED} failed in update at epoch 4: ValueError: panel boom{DEBUG_HINT}"
    assert not list(work.glob("*.png")) and not list(work.glob(".*.png"))
    (work / "a-file").write_text("in the way")
    proc = cli_here("render", "runs/x", "--panels", "seq_emb", "--out", "a-file/frame.png")
    assert the_error(proc, status=2).startswith("error: a-file")


def test_a_plugin_error_survives_pickling_from_a_video_worker():
    error = PluginError("panel", "faulty_panel", "acme-faults 0.1", "update", "ValueError: panel boom", epoch=4.0)
    error.notes.append("a note")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) == "panel 'faulty_panel' (acme-faults 0.1) failed in update at epoch 4: ValueError: panel boom; a note"
    assert (again.kind, again.name, again.source, again.epoch) == ("panel", "faulty_panel", "acme-faults 0.1", 4.0)


# --- compare ---------------------------------------------------------------------------------


@pytest.fixture
def two(work):
    """good.yaml, and bad.yaml whose probe raises after epoch 2."""
    for name, fail_in in (("good", "nowhere"), ("bad", "after_epoch")):
        data = yaml.safe_load((work / "tiny.yaml").read_text())
        data["name"] = name
        data["probes"][3]["fail_in"] = fail_in
        (work / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return work


def test_a_failed_compare_keeps_the_runs_it_finished(two):
    """The faulty probe cannot combine its files across seed sets, so its run trains straight
    into the report's staging folder (not into the run store): it is kept there."""
    line = the_error(cli_here("compare", "good.yaml", "bad.yaml", "--out", "reports/gb", "-q"))
    stage = "reports/.gb.partial"
    assert line == (
        f"error: probe 'faulty' {NAMED} failed in after_epoch at epoch 2 (step 6): ValueError: boom in after_epoch; "
        f"the unfinished run is kept in {stage}/runs/.bad.partial (traceback in {stage}/runs/.bad.partial/error.log); "
        f"compare kept the 1 run it finished in {stage}/runs (and in the run store: the same command again trains only what is missing)"
    )
    assert entries(two / "reports") == [".gb.partial"]
    assert entries(two / stage / "runs") == [".bad.partial", "good"]
    assert Run(two / stage / "runs" / "good").summary["seed"].tolist() == [0, 1, 2]


def test_a_compare_failing_before_any_run_finished_leaves_nothing(two):
    line = the_error(cli_here("compare", "bad.yaml", "good.yaml", "--set", "probes.3.fail_in=build", "--out", "reports/bg", "-q"))
    assert line == f"error: probe 'faulty' {NAMED} failed in build: ValueError: boom in build; no run directory was written{DEBUG_HINT}"
    assert not (two / "reports").exists()


def test_a_compare_failing_in_its_analysis_keeps_its_runs(two, monkeypatch):
    from testbed.comparison import runner

    def broken(*args):
        raise RuntimeError("no statistics today")

    monkeypatch.setattr(runner, "analyze", broken)
    line = the_error(cli_here("compare", "good.yaml", "good.yaml", "--out", "reports/gg", "-q"))
    stage = "reports/.gg.partial"
    assert line == (
        f"error: compare failed: RuntimeError: no statistics today; compare kept the 2 runs it finished in {stage}/runs "
        f"(and in the run store: the same command again trains only what is missing) (traceback in {stage}/error.log)"
    )
    assert entries(two / stage) == ["error.log", "runs"] and len(entries(two / stage / "runs")) == 2


def test_an_interrupted_compare_keeps_the_runs_it_finished(two, monkeypatch):
    from testbed.comparison import runner

    trained = []

    def interrupted_second(scenario, out, **kwargs):
        if trained:
            raise KeyboardInterrupt
        trained.append(out)
        return real(scenario, out, **kwargs)

    real = runner.serve
    monkeypatch.setattr(runner, "serve", interrupted_second)
    proc = cli_here("compare", "good.yaml", "bad.yaml", "--out", "reports/gb", "-q")
    assert proc.returncode == 130
    assert proc.stderr.strip().splitlines() == [
        "interrupted; compare kept the 1 run it finished in reports/.gb.partial/runs (and in the run store: the same command again trains only what is missing)"
    ]
    assert entries(two / "reports" / ".gb.partial" / "runs") == ["good"]

    trained.append("none finished this time")
    proc = cli_here("compare", "good.yaml", "bad.yaml", "--out", "reports/again", "-q")
    assert (proc.returncode, proc.stderr.strip()) == (130, "interrupted")
    assert entries(two / "reports") == [".gb.partial"]


def test_a_failure_midway_through_the_run_store_is_kept_in_the_store(work):
    """Through the store (the default), a run that fails keeps its staging folder in the store,
    where the same command would continue it; nothing is written at --out."""
    import os

    sets = ["--set", "probes=[metrics, step_loss, spikes]", "--set", "optimizer=faulty_sgd", "--set", "optimizer.fail_at_step=5"]
    line = the_error(cli_here("run", "tiny.yaml", "--out", "runs/x", "-q", *sets))
    store = os.environ["TESTBED_STORE"]
    failed, kept = line.split("; ")
    assert failed == f"error: optimizer 'faulty_sgd' {NAMED} failed in update at epoch 2 (step 5): ValueError: boom in update"
    assert kept.startswith(f"the unfinished run is kept in {store}/") and kept.endswith("/.seeds-0-2.partial/error.log)")
    assert not (work / "runs").exists()
