"""The code that trains a run, by content: what the run store's key and a checkpoint hold so that
a run of other code (an edited file, an editable plugin changed under the same version) is never
served or continued.

A distribution is known by its files: for a regular install, the hashes its RECORD lists (pip
wrote them at install time: one small file read); for an editable install (and a package laid
out without a RECORD), the SHA-256 of the source files of its top-level packages as they are on
disk now. Only files that can change a result count: documentation (README, *.md, *.rst,
*.txt), compiled bytecode and hidden files (editor swap files) do not. torch and numpy are known
by their versions, the arithmetic by `testbed.engine.arithmetic.DETERMINISM`. Each is computed
once per process (about 10 ms for testbed's own ~150 source files)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from functools import cache, lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

NOT_CODE = (".md", ".rst", ".txt", ".pyc", ".pyo")


def counts(name: str) -> bool:
    """Whether a file named `name` can change a result."""
    return not name.startswith(".") and not name.lower().endswith(NOT_CODE) and name != "RECORD"


def folder_digest(folders: list[Path]) -> str:
    """SHA-256 over the relative paths and contents of the files of `folders` that count."""
    h = hashlib.sha256()
    for folder in folders:
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            if not counts(path.name):
                continue
            rel = path.name if path == folder else path.relative_to(folder).as_posix()
            h.update(f"{folder.name}/{rel}\0".encode())
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def module_paths(top: str) -> list[Path]:
    """The source folder of package `top` (or its one file), wherever the import system finds it."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    return [Path(spec.origin)] if spec.origin and spec.origin not in ("built-in", "frozen") else []


def _editable(dist: metadata.Distribution) -> bool:
    try:
        return bool(json.loads(dist.read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable"))
    except ValueError:
        return False


def _top_levels(dist: metadata.Distribution) -> list[str]:
    """The import names a distribution installs: its top_level.txt, else its entry points' and
    RECORD's top-level modules."""
    listed = (dist.read_text("top_level.txt") or "").split()
    if listed:
        return sorted(set(listed))
    names = {ep.value.split(":")[0].split(".")[0] for ep in dist.entry_points}
    for file in dist.files or []:
        part = file.parts[0]
        if part.endswith(".py"):
            names.add(part[:-3])
        elif not part.endswith((".dist-info", ".egg-info", ".data")) and part not in ("..", "__pycache__"):
            names.add(part)
    return sorted(n for n in names if n.isidentifier())


@cache
def distribution_digest(name: str) -> str:
    """The digest of an installed distribution's code (see the module's docstring)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return module_digest(name)
    record = dist.read_text("RECORD")
    if record and not _editable(dist):
        rows = []
        for line in record.splitlines():
            path, _, rest = line.partition(",")
            if path and ".dist-info/" not in path and "__pycache__" not in path and counts(Path(path).name):
                rows.append(f"{path},{rest}")
        return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()
    folders = [p for top in _top_levels(dist) for p in module_paths(top)]
    return folder_digest(folders)


@cache
def module_digest(module: str) -> str:
    """The digest of a plugin module that no distribution owns (its package's files)."""
    return folder_digest(module_paths(module.split(".")[0]))


def plugin_digest(record: dict[str, Any]) -> str:
    """The code digest of a plugin, from its `testbed.rundir.provenance.plugin_record`."""
    if record.get("distribution"):
        return distribution_digest(record["distribution"])
    return module_digest(record.get("module") or "")


@lru_cache(maxsize=1)
def _environment() -> dict[str, str]:
    import numpy
    import torch

    from testbed.engine import arithmetic

    return {
        "testbed_files": distribution_digest("testbed"),
        "torch": str(torch.__version__),
        "numpy": str(numpy.__version__),
        "determinism": str(arithmetic.DETERMINISM),
    }


def identity(plugin_records: list[dict[str, Any]]) -> dict[str, Any]:
    """The code of a run that trains with these plugins: testbed's files, torch's and numpy's
    versions, the determinism mode, and each plugin distribution's files (testbed's own
    built-ins are in testbed's)."""
    plugins = {}
    for record in plugin_records:
        owner = record.get("distribution") or record.get("module") or ""
        if owner != "testbed" and owner not in plugins:
            plugins[owner] = plugin_digest(record)
    return {**_environment(), "plugin_files": dict(sorted(plugins.items()))}
