"""Warm start: a run's initial weights taken from another run's snapshot (`model.init: {run: DIR}`).

Seed s starts from seed s of the source run at the snapshot epoch asked for (default: its last),
so a fine-tuning study stays paired with the run it starts from. The source may have fewer
token embeddings than this model (a p = 2 model fine-tuned on p = 10): the token rows beyond
`keep_tokens` (default: all the source has) are drawn afresh, as this scenario's own
initialisation draws them. Every other parameter must have the same shape in both.

Only snapshots.npz is read, and only its small header (layout, epochs, seeds) to check a
scenario, so that validating a study of many cells stays cheap; the weights are read when the
run starts. The store keys a warm-started run by the content of that file, not by its path.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testbed.errors import UserError

SNAPSHOTS = "snapshots.npz"
FIELD = "model.init.run"


@dataclass(frozen=True)
class Source:
    """The header of a source run's snapshots: parameter shapes, snapshot epochs, seeds."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    epochs: list[int]
    seeds: list[int]

    @classmethod
    def read(cls, run: str | Path) -> Source:
        path = Path(run)
        file = path / SNAPSHOTS
        if not path.is_dir():
            raise UserError(f"{FIELD}: {run}: no such run directory")
        if not file.exists():
            raise UserError(f"{FIELD}: {file}: missing; the source run needs the snapshots probe (probes: [..., snapshots])")
        try:
            with np.load(file, allow_pickle=False) as z:
                layout = json.loads(str(z["layout"]))
                epochs = [int(e) for e in z["epochs"]]
                seeds = [int(s) for s in z["seeds"]]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise UserError(f"{FIELD}: {file}: unreadable ({type(exc).__name__}: {str(exc).strip()[:120]})") from None
        return cls(path, {n: tuple(s) for n, s in layout.items()}, epochs, seeds)

    def problems(self, shapes: dict[str, tuple[int, ...]], seeds: list[int], epoch: int | None, keep_tokens: int | None) -> list[tuple[str, str]]:
        """Why this source cannot start a model of `shapes` on `seeds` (empty: it can)."""
        out: list[tuple[str, str]] = []
        differ = [
            f"{name} {list(self.shapes[name]) if name in self.shapes else 'missing'} (this model {list(shape)})"
            for name, shape in shapes.items()
            if self.shapes.get(name, ())[name == "tok_emb" :] != shape[name == "tok_emb" :]  # any number of token rows
        ]
        if differ:
            out.append((FIELD, f"{self.path} has other shapes: {', '.join(differ)}"))
        if epoch is not None and epoch not in self.epochs:
            out.append(("model.init.epoch", f"{self.path} has no snapshot of epoch {epoch} (it has {_listed(self.epochs)})"))
        missing = sorted(set(seeds) - set(self.seeds))
        if missing:
            out.append((FIELD, f"{self.path} has no seed {_listed(missing)} (it has {_listed(self.seeds)})"))
        if keep_tokens is not None and "tok_emb" in self.shapes and keep_tokens > min(self.shapes["tok_emb"][0], shapes["tok_emb"][0]):
            out.append(("model.init.keep_tokens", f"must be <= {min(self.shapes['tok_emb'][0], shapes['tok_emb'][0])}, the token embeddings both models have"))
        return out

    def digest(self) -> str:
        """SHA-256 of the snapshots file: what the store keys a warm-started run by."""
        h = hashlib.sha256()
        with open(self.path / SNAPSHOTS, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def weights(self, epoch: int | None, seeds: list[int]) -> dict[str, np.ndarray]:
        """Every parameter at `epoch` (None: the last snapshot) for `seeds`, as (S, *shape)."""
        e = self.epochs.index(self.epochs[-1] if epoch is None else epoch)
        rows = [self.seeds.index(s) for s in seeds]
        with np.load(self.path / SNAPSHOTS, allow_pickle=False) as z:
            return {name: z[f"param/{name}"][e][rows] for name in self.shapes}


def start_from(source: Source, epoch: int | None, keep_tokens: int | None, fresh: dict[str, np.ndarray], seeds: list[int]) -> dict[str, np.ndarray]:
    """The initial parameters: the source's at `epoch`, with the token rows from `keep_tokens`
    on (default: from the source's count on) taken from `fresh`, this model's own draws."""
    theirs = source.weights(epoch, seeds)
    out = dict(fresh)
    for name, values in theirs.items():
        if name == "tok_emb":
            keep = min(values.shape[1], fresh[name].shape[1]) if keep_tokens is None else keep_tokens
            rows = fresh[name].copy()
            rows[:, :keep] = values[:, :keep]
            out[name] = rows
        else:
            out[name] = values
    return out


def _listed(values: list[int], shown: int = 8) -> str:
    values = sorted(values)
    head = ", ".join(str(v) for v in values[:shown])
    return head if len(values) <= shown else f"{head}, ... {values[-1]} ({len(values)} in all)"
