"""A run that stops at any moment continues from its last checkpoint and ends exactly as if it
had never stopped; two processes never write one run directory at once.

"Exactly": every file of the run directory is byte for byte the same (the arrays of the .npz
files: their zip containers carry the clock's timestamps, as between any two runs), except the
times: `seconds` in summary.json and `started`/`finished` in run.json."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TESTBED, TINY, cli, cli_here
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import testbed
from testbed.config.scenario import validate
from testbed.engine import checkpoint
from testbed.errors import RunFailure, UserError
from testbed.plugin_api.probe import Evaluation, Probe, RunInfo
from testbed.plugin_api.update_rule import UpdateRule
from testbed.rundir.writer import CHECKPOINT

TIMES = {"summary.json": {"seconds"}, "run.json": {"started", "finished"}}

ALL_PROBES = [
    "metrics",
    "step_loss",
    "spikes",
    {"name": "grad_norms", "per": "step"},
    {"name": "snapshots", "every": 2, "spike_steps": True},
]
BASE = {
    "name": "ck",
    "task": {"seq_len": 6, "sparsity": 3, "p": 2, "n_train": 48, "n_test": 32},
    "model": {"hidden": 8},
    "training": {"epochs": 5, "batch_size": 16},
    "probes": ALL_PROBES,
    "seeds": "0-3",
}
VARIANTS = {
    "adam": {},
    "adamw-clip-warmup": {"optimizer": {"name": "adamw", "lr": 0.02, "weight_decay": 0.05, "clip_grad_norm": 0.5, "warmup_steps": 7}},
    "sgd-momentum": {"optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True}},  # a loss spike: spike_steps keeps one
    "curriculum-reset": {  # a fresh optimizer and fresh new-token embeddings at the switch
        "curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3, "reset_optimizer": True, "reinit_new_tokens": True}]},
    },
    "curriculum-switch": {
        "curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3}]},
        "optimizer": {"name": "adam", "lr": 0.01, "lr_multipliers": {"mlp": 0.5}},
    },
}


def scenario(variant: str, **changes):
    data = copy.deepcopy(BASE) | copy.deepcopy(VARIANTS[variant]) | changes
    return validate(data)


def differences(a: Path, b: Path) -> list[str]:
    """What differs between two run directories, times aside (empty: the same run)."""
    names_a, names_b = sorted(p.name for p in a.iterdir()), sorted(p.name for p in b.iterdir())
    if names_a != names_b:
        return [f"files: {names_a} vs {names_b}"]
    found = []
    for name in names_a:
        fa, fb = a / name, b / name
        if name.endswith(".npz"):
            with np.load(fa) as za, np.load(fb) as zb:
                if za.files != zb.files:
                    found.append(f"{name}: arrays {za.files} vs {zb.files}")
                found += [f"{name}/{k}" for k in za.files if not np.array_equal(za[k], zb[k], equal_nan=za[k].dtype.kind == "f")]
        elif name in TIMES:
            ja, jb = json.loads(fa.read_text()), json.loads(fb.read_text())
            for key in TIMES[name]:
                ja.pop(key), jb.pop(key)
            if json.dumps(ja, sort_keys=True) != json.dumps(jb, sort_keys=True):  # NaN == NaN as text
                found.append(name)
        elif fa.read_bytes() != fb.read_bytes():
            found.append(name)
    return found


class Stop(Exception):
    """Stands for a kill: raised from the progress callback right after an epoch's checkpoint."""


def stop_after(epoch: int, exception: type[BaseException] = Stop, resumed_at: list[int] | None = None):
    """A progress callback that raises `exception` once `epoch` is trained (and checkpointed),
    noting in `resumed_at` the epoch of every resumption it hears of."""

    def progress(event) -> None:
        if event.resumed_from is not None and resumed_at is not None:
            resumed_at.append(event.epoch)
        if event.resumed_from is None and event.epoch == epoch:
            raise exception

    return progress


