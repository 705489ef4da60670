"""run.json: where a run came from, so that a result can be traced back to the code, the plugins
and the machine that produced it: testbed, Python, torch and numpy versions, every plugin the
scenario uses with the distribution and version it comes from, the git commit of testbed's
source tree (and whether it had uncommitted changes) when it is a git checkout, torch's thread
count and device, and when the run started and ended."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import testbed
from testbed.config.schema import Scenario
from testbed.plugin_api.registry import Registry, default_registry


def now() -> datetime:
    """The current time with the local UTC offset (what run.json records)."""
    return datetime.now().astimezone()


def plugins_used(scenario: Scenario) -> list[tuple[str, Any]]:
    """(kind, plugin reference) of every plugin a scenario trains with, each once, in the order
    of the scenario file."""
    m = scenario.model
    refs = [
        ("norm", m.embedding_norm or m.norm),
        ("norm", m.mlp_norm or m.norm),
        ("activation", m.activation),
        ("optimizer", scenario.optimizer),
        ("curriculum", scenario.curriculum),
        *(("probe", p) for p in scenario.probes),
    ]
    seen, out = set(), []
    for kind, ref in refs:
        if (kind, ref.name) not in seen:
            seen.add((kind, ref.name))
            out.append((kind, ref))
    return out


def plugin_record(kind: str, name: str, registry: Registry) -> dict[str, Any]:
    """kind, name, and the distribution and version the registry found it in (None for a plugin
    registered from a module that no installed distribution owns)."""
    source = registry.get(kind, name).source
    dist, sep, version = source.rpartition(" ")
    if not sep:  # a module name, not "distribution version"
        return {"kind": kind, "name": name, "distribution": None, "version": None, "module": source}
    return {"kind": kind, "name": name, "distribution": dist, "version": version}


def plugin_records(scenario: Scenario, registry: Registry | None = None) -> list[dict[str, Any]]:
    """`plugin_record` of every plugin the scenario trains with (what run.json, a checkpoint's
    identity and the run store's key record of the plugins)."""
    registry = registry or default_registry()
    return [plugin_record(kind, ref.name, registry) for kind, ref in plugins_used(scenario)]


def _git(args: list[str], where: Path) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state(where: Path | None = None) -> dict[str, Any] | None:
    """The commit of the git working tree holding testbed's source, and whether it differs from
    that commit (modified or untracked files that git does not ignore); None when testbed is
    not installed from a git checkout, or git is not available."""
    where = where or Path(testbed.__file__).resolve().parent
    if _git(["ls-files", "--error-unmatch", "__init__.py"], where) is None:
        return None  # not a checkout of testbed (e.g. installed into a virtual environment inside some repository)
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return None
    status = _git(["status", "--porcelain"], where)
    return {"commit": commit, "dirty": bool(status) if status is not None else None, "root": _git(["rev-parse", "--show-toplevel"], where)}


def record(scenario: Scenario, started: datetime, finished: datetime, registry: Registry | None = None) -> dict[str, Any]:
    """The content of run.json."""
    registry = registry or default_registry()
    return {
        "testbed": testbed.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "plugins": plugin_records(scenario, registry),
        "git": git_state(),
        "threads": torch.get_num_threads(),
        "device": str(torch.get_default_device()),
        "platform": platform.platform(),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
    }
