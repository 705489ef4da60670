"""`testbed store ls`, `gc` and `verify`: what the run store holds, pruning what it can no
longer serve (runs of other code, trainings stopped or failed, incomplete runs, runs set aside
as corrupt), and checking every stored file against its checksum."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

import testbed
from testbed.config.scenario import format_seeds
from testbed.plugin_api.registry import default_registry
from testbed.rundir import checksums, code_identity, provenance
from testbed.rundir import writer as rundir
from testbed.store.run_store import ENTRY_FILE, QUARANTINE, SERVED, Entry, RunStore, finished_seeds, stray_stages


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def servable(entry: Entry) -> bool:
    """Whether the installed code has the key of this entry: the same testbed, torch and plugin
    versions, and the same files (`testbed.rundir.code_identity`)."""
    ident = entry.info().get("identity")
    if not ident or ident.get("testbed") != testbed.__version__ or ident.get("torch") != str(torch.__version__):
        return False
    registry = default_registry()
    records = []
    for record in ident.get("plugins", []):
        try:
            now = provenance.plugin_record(record["kind"], record["name"], registry)
        except Exception:  # a plugin no longer installed
            return False
        if now != record:
            return False
        records.append(now)
    return ident.get("code") == code_identity.identity(records)


def listing(root: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per entry: key, scenario name, seeds held, runs, stopped trainings, size, current."""
    rows = []
    for entry in RunStore(root).entries():
        shards = entry.shards()
        seeds = sorted({s for shard in shards for s in shard.seeds})
        info = entry.info()
        rows.append(
            {
                "key": entry.key,
                "name": info.get("name", "?"),
                "seeds": format_seeds(seeds) if seeds else "-",
                "n_seeds": len(seeds),
                "runs": len(shards),
                "stopped": len(stray_stages(entry)),
                "bytes": _size(entry.path),
                "testbed": (info.get("identity") or {}).get("testbed", "?"),
                "current": servable(entry),
            }
        )
    return rows


def _live(item: Path) -> bool:
    """Whether a process is writing `item` now: a lock file held, a staging folder or run whose
    lock is held, or a folder holding one (the run directories of `.served`)."""
    name = item.name
    if name.startswith(".") and name.endswith(".lock"):
        return rundir.is_locked(item.parent / name[1 : -len(".lock")])
    if name.startswith(".") and name.endswith(".partial"):
        return rundir.is_locked(rundir.final_path(item))
    if rundir.is_locked(item):
        return True
    return item.is_dir() and any(rundir.is_locked(lock.parent / lock.name[1 : -len(".lock")]) for lock in item.glob(".*.lock"))


def collect(root: str | Path | None = None, *, dry_run: bool = False, everything: bool = False) -> tuple[list[str], int, list[str]]:
    """Remove (or, dry, list) what the store cannot serve; -> (what, bytes freed, what was kept
    because a process is writing it). Whatever a
    running process is writing (a training, its lock, the entry holding them) is never removed,
    with or without `everything`: it is listed as kept."""
    store = RunStore(root)
    doomed: list[tuple[Path, str]] = []
    kept: list[str] = []
    for entry in store.entries():
        live = [item for item in entry.path.iterdir() if _live(item)]
        if everything or not servable(entry):
            why = "every run" if everything else "runs of other code versions"
            if not live:
                doomed.append((entry.path, f"{entry.path} ({entry.info().get('name', '?')}: {why})"))
                continue
            for item in sorted(entry.path.iterdir()):
                if item not in live and item.name != ENTRY_FILE and not (item.name.endswith(".lock") and item.with_name(item.name[:-5] + ".partial") in live):
                    doomed.append((item, f"{item} ({why})"))
            kept += [f"{item} (a training in progress)" for item in live if not item.name.endswith(".lock")]
            continue
        if not live and not entry.shards() and not stray_stages(entry) and not (entry.path / SERVED).exists():
            doomed.append((entry.path, f"{entry.path} (an entry holding no run)"))
            continue
        kept += [f"{item} (a training in progress)" for item in live if item.name.endswith(".partial")]
        for stage in stray_stages(entry):
            doomed.append((stage, f"{stage} (a stopped or failed training)"))
        for aside in entry.path.glob(".*.corrupt-checkpoint-*.pt"):
            doomed.append((aside, f"{aside} (a damaged checkpoint set aside)"))
        for lock in entry.path.glob(".*.lock"):  # left by a killed process (an flock dies with it)
            if not _live(lock):
                doomed.append((lock, f"{lock} (the lock file of a killed process)"))
        for folder in entry.path.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and folder not in live and finished_seeds(folder) is None:
                doomed.append((folder, f"{folder} (a run written without some outputs)"))

    aside = store.root / QUARANTINE
    if aside.is_dir():
        doomed += [(folder, f"{folder} (a run set aside as corrupt)") for folder in sorted(aside.iterdir())]
    freed = 0
    for path, _ in doomed:
        freed += _size(path)
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return [what for _, what in doomed], freed, kept


def verify(root: str | Path | None = None) -> tuple[int, int, list[str]]:
    """Hash every file of every stored run against its checksum; set aside what differs.
    -> (runs verified, bytes hashed, one line per run set aside)."""
    store = RunStore(root)
    runs, hashed, problems = 0, 0, []
    for entry in store.entries():
        if (entry.path / ENTRY_FILE).exists() and entry.info().get("key") != entry.key:
            aside = store.quarantine(entry.path, "", warn=False)
            problems.append(f"{entry.path / ENTRY_FILE}: unreadable or of another key; the entry is set aside in {aside}")
            continue
        for shard in entry.shards():
            runs += 1
            found = checksums.verify(shard.path)
            if found is None:
                hashed += _size(shard.path)
                continue
            aside = store.quarantine(shard.path, "", warn=False)
            problems.append(f"{found.file}: {found.why}; its run is set aside in {aside}")
    return runs, hashed, problems
