"""The training engine: S seeds of one scenario as one vectorized program.

No Python loop over seeds runs inside the training step: data, parameters, optimizer state and
losses all carry the leading seed axis. Loops over seeds happen only at set-up (sampling each
seed's data and initialisation from its own streams) and once per epoch to draw each seed's
batch order from its own generator.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from testbed import scenario as scenario_mod
from testbed.model import Architecture, ParamSpace, pair_index, forward, per_seed_loss
from testbed.optim import Optimizer
from testbed.probe import Evaluation, Probe, RunInfo
from testbed.registry import Registry, default_registry
from testbed.seeding import generator
from testbed.task import Dataset, make_dataset

# Autograd warns that views of the flat parameter tensor are not dense; accumulation is still in place.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

EVAL_CHUNK_ELEMENTS = 1 << 21  # S * N * max(L * d, h) floats per evaluation pass: small enough to stay in cache


@dataclass
class Components:
    """A scenario's plugins, resolved and built."""

    arch: Architecture
    space: ParamSpace
    optimizer: Optimizer
    curriculum: object
    probes: list[Probe]


def build(scenario, registry: Registry | None = None) -> Components:
    registry = registry or default_registry()
    m = scenario.model

    def make(kind: str, ref, *args):
        return registry.get(kind, ref.name).build(ref, *args)

    arch = Architecture(
        d=m.d,
        hidden=m.hidden,
        n_tokens=scenario_mod.n_tokens(scenario, registry),
        seq_len=scenario.task.seq_len,
        embedding_norm=make("norm", m.embedding_norm or m.norm),
        mlp_norm=make("norm", m.mlp_norm or m.norm),
        activation=make("activation", m.activation),
    )
    space = ParamSpace(arch.shapes())
    optimizer = Optimizer(make("optimizer", scenario.optimizer), scenario.optimizer, space)
    curriculum = make("curriculum", scenario.curriculum, scenario.task)
    probes = [make("probe", ref) for ref in scenario.probes]
    return Components(arch, space, optimizer, curriculum, probes)


@dataclass
class TrainingData:
    """One vocabulary stage's samples, prepared for the step loop and for evaluation."""

    dataset: Dataset
    train_index: torch.Tensor  # (S, L, n_train) rows of the (token, position) table, see pair_index
    eval_index: torch.Tensor  # (S, L, n_train + n_test)
    eval_labels: torch.Tensor  # (S, n_train + n_test)

    @classmethod
    def prepare(cls, dataset: Dataset, n_tokens: int) -> "TrainingData":
        train_index = pair_index(dataset.train.tokens, n_tokens)
        eval_index = torch.cat([train_index, pair_index(dataset.test.tokens, n_tokens)], dim=2)
        eval_labels = torch.cat([dataset.train.labels, dataset.test.labels], dim=1)
        return cls(dataset, train_index, eval_index, eval_labels)


@dataclass
class RunResult:
    seeds: list[int]
    final: Evaluation
    columns: dict[str, list] = field(default_factory=dict)  # per-seed summary columns from probes
    seconds: float = 0.0
    steps: int = 0


