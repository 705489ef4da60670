"""Checksums of a run directory's files, written when it lands in the run store and verified
before any of it is served or combined, so that a stored file changed since (truncated, bytes
flipped, a line appended) is named and never served.

`.checksums.json` in the run directory lists each file's size, modification time and SHA-256.
`verify` hashes every file in full (about 1 GB/s) the first time a process looks at it, and
again whenever its size or modification time changed; within one process a file already
verified and unchanged in size and time is trusted (a sweep serves a shard to many cells).
Guaranteed: every byte served was hashed by this process after landing, except a change that
keeps both size and modification time within the process's lifetime (a deliberate `os.utime`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

MANIFEST = ".checksums.json"
NOT_LISTED = (MANIFEST, f"{MANIFEST}.tmp", "checkpoint.pt", "checkpoint.pt.tmp")  # the training state goes once the run is in place
CHUNK = 1 << 20


@dataclass(frozen=True)
class Mismatch:
    """A file of a sealed run directory that is not what landed: `why` in words."""

    file: Path
    why: str


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files(folder: Path) -> list[Path]:
    """The files of a run directory, the manifest excluded, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not (p.parent == folder and p.name in NOT_LISTED))


def seal(folder: Path) -> None:
    """Write the manifest of every file in `folder` (atomically: a temporary file renamed)."""
    listed = {}
    for path in files(folder):
        stat = path.stat()
        listed[path.relative_to(folder).as_posix()] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(path)}
    tmp = folder / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": listed}, indent=1) + "\n")
    tmp.replace(folder / MANIFEST)


def sealed(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


_trusted: dict[Path, tuple[int, int, str]] = {}  # file -> (size, mtime_ns, sha256) verified by this process


def verify(folder: Path) -> Mismatch | None:
    """The first file of `folder` that differs from its manifest (or a missing, unreadable
    manifest, a file missing or added), else None."""
    try:
        listed = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return Mismatch(folder / MANIFEST, "the checksum list is missing or unreadable")
    present = {p.relative_to(folder).as_posix() for p in files(folder)}
    for extra in sorted(present - set(listed)):
        return Mismatch(folder / extra, "a file added after landing")
    for rel, want in listed.items():
        path = folder / rel
        try:
            stat = path.stat()
        except OSError:
            return Mismatch(path, "missing")
        if stat.st_size != want["size"]:
            return Mismatch(path, f"{stat.st_size} bytes, {want['size']} at landing")
        known = _trusted.get(path)
        if known == (stat.st_size, stat.st_mtime_ns, want["sha256"]):
            continue
        try:
            got = sha256(path)
        except OSError as exc:
            return Mismatch(path, f"unreadable ({exc.strerror or exc})")
        if got != want["sha256"]:
            return Mismatch(path, "its SHA-256 differs from the one at landing")
        _trusted[path] = (stat.st_size, stat.st_mtime_ns, got)
    return None


FICLONE = 0x40049409  # Linux's ioctl that shares a file's blocks copy-on-write (btrfs, XFS, bcachefs)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy `src` to `dst` as a file of its own: a reflink where the file system has one (no data
    copied, and writing either never changes the other), else a plain copy. Never a hard link:
    a user's edit of a run directory must not reach the store."""
    try:
        import fcntl

        with open(src, "rb") as s, open(dst, "wb") as d:
            fcntl.ioctl(d.fileno(), FICLONE, s.fileno())
        return
    except (ImportError, OSError):
        pass
    import shutil

    shutil.copyfile(src, dst)


def copy_tree(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy the files of `src` into the folder `dst` (`copy_file` each; names in `skip` left
    out): the first failure raises its own OSError, naming its file (a full disk is one line)."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if rel.parts[0] in skip or path.name in skip:
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            copy_file(path, target)
