"""A run is a directory: resolved scenario, metrics, step-level series, snapshots, summary and
figures, written into a hidden staging folder and renamed into place only when complete, so an
interrupted or failed run leaves nothing half-written behind."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.errors import UserError


def default_path(root: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{name}-{stamp}-{n}"
    return path


def check_target(path: Path, force: bool) -> None:
    """Refuse to overwrite a non-empty directory (or a file) unless forced."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise UserError(f"--out {path}: directory exists and is not empty (use --force to replace it)")


@contextmanager
def staged(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a staging directory that becomes `path` when the block succeeds."""
    check_target(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = path.parent / f".{path.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    stage.rename(path)
