"""Vectorized optimizers: features every optimizer shares (per-module learning-rate multipliers,
per-seed gradient clipping, linear warmup) around a plugin's elementwise update rule
(`testbed.plugin_api.update_rule`).

Parameters and gradients are flat (S, P) tensors. Update rules use only correctly rounded
elementwise operations (no fused multiply-add), so a seed's update is bit-identical whatever
other seeds share the tensor.
"""

from __future__ import annotations

import torch

from testbed.engine import arithmetic
from testbed.engine.model import ParamSpace
from testbed.plugin_api.update_rule import OptimizerParams, UpdateRule


class Optimizer:
    """Applies clipping and the learning-rate schedule, then the plugin's update rule."""

    def __init__(self, rule: UpdateRule, params: OptimizerParams, space: ParamSpace):
        self.rule = rule
        self.params = params
        self.base_lr = (params.lr * space.per_coordinate(params.lr_multipliers)).unsqueeze(0)
        self.step_count = 0
        self._lr_cache: tuple[float, torch.Tensor] | None = None

    def to(self, device: torch.device) -> None:
        """Keep the learning rates on the parameters' device (the rule's state follows the
        parameters it is made from)."""
        self.base_lr = self.base_lr.to(device)
        self._lr_cache = None

    def lr_factor(self, step: int) -> float:
        w = self.params.warmup_steps
        return min(1.0, step / w) if w else 1.0

    def lr(self, step: int) -> torch.Tensor:
        factor = self.lr_factor(step)
        if self._lr_cache is None or self._lr_cache[0] != factor:
            self._lr_cache = (factor, self.base_lr * factor if factor != 1.0 else self.base_lr)
        return self._lr_cache[1]

    def reset(self, rule: UpdateRule) -> None:
        """Start afresh with a newly built rule: its state, the step count and the warmup."""
        self.rule = rule
        self.step_count = 0
        self._lr_cache = None

    def step(self, flat: torch.Tensor, grad: torch.Tensor) -> None:
        self.step_count += 1
        if self.params.clip_grad_norm is not None:
            clip_per_seed(grad, self.params.clip_grad_norm)
        self.rule.update(flat, grad, self.lr(self.step_count), self.step_count)


def clip_per_seed(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale each seed's gradient (a row of `grad`) in place so its norm is at most max_norm."""
    norms = arithmetic.of(grad).norm(grad, dim=1, keepdim=True)
    factor = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    grad.mul_(factor)
    return norms.squeeze(1)
