"""Run directories the store made under the output root, handed out again instead of a new copy.

`testbed run` without --out makes `runs/<name>-<time>` from the store's shards. Asking again
for what the store already holds gives that directory back (its run.json rewritten to say the
store served it now) rather than another copy, when all of this holds:

- the store serves every seed now from verified shards (nothing trained for the request), and
  they are the very shards the directory was made from (each shard's checksum list unchanged);
- the directory is in the output root the request would write into and has the same seeds;
- every file it was made with is still there, unchanged (sizes and SHA-256, recorded when it
  was made); files added since (a `testbed render` figure) are the user's and are kept.

The record of a directory lives in its store entry (`<entry>/.served-dirs/`), never in the
directory, whose files stay those of a run. The directory itself is a copy (a reflink where
the file system has one, never a link into the store), so removing the store (`testbed store
gc`) leaves it whole; it only forgets the record, and the next request makes a new directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from testbed.rundir import checksums

RECORDS = ".served-dirs"
REWRITTEN = ("run.json",)  # rewritten when handed out again: which shards served it, now


def _parts(plan) -> list[list[str]]:
    """Each source shard and the checksum of its checksum list (a shard trained again differs)."""
    return [[shard.path.name, checksums.sha256(shard.path / checksums.MANIFEST)] for shard, _ in plan.sources()]


def _listing(folder: Path) -> dict[str, dict]:
    listed = {}
    for path in checksums.files(folder):
        rel = path.relative_to(folder).as_posix()
        if rel not in REWRITTEN:
            listed[rel] = {"size": path.stat().st_size, "sha256": checksums.sha256(path)}
    return listed


def _record_file(plan, folder: Path) -> Path:
    name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return plan.entry.path / RECORDS / f"{name}.json"


def record(plan, folder: Path) -> None:
    """Remember the run directory `folder`, just made from `plan`'s shards (a failure to write
    the record only costs a copy next time)."""
    target = _record_file(plan, folder)
    content = {"path": str(folder.resolve()), "seeds": plan.seeds, "parts": _parts(plan), "files": _listing(folder)}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(json.dumps(content) + "\n")
        tmp.replace(target)
    except OSError:
        pass


def unchanged(folder: Path, files: dict[str, dict]) -> bool:
    for rel, want in files.items():
        path = folder / rel
        try:
            if path.stat().st_size != want["size"] or checksums.sha256(path) != want["sha256"]:
                return False
        except OSError:
            return False
    return True


def find(plan, root: Path, name: str) -> Path | None:
    """The newest run directory `<root>/<name>-*` made from exactly `plan`'s shards on its
    seeds and unchanged since, or None."""
    folder = plan.entry.path / RECORDS
    if not folder.is_dir():
        return None
    root, parts = Path(root).resolve(), None
    found = []
    for file in folder.glob("*.json"):
        try:
            content = json.loads(file.read_text())
            path = Path(content["path"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if path.parent == root and path.name.startswith(f"{name}-") and content.get("seeds") == plan.seeds and path.is_dir():
            found.append((path.stat().st_mtime, path, content))
    for _, path, content in sorted(found, key=lambda x: x[0], reverse=True):
        parts = parts if parts is not None else _parts(plan)
        if content.get("parts") == parts and unchanged(path, content.get("files", {})):
            return path
    return None
