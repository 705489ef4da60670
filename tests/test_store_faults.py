"""Fault injection against the run store, with real `testbed` processes: damaged files, kills at
chosen points, full disks, read-only folders, signals and concurrent commands. Each test asserts
what the user sees (the one line, the exit status) and that nothing wrong is ever served."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TESTBED, TINY, cli, third_party_package

SMALL = {**TINY, "training": {"epochs": 3, "batch_size": 16}}

# A probe that holds a training at a chosen epoch until the test lets it go: every process
# reaching it says so with a file (reached-PID), and waits for the file `open`. Its files
# combine trivially (it writes none), so its scenarios train through the store.
GATE_PACKAGE = '''
import os
import time
from pathlib import Path

from testbed.plugin_api import Params, Probe, hookimpl, plugin

class GateParams(Params):
    epoch: int = 2
    folder: str = "."

class Gate(Probe):
    def __init__(self, params):
        self.epoch, self.folder = params.epoch, Path(params.folder)

    def after_epoch(self, epoch, flat, evaluation):
        if epoch == self.epoch and not (self.folder / "open").exists():
            (self.folder / f"reached-{os.getpid()}").write_text("")
            while not (self.folder / "open").exists():
                time.sleep(0.01)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def combine(self, parts, seeds, out):
        return True

@plugin("gate", GateParams)
def gate(params):
    """Holds a training at an epoch until told to go on."""
    return Gate(params)

@hookimpl
def testbed_probes():
    return [gate]
'''


def _writes_fail_not_kill() -> None:
    """In a child: a write past RLIMIT_FSIZE fails (EFBIG) instead of killing it (SIGXFSZ)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class Gated:
    """Real `testbed` processes training a scenario with the gate probe, held at epoch `epoch`."""

    def __init__(self, tmp_path: Path, epoch: int = 2, epochs: int = 4):
        self.tmp_path, self.folder = tmp_path, tmp_path / "gate"
        self.folder.mkdir()
        self.env = third_party_package(tmp_path, "gate_probe", GATE_PACKAGE, "gate-probe", "0.1", entry_point="gate")
        probes = [*SMALL["probes"], {"name": "gate", "epoch": epoch, "folder": str(self.folder)}]
        data = {**SMALL, "training": {"epochs": epochs, "batch_size": 16}, "probes": probes}
        self.scenario = write(tmp_path, data, "gated.yaml")

    def start(self, *args: str, command: str = "run", target: Path | None = None) -> subprocess.Popen:
        argv = [TESTBED, command, str(target or self.scenario), "-q", "--store", str(self.tmp_path / "store"), *args]
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **self.env), preexec_fn=_writes_fail_not_kill
        )

    def reached(self, proc: subprocess.Popen) -> None:
        """Wait until `proc` holds at the gate (it fails the test if the process ends first)."""
        while not (self.folder / f"reached-{proc.pid}").exists():
            if proc.poll() is not None:
                raise AssertionError(f"ended before the gate: {proc.returncode} {proc.stderr.read()}")
            time.sleep(0.01)

    def open(self) -> None:
        (self.folder / "open").write_text("")

    def cli(self, *args: str):
        return cli(*args, env=self.env)


def write(tmp_path: Path, data: dict | None = None, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data or SMALL))
    return path


def run(tmp_path: Path, scenario: Path, out: str, *args: str, env: dict | None = None):
    return cli("run", str(scenario), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / out), *args, env=env)


def shards(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "store").glob("*/seeds-*") if p.is_dir())


def warnings_of(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("warning:")]


