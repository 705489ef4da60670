"""The loss of every optimizer step, where spikes show -> step_loss.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from testbed.plugin import Params, plugin
from testbed.probe import Probe, RunInfo


class StepLossRecorder(Probe):
    """Keeps the (steps, S) losses in a preallocated tensor: one copy per step."""

    def start(self, info: RunInfo) -> None:
        super().start(info)
        self.losses = torch.full((info.total_steps, len(info.seeds)), float("nan"))
        self.epoch_of = torch.zeros(info.total_steps, dtype=torch.int32)

    def after_step(self, step: int, epoch: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        self.losses[step - 1].copy_(loss)
        self.epoch_of[step - 1] = epoch


class StepLoss(StepLossRecorder):
    def finish(self, out: Path) -> dict[str, list]:
        np.savez_compressed(
            out / "step_loss.npz",
            loss=self.losses.numpy(),
            epoch=self.epoch_of.numpy(),
            seeds=np.asarray(self.info.seeds),
        )
        return {}


@plugin("step_loss")
def step_loss(params: Params):
    """Training loss of every optimizer step for every seed (step_loss.npz: loss (steps, S), epoch, seeds)."""
    return StepLoss()
