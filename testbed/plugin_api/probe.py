"""What a probe plugin builds: an observer of a training run that writes its own outputs, and
what it is told about the run."""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from testbed.engine.model import ParamSpace
from testbed.plugin_api.state import attribute_state, restore_attributes


@dataclass(frozen=True)
class RunInfo:
    """What probes may know about a run, given to `Probe.start`.

    `seeds` in the order of every per-seed axis and column; `epochs` to train and
    `steps_per_epoch` optimizer steps in each; `space` the layout of the flat (S, P) parameter
    tensor (`space.slices[name]` its columns, `space.shapes[name]` the shape of one seed's
    parameter, `space.views(flat)` name -> (S, *shape) views, `space.size` = P); `scenario` the
    validated scenario (its fields as in the YAML file, defaults filled in); `params` the live
    (S, P) parameters, the tensor the optimizer updates in place and `after_epoch` receives
    (None only where a test builds a RunInfo by hand). `step_losses` (total_steps, S) is filled
    by the trainer as it goes (NaN until a step has run): the loss of every step is where spikes
    show, so every run keeps it, once, for whichever probes read it (and checkpoints it). For a
    run off the CPU (`training.device`), `params` is a CPU copy brought up to date before each
    `after_epoch`, `live` the parameters on the device (elsewhere `live` is `params`), and
    `step_losses` is filled an epoch at a time, before that epoch's `after_epoch`, unless a
    probe that reads steps on the CPU asks for every step."""

    seeds: list[int]
    epochs: int
    steps_per_epoch: int
    space: ParamSpace
    scenario: Any
    params: torch.Tensor | None = None
    live: torch.Tensor | None = None
    step_losses: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_losses", torch.full((self.total_steps, len(self.seeds)), float("nan")))
        if self.live is None:
            object.__setattr__(self, "live", self.params)

    @property
    def off_host(self) -> bool:
        """Whether training runs apart from `params` (on a device: see `live`)."""
        return self.live is not self.params

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


METRIC_FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc")


def stack_evaluations(evaluations: list[Evaluation]) -> dict[str, Any]:
    """A list of evaluations as a few tensors ((n, S) per metric): what a probe that keeps
    every evaluation puts in its checkpoint state (one tensor per metric, not four per epoch)."""
    return {
        "epoch": [ev.epoch for ev in evaluations],
        "p": [ev.p for ev in evaluations],
        **{name: torch.stack([getattr(ev, name) for ev in evaluations]) if evaluations else None for name in METRIC_FIELDS},
    }


def unstack_evaluations(state: dict[str, Any]) -> list[Evaluation]:
    """The inverse of `stack_evaluations`, value for value."""
    return [
        Evaluation(epoch, p, *(state[name][i] for name in METRIC_FIELDS)) for i, (epoch, p) in enumerate(zip(state["epoch"], state["p"]))
    ]


class Probe(ABC):
    """Base class of probes: every hook is optional and does nothing by default; override what
    you need. Each hook sees every seed at once (tensors carry the seed axis first).

    Order within a run: `start`, `eval_epochs`, `after_epoch(0, ...)` before training, then per
    epoch `after_step` for each optimizer step and `after_epoch`, and at the end `finish`. A run
    resumed from a checkpoint calls `start`, `eval_epochs` and `load_state_dict` instead of the
    hooks up to the checkpoint's epoch, then carries on with the next epoch's `after_step`.
    """

    info: RunInfo
    steps_on_device: ClassVar[bool] = False
    """True where `after_step` works on the device a run trains on: it then gets the step's loss
    and gradient there, reads parameters from `info.live`, and must not bring a tensor back to
    the CPU each step (that waits for the device; gather on the device, read at `after_epoch`).
    False (the default): a run off the CPU copies loss, gradient and parameters to the CPU for
    it after every step, which is correct and slow."""

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
        computed before the update, and the gradient (S, P) as applied (after clipping), on
        the CPU (see `steps_on_device`). Read, do not modify. Called only for probes that
        override it: it runs every step."""

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

    def state_dict(self) -> dict[str, Any]:
        """What this probe has gathered, for a checkpoint taken after an epoch's `after_epoch`:
        tensors, numbers, strings, `Evaluation`s, lists and dicts of them. The default holds
        every attribute that is such data (and the state of each torch.Generator attribute),
        but `info` (given again by `start`) and references to the live parameters
        (`info.params` and `info.live`, linked again on load); it leaves callables and parameter
        models out and refuses, with a TypeError naming it, any other value (a numpy array, an
        object of your own): override both methods then."""
        info = getattr(self, "info", None)
        params, live = getattr(info, "params", None), getattr(info, "live", None)
        linked = [name for name, value in vars(self).items() if params is not None and value is params]
        on_device = [name for name, value in vars(self).items() if live is not None and value is live and value is not params]
        skip = ("info", *linked, *on_device)
        return {**attribute_state(self, skip=skip, records=(Evaluation,), configuration=(RunInfo,)), "live_params": linked, "device_params": on_device}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`, what `state_dict` returned, after `start`: the files `finish`
        writes must come out as if the run had never stopped. The default sets the saved
        attributes back and points those that referred to the live parameters at `info.params`
        (or `info.live`)."""
        restore_attributes(self, state)
        for name in state["live_params"]:
            setattr(self, name, self.info.params)
        for name in state.get("device_params", []):
            setattr(self, name, self.info.live)

    def combine(self, parts: list[tuple[Path, list[int]]], seeds: list[int], out: Path) -> bool:
        """Write into `out` the files `finish` would have written for a run of `seeds`, from
        finished runs of the same scenario on other seed sets: `parts` are (run directory, the
        seeds taken from it), each seed wanted coming from exactly one. The run store uses it
        to serve a seed set from the runs it holds instead of training again; a seed's
        trajectory does not depend on the seeds beside it, so each per-seed file is rows or
        slices of the parts' (`testbed.rundir.seed_merge` has helpers for CSV and .npz files).
        Return False where this probe cannot (the default: then a seed set is served only by
        a run of exactly those seeds); `finish`'s summary columns are combined without you."""
        return False

    @classmethod
    def observes_steps(cls) -> bool:
        return cls.after_step is not Probe.after_step
