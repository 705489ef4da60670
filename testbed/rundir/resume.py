"""Continuing a stopped run: which staging folder's checkpoint a run may continue, and why not.

A checkpoint may be continued by a run whose identity it shares: the same resolved scenario
and the same code (testbed, torch, and each plugin's distribution and version, the content of
their files (`testbed.rundir.code_identity`: uncommitted edits included; a commit that changes
no code, a README edit, does not count)), and a checkpoint whose content differs from its
checksum (`testbed.engine.checkpoint.digest`) is set aside with a warning, never continued. Continuing
is then safe by construction: the run directory comes out as an uninterrupted run's would."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

import testbed
from testbed.config import scenario as scenario_mod
from testbed.config.schema import Scenario
from testbed.engine import checkpoint
from testbed.errors import StoreWarning, UserError
from testbed.rundir import code_identity, provenance
from testbed.rundir import writer as rundir


def identity(scenario: Scenario) -> dict[str, Any]:
    """What a checkpoint records of its run and must share with a run that continues it."""
    plugins = provenance.plugin_records(scenario)
    return {
        "scenario": scenario_mod.to_yaml(scenario),
        "testbed": str(testbed.__version__),
        "torch": str(torch.__version__),  # a str subclass that weights-only loading refuses
        "plugins": plugins,
        "code": code_identity.identity(plugins),
    }


class Continuation:
    """The `carry_on` question of `writer.staged` for one run: continue the stopped run in the
    staging folder? `resume` None: if its checkpoint matches (refusing one that does not,
    unless `force`, which discards it); True: it must; False: never. After a yes, `file` and
    `epoch` say what is continued."""

    def __init__(self, path: Path, identity: dict[str, Any], resume: bool | None, force: bool, named: str | None = None):
        self.path, self.identity, self.resume, self.force = path, identity, resume, force
        self.named = named or f"--out {path}"  # how messages name the run directory (the store's are not the user's --out)
        self.file: Path | None = None
        self.epoch = 0

    def refuse_early(self) -> None:
        """Before anything is created (or locked): refuse `resume=True` where there is no
        checkpoint at all."""
        stage = rundir.staging_path(self.path)
        if self.resume and not (stage / rundir.CHECKPOINT).is_file():
            self.nothing_to_resume(stage)

    def nothing_to_resume(self, stage: Path) -> None:
        raise UserError(f"--resume: {self.path} has no stopped run to continue (no checkpoint in {stage})")

    def __call__(self, stage: Path) -> bool:
        file = stage / rundir.CHECKPOINT
        if self.resume is False:
            return False
        if not file.is_file():
            if self.resume:
                self.nothing_to_resume(stage)
            return False
        try:
            checkpoint.read(file)  # the whole file against its digest: a damaged one is never continued
        except checkpoint.CorruptCheckpoint as exc:
            aside = set_aside(file, self.path)
            if self.resume:
                raise UserError(f"--resume: {file}: {exc}; set aside as {aside}; run again without --resume to start afresh") from None
            warnings.warn(StoreWarning(f"{file}: {exc}; set aside as {aside}, the training starts afresh"), stacklevel=2)
            return False
        why, found = mismatch(file, self.identity)
        if why is not None:
            if self.force and not self.resume:
                return False
            fix = "" if self.resume else "; --force discards it and starts afresh"
            raise UserError(f"{self.named}: the stopped run in {stage} cannot be continued: {why}{fix}")
        self.file, self.epoch = file, found["epoch"]
        return True


def set_aside(file: Path, path: Path) -> Path:
    """Move a damaged checkpoint out of the staging folder of the run directory `path`, beside it
    (`testbed store gc` removes it from the store)."""
    aside = path.parent / f".{path.name}.corrupt-checkpoint-{time.strftime('%Y%m%d-%H%M%S')}.pt"
    file.rename(aside)
    return aside


def mismatch(file: Path, identity: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(None, header) if the checkpoint `file` may be continued by a run of `identity`, else
    (the first difference in words, header)."""
    try:
        found = checkpoint.header(file)
    except Exception as exc:  # unreadable: another format, a damaged file
        first = (str(exc).splitlines() or [""])[0]
        return f"its checkpoint cannot be read ({type(exc).__name__}: {first})", {}
    return checkpoint.difference(found["identity"] or {}, identity), found


def newest_unfinished(scenario: Scenario, identity: dict[str, Any]) -> Path:
    """The run directory of the newest stopped run under the scenario's output root that a run
    of `identity` may continue, and that no other process is writing."""
    root = scenario.output.root
    nearest = None
    for path in rundir.unfinished(root):
        if rundir.is_locked(path):
            continue
        why, found = mismatch(rundir.staging_path(path) / rundir.CHECKPOINT, identity)
        if why is None:
            return path
        if nearest is None and _name(found) == scenario.name:
            nearest = (path, why)
    hint = f"; the newest of '{scenario.name}', {nearest[0]}, differs: {nearest[1]}" if nearest else ""
    raise UserError(f"--resume: no stopped run of this scenario under {root}/ to continue{hint}")


def _name(header: dict[str, Any]) -> str | None:
    try:
        return (yaml.safe_load((header.get("identity") or {}).get("scenario") or "") or {}).get("name")
    except yaml.YAMLError:
        return None
