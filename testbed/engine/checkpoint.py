"""Checkpoints: the complete training state of a run after an epoch, so that a run killed at any
moment continues from its last checkpoint and ends bit for bit as if it had never stopped.

A checkpoint is one file written with `torch.save` that plain `torch.load(file, weights_only=True)`
reads (tensors, numbers, strings, lists and dicts only, no code: an `Evaluation` is kept as a
dict marked `EVALUATION`), holding:

- `identity`: what must match for the run to be continued: the resolved scenario (as
  scenario.yaml writes it), the versions of testbed, torch and every plugin the scenario uses,
  and the content of their code (testbed.rundir.resume.identity);
- `epoch` (the last one completed), `step` (optimizer steps so far), `seconds` of training so far;
- `params`: the flat (S, P) parameters; `optimizer`: the wrapper's step count and the update
  rule's `state_dict()` (Adam's moments, SGD's buffer);
- `generators`: the state of each seed's batch-order generator, and `next_order` the orders
  already drawn for the next epoch where they were drawn ahead (`testbed.engine.batch_order`);
- `step_losses`: the step losses so far (RunInfo.step_losses up to `step`);
- `evaluation`: the evaluation of `epoch` if there was one (the final one, for a run stopped
  between its last epoch and its files);
- `probes`: each probe's `state_dict()`, in the scenario's order;
- `sha256`: the digest of everything else (every tensor's bytes), checked before a run
  continues from it: a flipped bit is refused, never resumed.

The curriculum's position is the epoch, and the stage's samples are derived again from
(seed, p), so neither is stored. A checkpoint is written under a temporary name, flushed to
disk and renamed over the previous one: a kill while writing leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from testbed.engine import device
from testbed.engine.batch_order import BatchOrders
from testbed.engine.optimizer import Optimizer
from testbed.errors import UserError, describe
from testbed.plugin_api.probe import Evaluation, Probe, RunInfo

FORMAT = 1
DEFAULT_EVERY = "60s"
UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Policy:
    """When to write a checkpoint: after every `epochs`-th epoch, and after the first epoch that
    ends `seconds` or more of training after the previous checkpoint (or `TIME_SHARE_LIMIT`
    times as long as writing it took, where that is longer: a checkpoint of 10,000 seeds holds
    gigabytes of step losses and snapshots); always after the last epoch (before the probes
    write their files, where a failure would lose the trained state) unless both are None
    (checkpoints off)."""

    epochs: int | None = None
    seconds: float | None = None

    @property
    def enabled(self) -> bool:
        return self.epochs is not None or self.seconds is not None

    @classmethod
    def parse(cls, spec: int | float | str | None) -> Policy:
        """`50` (epochs), `'30s'`, `'5m'`, `'1h'` (wall time of training), `'off'`; None is
        the default, every 60 s."""
        spec = DEFAULT_EVERY if spec is None else spec
        if isinstance(spec, bool):
            raise UserError(f"--checkpoint-every: expected epochs (50), a time (30s, 5m, 1h) or off, not {spec!r}")
        if isinstance(spec, int):
            spec = str(spec)
        if isinstance(spec, float):
            spec = f"{spec}s"
        text = str(spec).strip().lower()
        if text in ("off", "never", "none"):
            return cls()
        if re.fullmatch(r"\d+", text) and int(text) >= 1:
            return cls(epochs=int(text))
        timed = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|m|min|h)", text)
        if timed:
            return cls(seconds=float(timed.group(1)) * UNITS[timed.group(2)])
        raise UserError(f"--checkpoint-every: expected epochs (50), a time (30s, 5m, 1h) or off, not {spec!r}")


TIME_SHARE_LIMIT = 20  # a timed policy trains at least this many times as long as it spends writing


class Schedule:
    """A policy at work in one training session: says after which epochs to checkpoint."""

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.monotonic):
        self.policy, self.clock = policy, clock
        self.last = clock()
        self.gap = policy.seconds

    def due(self, epoch: int, last_epoch: int) -> bool:
        p = self.policy
        if not p.enabled:
            return False
        if epoch == last_epoch or (p.epochs is not None and epoch % p.epochs == 0):
            return True
        return self.gap is not None and self.clock() - self.last >= self.gap

    def written(self, began: float | None = None) -> None:
        """A checkpoint was written (begun at `began` on the clock, if known)."""
        now = self.clock()
        if began is not None and self.policy.seconds is not None:
            self.gap = max(self.policy.seconds, TIME_SHARE_LIMIT * (now - began))
        self.last = now


@dataclass(frozen=True)
class Checkpointing:
    """What `train` needs to checkpoint: the file, the policy, the identity a checkpoint records
    (and must match to be continued), and whether to continue from the file."""

    file: Path
    policy: Policy
    identity: dict[str, Any]
    resume: bool = False


@dataclass(frozen=True)
class Position:
    """Where a restored run stands: the last epoch completed and what came with it."""

    epoch: int
    step: int
    evaluation: Evaluation | None
    seconds: float


@dataclass
class Live:
    """The live objects of a training session that a checkpoint captures and restores."""

    flat: torch.Tensor
    optimizer: Optimizer
    orders: BatchOrders
    info: RunInfo
    probes: list[Probe]

    def check(self) -> None:
        """Ask every plugin for its state once, before training, so that a plugin whose state
        cannot be checkpointed stops the run at once rather than after hours of training."""
        self.optimizer.rule.state_dict()
        for probe in self.probes:
            probe.state_dict()

    def capture(self, epoch: int, step: int, evaluation: Evaluation | None, seconds: float, identity: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "identity": identity,
            "epoch": epoch,
            "step": step,
            "seconds": seconds,
            "params": self.flat.cpu(),  # the CPU's tensors wherever the run trains: a checkpoint opens anywhere
            "optimizer": {"step_count": self.optimizer.step_count, "rule": device.to(self.optimizer.rule.state_dict(), "cpu")},
            **_orders_state(self.orders),
            "step_losses": self.info.step_losses[:step].clone(),  # the steps run so far, not the NaN rest
            "evaluation": evaluation,
            "probes": [probe.state_dict() for probe in self.probes],
        }

    def restore(self, saved: dict[str, Any]) -> Position:
        if saved.get("format") != FORMAT:
            raise ValueError(f"checkpoint format {saved.get('format')!r}, expected {FORMAT}")
        if len(saved["generators"]) != len(self.orders.generators) or len(saved["probes"]) != len(self.probes):
            raise ValueError("checkpoint of another set of seeds or probes")
        self.flat.copy_(saved["params"])
        self.optimizer.step_count = saved["optimizer"]["step_count"]
        self.optimizer.rule.load_state_dict(device.to(saved["optimizer"]["rule"], self.flat.device))
        self.orders.load_state_dict({"generators": saved["generators"], "next": saved.get("next_order")})
        step = saved["step"]
        self.info.step_losses[:step].copy_(saved["step_losses"])
        for probe, state in zip(self.probes, saved["probes"]):
            probe.load_state_dict(state)
        return Position(saved["epoch"], step, saved["evaluation"], saved["seconds"])


def _orders_state(orders: BatchOrders) -> dict[str, Any]:
    state = orders.state_dict()
    return {"generators": state["generators"], **({"next_order": state["next"]} if state["next"] is not None else {})}


EVALUATION = "__testbed_evaluation__"


def _plain(obj: Any) -> Any:
    """`obj` with every Evaluation as a marked dict (what weights-only loading reads)."""
    if isinstance(obj, Evaluation):
        return {EVALUATION: 1, **{name: getattr(obj, name) for name in ("epoch", "p", "train_loss", "train_acc", "test_loss", "test_acc")}}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _objects(obj: Any) -> Any:
    """The inverse of `_plain`."""
    if isinstance(obj, dict):
        if obj.get(EVALUATION) == 1:
            return Evaluation(**{k: v for k, v in obj.items() if k != EVALUATION})
        return {k: _objects(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_objects(v) for v in obj)
    return obj


def _update(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k, v in obj.items():
            _update(h, k)
            _update(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _update(h, v)
    else:
        h.update(f"{type(obj).__name__}:{obj!r}".encode())


def digest(state: dict[str, Any]) -> str:
    """SHA-256 of a checkpoint's content, its own `sha256` left out."""
    h = hashlib.sha256()
    _update(h, {k: v for k, v in state.items() if k != "sha256"})
    return h.hexdigest()


