"""Who trains which seeds of a store entry now, so that two commands needing the same seeds
(two sweeps sharing a cell, runs of seeds 0-2 and 1-3 at once) train each seed once: the first
claims them, the other waits for the claim to end and is served the result.

Planning is serialised per key by an flock on `<root>/.<key>.plan` (held only while a plan
is made and its seeds claimed, milliseconds). A claim is the file `<entry>/.<shard>.claim`,
holding the claimed seeds and flocked by the claiming process until its training has landed
or failed; the system releases an flock when its process ends, however it ends, so a killed
command never blocks another: a claim that is not locked is stale and ignored."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no claims, as no locks
    fcntl = None


@contextmanager
def planning(root: Path, key: str) -> Iterator[None]:
    """Hold the planning lock of key `key` (waiting for another planner to finish)."""
    if fcntl is None:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / f".{key}.plan", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class Claim:
    """Seeds of an entry this process trains now; `release` when they have landed or failed."""

    file: Path
    seeds: frozenset[int]
    fd: int | None

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.file.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None


def claim(entry_path: Path, name: str, seeds: list[int]) -> Claim:
    """Claim `seeds` (to train into the shard `name`); call under `planning`."""
    entry_path.mkdir(parents=True, exist_ok=True)
    file = entry_path / f".{name}.claim"
    if fcntl is None:
        return Claim(file, frozenset(seeds), None)
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # under the planning lock only a stale claim can be there: free
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "seeds": sorted(seeds)}).encode())
    return Claim(file, frozenset(seeds), fd)


def _held(file: Path) -> bool:
    if fcntl is None:  # not POSIX: no locks, so no claim is held
        return False
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def live(entry_path: Path) -> list[tuple[Path, frozenset[int]]]:
    """The claims of an entry held by running processes (this one's included): (file, seeds)."""
    if fcntl is None or not entry_path.is_dir():
        return []
    found = []
    for file in sorted(entry_path.glob(".*.claim")):
        if not _held(file):
            continue
        try:
            seeds = frozenset(json.loads(file.read_text())["seeds"])
        except (OSError, ValueError, KeyError):
            continue  # released meanwhile
        found.append((file, seeds))
    return found


def wait(file: Path) -> None:
    """Return when the claim `file` is released (its training landed, failed or was killed)."""
    if fcntl is None:
        return
    try:
        fd = os.open(file, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)
