"""What a probe plugin builds: an observer of a training run that writes its own outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from testbed.engine.model import ParamSpace


@dataclass(frozen=True)
class RunInfo:
    """What probes may know about a run. `step_losses` (steps, S) is filled by the trainer as it
    goes (NaN until a step has run): the loss of every step is where spikes show, so every run
    keeps it, once, for whichever probes read it."""

    seeds: list[int]
    epochs: int
    steps_per_epoch: int
    space: ParamSpace
    scenario: Any
    step_losses: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_losses", torch.full((self.total_steps, len(self.seeds)), float("nan")))

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def epoch_of_steps(self) -> torch.Tensor:
        """(steps,) the epoch (from 1) of each step."""
        return torch.arange(self.total_steps, dtype=torch.int32) // self.steps_per_epoch + 1


@dataclass(frozen=True)
class Evaluation:
    """Losses and accuracies per seed, all (S,) tensors, on the current task's samples."""

    epoch: int
    p: int
    train_loss: torch.Tensor
    train_acc: torch.Tensor
    test_loss: torch.Tensor
    test_acc: torch.Tensor


class Probe:
    """Base class: override what you need. Hooks are called for every seed at once."""

    def eval_epochs(self, epochs: int) -> set[int]:
        """Epochs (0 = initialisation) at which this probe needs an `Evaluation`."""
        return set()

    def start(self, info: RunInfo) -> None:
        self.info = info

    def after_step(self, step: int, epoch: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """After each optimizer step: loss (S,) before the update, grad (S, P) as applied."""

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        """After each epoch (and once with epoch 0 before training): flat parameters (S, P)."""

    def finish(self, out: Path) -> dict[str, list]:
        """Write outputs into the run directory; return per-seed summary columns."""
        return {}

    @classmethod
    def observes_steps(cls) -> bool:
        return cls.after_step is not Probe.after_step
