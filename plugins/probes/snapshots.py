"""All weights of every seed every few epochs, for rendering later -> snapshots.npz."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from testbed.plugin import Params, plugin
from testbed.probe import Evaluation, Probe


class SnapshotParams(Params):
    every: int = Field(10, ge=1, description="snapshot every this many epochs (and at 0 and the last)")


class Snapshots(Probe):
    def __init__(self, params: SnapshotParams):
        self.every = params.every
        self.epochs: list[int] = []
        self.flats: list[torch.Tensor] = []

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        if epoch % self.every == 0 or epoch == self.info.epochs:
            self.epochs.append(epoch)
            self.flats.append(flat.detach().clone())

    def finish(self, out: Path) -> dict[str, list]:
        space = self.info.space
        stacked = torch.stack(self.flats)  # (n, S, P)
        arrays = {
            f"param/{name}": stacked[:, :, sl].reshape(len(self.epochs), stacked.shape[1], *space.shapes[name]).numpy()
            for name, sl in space.slices.items()
        }
        np.savez_compressed(
            out / "snapshots.npz",
            epochs=np.asarray(self.epochs),
            seeds=np.asarray(self.info.seeds),
            layout=np.asarray(json.dumps({n: list(s) for n, s in space.shapes.items()})),
            **arrays,
        )
        return {}


@plugin("snapshots", SnapshotParams)
def snapshots(params: SnapshotParams):
    """Every parameter of every seed every `every` epochs (snapshots.npz: param/<name> (n, S, ...))."""
    return Snapshots(params)
