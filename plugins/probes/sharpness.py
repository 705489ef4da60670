"""Sharpness every few steps (edge of stability, Cohen et al. 2022, 2023): the largest
eigenvalue of the Hessian of each seed's training loss and, when the optimizer is Adam, of the
Adam-preconditioned Hessian P^-1 H -> sharpness.npz. Definitions and the Lanczos method:
`testbed.forensics.hessian`; gradient descent is stable along the top eigenvector while the
sharpness is below 2 / lr, Adam while the preconditioned sharpness is below
(2 + 2 beta1) / ((1 - beta1) lr).

Adam's second moment is followed step by step from the gradients the probe is shown (those
the optimizer applied, after clipping), so P is the optimizer's own, as long as the curriculum
does not reset the optimizer mid-run (then the probe restarts it too) and there is no L2
weight decay (plain Adam's weight_decay adds to the gradient a term the probe does not see;
AdamW's decoupled decay is fine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.probe import Probe, RunInfo
from testbed.rundir import seed_merge

ADAM = ("adam", "adamw")


class SharpnessParams(Params):
    every: int = Field(640, ge=1, description="measure every this many optimizer steps (and after the last)")
    iterations: int = Field(20, ge=2, description="Lanczos iterations (Hessian-vector products) per measurement")
    sample: int | None = Field(None, ge=1, description="the first this many training sequences of each seed (default: all)")
    preconditioned: bool = Field(True, description="with Adam, also the preconditioned sharpness lambda_max(P^-1 H)")


class Sharpness(Probe):
    def __init__(self, params: SharpnessParams):
        self.params = params
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []
        self.pre: list[torch.Tensor] = []

    def start(self, info: RunInfo) -> None:
        super().start(info)
        opt = info.scenario.optimizer
        self.adam = opt.name in ADAM and self.params.preconditioned
        self.v = torch.zeros(len(info.seeds), info.space.size) if self.adam else None
        self.t = 0
        self._model = None  # (architecture, curriculum), built on first use; not state
        self._data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _built(self):
        if self._model is None:
            from testbed.engine.loop import build

            c = build(self.info.scenario.model_copy(update={"probes": []}))
            self._model = (c.arch, c.curriculum)
        return self._model

    def after_step(self, step: int, epoch: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        if self.adam:
            if (step - 1) % self.info.steps_per_epoch == 0 and epoch > 1 and "optimizer" in self._built()[1].resets_at(epoch):
                self.v.zero_()
                self.t = 0
            b2 = self.info.scenario.optimizer.betas[1]
            self.t += 1
            self.v.mul_(b2).add_(grad * grad * (1.0 - b2))
        if step % self.params.every == 0 or step == self.info.total_steps:
            self.measure(step, epoch)

    def _rows(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        from testbed.engine.model import pair_index
        from testbed.engine.task import make_dataset

        arch, curriculum = self._built()
        p = curriculum.p_at(max(epoch, 1))
        if p not in self._data:
            task, seeds = self.info.scenario.task, list(self.info.seeds)
            ds = make_dataset(seeds, p, task.seq_len, task.sparsity, task.n_train, task.n_test, task.test_split)
            n = self.params.sample or task.n_train
            scored = p if curriculum.restricts_logits() else None  # the tokens the output layer scores, as in training
            self._data = {p: (pair_index(ds.train.tokens[:, :n], arch.n_tokens), ds.train.labels[:, :n], scored)}
        return self._data[p]

    def measure(self, step: int, epoch: int) -> None:
        from testbed.forensics.hessian import adam_preconditioner, sharpness

        arch, _ = self._built()
        index, labels, scored = self._rows(epoch)
        pre = None
        if self.adam:
            opt = self.info.scenario.optimizer
            multipliers = self.info.space.per_coordinate(opt.lr_multipliers).unsqueeze(0)
            pre = adam_preconditioner(self.v, max(self.t, 1), opt.betas[1], opt.eps, multipliers)
        top, top_pre = sharpness(arch, self.info.space, self.info.params, index, labels, list(self.info.seeds),
                                 preconditioner=pre, iterations=self.params.iterations, scored=scored)
        self.steps.append(step)
        self.values.append(top)
        if top_pre is not None:
            self.pre.append(top_pre)

    def state_dict(self) -> dict:
        stack = lambda xs: torch.stack(xs) if xs else None  # noqa: E731
        return {"steps": list(self.steps), "values": stack(self.values), "pre": stack(self.pre), "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.steps = list(state["steps"])
        self.values = list(state["values"].unbind(0)) if state["values"] is not None else []
        self.pre = list(state["pre"].unbind(0)) if state["pre"] is not None else []
        if state["v"] is not None:
            self.v = state["v"].clone()
        self.t = state["t"]

    def finish(self, out: Path) -> dict[str, list]:
        S = len(self.info.seeds)
        opt = self.info.scenario.optimizer
        arrays = {
            "steps": np.asarray(self.steps, dtype=np.int64),
            "seeds": np.asarray(self.info.seeds),
            "sharpness": torch.stack(self.values).numpy() if self.values else np.zeros((0, S), np.float32),
            "threshold": np.asarray(2.0 / opt.lr),
        }
        if self.adam:
            b1 = opt.betas[0]
            arrays["preconditioned"] = torch.stack(self.pre).numpy() if self.pre else np.zeros((0, S), np.float32)
            arrays["preconditioned_threshold"] = np.asarray((2.0 + 2.0 * b1) / ((1.0 - b1) * opt.lr))
        np.savez_compressed(out / "sharpness.npz", **arrays)
        return {}

    def combine(self, parts, seeds, out: Path) -> bool:
        seed_merge.seed_npz(parts, seeds, "sharpness.npz", out, seed_axis=lambda key: 1 if key in ("sharpness", "preconditioned") else None)
        return True


@plugin("sharpness", SharpnessParams)
def sharpness(params: SharpnessParams):
    """Largest Hessian eigenvalue of each seed's training loss every `every` steps, and Adam's preconditioned one (sharpness.npz), against 2/lr."""
    return Sharpness(params)
