"""A run is a directory: resolved scenario, metrics, step-level series, snapshots, summary and
figures, written into a hidden staging folder and renamed into place only when complete, so an
interrupted or failed run leaves nothing half-written behind (what a failure keeps for
inspection stays in the staging folder, with error.log)."""

from __future__ import annotations

import shutil
import time
import traceback
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
    """Yield a staging directory that becomes `path` when the block succeeds.

    When the block fails, the staging directory is removed, with the folders made for it that
    are left empty, unless the exception keeps it (its `kept` is the staging directory: see
    `testbed.errors.RunFailure`), because it holds finished work or a record of the failure."""
    check_target(path, force)
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]  # deepest first
    stage = path.parent / f".{path.name}.partial"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir()
    except OSError as exc:
        _remove_empty(made)
        raise UserError(f"cannot create {path}: {_reason(exc)}") from None
    try:
        yield stage
    except BaseException as exc:
        if getattr(exc, "kept", None) != stage:
            shutil.rmtree(stage, ignore_errors=True)
            _remove_empty(made)
        raise
    try:
        if path.exists():
            shutil.rmtree(path)
        stage.rename(path)
    except OSError as exc:
        raise UserError(f"cannot move the finished {stage} to {path}: {_reason(exc)}; it stays in {stage}") from None


def write_error_log(folder: Path, failures: list[BaseException]) -> Path:
    """error.log in `folder`: each failure's one-line message and the traceback of what it
    failed on (its cause), kept for inspection."""
    parts = []
    for failure in failures:
        cause = failure.__cause__ or failure
        parts.append(f"{failure}\n\n" + "".join(traceback.format_exception(cause)))
    log = folder / "error.log"
    log.write_text("\n".join(parts))
    return log


def _reason(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _remove_empty(folders: list[Path]) -> None:
    """Remove these folders, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
