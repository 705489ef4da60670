"""One vocabulary stage's samples, laid out for the training steps and for evaluation.

Steps read each seed's shuffled batches from the training sequences' rows of the pair table.
Evaluation runs once over each seed's distinct sequences of its training and test samples (for
p = 2, L = 12 about 2600 of the 4096 sampled), weighted by how often each occurs in each sample,
in contiguous pieces small enough to stay in cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from testbed.engine.model import Architecture, forward, pair_index
from testbed.engine.task import Dataset, distinct
from testbed.plugin_api.probe import Evaluation

EVAL_CHUNK_ELEMENTS = 1 << 20  # S * N * (widest activation) floats per evaluation piece


@dataclass
class Stage:
    """One vocabulary stage's samples, prepared for the step loop and for evaluation."""

    dataset: Dataset
    train_rows: torch.Tensor  # (S * n_train, L): each training sequence's rows of the pair table
    train_labels: torch.Tensor  # (S * n_train,)
    eval_chunks: list[tuple[torch.Tensor, torch.Tensor]]  # ((S, L, u) pair rows, (S, u) labels) of the
    # distinct sequences, padded with copies of the first, in contiguous pieces
    train_weight: torch.Tensor  # (S, U) float64: multiplicity in the training sample / n_train
    test_weight: torch.Tensor  # (S, U) float64: multiplicity in the test sample / n_test
    last: torch.Tensor  # (S,) index of each seed's last distinct sequence
    scored: int | None = None  # tokens the output layer scores: None all, else the first `scored` (= p)

    @classmethod
    def prepare(cls, dataset: Dataset, arch: Architecture, restrict_logits: bool = False) -> Stage:
        train, test = dataset.train.tokens, dataset.test.tokens
        S, n_train, L = train.shape
        n_test = test.shape[1]
        per_seed, weights = [], []
        for s in range(S):
            rows, inverse = distinct(torch.cat([train[s], test[s]]), dataset.p)
            U = rows.shape[0]
            per_seed.append(rows)
            weights.append(
                torch.stack(
                    [
                        torch.bincount(inverse[:n_train], minlength=U) / n_train,
                        torch.bincount(inverse[n_train:], minlength=U) / n_test,
                    ]
                )
            )
        width = max(r.shape[0] for r in per_seed)
        tokens = torch.stack([torch.cat([r, r[:1].expand(width - r.shape[0], L)]) for r in per_seed])
        w = torch.stack([F.pad(x, (0, width - x.shape[1])) for x in weights])  # (S, 2, U)
        return cls(
            dataset,
            train_rows=pair_index(train, arch.n_tokens).transpose(1, 2).reshape(S * n_train, L),
            train_labels=dataset.train.labels.reshape(-1),
            eval_chunks=_chunks(pair_index(tokens, arch.n_tokens), dataset.labels(tokens), eval_width(arch)),
            train_weight=w[:, 0].double(),
            test_weight=w[:, 1].double(),
            last=torch.tensor([r.shape[0] - 1 for r in per_seed]),
            scored=dataset.p if restrict_logits else None,
        )


def evaluate(arch: Architecture, views: dict, data: Stage, epoch: int) -> Evaluation:
    """Loss and accuracy per seed on the training and test samples (one chunked forward pass
    over the distinct sequences of both)."""
    losses, correct = [], []
    with torch.inference_mode():
        for index, y in data.eval_chunks:
            logits = forward(arch, views, index, scored=data.scored)
            losses.append(F.cross_entropy(logits.transpose(1, 2), y, reduction="none"))
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


def batches(data: Stage, perm: torch.Tensor, B: int):
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
