"""Fault injection against the run store, with real `testbed` processes: damaged files, kills at
chosen points, full disks, read-only folders, signals and concurrent commands. Each test asserts
what the user sees (the one line, the exit status) and that nothing wrong is ever served."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli

SMALL = {**TINY, "training": {"epochs": 3, "batch_size": 16}}


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


@pytest.mark.parametrize(("name", "damage"), [("metrics.csv", truncate), ("snapshots.npz", flip), ("step_loss.npz", truncate)])
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
    pattern = rf"warning: run store: {re.escape(str(shard / name))}: {re.escape(why)}; set aside in {re.escape(str(tmp_path / 'store' / '.quarantine'))}/\S+, its seeds train again"
    assert re.fullmatch(pattern, line), line
    assert "trained seeds 0-3" in combined.stdout
    served = run(tmp_path, scenario, "c")  # seeds 0-2 again: from the new run, equal to the first
    assert served.returncode == 0 and "trained nothing" in served.stdout and not warnings_of(served)
    assert (tmp_path / "c" / "metrics.csv").read_bytes() == (tmp_path / "a" / "metrics.csv").read_bytes()


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
