"""Which plugin failed, and where: an exception raised while a scenario trains becomes a
`PluginError` naming the plugin (kind, name, distribution), the phase, the epoch and the step.

Training pays nothing for this while nothing fails: the loop keeps its `Position` up to date
(an attribute store per step) inside one try block, and only a failure walks the traceback for
the outermost frame of a method running on (`self`) one of the scenario's plugin objects: the
hook testbed called. That method's name is the phase (start, eval_epochs, after_step,
after_epoch, update, p_at, finish, ...); a norm or an activation runs inside the model, so its
phase is the part of training it ran in (the training step, or evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType

from testbed.engine.gradients import loss_and_grad
from testbed.engine.stage import evaluate
from testbed.errors import PluginError, RunFailure, describe
from testbed.plugin_api.base import Plugin

MODEL_KINDS = ("norm", "activation")  # called inside the model's forward and backward passes
PARTS = ((loss_and_grad.__code__, "the training step"), (evaluate.__code__, "evaluation"))  # else "training"


@dataclass
class Position:
    """Where training is: `epoch` None before the first evaluation (start, eval_epochs) and
    after the last epoch (finish); `step` the optimizer step in progress, counted from 1 as
    probes see it (after an epoch: the steps done)."""

    epoch: int | None = None
    step: int | None = None


def build_failure(plugin: Plugin, exc: BaseException) -> PluginError:
    """A plugin's builder raised."""
    failure = PluginError(plugin.kind, plugin.name, plugin.source, "build", describe(exc))
    failure.__cause__ = exc
    return failure


def failure(exc: BaseException, made: Sequence[tuple[object, Plugin]], at: Position) -> RunFailure:
    """The failure `exc` (raised inside training at `at`) as a one-line error: a PluginError
    when a method of one of the plugin objects `made` is on its traceback, else a RunFailure of
    training itself. The exception stays its `__cause__`, with its traceback."""
    frames = list(_frames(exc))
    part = next((name for frame in frames for code, name in PARTS if frame.f_code is code), "training")
    owners = {id(obj): plugin for obj, plugin in made}
    blamed = next(((owners[id(me)], frame) for frame in frames if id(me := frame.f_locals.get("self")) in owners), None)
    position = {"epoch": at.epoch, "step": at.step if at.epoch is not None else None}
    if blamed is None:
        result: RunFailure = RunFailure("", part, describe(exc), **position)
    else:
        plugin, frame = blamed
        phase = part if plugin.kind in MODEL_KINDS and part != "training" else frame.f_code.co_name
        result = PluginError(plugin.kind, plugin.name, plugin.source, phase, describe(exc), **position)
    result.__cause__ = exc
    return result


def _frames(exc: BaseException) -> Iterator[FrameType]:
    """The frames of exc's traceback, outermost first."""
    tb = exc.__traceback__
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next
