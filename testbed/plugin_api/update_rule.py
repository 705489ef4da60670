"""What an optimizer plugin builds: the elementwise update rule, and the parameters every
optimizer accepts. Clipping and the learning-rate schedule are shared by all optimizers and
applied around the rule by `testbed.engine.optimizer.Optimizer`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from pydantic import Field

from testbed.plugin_api.base import Params
from testbed.plugin_api.state import attribute_state, restore_attributes


class OptimizerParams(Params):
    """Parameters every optimizer plugin accepts; an optimizer's own parameter model subclasses
    this. The engine applies these four itself, before the rule sees the gradient."""

    lr: float = Field(3e-3, gt=0, description="base learning rate")
    lr_multipliers: dict[str, float] = Field(
        default_factory=dict,
        description="per-module factors on lr, e.g. {mlp: 0.1} (the papers' MLP learning-rate discount)",
    )
    clip_grad_norm: float | None = Field(None, gt=0, description="clip each seed's global gradient norm to this")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warmup over this many steps")


class UpdateRule(ABC):
    """Base class of optimizers' update rules. Required: `update`; optional: `state_dict` and
    `load_state_dict`, for checkpoints.

    One rule serves every seed of a run: each seed's parameters are one row of a flat (S, P)
    tensor on `training.device`, float32. The engine (`testbed.engine.optimizer.Optimizer`)
    does what every optimizer shares around it: it clips each seed's gradient
    (`clip_grad_norm`) and gives the rule the learning rate of every coordinate
    (`lr_multipliers`, `warmup_steps`), so the rule implements only its own arithmetic. A
    curriculum that resets the optimizer (`Curriculum.resets_at`) builds a new rule mid-run.

    A seed must follow the same trajectory alone or among others, bit for bit, so the rule may
    only combine tensors elementwise with correctly rounded operations (+, -, *, /, sqrt, sign,
    comparisons, where) and reduce along the parameter axis of one seed at most; no fused
    multiply-add (`addcmul`, `addcdiv`, `lerp`, `alpha=`/`value=` arguments: vectorised kernels
    round them differently at different positions of a tensor), no mixing of seeds, no
    randomness but from a generator of its own (see `state_dict`).
    """

    @abstractmethod
    def update(self, flat: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor, step: int) -> None:
        """Required. Called after every training step's gradient, once for all seeds, before
        the probes' `after_step`; returns nothing.

        Update `flat` (S, P), every seed's parameters, in place. `grad` (S, P) is the gradient
        of each seed's mean batch loss, already clipped if the scenario clips; `lr` (1, P) the
        learning rate of each coordinate, multipliers and warmup applied (it broadcasts over
        seeds); `step` counts from 1 (for bias corrections), and from 1 again after a reset.
        All tensors are on the training device: allocate state (moments, buffers, shaped like
        `flat`, e.g. `torch.zeros_like(flat)`) on the first call, there. Do not modify `grad`
        (probes read it after the update) or `lr` (the same tensor comes again)."""

    def state_dict(self) -> dict[str, Any]:
        """Optional. The rule's state for a checkpoint, taken after an epoch's last step (and
        asked once before training, so that state no checkpoint can hold stops the run at once):
        a dict of tensors, numbers, strings, lists and dicts (read back with
        `torch.load(weights_only=True)`, which accepts nothing else). Tensors may be returned
        as they are, on the training device: the engine copies them to the CPU.

        The default holds every attribute that is such data (moments, buffers, counters;
        hyperparameters too, harmlessly) and the state of each torch.Generator attribute, and
        leaves callables and parameter models out; it refuses, with a TypeError naming it, any
        other value (a numpy array, an object of your own): override both methods then."""
        return attribute_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Optional. Continue from `state`, what `state_dict` returned, on a rule freshly built
        from the same parameters, before its first `update` when a stopped run continues (its
        tensors moved to the training device): the next `update` must do exactly what it would
        have done had the run never stopped. The default sets the saved attributes back."""
        restore_attributes(self, state)