@contextmanager
def raises_stop():
    """A Stop raised inside training comes out as the RunFailure that says where it happened
    (testbed.engine.blame), with the Stop as its cause."""
    with pytest.raises(RunFailure) as info:
        yield
    assert isinstance(info.value.__cause__, Stop), info.value


def stop_engine_after(epoch: int):
    """The same for the engine's progress callback, (epoch, evaluation)."""

    def progress(done: int, evaluation) -> None:
        if done == epoch:
            raise Stop

    return progress


# ---- checkpoint -> restore after every epoch, in process ----


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_run_stopped_after_every_epoch_ends_as_an_uninterrupted_one(variant, tmp_path):
    sc = scenario(variant)
    reference = testbed.run(sc, out=tmp_path / "reference", checkpoint_every="off", store=False)
    out = tmp_path / "stopped"
    resumed_at = []
    for epoch in range(1, sc.training.epochs + 1):  # one epoch per session, each from the last checkpoint
        with raises_stop():
            testbed.run(sc, out=out, checkpoint_every=1, progress=stop_after(epoch, resumed_at=resumed_at), store=False)
        assert checkpoint.header(tmp_path / ".stopped.partial" / CHECKPOINT)["epoch"] == epoch
    run = testbed.run(sc, out=out, checkpoint_every=1, progress=stop_after(-1, resumed_at=resumed_at), store=False)
    assert resumed_at == list(range(1, sc.training.epochs + 1))  # the last session only wrote the files
    assert differences(run.path, reference.path) == []
    assert not (tmp_path / ".stopped.partial").exists() and not (tmp_path / ".stopped.lock").exists()
    if variant == "sgd-momentum":  # the spike probe had something to restore
        with np.load(run.path / "spike_steps.npz") as z:
            assert len(z["step"]) >= 1
    if variant == "curriculum-switch":
        assert {int(line.split(",")[2]) for line in (run.path / "metrics.csv").read_text().splitlines()[1:]} == {2, 3}


def test_the_comparison_of_run_directories_sees_a_changed_value(tmp_path):
    """Non-vacuity of `differences`: another learning rate is a different run."""
    a = testbed.run(scenario("adam"), out=tmp_path / "a", store=False)
    b = testbed.run(scenario("adam", optimizer={"name": "adam", "lr": 0.0031}), out=tmp_path / "b", store=False)
    assert {"metrics.csv", "step_loss.npz/loss"} <= set(differences(a.path, b.path))


# ---- what the same command does with a stopped run ----


@pytest.fixture
def stopped(tmp_path, monkeypatch):
    """A scenario file and a run of it into runs/x stopped (as by Ctrl-C) after epoch 2 of 5,
    in a fresh working directory."""
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(yaml.safe_dump({**TINY, "training": {"epochs": 5, "batch_size": 16}}))
    sc = testbed.load_scenario("tiny.yaml")
    with pytest.raises(KeyboardInterrupt):
        testbed.run(sc, out="runs/x", checkpoint_every=1, progress=stop_after(2, KeyboardInterrupt), store=False)
    return sc


def test_the_same_command_continues_a_stopped_run_and_says_from_where(stopped):
    assert sorted(p.name for p in Path("runs/.x.partial").iterdir()) == [CHECKPOINT, "scenario.yaml"]
    proc = cli_here("run", "--no-store", "tiny.yaml", "--out", "runs/x", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"resuming from epoch 2 of 5: {Path('runs/.x.partial') / CHECKPOINT}"]
    reference = testbed.run(stopped, out="runs/reference", store=False)
    assert differences(Path("runs/x"), reference.path) == []
    assert sorted(p.name for p in Path("runs").iterdir()) == ["reference", "x"]  # no staging folder, checkpoint or lock left


