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

    Every seed's parameters are one row of a flat (S, P) tensor. A seed must follow the same
    trajectory alone or among others, bit for bit, so the rule may only combine tensors
    elementwise with correctly rounded operations (+, -, *, /, sqrt, comparisons, where) and
    reduce along the parameter axis of one seed at most; no fused multiply-add (`addcmul`,
    `addcdiv`, `lerp`, `alpha=`/`value=` arguments), no mixing of seeds.
    """

    @abstractmethod
    def update(self, flat: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor, step: int) -> None:
        """Update `flat` (S, P) in place from `grad` (S, P), already clipped if the scenario
        clips. `lr` (1, P) is the learning rate of each coordinate, multipliers and warmup
        applied; `step` counts from 1. Allocate state (shaped like `flat`) on the first call.
        Do not modify `grad` (probes read it after the step) or `lr` (it is reused)."""

    def state_dict(self) -> dict[str, Any]:
        """The rule's state for a checkpoint, taken after an epoch's last step: a dict of
        tensors, numbers, strings, lists and dicts. The default holds every attribute that is
        such data (moments, buffers, counters; hyperparameters too, harmlessly) and the state
        of each torch.Generator attribute, and leaves callables and parameter models out; it
        refuses, with a TypeError naming it, any other value (a numpy array, an object of your
        own): override both methods then."""
        return attribute_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state`, what `state_dict` returned, on a rule freshly built from the
        same parameters: the next `update` must do exactly what it would have done had the run
        never stopped. The default sets the saved attributes back."""
        restore_attributes(self, state)
