"""The fused engine's side of the training loop: hands an epoch's steps and an evaluation to
the kernels, with the loop's own objects (the flat parameters, the `Optimizer` and its rule's
state, the stage, the batch order, `RunInfo.step_losses`), so that checkpoints, resets and
probes work as they do with the reference engine."""

from __future__ import annotations

import math
import sys

import numba
import numpy as np
import torch

from testbed.config.schema import Scenario
from testbed.engine.fused import kernels as K
from testbed.engine.stage import Stage, eval_table
from testbed.plugin_api.probe import Evaluation


def layout(space) -> np.ndarray:
    """The offsets of the parameters in a flat row (kernels.TOK ... B2), and its length."""
    return np.array([sl.start for sl in space.slices.values()] + [space.size], dtype=np.int64)


def norm_code(norm) -> tuple[int, np.ndarray]:
    """A built-in norm object as the kernels' (kind, (eps, radius, profile))."""
    kind = type(norm).__name__  # the built-ins (`coverage.uncovered` checked them)
    if kind == "RadialNorm":
        return (K.RMS if norm.rms else K.L2), np.array([norm.eps, 0.0, 0.0])
    if kind == "SmoothNorm":
        shapes = sys.modules[type(norm).__module__]._SHAPES
        shape = next(i for i, pair in enumerate(shapes.values()) if pair[0] is norm.poly)
        return K.SMOOTH, np.array([norm.eps, norm.R, float((K.LINEAR, K.CUBIC, K.QUINTIC)[shape])])
    return K.IDENTITY, np.zeros(3)


def power(base: float, n: int) -> float:
    """base^n by repeated squaring: the same float64 rounding on every machine (Python's **
    calls the C library's pow, which glibc picks per CPU)."""
    result, b = 1.0, base
    while n:
        if n & 1:
            result *= b
        b *= b
        n >>= 1
    return result


class FusedEngine:
    """Runs a scenario's steps and evaluations in the fused kernels."""

    def __init__(self, scenario: Scenario, components):
        self.arch, self.space, self.optimizer = components.arch, components.space, components.optimizer
        self.layout = layout(self.space)
        self.norm1, self.prm1 = norm_code(self.arch.embedding_norm)
        self.norm2, self.prm2 = norm_code(self.arch.mlp_norm)
        self.act = K.GELU if scenario.model.activation.name == "gelu" else K.RELU
        self.absent = np.array([i for name in self.arch.absent() for i in range(*self.space.slices[name].indices(self.space.size))], dtype=np.int64)
        self._table: tuple[Stage, np.ndarray, np.ndarray] | None = None

    def _rule(self, flat: torch.Tensor) -> tuple[int, np.ndarray, torch.Tensor, torch.Tensor, bool]:
        """The update rule as (kind, parameters, state tensors, fresh): the state is the rule's
        own tensors (created as the rule would at its first step), so checkpoints hold it."""
        rule, params = self.optimizer.rule, self.optimizer.params
        clip = -1.0 if params.clip_grad_norm is None else float(params.clip_grad_norm)
        if type(rule).__name__ == "SGD":
            fresh = rule.buf is None
            if fresh:
                rule.buf = torch.zeros_like(flat)
            oprm = np.array([0.0, 0.0, 0.0, rule.wd, rule.mu, float(rule.nesterov), clip])
            return K.SGD, oprm, rule.buf, rule.buf, fresh
        if rule.m is None:
            rule.m, rule.v = torch.zeros_like(flat), torch.zeros_like(flat)
        oprm = np.array([rule.b1, rule.b2, rule.eps, rule.wd, 0.0, 0.0, clip])
        return (K.ADAMW if rule.decoupled else K.ADAM), oprm, rule.m, rule.v, False

    def _schedule(self, first: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Warm-up factors and Adam's bias corrections of optimizer steps first .. first+n-1."""
        steps = range(first, first + n)
        factors = np.array([self.optimizer.lr_factor(s) for s in steps])
        rule = self.optimizer.rule
        b1, b2 = getattr(rule, "b1", 0.0), getattr(rule, "b2", 0.0)
        bc1 = np.array([1.0 - power(b1, s) for s in steps])
        bc2 = np.array([math.sqrt(1.0 - power(b2, s)) for s in steps])
        return factors, bc1, bc2

    def steps(self, flat: torch.Tensor, data: Stage, perm: torch.Tensor, B: int, first_sample: int, n_steps: int,
              losses: torch.Tensor, loss_row: int, grad: torch.Tensor | None) -> None:
        """`n_steps` steps of every seed from sample `first_sample` of this epoch's order;
        losses into losses[loss_row:], the last step's applied gradient into `grad` if given."""
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]  # numba.config is set at import; numba ships no type information
        kind, oprm, m1, m2, fresh = self._rule(flat)
        factors, bc1, bc2 = self._schedule(self.optimizer.step_count + 1, n_steps)
        keep = grad is not None
        K.train_steps(
            flat.numpy(), m1.numpy(), m2.numpy(), grad.numpy() if keep else np.empty((1, 1), np.float32), losses.numpy(), loss_row,
            self.layout, data.train_rows.numpy(), data.train_labels.numpy(), perm.numpy(), first_sample, B, n_steps,
            data.scored or self.arch.n_tokens, self.norm1, self.prm1, self.norm2, self.prm2, self.act,
            self.optimizer.base_lr[0].numpy(), factors, bc1, bc2, kind, oprm, self.absent, fresh, keep,
        )
        self.optimizer.step_count += n_steps

    def evaluate(self, flat: torch.Tensor, data: Stage, epoch: int) -> Evaluation:
        """Loss and accuracy per seed on the stage's training and test samples."""
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]  # numba.config is set at import; numba ships no type information
        if self._table is None or self._table[0] is not data:
            rows, labels = eval_table(data)
            self._table = (data, rows.numpy(), labels.numpy())
        _, rows, labels = self._table
        out = np.empty((flat.shape[0], 4))
        K.evaluate(flat.numpy(), self.layout, rows, labels, data.last.numpy(), data.train_weight.numpy(), data.test_weight.numpy(),
                   data.scored or self.arch.n_tokens, self.norm1, self.prm1, self.norm2, self.prm2, self.act, out)
        metrics = torch.from_numpy(out).float()
        return Evaluation(epoch, data.p, *(metrics[:, i].clone() for i in range(4)))
