"""The training engine: S seeds of one scenario as one vectorized program.

No Python loop over seeds runs inside the training step: data, parameters, optimizer state and
losses all carry the leading seed axis. Loops over seeds happen only at set-up (sampling each
seed's data and initialisation from its own streams) and once per epoch to draw each seed's
batch order from its own generator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from testbed import scenario as scenario_mod
from testbed.gradients import loss_and_grad
from testbed.model import Architecture, ParamSpace, forward, pair_index
from testbed.optim import Optimizer
from testbed.probe import Evaluation, Probe, RunInfo
from testbed.registry import Registry, default_registry
from testbed.seeding import generator
from testbed.task import Dataset, distinct, make_dataset

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
    """One vocabulary stage's samples, prepared for the step loop and for evaluation.

    Evaluation runs once over each seed's distinct sequences of the training and test samples
    (for p = 2, L = 12 about 2600 of 4096 sampled), weighted by how often each occurs in each."""

    dataset: Dataset
    train_rows: torch.Tensor  # (S * n_train, L): each training sequence's rows of the pair table
    train_labels: torch.Tensor  # (S * n_train,)
    eval_chunks: list[tuple[torch.Tensor, torch.Tensor]]  # contiguous ((S, L, u) pair rows, (S, u) labels)
    eval_labels: torch.Tensor  # (S, U): distinct sequences, padded with copies of the first
    train_weight: torch.Tensor  # (S, U) float64: multiplicity in the training sample / n_train
    test_weight: torch.Tensor  # (S, U) float64: multiplicity in the test sample / n_test
    last: torch.Tensor  # (S,) index of each seed's last distinct sequence

    @classmethod
    def prepare(cls, dataset: Dataset, n_tokens: int, arch_width: int) -> "TrainingData":
        train, test = dataset.train.tokens, dataset.test.tokens
        S, n_train, L = train.shape
        n_test = test.shape[1]
        per_seed, weights = [], []
        for s in range(S):
            rows, inverse = distinct(torch.cat([train[s], test[s]]), dataset.p)
            U = rows.shape[0]
            w = torch.stack([
                torch.bincount(inverse[:n_train], minlength=U) / n_train,
                torch.bincount(inverse[n_train:], minlength=U) / n_test,
            ])
            per_seed.append(rows)
            weights.append(w)
        width = max(r.shape[0] for r in per_seed)
        tokens = torch.stack([torch.cat([r, r[:1].expand(width - r.shape[0], L)]) for r in per_seed])
        w = torch.stack([torch.nn.functional.pad(x, (0, width - x.shape[1])) for x in weights])  # (S, 2, U)
        return cls(
            dataset,
            train_rows=pair_index(train, n_tokens).transpose(1, 2).reshape(S * n_train, L),
            train_labels=dataset.train.labels.reshape(-1),
            eval_chunks=_chunks(pair_index(tokens, n_tokens), dataset.labels(tokens), arch_width),
            eval_labels=dataset.labels(tokens),
            train_weight=w[:, 0].double(),
            test_weight=w[:, 1].double(),
            last=torch.tensor([r.shape[0] - 1 for r in per_seed]),
        )


@dataclass
class RunResult:
    seeds: list[int]
    final: Evaluation
    columns: dict[str, list] = field(default_factory=dict)  # per-seed summary columns from probes
    seconds: float = 0.0
    steps: int = 0


def evaluate(arch: Architecture, views: dict, data: TrainingData, epoch: int) -> Evaluation:
    """Loss and accuracy per seed on the training and test samples (one chunked forward pass
    over the distinct sequences of both)."""
    losses, correct = [], []
    with torch.inference_mode():
        for index, y in data.eval_chunks:
            logits = forward(arch, views, index)
            losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none"))
            correct.append((logits.argmax(-1) == y).float())
        loss, acc = torch.cat(losses, 1), torch.cat(correct, 1)

        def mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            # A running sum up to each seed's last distinct sequence: unlike sum(), its rounding
            # does not depend on the padding, hence not on the other seeds.
            running = (values.double() * weight).cumsum(1)
            return running.gather(1, data.last.unsqueeze(1)).squeeze(1).float()

        return Evaluation(
            epoch=epoch,
            p=data.dataset.p,
            train_loss=mean(loss, data.train_weight),
            train_acc=mean(acc, data.train_weight),
            test_loss=mean(loss, data.test_weight),
            test_acc=mean(acc, data.test_weight),
        )


def _chunks(index: torch.Tensor, labels: torch.Tensor, width: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Split (S, L, U) rows and (S, U) labels along U into contiguous pieces of about
    EVAL_CHUNK_ELEMENTS * width floats of activations, so evaluation stays in cache."""
    S, L, U = index.shape
    size = max(1, EVAL_CHUNK_ELEMENTS // (S * width))
    return [(index[:, :, lo : lo + size].contiguous(), labels[:, lo : lo + size].contiguous()) for lo in range(0, U, size)]


def eval_width(arch: Architecture) -> int:
    """Floats of activations per sequence in an evaluation pass (the largest intermediate)."""
    return max(arch.seq_len * (arch.d + 1), arch.hidden, 1)


ProgressFn = Callable[[int, Evaluation | None], None]


def train(scenario, out_dir: Path | None = None, registry: Registry | None = None, progress: ProgressFn | None = None) -> RunResult:
    """Train every seed of `scenario`; probes write their outputs into `out_dir` if given."""
    started = time.perf_counter()
    c = build(scenario, registry)
    arch, space, task = c.arch, c.space, scenario.task
    seeds = list(scenario.seeds)
    epochs = scenario.training.epochs
    B = scenario.training.batch_for(task.n_train)
    n = task.n_train
    steps_per_epoch = -(-n // B)

    flat = space.init(seeds)
    views = space.views(flat)

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
            stages[p] = TrainingData.prepare(ds, arch.n_tokens, eval_width(arch))
        return stages[p]

    data = data_for(c.curriculum.p_at(1))
    evaluation = evaluate(arch, views, data, 0) if 0 in eval_epochs else None
    for probe in c.probes:
        probe.after_epoch(0, flat, evaluation)

    step = 0
    for epoch in range(1, epochs + 1):
        data = data_for(c.curriculum.p_at(epoch))
        perm = torch.stack([torch.randperm(n, generator=g) for g in order_gens])  # (S, n)
        for xb, yb in _batches(data, perm, B):
            losses, grad = loss_and_grad(arch, views, xb, yb)
            step += 1
            c.optimizer.step(flat, grad)
            for probe in step_probes:
                probe.after_step(step, epoch, losses, grad)
        evaluation = evaluate(arch, views, data, epoch) if epoch in eval_epochs else None
        for probe in c.probes:
            probe.after_epoch(epoch, flat, evaluation)
        if progress is not None:
            progress(epoch, evaluation)

    columns: dict[str, list] = {}
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for probe in c.probes:
            columns.update(probe.finish(Path(out_dir)))
    return RunResult(seeds, evaluation, columns, time.perf_counter() - started, step)


def _batches(data: TrainingData, perm: torch.Tensor, B: int):
    """Per-step batches ((S, L, B) pair rows, (S, B) labels) in each seed's shuffled order,
    looked up step by step so that an epoch never copies the whole training set."""
    S, n = perm.shape
    flat = perm + torch.arange(S).unsqueeze(1) * n  # rows of the (S * n, ...) tables
    for lo in range(0, n, B):
        rows = flat[:, lo : lo + B]
        yield (
            F.embedding(rows, data.train_rows).transpose(1, 2).contiguous(),
            data.train_labels.gather(0, rows.reshape(-1)).view(rows.shape),
        )
