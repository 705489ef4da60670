"""A run is a directory: resolved scenario, metrics, step-level series, snapshots, summary and
figures, written into a hidden staging folder and renamed into place only when complete, so an
interrupted or failed run leaves nothing half-written behind.

Beside the run directory NAME, while it is written: `.NAME.partial`, the staging folder, which
holds the training's checkpoint (`checkpoint.pt`) for the run to continue from should it stop
(and, when a run fails, error.log and whatever it finished, kept for inspection), and
`.NAME.lock`, locked by the one process writing NAME, so that a second one is refused."""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.errors import RunFailure, UserError, describe

try:
    import fcntl
except ImportError:  # not POSIX: no lock
    fcntl = None

CHECKPOINT = "checkpoint.pt"  # in the staging folder: the training state (testbed.engine.checkpoint)


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


def check_writable(path: Path, what: str) -> None:
    """Refuse at once (a UserError naming `what`) a folder `path` that could not be written:
    the nearest of it and its parents that exists must take a new file. Tried, not judged by
    permission bits (root ignores them; a read-only mount or an immutable folder does not)."""
    import tempfile

    folder = next((f for f in (path, *path.parents) if f.exists()), None)
    if folder is None or not folder.is_dir():
        return
    try:
        fd, probe = tempfile.mkstemp(prefix=".testbed-write-test-", dir=folder)
    except OSError as exc:
        raise UserError(f"{what}: cannot write in {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_creatable(path: Path) -> None:
    """Refuse at once a run directory that could not be created (a file where a folder of its
    path must be), before any work is done for it."""
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UserError(f"cannot create {path}: {folder}: is a file, not a folder")
            return


def staging_path(path: Path) -> Path:
    """The hidden folder in which the run directory `path` is written."""
    return path.parent / f".{path.name}.partial"


def lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def final_path(stage: Path) -> Path:
    """The run directory a staging folder becomes (the inverse of `staging_path`)."""
    return stage.parent / stage.name[1 : -len(".partial")]


def unfinished(root: str | Path) -> list[Path]:
    """The run directories under `root` whose staging folder holds a checkpoint (runs stopped
    before the end), the newest checkpoint first."""
    root = Path(root)
    if not root.is_dir():
        return []
    stages = [s for s in root.glob(".*.partial") if (s / CHECKPOINT).is_file()]
    stages.sort(key=lambda s: (s / CHECKPOINT).stat().st_mtime, reverse=True)
    return [final_path(s) for s in stages]


@contextmanager
def locked(path: Path, named: str | None = None) -> Iterator[None]:
    """Hold the lock of the run directory `path` (the file `.NAME.lock` beside it) while the
    block runs; refuse with a UserError if another process holds it. An flock belongs to the
    open file, so the system releases it when its process ends, however it ends: a killed run
    never blocks the run that continues it. The file is removed on release; a process that
    opened it just before finds another file (or none) at its name, and tries again."""
    if fcntl is None:
        yield
        return
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            if named is None:
                raise UserError(f"--out {path}: another testbed process{who} is writing it; wait for it to end or choose another --out") from None
            raise UserError(f"{named}: another testbed process{who} is writing it; wait for it to end") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether a process holds the lock of the run directory `path` now."""
    if fcntl is None:
        return False
    try:
        fd = os.open(lock_path(path), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


@contextmanager
def staged(
    path: Path,
    force: bool = False,
    carry_on: Callable[[Path], bool] | None = None,
    finish: Callable[[Path], None] | None = None,
    named: str | None = None,
) -> Iterator[Path]:
    """Yield a staging directory that becomes `path` when the block succeeds, holding the lock
    of `path` throughout. `carry_on(stage)`, asked under the lock, says whether to continue in
    the staging folder left by a run that stopped (it holds a checkpoint of the same run; every
    other file in it is removed), instead of starting a fresh one; it may refuse with a
    UserError. `finish(stage)` runs on the complete staging folder just before it is renamed
    (the run store's checksums); `named` is how a refusal names `path` (default `--out PATH`).
    A checkpoint is removed once the run is in place.

    When the block fails, the staging directory is removed, with the folders made for it that
    are left empty, unless it holds a checkpoint to continue from, or the exception keeps it
    (its `kept` is the staging directory: see `testbed.errors.RunFailure`) because it holds
    finished work or a record of the failure."""
    made = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(made)
        raise UserError(f"cannot create {path}: {_reason(exc)}") from None
    try:
        with locked(path, named):
            check_target(path, force)
            stage = staging_path(path)
            try:
                if carry_on is not None and carry_on(stage):
                    for item in stage.iterdir():
                        if item.name != CHECKPOINT:
                            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
                else:
                    if stage.exists():
                        shutil.rmtree(stage)
                    stage.mkdir()
            except OSError as exc:
                raise UserError(f"cannot create {path}: {_reason(exc)}") from None
            try:
                yield stage
            except BaseException as exc:
                keep = getattr(exc, "kept", None) == stage or (stage / CHECKPOINT).exists()
                if not keep:
                    shutil.rmtree(stage, ignore_errors=True)
                raise
            if finish is not None:
                try:
                    finish(stage)
                except OSError as exc:
                    failure = RunFailure("", "landing the finished run", describe(exc))
                    failure.kept = stage
                    failure.notes.append(f"the finished run stays in {stage} with its last checkpoint: the same command lands it")
                    raise failure from exc
            try:
                if path.exists():
                    shutil.rmtree(path)
                stage.rename(path)
            except OSError as exc:
                raise UserError(f"cannot move the finished {stage} to {path}: {_reason(exc)}; it stays in {stage}") from None
            (path / CHECKPOINT).unlink(missing_ok=True)
    except BaseException:
        if not staging_path(path).exists():
            _remove_empty(made)
        raise


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
