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
        """epochs * steps_per_epoch: the length of `step_losses`."""
        return self.epochs * self.steps_per_epoch

    def epoch_of_steps(self) -> torch.Tensor:
        """(steps,) the epoch (from 1) of each step."""
        return torch.arange(self.total_steps, dtype=torch.int32) // self.steps_per_epoch + 1


@dataclass(frozen=True)
class Evaluation:
    """`train_loss`, `train_acc`, `test_loss`, `test_acc`: losses and accuracies per seed, all
    (S,) tensors on the CPU, on the training and test sets of the vocabulary size `p` in force
    at `epoch` (epoch 0: before training, with epoch 1's p)."""

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
    """Base class of probes: observers of a training run that write their own files into the
    run directory. Every hook is optional and does nothing by default; override what you need.
    Each hook sees every seed at once (tensors carry the seed axis first, in `info.seeds`
    order), in the order the scenario lists the probes.

    Order within a run: `start`, `eval_epochs`, `after_epoch(0, ...)` before training, then per
    epoch `after_step` for each optimizer step and `after_epoch`, and at the end `finish`. A run
    resumed from a checkpoint calls `start`, `eval_epochs` and `load_state_dict` instead of the
    hooks up to the checkpoint's epoch, then carries on with the next epoch's `after_step`. The
    run store may instead call `combine` alone, on a probe built only for that.

    Every tensor a hook gets is on the CPU (but `after_step`'s with `steps_on_device`) and is
    the engine's own: read it, never modify it (`flat` is the very parameters training goes on
    with). Write files only in `finish` and `combine`, into the folder given; draw random
    numbers only from a generator of your own (see `state_dict`). A scenario with a probe other
    than the built-ins the fused engine knows trains on the reference engine. An exception in a
    hook stops the run, naming the probe, the hook, the epoch and the step; one in `finish`
    only loses this probe's files.
    """

    info: RunInfo
    """The run, as `start` received it (set by the default `start`)."""

    steps_on_device: ClassVar[bool] = False
    """Class attribute. True where `after_step` works on the device a run trains on: it then gets
    the step's loss and gradient there, reads parameters from `info.live`, and must not bring a
    tensor back to the CPU each step (that waits for the device; gather on the device, read at
    `after_epoch`). False (the default): a run off the CPU copies loss, gradient and parameters
    to the CPU for it after every step, which is correct and slow. On the CPU both are the same."""

    def eval_epochs(self, epochs: int) -> set[int]:
        """Optional. Once, after every probe's `start`, with the number of epochs to train: the
        epochs (0 = initialisation) at which this probe needs an `Evaluation` in `after_epoch`.
        Evaluating costs a forward pass over both data sets, so ask only for what you use.
        Default: none (the last epoch is always evaluated)."""
        return set()

    def start(self, info: RunInfo) -> None:
        """Optional. Once, before training, after the parameters are initialised (and again, on a
        newly built probe, when a stopped run continues). Allocate per-seed state here
        (`len(info.seeds)` rows). The default keeps `info` as `self.info`: call
        `super().start(info)` when overriding."""
        self.info = info

    def after_step(self, step: int, epoch: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """Optional. After each optimizer step (`step` from 1 over the whole run, `epoch` from 1):
        the step's batch loss (S,), computed before the update, and the gradient (S, P) as
        applied (after clipping), on the CPU unless `steps_on_device`; `info.params` (or
        `info.live`) holds the parameters after the update. Called only for probes that override
        it: it runs every step, so keep it cheap (gather into preallocated tensors, write at
        `finish`)."""

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        """Optional. After each epoch, and once with epoch 0 before training (not again when a run
        resumes): the parameters (S, P) on the CPU (the live tensor, or its copy brought up to
        date: clone what you keep, `info.space.views(flat)` names its columns) and the
        evaluation of this epoch, present at every epoch of `eval_epochs` (and wherever another
        probe or the final epoch asked for one), else None. A checkpoint may follow it."""

    def finish(self, out: Path) -> dict[str, list]:
        """Optional. Once, after training, when the run has a directory `out` (a staging folder
        until the run completes; not called when training without a directory): write your files
        into it and return per-seed summary columns, {column: [one value per seed, in info.seeds
        order]} (JSON numbers or strings), which join summary.json's `per_seed` table. If it
        raises, whatever it added to `out` is removed and the run is kept without it."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Optional. What this probe has gathered, for a checkpoint taken after an epoch's
        `after_epoch` (and asked once before training, so that state no checkpoint can hold
        stops the run at once): tensors, numbers, strings, `Evaluation`s, lists and dicts of
        them; tensors as they are (the checkpoint is written before training goes on). The
        default holds every attribute that is such data (and the state of each
        torch.Generator attribute), but `info` (given again by `start`) and references to the
        live parameters (`info.params` and `info.live`, linked again on load); it leaves
        callables and parameter models out and refuses, with a TypeError naming it, any other
        value (a numpy array, an object of your own): override both methods then."""
        info = getattr(self, "info", None)
        params, live = getattr(info, "params", None), getattr(info, "live", None)
        linked = [name for name, value in vars(self).items() if params is not None and value is params]
        on_device = [name for name, value in vars(self).items() if live is not None and value is live and value is not params]
        skip = ("info", *linked, *on_device)
        return {**attribute_state(self, skip=skip, records=(Evaluation,), configuration=(RunInfo,)), "live_params": linked, "device_params": on_device}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Optional. Continue from `state`, what `state_dict` returned, after `start` and
        `eval_epochs` when a stopped run continues: the files `finish` writes must come out as
        if the run had never stopped. The default sets the saved attributes back and points
        those that referred to the live parameters at `info.params` (or `info.live`)."""
        restore_attributes(self, state)
        for name in state["live_params"]:
            setattr(self, name, self.info.params)
        for name in state.get("device_params", []):
            setattr(self, name, self.info.live)

    def combine(self, parts: list[tuple[Path, list[int]]], seeds: list[int], out: Path) -> bool:
        """Optional, instead of a run: write into `out` the files `finish` would have written for a
        run of `seeds` (in that order), from finished runs of the same scenario on other seed
        sets, and return True. `parts` are (run directory, the seeds taken from it), each seed
        wanted coming from exactly one. Called by the run store, on a probe built for it alone
        (no `start`, no `self.info`), when it serves a seed set from the runs it holds instead
        of training again; a seed's trajectory does not depend on the seeds beside it, so each
        per-seed file is rows or slices of the parts' (`testbed.rundir.seed_merge` has helpers
        for CSV and .npz files). `finish`'s summary columns are combined without you.

        Overriding it is what lets the store keep and combine this scenario's runs. The default
        returns False, which means this probe cannot: then a scenario with it is not stored and
        trains straight into its run directory every time."""
        return False

    @classmethod
    def observes_steps(cls) -> bool:
        """Whether the class overrides `after_step` (only those get it, every step). The
        engine's question; not to be overridden."""
        return cls.after_step is not Probe.after_step
