"""Gradient norm of every parameter tensor, per seed -> grad_norms.npz."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.probe import Probe, RunInfo
from testbed.rundir import seed_merge


class GradNormParams(Params):
    per: Literal["epoch", "step"] = Field("epoch", description="store every step, or the mean over each epoch's steps")


class GradNorms(Probe):
    def __init__(self, params: GradNormParams):
        self.per = params.per

    def start(self, info: RunInfo) -> None:
        super().start(info)
        self.slices = list(info.space.slices.values())
        self.names = list(info.space.slices) + ["total"]
        rows = info.total_steps if self.per == "step" else info.epochs
        self.norms = torch.zeros(rows, len(info.seeds), len(self.names))

    def after_step(self, step: int, epoch: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        # each parameter's squares summed along the row (a contiguous inner sum rounds the same on
        # every CPU and for any number of seeds; a product with an indicator matrix goes through BLAS)
        sq = grad * grad
        per_group = torch.stack([sq[:, sl].sum(-1) for sl in self.slices], 1)  # (S, G)
        norms = torch.cat([per_group, per_group.sum(-1, keepdim=True)], 1).sqrt_()
        if self.per == "step":
            self.norms[step - 1] = norms
        else:
            self.norms[epoch - 1] += norms / self.info.steps_per_epoch

    def state_dict(self) -> dict:
        return {"norms": self.norms}  # an epoch's mean is complete at the checkpoint, which follows the epoch

    def load_state_dict(self, state: dict) -> None:
        self.norms.copy_(state["norms"])

    def finish(self, out: Path) -> dict[str, list]:
        np.savez_compressed(
            out / "grad_norms.npz",
            norms=self.norms.numpy(),
            names=np.asarray(self.names),
            per=np.asarray(self.per),
            seeds=np.asarray(self.info.seeds),
        )
        return {}

    def combine(self, parts, seeds, out: Path) -> bool:
        seed_merge.seed_npz(parts, seeds, "grad_norms.npz", out, seed_axis=lambda key: 1 if key == "norms" else None)
        return True


@plugin("grad_norms", GradNormParams)
def grad_norms(params: GradNormParams):
    """Per-parameter and total gradient norms of every seed (grad_norms.npz: norms (rows, S, G))."""
    return GradNorms(params)