class CorruptCheckpoint(ValueError):
    """A checkpoint whose content is not what was written (its digest differs, or it cannot be read)."""


def write(file: Path, state: dict[str, Any]) -> None:
    """Replace `file` by `state` (and its digest) atomically: a temporary file, flushed to disk,
    renamed over it. A failure (a full disk) leaves no temporary file and the previous
    checkpoint intact."""
    plain = _plain(state)
    plain["sha256"] = digest(plain)
    tmp = file.with_name(file.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(plain, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(file.parent)


def _sync_directory(folder: Path) -> None:
    """Make a rename durable (a machine that loses power keeps the new name)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read(file: Path, *, mmap: bool = False, check: bool = True) -> dict[str, Any]:
    """A checkpoint's content, checked against its digest (a CorruptCheckpoint if it differs or
    the file cannot be read); with `mmap` and not `check`, its tensors are mapped, not read (for
    a look at the header of a large checkpoint)."""
    try:
        saved = torch.load(file, weights_only=True, mmap=mmap)
    except Exception as exc:  # truncated, not a checkpoint, another format
        raise CorruptCheckpoint(f"it cannot be read ({describe(exc)})") from exc
    if check and saved.get("sha256") != digest(saved):
        raise CorruptCheckpoint("its content differs from its checksum")
    return _objects(saved)


def header(file: Path) -> dict[str, Any]:
    """The identity and epoch of a checkpoint, without reading its tensors."""
    saved = read(file, mmap=True, check=False)
    return {"format": saved.get("format"), "identity": saved.get("identity"), "epoch": saved.get("epoch")}


def difference(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """None if a checkpoint with identity `saved` may be continued by a run of identity
    `current`, else the first difference in words ("training.epochs is 20 there, 30 here")."""
    if saved == current:
        return None
    if saved.get("scenario") != current.get("scenario"):
        there, here = _flatten(yaml.safe_load(saved.get("scenario") or "") or {}), _flatten(yaml.safe_load(current["scenario"]))
        for key in [*here, *(k for k in there if k not in here)]:
            if there.get(key, "<absent>") != here.get(key, "<absent>"):
                return f"scenario field {key} is {_show(there.get(key, '<absent>'))} there, {_show(here.get(key, '<absent>'))} here"
        return "the scenario differs"
    for key in ("testbed", "torch"):
        if saved.get(key) != current.get(key):
            return f"written with {key} {saved.get(key)}, this is {key} {current.get(key)}"
    code = _code_difference(saved.get("code") or {}, current.get("code") or {})
    if code:
        return code
    for old, new in zip(saved.get("plugins", []), current.get("plugins", [])):
        if old != new:
            was, now = (f"{r.get('distribution') or r.get('module')} {r.get('version') or ''}".strip() for r in (old, new))
            return f"written with {new['kind']} plugin '{new['name']}' of {was}, this is {now}"
    return "written by other code"


def _code_difference(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first difference of two `testbed.rundir.code_identity.identity`s in words."""
    if saved == current:
        return None
    if saved.get("testbed_files") != current.get("testbed_files"):
        return "written by other testbed source files (a file was edited since)"
    for key in ("torch", "numpy", "determinism"):
        if saved.get(key) != current.get(key):
            return f"written with {key} {saved.get(key)}, this is {key} {current.get(key)}"
    there, here = saved.get("plugin_files") or {}, current.get("plugin_files") or {}
    for name in sorted(set(there) | set(here)):
        if there.get(name) != here.get(name):
            return f"written by other files of plugin package {name} (a file was edited since)"
    return "written by other code"


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list) and node:
        out = {}
        for i, value in enumerate(node):
            out.update(_flatten(value, f"{prefix}.{i}"))
        return out
    return {prefix: node}


def _show(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