def test_a_stopped_run_of_another_scenario_is_refused_in_one_line_and_kept(stopped):
    proc = cli_here("run", "--no-store", "tiny.yaml", "--out", "runs/x", "--set", "optimizer.lr=0.01", "-q")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: --out runs/x: the stopped run in runs/.x.partial cannot be continued: scenario field optimizer.lr is 0.003 there, 0.01 here;"
        " --force discards it and starts afresh"
    ]
    assert checkpoint.header(Path("runs/.x.partial") / CHECKPOINT)["epoch"] == 2
    assert not Path("runs/x").exists()
    forced = cli_here("run", "--no-store", "tiny.yaml", "--out", "runs/x", "--set", "optimizer.lr=0.01", "--force", "-q")
    assert forced.returncode == 0 and "resuming" not in forced.stderr
    assert yaml.safe_load(Path("runs/x/scenario.yaml").read_text())["optimizer"]["lr"] == 0.01


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("torch", "2.0.0", "written with torch 2.0.0, this is torch " + str(torch.__version__)),
        ("code", {"testbed_files": "0" * 64}, "written by other testbed source files (a file was edited since)"),
        (
            "plugins",
            [{"kind": "norm", "name": "rms", "distribution": "testbed", "version": "0.0.1"}],
            "written with norm plugin 'rms' of testbed 0.0.1, this is testbed ",
        ),
    ],
)
def test_a_stopped_run_of_other_code_is_refused(stopped, key, value, says):
    """Other code might not reproduce the stopped run's numbers, so it does not continue it."""
    file = Path("runs/.x.partial") / CHECKPOINT
    saved = checkpoint.read(file)
    saved["identity"][key] = value
    checkpoint.write(file, saved)
    proc = cli_here("run", "--no-store", "tiny.yaml", "--out", "runs/x", "-q")
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: --out runs/x: the stopped run in runs/.x.partial cannot be continued: {says}")
    assert line.endswith("; --force discards it and starts afresh")


