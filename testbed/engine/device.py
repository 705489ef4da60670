"""Where a run's training state lives (`training.device`).

Every random draw (data, initialisation, batch order, a curriculum's fresh embeddings) is made
on the CPU from the seed's own generator and then moved, so a seed starts from the same numbers
on every device; only the arithmetic runs on the device. Results are bit-identical per device
(a seed alone equals the seed among others, the same run twice is identical) where the
device's kernels are deterministic, not across devices."""

from __future__ import annotations

from typing import Any

import torch


def resolve(name: str) -> str:
    """The device a scenario's `training.device` names on this machine: `auto` is cuda where
    available, else mps, else cpu; the others as written."""
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def available(name: str) -> str | None:
    """Why `name` cannot be used here (None where it can)."""
    kind = torch.device(name).type
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available to this torch (a CPU-only build, or no GPU)"
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            return "MPS is not available on this machine"
    return None


def to(obj: Any, device: torch.device | str) -> Any:
    """`obj` with every tensor inside (dicts, lists, tuples) moved to `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to(v, device) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(to(v, device) for v in obj)
    return obj