def truncate(file: Path) -> str:
    size = file.stat().st_size
    file.write_bytes(file.read_bytes()[: size // 2])
    return f"{size // 2} bytes, {size} at landing"


def flip(file: Path) -> str:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    return "its SHA-256 differs from the one at landing"


@pytest.mark.parametrize(
    ("name", "damage"),
    [("snapshots.npz", flip), pytest.param("metrics.csv", truncate, marks=pytest.mark.slow), pytest.param("step_loss.npz", truncate, marks=pytest.mark.slow)],
)
def test_a_corrupt_stored_file_is_named_set_aside_and_its_seeds_retrain(tmp_path, name, damage):
    """A truncated metrics.csv was served as 'diverged 33%', a flipped snapshots.npz failed every
    combine with a BadZipFile naming no file: now the file is named, set aside, retrained."""
    scenario = write(tmp_path)
    first = run(tmp_path, scenario, "a")
    assert first.returncode == 0, first.stderr
    (shard,) = shards(tmp_path)
    why = damage(shard / name)
    combined = run(tmp_path, scenario, "b", "--seeds", "0-3")  # with a seed the store lacks: the combining path
    assert combined.returncode == 0, combined.stderr
    (line,) = warnings_of(combined)
    aside = re.escape(str(tmp_path / "store" / ".quarantine"))
    pattern = rf"warning: run store: {re.escape(str(shard / name))}: {re.escape(why)}; set aside in {aside}/\S+, its seeds train again"
    assert re.fullmatch(pattern, line), line
    assert "trained seeds 0-3" in combined.stdout
    served = run(tmp_path, scenario, "c")  # seeds 0-2 again: from the new run, equal to the first
    assert served.returncode == 0 and "trained nothing" in served.stdout and not warnings_of(served)
    assert (tmp_path / "c" / "metrics.csv").read_bytes() == (tmp_path / "a" / "metrics.csv").read_bytes()


@pytest.mark.slow
def test_store_verify_names_every_corrupt_file_and_sets_its_run_aside(tmp_path):
    scenario = write(tmp_path)
    assert run(tmp_path, scenario, "a").returncode == 0
    assert run(tmp_path, scenario, "b", "--seeds", "3-4").returncode == 0
    clean = cli("store", "verify", "--store", str(tmp_path / "store"))
    assert clean.returncode == 0 and re.fullmatch(r"verified 2 runs \(\d+\.\d MB\) in \d+\.\d s: every file matches its checksum\n", clean.stdout)
    victim = shards(tmp_path)[0]
    flip(victim / "step_loss.npz")
    found = cli("store", "verify", "--store", str(tmp_path / "store"))
    assert found.returncode == 1
    first, last = found.stdout.splitlines()
    assert first.startswith(f"corrupt: {victim / 'step_loss.npz'}: its SHA-256 differs from the one at landing; its run is set aside in ")
    assert last.endswith(": 1 set aside") and not victim.exists()
    gc = cli("store", "gc", "--store", str(tmp_path / "store"))
    assert "(a run set aside as corrupt)" in gc.stdout and not any((tmp_path / "store" / ".quarantine").iterdir())


def test_a_truncated_entry_json_is_not_served(tmp_path):
    scenario = write(tmp_path)
    assert run(tmp_path, scenario, "a").returncode == 0
    (entry,) = (tmp_path / "store").glob("*/entry.json")
    entry.write_text(entry.read_text()[:40])
    again = run(tmp_path, scenario, "b")
    assert again.returncode == 0, again.stderr
    (line,) = warnings_of(again)
    assert line.startswith(f"warning: run store: {entry} is unreadable; set aside in ")
    assert "trained seeds 0-2" in again.stdout
    assert json.loads(entry.read_text())["key"] == entry.parent.name


def test_gc_never_touches_a_live_training_even_with_all(tmp_path):
    """`store gc --all` deleted the staging folder of a running training, which then died."""
    gated = Gated(tmp_path)
    proc = gated.start("--out", str(tmp_path / "r"), "--checkpoint-every", "1")
    gated.reached(proc)
    (stage,) = (tmp_path / "store").glob("*/.seeds-0-2.partial")
    for flags in ([], ["--all"]):
        gc = gated.cli("store", "gc", "--store", str(tmp_path / "store"), *flags)
        assert gc.returncode == 0, gc.stderr
        assert f"kept {stage} (a training in progress)" in gc.stdout.splitlines()
        assert (stage / "checkpoint.pt").is_file()
    gated.open()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "trained seeds 0-2" in out and len(shards(tmp_path)) == 1


def stopped_run(tmp_path: Path) -> tuple[Path, Path]:
    """A training killed (SIGKILL) in epoch 2 of 4, with its checkpoint of epoch 1."""
    gated = Gated(tmp_path)
    proc = gated.start("--out", str(tmp_path / "r"), "--checkpoint-every", "1")
    gated.reached(proc)
    proc.kill()
    proc.communicate()
    (file,) = (tmp_path / "store").glob("*/.seeds-0-2.partial/checkpoint.pt")
    gated.open()
    return gated, file


def test_a_checkpoint_loads_weights_only_and_a_flipped_parameter_is_never_resumed(tmp_path):
    gated, file = stopped_run(tmp_path)
    saved = torch.load(file, weights_only=True)  # no testbed class inside: plain torch reads it
    assert saved["epoch"] == 1  # the gate holds epoch 2 before its checkpoint
    saved["params"][0, 0] += 1.0  # one parameter changed, the recorded checksum not
    torch.save(saved, file)
    resumed = gated.cli("run", str(gated.scenario), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "r"))
    assert resumed.returncode == 0, resumed.stderr
    (line,) = warnings_of(resumed)
    said = rf"warning: {re.escape(str(file))}: its content differs from its checksum; set aside as \S+corrupt-checkpoint-\S+\.pt, the training starts afresh"
    assert re.fullmatch(said, line), line
    assert "resuming" not in resumed.stderr
    assert gated.cli("run", str(gated.scenario), "-q", "--no-store", "--out", str(tmp_path / "clean")).returncode == 0
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == (tmp_path / "clean" / "metrics.csv").read_bytes()
    assert "(a damaged checkpoint set aside)" in gated.cli("store", "gc", "--store", str(tmp_path / "store")).stdout


@pytest.mark.slow
def test_a_truncated_checkpoint_is_named_and_set_aside_and_resume_says_what_to_do(tmp_path):
    gated, file = stopped_run(tmp_path)
    file.write_bytes(file.read_bytes()[:1000])
    asked = gated.cli("run", str(gated.scenario), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "r"), "--resume")
    assert asked.returncode == 2
    (line,) = asked.stderr.splitlines()
    assert line.startswith(f"error: --resume: {file}: it cannot be read (") and line.endswith("; run again without --resume to start afresh")
    again = gated.cli("run", str(gated.scenario), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "r"))
    assert again.returncode == 0 and "trained seeds 0-2" in again.stdout


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` unwritable, for root too (who ignores permission bits): `chattr +i`, else a
    read-only bind mount; as another user, its mode."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    for on, off in (
        (["chattr", "+i", str(folder)], ["chattr", "-i", str(folder)]),
        (["mount", "--bind", "-o", "ro", str(folder), str(folder)], ["umount", str(folder)]),
    ):
        try:
            done = subprocess.run(on, capture_output=True).returncode == 0
        except FileNotFoundError:
            done = False
        if done:
            try:
                yield
            finally:
                subprocess.run(off, capture_output=True)
            return
    pytest.skip("no way to make a folder read-only for root here (chattr, bind mount)")


def test_a_read_only_out_or_store_is_refused_before_anything_trains(tmp_path):
    scenario = write(tmp_path)
    locked = tmp_path / "locked"
    with read_only(locked):
        out = cli("run", str(scenario), "-q", "--store", str(tmp_path / "store"), "--out", str(locked / "x"))
        store = cli("run", str(scenario), "-q", "--store", str(locked), "--out", str(tmp_path / "x"))
        study = tmp_path / "study.yaml"
        study.write_text(yaml.safe_dump({"name": "st", "scenarios": [str(scenario)], "axes": {"model.hidden": [4, 8]}}))
        swept = cli("sweep", str(study), "-q", "--store", str(tmp_path / "store"), "--out", str(locked / "sw"))
    assert out.returncode == 2 and re.fullmatch(rf"error: --out {re.escape(str(locked / 'x'))}: cannot write in {re.escape(str(locked))} \(.+\)\n", out.stderr)
    said = rf"error: run store {re.escape(str(locked))} \(--store or \$TESTBED_STORE\): cannot write in {re.escape(str(locked))} \(.+\)\n"
    assert store.returncode == 2 and re.fullmatch(said, store.stderr), store.stderr
    assert swept.returncode == 2 and swept.stderr.startswith(f"error: --out {locked / 'sw'}: cannot write in {locked} (")
    assert not (tmp_path / "store").exists() and not (tmp_path / "x").exists()  # nothing trained, nothing written


@contextlib.contextmanager
def disk_to_fill(folder: Path) -> Iterator[Callable[[subprocess.Popen], None]]:
    """A small tmpfs at `folder` and a function that fills it; where mounting is not allowed, the
    function lowers the process's RLIMIT_FSIZE instead (its writes then fail with EFBIG)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True).returncode == 0

    def fill(proc: subprocess.Popen) -> None:
        if not mounted:
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, 1))
            return
        with open(folder / "filler", "wb") as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()

    try:
        yield fill
    finally:
        (folder / "filler").unlink(missing_ok=True)
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_while_checkpointing_is_one_line_and_the_same_command_resumes(tmp_path):
    """Once: `OSError: [Errno 28]` alone, an empty error.log and a 12 MB checkpoint.pt.tmp left."""
    gated = Gated(tmp_path)
    store = tmp_path / "store"
    with disk_to_fill(store) as fill:
        proc = gated.start("--out", str(tmp_path / "r"), "--checkpoint-every", "1")
        gated.reached(proc)
        fill(proc)
        gated.open()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1
        (stage,) = store.glob("*/.seeds-0-2.partial")
        (line,) = err.splitlines()
        said = (
            r"error: writing the checkpoint failed at epoch 2 \(step \d+\): OSError: \[Errno (28|27)\] (No space left on device|File too large); "
            rf"the unfinished run is kept in {re.escape(str(stage))} with its checkpoint of epoch 1 \(the same command continues from it\)"
            r"(; error.log could not be written \(.+\)| \(traceback in \S+error.log\))"
        )
        assert re.fullmatch(said, line), line
        assert not list(store.rglob("*.tmp")) and (stage / "checkpoint.pt").is_file()
        (store / "filler").unlink(missing_ok=True)
        again = gated.cli("run", str(gated.scenario), "-q", "--store", str(store), "--out", str(tmp_path / "r"))
        assert again.returncode == 0, again.stderr
        assert f"resuming from epoch 1 of 4: {stage / 'checkpoint.pt'}" in again.stderr
    clean = gated.cli("run", str(gated.scenario), "-q", "--no-store", "--out", str(tmp_path / "clean"))
    assert clean.returncode == 0
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == (tmp_path / "clean" / "metrics.csv").read_bytes()


def test_sigterm_is_an_interrupt_that_keeps_the_checkpoint_and_the_same_command_resumes(tmp_path):
    """SIGTERM exited 143 with no message."""
    gated = Gated(tmp_path)
    proc = gated.start("--out", str(tmp_path / "r"), "--checkpoint-every", "1")
    gated.reached(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    (stage,) = (tmp_path / "store").glob("*/.seeds-0-2.partial")
    assert proc.returncode == 143
    assert err.splitlines() == [f"terminated (SIGTERM); the checkpoint of epoch 1 of 4 is kept in {stage}; the same command continues from it"]
    gated.open()
    again = gated.cli("run", str(gated.scenario), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "r"))
    assert again.returncode == 0 and f"resuming from epoch 1 of 4: {stage / 'checkpoint.pt'}" in again.stderr


def test_overlapping_seed_sets_at_once_train_every_seed_once(tmp_path):
    """Seeds 0-2 and 1-3 asked at once trained seeds 1 and 2 twice."""
    gated = Gated(tmp_path)
    first = gated.start("--out", str(tmp_path / "a"))
    gated.reached(first)  # it holds seeds 0-2
    second = gated.start("--out", str(tmp_path / "b"), "--seeds", "1-3")
    gated.reached(second)  # it trains seed 3 only, then waits for 1-2
    gated.open()
    out_a, err_a = first.communicate(timeout=120)
    out_b, err_b = second.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), err_a + err_b
    assert "trained seeds 0-2" in out_a
    assert "trained seeds 3; seeds 1-2 from the store" in out_b
    assert [p.name for p in shards(tmp_path)] == ["seeds-0-2", "seeds-3"]
    alone = gated.cli("run", str(gated.scenario), "-q", "--no-store", "--seeds", "1-3", "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0
    assert (tmp_path / "b" / "metrics.csv").read_bytes() == (tmp_path / "alone" / "metrics.csv").read_bytes()


@pytest.mark.slow
def test_two_sweeps_sharing_a_cell_wait_for_each_other_and_share_it(tmp_path):
    """Two sweeps sharing a cell both exited 1 on the cell's lock."""
    gated = Gated(tmp_path)
    studies = []
    for name, values in (("x", [4, 8]), ("y", [8, 16])):
        study = tmp_path / f"{name}.yaml"
        study.write_text(yaml.safe_dump({"name": name, "scenarios": [str(gated.scenario)], "axes": {"model.hidden": values}}))
        studies.append(study)
    x = gated.start("--out", str(tmp_path / "sx"), command="sweep", target=studies[0])
    gated.reached(x)  # it has claimed both its cells and trains hidden=4
    y = gated.start("--out", str(tmp_path / "sy"), command="sweep", target=studies[1])
    gated.reached(y)  # it trains hidden=16, and will wait for hidden=8
    gated.open()
    for proc in (x, y):
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert len(shards(tmp_path)) == 3  # 4, 8 and 16: the shared cell trained once
    x_csv, y_csv = ((tmp_path / d / "sweep.csv").read_text().splitlines() for d in ("sx", "sy"))
    shared = [row.split(",", 1)[1] for row in x_csv if "model.hidden=8" in row]
    assert shared and shared == [row.split(",", 1)[1] for row in y_csv if "model.hidden=8" in row]


def test_resume_with_nothing_to_resume_leaves_no_empty_entry(tmp_path):
    scenario = write(tmp_path)
    proc = run(tmp_path, scenario, "a", "--resume")
    assert proc.returncode == 2
    assert proc.stderr == f"error: --resume: the run store {tmp_path / 'store'} has no stopped training of this scenario on seeds 0-2 to continue\n"
    assert not [p for p in (tmp_path / "store").iterdir() if not p.name.startswith(".")]


REFUSING_PROBE = '''
from testbed.plugin_api import Params, Probe, hookimpl, plugin

class Refusing(Probe):
    def finish(self, out):
        (out / "refusing.txt").write_text("seeds: " + ",".join(map(str, self.info.seeds)))
        return {}

    def combine(self, parts, seeds, out):
        return False

@plugin("refusing", Params)
def refusing(params):
    """Writes a file, and cannot combine it."""
    return Refusing()

@hookimpl
def testbed_probes():
    return [refusing]
'''


def test_a_probe_whose_combine_returns_false_is_a_failure_not_a_silent_gap(tmp_path):
    env = third_party_package(tmp_path, "refusing_probe", REFUSING_PROBE, "refusing-probe", "0.1", entry_point="refusing")
    scenario = write(tmp_path, {**SMALL, "probes": ["metrics", "refusing"]})
    assert run(tmp_path, scenario, "a", "--seeds", "0-1", env=env).returncode == 0
    proc = run(tmp_path, scenario, "b", env=env)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: probe 'refusing' (refusing-probe 0.1) failed in combine: it returned False: its files are missing; "
        f"the run is in {tmp_path / 'b'} without this probe's outputs (summary.json lists the failure) (testbed --debug shows the traceback)"
    ]
    failures = json.loads((tmp_path / "b" / "summary.json").read_text())["failures"]
    assert [(f["name"], f["phase"]) for f in failures] == [("refusing", "combine")]


def test_a_stopped_training_that_cannot_continue_is_named_as_the_stores_and_force_works(tmp_path):
    """The message named the store's folder as "--out", and its --force advice did nothing."""
    gated, file = stopped_run(tmp_path)
    renamed = write(tmp_path, {**yaml.safe_load(gated.scenario.read_text()), "name": "other"}, "other.yaml")
    asked = gated.cli("run", str(renamed), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "o"))
    assert asked.returncode == 2
    shard = file.parent.parent / "seeds-0-2"
    assert asked.stderr.splitlines() == [
        f"error: the run store's {shard}: the stopped run in {file.parent} cannot be continued: scenario field name is tiny there, other here; "
        "--force discards it and starts afresh"
    ]
    forced = gated.cli("run", str(renamed), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "o"), "--force")
    assert forced.returncode == 0 and "trained seeds 0-2" in forced.stdout, forced.stderr


def test_a_full_disk_while_writing_the_run_directory_is_one_line_and_the_seeds_stay_stored(tmp_path):
    """Landing into a full disk once printed an 1,100-character shutil.Error list."""
    scenario = write(tmp_path)
    assert run(tmp_path, scenario, "a").returncode == 0
    (shard,) = shards(tmp_path)

    def small_files() -> None:  # every file this process writes stops at 2000 bytes (EFBIG)
        _writes_fail_not_kill()
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    argv = [TESTBED, "run", str(scenario), "-q", "--store", str(tmp_path / "store"), "--out", str(tmp_path / "b")]
    proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    said = (
        rf"error: writing the run directory {re.escape(str(tmp_path / 'b'))} failed: OSError: \[Errno 27\] File too large: .+; "
        rf"every seed is in the run store {re.escape(str(shard.parent))}: the same command again only writes the run directory"
        r" \(testbed --debug shows the traceback\)"
    )
    assert re.fullmatch(said, line), line
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))
    again = run(tmp_path, scenario, "b")
    assert again.returncode == 0 and "trained nothing" in again.stdout
