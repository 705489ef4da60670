"""What a probe plugin builds: an observer of a training run that writes its own outputs, and
what it is told about the run."""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from testbed.engine.model import ParamSpace


@dataclass(frozen=True)
class RunInfo:
    """What probes may know about a run, given to `Probe.start`.

    `seeds` in the order of every per-seed axis and column; `epochs` to train and
    `steps_per_epoch` optimizer steps in each; `space` the layout of the flat (S, P) parameter
    tensor (`space.slices[name]` its columns, `space.shapes[name]` the shape of one seed's
    parameter, `space.views(flat)` name -> (S, *shape) views, `space.size` = P); `scenario` the
    validated scenario (its fields as in the YAML file, defaults filled in). `step_losses`
    (total_steps, S) is filled by the trainer as it goes (NaN until a step has run): the loss of
    every step is where spikes show, so every run keeps it, once, for whichever probes read it."""

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
    """Losses and accuracies per seed, all (S,) tensors, on the training and test sets of the
    vocabulary size `p` in force at `epoch` (epoch 0: before training, with epoch 1's p)."""

    epoch: int
    p: int
    train_loss: torch.Tensor
    train_acc: torch.Tensor
    test_loss: torch.Tensor
    test_acc: torch.Tensor


class Probe(ABC):
    """Base class of probes: every hook is optional and does nothing by default; override what
    you need. Each hook sees every seed at once (tensors carry the seed axis first).

    Order within a run: `start`, `eval_epochs`, `after_epoch(0, ...)` before training, then per
    epoch `after_step` for each optimizer step and `after_epoch`, and at the end `finish`.
    """

    info: RunInfo

    def eval_epochs(self, epochs: int) -> set[int]:
        """Epochs (0 = initialisation) at which this probe needs an `Evaluation`; evaluating
        costs a forward pass over both data sets, so ask only for what you use."""
        return set()

    def start(self, info: RunInfo) -> None:
        """Once, before training. Keeps `info` as `self.info`: call `super().start(info)` when
        overriding."""
        self.info = info

    def after_step(self, step: int, epoch: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """After each optimizer step (`step` from 1, `epoch` from 1): the step's loss (S,),
        computed before the update, and the gradient (S, P) as applied (after clipping). Read,
        do not modify. Called only for probes that override it: it runs every step."""

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        """After each epoch, and once with epoch 0 before training: the parameters (S, P) (the
        live tensor the optimizer updates in place: clone what you keep) and the evaluation of
        this epoch, present at every epoch of `eval_epochs` (and wherever another probe or the
        final epoch asked for one), else None."""

    def finish(self, out: Path) -> dict[str, list]:
        """After training, when the run has a directory `out`: write your files into it and
        return per-seed summary columns, {column: [one value per seed, in info.seeds order]},
        which join summary.json's `per_seed` table."""
        return {}

    @classmethod
    def observes_steps(cls) -> bool:
        return cls.after_step is not Probe.after_step