def test_resume_without_out_continues_the_newest_stopped_run_of_the_scenario(stopped):
    later = testbed.load_scenario("tiny.yaml", seeds="0-1")  # another scenario, stopped later under the same root
    with pytest.raises(KeyboardInterrupt):
        testbed.run(later, out="runs/y", checkpoint_every=1, progress=stop_after(3, KeyboardInterrupt), store=False)
    proc = cli_here("run", "--no-store", "tiny.yaml", "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [f"resuming from epoch 2 of 5: {Path('runs/.x.partial') / CHECKPOINT}"]
    assert "run directory: runs/x" in proc.stdout
    assert Path("runs/.y.partial", CHECKPOINT).exists()  # the other scenario's stopped run is untouched
    nothing = cli_here("run", "--no-store", "tiny.yaml", "--resume", "-q")
    assert nothing.returncode == 2
    assert nothing.stderr.splitlines() == [
        "error: --resume: no stopped run of this scenario under runs/ to continue; "
        "the newest of 'tiny', runs/y, differs: scenario field seeds is 0-1 there, 0-2 here"
    ]


def test_no_resume_starts_afresh_and_resume_requires_a_checkpoint(stopped):
    fresh = cli_here("run", "--no-store", "tiny.yaml", "--out", "runs/x", "--no-resume", "-q")
    assert fresh.returncode == 0 and fresh.stderr == ""
    proc = cli_here("run", "--no-store", "tiny.yaml", "--out", "runs/new/z", "--resume", "-q")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: --resume: runs/new/z has no stopped run to continue (no checkpoint in runs/new/.z.partial)"]
    assert not Path("runs/new").exists()  # nothing created


def test_a_checkpoint_that_fails_while_written_leaves_the_previous_one(tmp_path, monkeypatch):
    file = tmp_path / CHECKPOINT
    checkpoint.write(file, {"epoch": 3, "params": torch.ones(2, 3)})

    def dies_half_way(state, f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # or the process killed right here

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.write(file, {"epoch": 4, "params": torch.zeros(2, 3)})
    monkeypatch.undo()
    saved = checkpoint.read(file)
    assert saved["epoch"] == 3 and torch.equal(saved["params"], torch.ones(2, 3))


@pytest.mark.parametrize("spec", ["0", "-3", "5x", "1.5", "soon"])
def test_a_bad_checkpoint_interval_is_refused_in_one_line(spec, tmp_path, write_scenario):
    proc = cli_here("run", "--no-store", str(write_scenario(TINY)), "--out", str(tmp_path / "r"), "--checkpoint-every", spec, "-q")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: --checkpoint-every: expected epochs (50), a time (30s, 5m, 1h) or off, not '{spec}'"]
    assert not (tmp_path / "r").exists() and not (tmp_path / ".r.partial").exists()


def test_checkpoint_intervals_by_epochs_and_by_training_time():
    assert checkpoint.Policy.parse(None) == checkpoint.Policy(seconds=60.0)
    assert checkpoint.Policy.parse("25") == checkpoint.Policy.parse(25) == checkpoint.Policy(epochs=25)
    assert checkpoint.Policy.parse("90s") == checkpoint.Policy(seconds=90.0)
    assert checkpoint.Policy.parse("2m") == checkpoint.Policy(seconds=120.0)
    assert checkpoint.Policy.parse("1h") == checkpoint.Policy(seconds=3600.0)
    assert not checkpoint.Policy.parse("off").enabled
    now = [0.0]
    by_time = checkpoint.Schedule(checkpoint.Policy(seconds=60.0), clock=lambda: now[0])
    now[0] = 59.0
    assert not by_time.due(5, 100)
    now[0] = 61.0
    assert by_time.due(6, 100)
    by_time.written()
    assert not by_time.due(7, 100) and by_time.due(100, 100)  # the last epoch always
    by_epochs = checkpoint.Schedule(checkpoint.Policy(epochs=3))
    assert [e for e in range(1, 11) if by_epochs.due(e, 10)] == [3, 6, 9, 10]
    off = checkpoint.Schedule(checkpoint.Policy())
    assert not any(off.due(e, 10) for e in range(1, 11))


def test_timed_checkpoints_space_out_when_writing_them_takes_long():
    """A checkpoint that took 10 s to write (gigabytes at 10,000 seeds) comes again after 20 x
    10 s of training, not after the policy's 60 s; a quick one keeps the policy's interval."""
    now = [0.0]
    schedule = checkpoint.Schedule(checkpoint.Policy(seconds=60.0), clock=lambda: now[0])
    now[0] = 61.0
    assert schedule.due(5, 1000)
    now[0] = 71.0
    schedule.written(began=61.0)
    now[0] = 71.0 + 199.0
    assert not schedule.due(20, 1000)
    now[0] = 71.0 + 201.0
    assert schedule.due(21, 1000)
    schedule.written(began=now[0] - 0.5)
    now[0] += 61.0
    assert schedule.due(30, 1000)
    by_epochs = checkpoint.Schedule(checkpoint.Policy(epochs=3), clock=lambda: now[0])
    by_epochs.written(began=now[0] - 100.0)  # an epoch policy is kept, however long writing takes
    assert by_epochs.due(3, 10)


# ---- the default state of plugins: their data attributes ----


class Momentum(UpdateRule):
    """An update rule relying on the default state: a tensor allocated on the first update."""

    def __init__(self):
        self.buf: torch.Tensor | None = None
        self.calls = 0

    def update(self, flat, grad, lr, step):
        self.buf = grad.clone() if self.buf is None else self.buf * 0.5 + grad
        self.calls += 1
        flat.sub_(self.buf * lr)


class Gatherer(Probe):
    """A probe relying on the default state, with a reference to the live parameters."""

    def start(self, info: RunInfo) -> None:
        super().start(info)
        self.weights = info.params
        self.norms: list[list[float]] = []
        self.seen: dict[str, Evaluation | None] = {}
        self.total = torch.zeros(len(info.seeds))
        self.transform = torch.nn.functional.relu  # configuration, left as built
        self.sampler = torch.Generator().manual_seed(7)  # its own stream: continues where it was

    def after_epoch(self, epoch, flat, evaluation) -> None:
        self.norms.append(torch.linalg.vector_norm(self.weights, dim=1).tolist())
        self.seen[str(epoch)] = evaluation
        self.total += flat.sum(1) + torch.rand(len(self.info.seeds), generator=self.sampler)


def test_the_default_state_restores_data_attributes_and_relinks_the_live_parameters():
    from testbed.engine.model import ParamSpace

    space = ParamSpace({"w": (3,)})
    flat = torch.arange(6.0).reshape(2, 3)
    ev = Evaluation(1, 2, torch.ones(2), torch.zeros(2), torch.ones(2), torch.zeros(2))
    probe = Gatherer()
    probe.start(RunInfo([0, 1], 2, 1, space, None, params=flat))
    probe.after_epoch(1, flat, ev)
    rule = Momentum()
    rule.update(flat, torch.ones(2, 3), torch.full((1, 3), 0.1), 1)

    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "state.pt"
        checkpoint.write(file, {"probe": probe.state_dict(), "rule": rule.state_dict()})
        saved = checkpoint.read(file)

    live = flat.clone()
    again = Gatherer()
    again.start(RunInfo([0, 1], 2, 1, space, None, params=live))
    again.load_state_dict(saved["probe"])
    assert again.weights is live  # not a copy frozen at the checkpoint
    assert again.norms == probe.norms and torch.equal(again.total, probe.total)
    assert again.seen["1"].epoch == 1 and torch.equal(again.seen["1"].test_acc, ev.test_acc)
    assert again.transform is torch.nn.functional.relu
    assert torch.equal(torch.rand(5, generator=again.sampler), torch.rand(5, generator=probe.sampler))
    rule_again = Momentum()
    rule_again.load_state_dict(saved["rule"])
    assert torch.equal(rule_again.buf, rule.buf) and rule_again.calls == 1


def test_the_default_state_refuses_what_it_cannot_save_naming_it():
    probe = Gatherer()
    probe.start(RunInfo([0], 1, 1, None, None))
    probe.histogram = np.zeros(3)
    with pytest.raises(TypeError, match=r"Gatherer\.histogram \(numpy\.ndarray\) cannot be checkpointed"):
        probe.state_dict()


def test_the_tracking_probes_keep_their_evaluations_and_wall_times():
    from testbed_plugins.probes.tracked_metrics import TrackingParams, TrackingProbe

    probe = TrackingProbe(TrackingParams(every=1))
    probe.start(RunInfo([0, 1], 3, 1, None, None))
    for epoch in range(3):
        probe.after_epoch(epoch, torch.zeros(2, 1), Evaluation(epoch, 2, *torch.rand(4, 2)))
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "state.pt"
        checkpoint.write(file, probe.state_dict())
        again = TrackingProbe(TrackingParams(every=1))
        again.start(RunInfo([0, 1], 3, 1, None, None))
        again.load_state_dict(checkpoint.read(file))
    assert again.started == probe.started
    assert [t for t, _ in again.logged] == [t for t, _ in probe.logged]
    for (_, a), (_, b) in zip(again.logged, probe.logged):
        assert (a.epoch, a.p) == (b.epoch, b.p) and all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("train_loss", "train_acc", "test_loss", "test_acc"))


def test_the_manuals_optimizer_and_probe_resume_bit_for_bit_with_the_default_state(tmp_path, monkeypatch):
    """docs/plugins.md's Lion and weight-norm probe, which keep their state in plain attributes,
    stopped after every epoch and continued, end as when never stopped."""
    import importlib.util
    import sys

    from test_plugin_manual import doc_examples

    from testbed.engine.loop import train
    from testbed.plugin_api.registry import Registry

    modules = []
    for name in ("my_lion", "my_weight_norm"):
        (tmp_path / f"{name}.py").write_text(doc_examples()[name])
        spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        modules.append(module)
    registry = Registry.load(extra=modules)
    data = copy.deepcopy(BASE) | {"optimizer": {"name": "lion", "lr": 0.003, "weight_decay": 0.1}, "probes": ["metrics", "step_loss", "weight_norm"]}
    sc = validate(data, registry=registry)
    reference = train(sc, tmp_path / "reference", registry=registry)
    out = tmp_path / "stopped"
    out.mkdir()
    file = out / CHECKPOINT
    for epoch in range(1, sc.training.epochs + 1):
        ck = checkpoint.Checkpointing(file, checkpoint.Policy(epochs=1), {}, resume=epoch > 1)
        with raises_stop():
            train(sc, out, registry=registry, progress=stop_engine_after(epoch), checkpoints=ck)
    continued = train(sc, out, registry=registry, checkpoints=checkpoint.Checkpointing(file, checkpoint.Policy(epochs=1), {}, resume=True))
    file.unlink()
    assert differences(out, tmp_path / "reference") == []
    assert continued.columns == reference.columns and continued.steps == reference.steps


# ---- kill -9 at random moments: real processes ----

KILLED = {**TINY, "name": "killed", "training": {"epochs": 100, "batch_size": 16}}


def start(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [TESTBED, "run", "--no-store", "killed.yaml", "--out", "runs/k", "--checkpoint-every", "1", "-q"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    """Until `path` exists or the process has ended (polling the process, not the clock)."""
    while not path.exists():
        try:
            proc.wait(timeout=0.01)
            return
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    (root / "killed.yaml").write_text(yaml.safe_dump(KILLED))
    proc = cli("run", "--no-store", "killed.yaml", "--out", "runs/k", "-q", cwd=root)  # the default policy: one checkpoint, after the last epoch
    assert proc.returncode == 0, proc.stderr
    return root / "runs" / "k"


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(delays=st.lists(st.floats(0.0, 1.2), min_size=1, max_size=2))
def test_kill_9_at_any_moment_then_the_same_command_ends_as_an_uninterrupted_run(uninterrupted, delays):
    """Each process is killed `delay` seconds after it took its run directory (while it trains,
    checkpoints, or writes its files), then the same command runs to the end."""
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        (cwd / "killed.yaml").write_text(yaml.safe_dump(KILLED))
        for delay in delays:
            if (cwd / "runs" / "k").exists():  # the last process got to the end
                break
            proc = start(cwd)
            wait_for(cwd / "runs" / ".k.partial", proc)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
            assert proc.returncode in (0, -signal.SIGKILL), err
        if not (cwd / "runs" / "k").exists():
            proc = start(cwd)
            _, err = proc.communicate()
            assert proc.returncode == 0, err
        run = cwd / "runs" / "k"
        stray = run / CHECKPOINT  # a kill between the rename and the checkpoint's removal leaves it (and only it) behind
        if stray.exists():
            stray.unlink()
        assert differences(run, uninterrupted) == []
        assert sorted(p.name for p in (cwd / "runs").iterdir()) in (["k"], [".k.lock", "k"])


# ---- one writer per run directory ----


def test_a_second_process_writing_the_same_out_is_refused_in_one_line(tmp_path, uninterrupted):
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(KILLED))
    first = start(tmp_path)
    try:
        wait_for(tmp_path / "runs" / ".k.partial", first)
        first.send_signal(signal.SIGSTOP)  # holds the lock, paused: the second arrives while it writes, whatever the timing
        second = cli("run", "--no-store", "killed.yaml", "--out", "runs/k", "-q", cwd=tmp_path)
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"error: --out runs/k: another testbed process (pid {first.pid}) is writing it; wait for it to end or choose another --out"
        ]
        assert second.stdout == ""
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate()
    assert first.returncode == 0, err
    assert differences(tmp_path / "runs" / "k", uninterrupted) == []  # nothing of the second in it
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["k"]


def test_the_lock_is_held_in_process_too_and_released_when_the_run_ends(tmp_path):
    from testbed.rundir import writer

    with writer.locked(tmp_path / "r"):
        assert writer.is_locked(tmp_path / "r")
        with pytest.raises(UserError, match=f"another testbed process \\(pid {os.getpid()}\\) is writing it"):
            with writer.locked(tmp_path / "r"):
                pass
    assert not writer.is_locked(tmp_path / "r")
    assert list(tmp_path.iterdir()) == []
