"""The exact weights and batch of any step of a finished run, without the run having kept them.

Batches: a seed's sample derives from (seed, p) alone (`testbed.engine.task.make_dataset`) and
its batch order from `generator(seed, "batches")`, one permutation per epoch, so the batch of
step s is the (s mod steps_per_epoch)-th of `testbed.engine.stage.batches` in the permutation
of its epoch. Weights: runs are deterministic and a seed's trajectory does not depend on the
seeds beside it, so training the run's scenario again on only the seeds wanted, with a probe
that copies the weights entering the steps wanted and stops the replay after the last of them,
gives them bit for bit (`testbed.engine.loop.train`; the optimizer and generator state come
from the same start, so no checkpoint is needed). The forensics check both: the loss of the
recovered weights on the recovered batch must be the step loss the run recorded.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from testbed.config.schema import Scenario
from testbed.engine.loop import build, train
from testbed.engine.seeding import generator
from testbed.engine.stage import Stage, batches
from testbed.engine.task import make_dataset
from testbed.plugin_api.base import Params, Plugin
from testbed.plugin_api.probe import Probe
from testbed.plugin_api.registry import Registry, default_registry


class StepData:
    """The data side of a run's scenario: each seed's stage per vocabulary size, and batches."""

    def __init__(self, scenario: Scenario, registry: Registry | None = None):
        self.scenario = scenario
        bare = scenario.model_copy(update={"probes": []})
        self.components = build(bare, registry)
        self.arch, self.space = self.components.arch, self.components.space
        task = scenario.task
        self.n = task.n_train
        self.B = scenario.training.batch_for(task.n_train)
        self.steps_per_epoch = -(-self.n // self.B)
        self._stages: dict[tuple[int, int], Stage] = {}

    def p_at_step(self, step: int) -> int:
        return self.components.curriculum.p_at(step // self.steps_per_epoch + 1)

    def stage(self, seed: int, p: int) -> Stage:
        key = (seed, p)
        if key not in self._stages:
            t = self.scenario.task
            ds = make_dataset([seed], p, t.seq_len, t.sparsity, t.n_train, t.n_test, t.test_split)
            self._stages[key] = Stage.prepare(ds, self.arch, self.components.curriculum.restricts_logits())
        return self._stages[key]

    def scored(self, step: int) -> int | None:
        """The tokens the output layer scored at a step (None: all; see `Curriculum.restricts_logits`)."""
        return self.stage(self.scenario.seeds[0], self.p_at_step(step)).scored

    def training_set(self, seed: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every training sequence of a seed as pair rows (L, n) and labels (n,)."""
        st = self.stage(seed, p)
        return st.train_rows[0].long(), st.train_labels[0].long()  # the stage of one seed: (1, L, n), (1, n)

    def batch(self, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of one (seed, step): pair rows (L, B) and labels (B,)."""
        return self.batches_at([(seed, step)])[0]

    def batches_at(self, wanted: list[tuple[int, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of (seed, step) pairs, in order: pair rows (L, B) and labels (B,) each
        (an epoch's last batch is short when the batch size does not divide the sample)."""
        by_seed: dict[int, list[int]] = defaultdict(list)
        for seed, step in wanted:
            by_seed[seed].append(step)
        found: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        for seed, steps in by_seed.items():
            g = generator(seed, "batches")
            epoch = 0
            for step in sorted(set(steps)):
                e = step // self.steps_per_epoch + 1
                while epoch < e:
                    perm = torch.randperm(self.n, generator=g)
                    epoch += 1
                k = step % self.steps_per_epoch
                for j, (xb, yb) in enumerate(batches(self.stage(seed, self.p_at_step(step)), perm.unsqueeze(0), self.B)):
                    if j == k:
                        found[(seed, step)] = (xb[0], yb[0])
                        break
        return [found[w] for w in wanted]


class _Done(BaseException):
    """Ends a replay once every wanted step is copied (not an Exception: the trainer lets it through)."""


class _Capture(Probe):
    """Copies the weights entering the wanted steps (0-based), then stops the training."""

    def __init__(self, wanted: dict[int, set[int]]):
        self.rows_at: dict[int, list[int]] = defaultdict(list)  # step -> rows of the replayed seeds
        for j, steps in wanted.items():
            for step in steps:
                self.rows_at[step].append(j)
        self.last = max(self.rows_at, default=0)
        self.got: dict[tuple[int, int], torch.Tensor] = {}

    def _take(self, step: int, flat: torch.Tensor) -> None:
        for j in self.rows_at.get(step, ()):
            self.got[(j, step)] = flat[j].detach().clone()
        if step >= self.last:
            raise _Done

    def after_epoch(self, epoch, flat, evaluation) -> None:
        if epoch == 0:
            self._take(0, flat)

    def after_step(self, step, epoch, loss, grad) -> None:
        assert self.info.params is not None  # the loop sets the live parameters before the first step
        self._take(step, self.info.params)


def replay_weights(scenario: Scenario, wanted: list[tuple[int, int]], registry: Registry | None = None) -> dict[tuple[int, int], torch.Tensor]:
    """The weights (P,) entering each (seed, step) wanted, by training those seeds again up to
    the last step wanted."""
    if not wanted:
        return {}
    seeds = sorted({s for s, _ in wanted})
    rows: dict[int, set[int]] = defaultdict(set)
    for seed, step in wanted:
        rows[seeds.index(seed)].add(step)
    capture = _Capture(dict(rows))
    registry = registry or default_registry()
    probe = Plugin("forensics-replay", Params, lambda params: capture, kind="probe", base=Probe, source="testbed.forensics")
    plugins = {**registry.plugins, "probe": {**registry.plugins["probe"], probe.name: probe}}
    bare = scenario.model_copy(update={"seeds": seeds, "probes": [_Ref(probe.name)]})
    try:
        train(bare, None, Registry(plugins, registry.broken))
    except _Done:
        pass
    return {(seed, step): capture.got[(seeds.index(seed), step)] for seed, step in wanted}


class _Ref:
    """A probe reference that names the capture probe (what `build` reads of a scenario's probe)."""

    def __init__(self, name: str):
        self.name = name

