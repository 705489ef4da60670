"""The command line through the installed entry point: run, validate, schema, plugins, and
bad input (exit status 2, one line per problem, no traceback, nothing written)."""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CLIPPED_RMS_PACKAGE, TINY, cli, cli_here, third_party_package

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


# The grammar: an option means the same on every command that takes it (README, "One grammar").
GRAMMAR = {
    "--seeds 0-99": ["run", "compare", "sweep", "trajectories"],
    "--set KEY=VALUE": ["run", "compare", "power", "sweep", "validate"],
    "--out PATH": ["run", "compare", "power", "sweep", "schema", "render", "barrier", "trajectories", "spikes"],
    "--force": ["run", "compare", "power", "sweep", "render", "barrier", "trajectories", "spikes"],
    "-q, --quiet": ["run", "compare", "power", "sweep", "render", "barrier", "trajectories", "spikes"],
    "--threads N": ["run", "compare", "power", "sweep", "render", "barrier", "trajectories", "spikes"],
    "--store PATH": ["run", "compare", "power", "sweep", "store ls", "store gc", "store verify"],
    "--no-store": ["run", "compare", "power", "sweep"],
    "--device cpu|cuda|mps|auto": ["run", "compare", "power", "sweep"],
}
COMMANDS = ["run", "compare", "power", "sweep", "validate", "schema", "plugins", "render", "barrier", "trajectories", "spikes",
            "store ls", "store gc", "store verify"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_grammar_and_no_python_types(command):
    proc = cli_here(*command.split(), "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())  # help wraps its lines
    for option, commands in GRAMMAR.items():
        assert (option in text) == (command in commands), (command, option)
    for python_type in ("<str>", "<int>", "<float>", "<path>", "list[", "range>"):
        assert python_type not in text, (command, python_type)


def test_barriers_two_seeds_are_a_pair_and_the_old_spelling_says_so(tmp_path):
    proc = cli_here("barrier", str(tmp_path), "--seeds", "0,1")
    assert_user_error(proc, "--seeds 0,1", "--pair A,B")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_version_and_shell_completion():
    proc = cli_here("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"testbed {testbed.__version__}"
    assert "--install-completion" in cli_here("--help").stdout
    completed = cli(env={"_TESTBED_COMPLETE": "complete_bash", "COMP_WORDS": "testbed ba", "COMP_CWORD": "1"})
    assert completed.returncode == 0 and completed.stdout.split() == ["barrier"], completed.stderr
    options = cli(env={"_TESTBED_COMPLETE": "complete_bash", "COMP_WORDS": "testbed run x.yaml --no-", "COMP_CWORD": "3"})
    assert set(options.stdout.split()) == {"--no-store", "--no-resume"}, options.stdout


def test_help_imports_nothing_heavy():
    """`testbed --help` and a command's help load neither torch nor the libraries of the work
    (they took 2.4-3.7 s; without them about 0.25 s)."""
    probe = (
        "import sys\n"
        "from testbed.cli import main\n"
        "for argv in (['--help'], ['run', '--help'], ['compare', '--help'], ['--version']):\n"
        "    sys.argv = ['testbed', *argv]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('torch', 'numpy', 'pandas', 'scipy', 'matplotlib', 'rich.table', 'testbed.config.scenario')\n"
        "print('loaded:', *[m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "loaded:", proc.stderr


def test_every_problem_of_a_command_line_is_reported_at_once(tmp_path, monkeypatch):
    """The README's promise, on its own example: one line per problem, exit 2, nothing written."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").mkdir()
    shutil.copy(root / "scenarios" / "baseline.yaml", tmp_path / "scenarios" / "baseline.yaml")
    proc = cli_here("run", "scenarios/baseline.yaml", "--seeds", "5-2", "--set", "model.norm.radius=-1", "--checkpoint-every", "soon")
    assert_user_error(proc, "--seeds: seed range 5-2 is empty", "model.norm.radius", "--checkpoint-every")
    assert len(proc.stderr.strip().splitlines()) == 3
    a = tmp_path / "a.yaml"
    a.write_text(yaml.safe_dump(TINY))
    proc = cli_here("compare", "a.yaml", "a.yaml", "--seeds", "5-2", "--set", "training.epochs=0", "--margin", "0.1", "--alpha", "2")
    assert_user_error(proc, "--seeds: seed range 5-2 is empty", "training.epochs", "--margin: only with --until-decided",
                      "--alpha: only with --until-decided")
    assert len(proc.stderr.strip().splitlines()) == 4
    proc = cli_here("compare", "a.yaml", "a.yaml", "--until-decided", "--margin", "-1", "--batch", "1", "--alpha", "2")
    assert_user_error(proc, "--margin: must be > 0", "--batch: must be at least 2", "--alpha: must be in (0, 1)")
    assert len(proc.stderr.strip().splitlines()) == 3
    proc = cli_here("power", "a.yaml", "a.yaml", "--pilot", "3-1", "--power", "1.5", "--set", "training.epochs=0")
    assert_user_error(proc, "--pilot: seed range 3-1 is empty", "--power: must be in (0, 1)", "training.epochs")
    assert len(proc.stderr.strip().splitlines()) == 3
    Path("study.yaml").write_text(yaml.safe_dump({"name": "st", "scenarios": ["a.yaml"], "axes": {"training.epochs": [2, 3]}}))
    proc = cli_here("sweep", "study.yaml", "--seeds", "9-8", "--set", "task.p=1")
    assert_user_error(proc, "--seeds: seed range 9-8 is empty", "task.p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "scenarios", "study.yaml"]


@pytest.mark.parametrize("command", ["run", "compare", "power", "sweep"])
def test_device_is_a_scenario_field_on_every_training_command(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text(yaml.safe_dump(TINY))
    Path("study.yaml").write_text(yaml.safe_dump({"name": "st", "scenarios": ["a.yaml"], "axes": {"training.epochs": [2, 3]}}))
    inputs = {"run": ["a.yaml"], "compare": ["a.yaml", "a.yaml"], "power": ["a.yaml", "a.yaml"], "sweep": ["study.yaml"]}[command]
    proc = cli_here(command, *inputs, "--device", "abacus", "--out", "out")
    assert_user_error(proc, "training.device")
    assert not Path("out").exists()


def test_a_run_the_store_serves_whole_reuses_its_directory(tmp_path, monkeypatch):
    """Asked again, the store's run comes back in the directory made the first time, said to be
    served (not trained now); an edited directory is not handed out; removing the store leaves
    the directory whole."""
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(yaml.safe_dump(TINY))
    first = cli_here("run", "tiny.yaml", "-q")
    assert first.returncode == 0, first.stderr
    made = first.stdout.strip().splitlines()[-1].removeprefix("run directory: ")
    assert made.startswith("runs/tiny-") and "trained seeds 0-2" in first.stdout
    again = cli_here("run", "tiny.yaml", "-q")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == f"run directory: {made}"
    said = " ".join(again.stdout.split())
    assert "trained nothing; seeds 0-2 served from the store (trained in" in said and "│ served │" in said
    assert [p.name for p in Path("runs").iterdir() if p.name != "store"] == [Path(made).name]
    assert json.loads(Path(made, "run.json").read_text())["store"]["parts"][0]["trained_now"] is False

    fewer = cli_here("run", "tiny.yaml", "-q", "--seeds", "0-1")  # other seeds: a directory of their own
    assert fewer.stdout.strip().splitlines()[-1] != f"run directory: {made}"
    edited = Path(made, "metrics.csv")
    edited.write_text(edited.read_text() + "0,0,0,0,0,0,0\n")
    third = cli_here("run", "tiny.yaml", "-q")
    newer = third.stdout.strip().splitlines()[-1].removeprefix("run directory: ")
    assert newer != made and edited.read_text().endswith("0,0,0,0,0,0,0\n")  # the user's edit is theirs

    shutil.rmtree(os.environ["TESTBED_STORE"])  # the store gone (gc): the directory stays a whole run
    run = testbed.load_run(newer)
    assert list(run.summary["seed"]) == [0, 1, 2] and len(run.metrics) and Path(newer, "snapshots.npz").is_file()
    trained = cli_here("run", "tiny.yaml", "-q")
    assert "trained seeds 0-2" in trained.stdout and trained.stdout.strip().splitlines()[-1] != f"run directory: {newer}"


def test_render_and_spikes_replace_an_existing_out_only_with_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert cli_here("run", "tiny.yaml", "-q", "--out", "run").returncode == 0
    for command, out in (("render", "frame.png"), ("spikes", "causes.csv")):
        Path(out).write_text("mine")
        refused = cli_here(command, "run", "--out", out, "-q", "--threads", "1")
        assert_user_error(refused, f"--out {out}: exists; add --force")
        assert Path(out).read_text() == "mine"
        forced = cli_here(command, "run", "--out", out, "-q", "--threads", "1", "--force")
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout.strip().splitlines() == [out]  # quiet: only the path written
        assert Path(out).read_bytes() != b"mine"


def test_trajectories_take_a_seed_list_and_quiet_prints_the_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tiny.yaml").write_text(yaml.safe_dump(TINY))
    assert cli_here("run", "tiny.yaml", "-q", "--out", "run").returncode == 0
    assert_user_error(cli_here("trajectories", "run", "--seeds", "2-1"), "--seeds: seed range 2-1 is empty")
    proc = cli_here("trajectories", "run", "--seeds", "0-1", "--out", "map", "-q", "--threads", "1")
    assert proc.returncode == 0 and proc.stdout.strip() == "map", proc.stderr