def evaluate(arch: Architecture, views: dict, data: TrainingData, epoch: int) -> Evaluation:
    """Loss and accuracy per seed on the training and test samples (one forward pass, chunked)."""
    index, labels = data.eval_index, data.eval_labels
    S, L, N = index.shape
    n_train = data.train_index.shape[2]
    width = max(L * arch.d, arch.hidden, 1)
    chunk = max(1, EVAL_CHUNK_ELEMENTS // (S * width))
    losses, correct = [], []
    with torch.inference_mode():
        for lo in range(0, N, chunk):
            logits = forward(arch, views, index[:, :, lo : lo + chunk])
            y = labels[:, lo : lo + chunk]
            losses.append(
                torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")
            )
            correct.append((logits.argmax(-1) == y).float())
        loss, acc = torch.cat(losses, 1), torch.cat(correct, 1)
    return Evaluation(
        epoch=epoch,
        p=data.dataset.p,
        train_loss=loss[:, :n_train].mean(1),
        train_acc=acc[:, :n_train].mean(1),
        test_loss=loss[:, n_train:].mean(1),
        test_acc=acc[:, n_train:].mean(1),
    )


ProgressFn = Callable[[int, Evaluation | None], None]


def train(scenario, out_dir: Path | None = None, registry: Registry | None = None, progress: ProgressFn | None = None) -> RunResult:
    """Train every seed of `scenario`; probes write their outputs into `out_dir` if given."""
    started = time.perf_counter()
    c = build(scenario, registry)
    arch, space, task = c.arch, c.space, scenario.task
    seeds = list(scenario.seeds)
    S = len(seeds)
    epochs = scenario.training.epochs
    B = scenario.training.batch_for(task.n_train)
    n = task.n_train
    full_steps, rest = divmod(n, B)
    steps_per_epoch = full_steps + (1 if rest else 0)

    flat = space.init(seeds)
    grad = torch.zeros_like(flat)
    views = space.views(flat)
    for name, view in views.items():
        view.requires_grad_(True)
        view.grad = grad[:, space.slices[name]].view_as(view)

    info = RunInfo(seeds, epochs, steps_per_epoch, space, scenario)
    for probe in c.probes:
        probe.start(info)
    step_probes = [p for p in c.probes if p.observes_steps()]
    eval_epochs = {epochs}.union(*(p.eval_epochs(epochs) for p in c.probes))

    order_gens = [generator(seed, "batches") for seed in seeds]
    stages: dict[int, TrainingData] = {}

    def data_for(p: int) -> TrainingData:
        if p not in stages:
            ds = make_dataset(seeds, p, task.seq_len, task.sparsity, task.n_train, task.n_test, task.test_split)
            stages.clear()  # keep only the stage in force
            stages[p] = TrainingData.prepare(ds, arch.n_tokens)
        return stages[p]

    data = data_for(c.curriculum.p_at(1))
    evaluation = evaluate(arch, views, data, 0) if 0 in eval_epochs else None
    for probe in c.probes:
        probe.after_epoch(0, flat, evaluation)

    step = 0
    for epoch in range(1, epochs + 1):
        data = data_for(c.curriculum.p_at(epoch))
        perm = torch.stack([torch.randperm(n, generator=g) for g in order_gens])  # (S, n)
        xs = data.train_index.gather(2, perm.unsqueeze(1).expand(S, task.seq_len, n))
        ys = data.dataset.train.labels.gather(1, perm)
        batches = _batches(xs, ys, B, full_steps, rest)
        for xb, yb in batches:
            losses = per_seed_loss(forward(arch, views, xb), yb)
            grad.zero_()
            losses.sum().backward()
            step += 1
            with torch.no_grad():
                c.optimizer.step(flat, grad)
            if step_probes:
                detached = losses.detach()
                for probe in step_probes:
                    probe.after_step(step, epoch, detached, grad)
        evaluation = evaluate(arch, views, data, epoch) if epoch in eval_epochs else None
        for probe in c.probes:
            probe.after_epoch(epoch, flat, evaluation)
        if progress is not None:
            progress(epoch, evaluation)

    columns: dict[str, list] = {}
    if out_dir is not None:
        for probe in c.probes:
            columns.update(probe.finish(Path(out_dir)))
    return RunResult(seeds, evaluation, columns, time.perf_counter() - started, step)


def _batches(xs: torch.Tensor, ys: torch.Tensor, B: int, full_steps: int, rest: int):
    """Contiguous per-step batches (S, L, B) from an epoch's shuffled samples (S, L, n)."""
    S, L, n = xs.shape
    head = full_steps * B
    xf = xs[:, :, :head].reshape(S, L, full_steps, B).permute(2, 0, 1, 3).contiguous()
    yf = ys[:, :head].reshape(S, full_steps, B).transpose(0, 1).contiguous()
    out = [(xf[i], yf[i]) for i in range(full_steps)]
    if rest:
        out.append((xs[:, :, head:], ys[:, head:]))
    return out
