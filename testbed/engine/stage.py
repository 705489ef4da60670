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

from testbed.engine import arithmetic
from testbed.engine.model import Architecture, forward, pair_index
from testbed.engine.task import Dataset, decode, distinct, encode
from testbed.plugin_api.probe import Evaluation

EVAL_CHUNK_ELEMENTS = 1 << 20  # S * N * (widest activation) floats per evaluation piece on a CPU (its cache)
DEVICE_EVAL_ELEMENTS = 1 << 27  # the same on a GPU: few large launches (at 10,000 seeds 7 pieces, not 900)
MIN_PIECE = 128  # sequences per seed in an evaluation piece, at the least (see `_chunks`)


@dataclass
class Stage:
    """One vocabulary stage's samples, prepared for the step loop and for evaluation.

    Pair rows and labels are held in the smallest integer type that fits them (`compact`) and
    widened to int64 a batch or an evaluation piece at a time: at 10,000 seeds the tables would
    otherwise take gigabytes."""

    p: int
    train_rows: torch.Tensor  # (S, L, n_train) compact: each training sequence's rows of the pair table
    train_labels: torch.Tensor  # (S, n_train) compact
    eval_chunks: list[tuple[slice, torch.Tensor, torch.Tensor]]  # (seeds, (G, L, u) pair rows, (G, u) labels)
    # of the distinct sequences, padded with copies of the first, in contiguous pieces, seed group by seed group
    train_weight: torch.Tensor  # (S, U) float64: multiplicity in the training sample / n_train
    test_weight: torch.Tensor  # (S, U) float64: multiplicity in the test sample / n_test
    last: torch.Tensor  # (S,) index of each seed's last distinct sequence
    scored: int | None = None  # tokens the output layer scores: None all, else the first `scored` (= p)

    @classmethod
    def prepare(cls, dataset: Dataset, arch: Architecture, restrict_logits: bool = False, piece_elements: int | None = None) -> Stage:
        """`piece_elements`: the size of an evaluation piece (`_chunks`), EVAL_CHUNK_ELEMENTS
        unless given."""
        train = dataset.train.tokens
        S, _, L = train.shape
        kind = compact(arch.n_tokens * L)
        if dataset.p**L * S < 1 << 62:
            index, labels, w, last = _distinct_at_once(dataset, kind)
        else:
            index, labels, w, last = _distinct_seed_by_seed(dataset, arch, kind)
        return cls(
            dataset.p,
            train_rows=torch.cat([pair_index(train[lo : lo + 256], arch.n_tokens).to(kind) for lo in range(0, S, 256)]),
            train_labels=dataset.train.labels.to(kind),
            eval_chunks=_chunks(index, labels, eval_width(arch), piece_elements or EVAL_CHUNK_ELEMENTS),
            train_weight=w[:, 0].double(),
            test_weight=w[:, 1].double(),
            last=last,
            scored=dataset.p if restrict_logits else None,
        )

    def to(self, device: torch.device) -> Stage:
        """This stage with its tensors on `device` (itself where they are there already)."""
        if self.train_rows.device == device:
            return self
        return Stage(
            self.p,
            train_rows=self.train_rows.to(device),
            train_labels=self.train_labels.to(device),
            eval_chunks=[(seeds, index.to(device), y.to(device)) for seeds, index, y in self.eval_chunks],
            # float64 sums where the device has float64 (not mps: those stay on the CPU)
            train_weight=self.train_weight.to(weights := torch.device("cpu") if device.type == "mps" else device),
            test_weight=self.test_weight.to(weights),
            last=self.last.to(weights),
            scored=self.scored,
        )


def _distinct_seed_by_seed(dataset: Dataset, arch: Architecture, kind: torch.dtype):
    """Each seed's distinct sequences of its training and test samples, in order of their codes:
    (S, L, U) pair rows and (S, U) labels padded with copies of the first sequence, (S, 2, U)
    multiplicities / sample sizes (0 in the padding), (S,) index of each seed's last one."""
    train, test = dataset.train.tokens, dataset.test.tokens
    S, n_train, L = train.shape
    n_test = test.shape[1]
    per_seed, per_seed_labels, weights = [], [], []
    for s in range(S):
        rows, inverse = distinct(torch.cat([train[s], test[s]]), dataset.p)
        U = rows.shape[0]
        per_seed.append(pair_index(rows.unsqueeze(0), arch.n_tokens)[0].to(kind))  # (L, U)
        per_seed_labels.append(dataset.labels(rows).to(kind))
        weights.append(
            torch.stack(
                [
                    torch.bincount(inverse[:n_train], minlength=U) / n_train,
                    torch.bincount(inverse[n_train:], minlength=U) / n_test,
                ]
            )
        )
    width = max(r.shape[1] for r in per_seed)
    index = torch.empty(S, L, width, dtype=kind)
    labels = torch.empty(S, width, dtype=kind)
    for s, (r, y) in enumerate(zip(per_seed, per_seed_labels)):  # padded with copies of the first sequence
        index[s, :, : r.shape[1]], index[s, :, r.shape[1] :] = r, r[:, :1]
        labels[s, : y.shape[0]], labels[s, y.shape[0] :] = y, y[:1]
    w = torch.stack([F.pad(x, (0, width - x.shape[1])) for x in weights])  # (S, 2, U)
    return index, labels, w, torch.tensor([x.shape[1] - 1 for x in weights])


def _distinct_at_once(dataset: Dataset, kind: torch.dtype):
    """What `_distinct_seed_by_seed` gives, for every seed in one sort: sequences as integer
    codes offset by seed (seed * p^L + code), so that one `unique` lists each seed's distinct
    codes in order, seed after seed (set-up at 10,000 seeds: 27 s seed by seed)."""
    train, test = dataset.train.tokens, dataset.test.tokens
    S, n_train, L = train.shape
    n_test = test.shape[1]
    space = dataset.p**L
    keyed = encode(torch.cat([train, test], 1), dataset.p) + torch.arange(S).unsqueeze(1) * space  # (S, N)
    codes, inverse = torch.unique(keyed, return_inverse=True)  # (T,) sorted, (S, N) into codes
    seed_of = codes // space
    counts = torch.bincount(seed_of, minlength=S)
    first = torch.cumsum(counts, 0) - counts  # each seed's first entry in codes
    pos = torch.arange(codes.shape[0]) - first[seed_of]  # each entry's place among its seed's
    width = int(counts.max())
    rows = decode(codes % space, dataset.p, L)  # (T, L) tokens
    pairs = (rows * L + torch.arange(L)).to(kind)  # (T, L) pair rows, as `pair_index`
    y = dataset.labels(rows).to(kind)
    index = pairs[first].unsqueeze(-1).expand(S, L, width).clone()  # padded with copies of the first sequence
    index[seed_of, :, pos] = pairs
    labels = y[first].unsqueeze(-1).expand(S, width).clone()
    labels[seed_of, pos] = y
    T = codes.shape[0]
    w = torch.zeros(S, 2, width)
    w[seed_of, 0, pos] = torch.bincount(inverse[:, :n_train].reshape(-1), minlength=T) / n_train
    w[seed_of, 1, pos] = torch.bincount(inverse[:, n_train:].reshape(-1), minlength=T) / n_test
    return index, labels, w, counts - 1


def compact(bound: int) -> torch.dtype:
    """The smallest integer type holding 0 .. bound - 1."""
    for kind in (torch.uint8, torch.int16, torch.int32):
        if bound - 1 <= torch.iinfo(kind).max:
            return kind
    return torch.int64


def evaluate(arch: Architecture, views: dict, data: Stage, epoch: int) -> Evaluation:
    """Loss and accuracy per seed on the training and test samples (one chunked forward pass
    over the distinct sequences of both)."""
    losses, correct = [], []
    ops = arithmetic.of(data.train_rows)
    with torch.inference_mode():
        for seeds, index, y in data.eval_chunks:
            y = y.long()
            logits = forward(arch, _rows(views, seeds), index.long(), scored=data.scored)
            losses.append((seeds, ops.cross_entropy(logits, y)))
            correct.append((seeds, (logits.contiguous().argmax(-1) == y).float()))  # argmax is slow along a strided axis
        loss, acc = _joined(losses, 1), _joined(correct, 1)

        def mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            # over each seed's own distinct sequences, whatever the padding the other seeds impose
            return ops.weighted_total(values, weight, data.last).float()

        return Evaluation(
            epoch=epoch,
            p=data.p,
            train_loss=mean(loss, data.train_weight),
            train_acc=mean(acc, data.train_weight),
            test_loss=mean(loss, data.test_weight),
            test_acc=mean(acc, data.test_weight),
        )


def _rows(views: dict, seeds: slice) -> dict:
    """The parameter views of a group of seeds (all of them: the views themselves)."""
    return views if seeds == slice(None) else {name: v[seeds] for name, v in views.items()}


def _chunks(index: torch.Tensor, labels: torch.Tensor, width: int, elements: int) -> list[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Split (S, L, U) rows and (S, U) labels into contiguous pieces of about `elements` floats
    of the widest activation (`width` per sequence), so evaluation stays in cache: along U,
    every seed at once, while a piece keeps at least MIN_PIECE sequences; beyond that many seeds
    (228 at the default widths) in groups of seeds, each cut along U in pieces of MIN_PIECE.
    (Cut finer, every operation of a piece runs on thousands of tiny matrices: at 10,000 seeds a
    piece would hold 2 sequences per seed.)"""
    S, L, U = index.shape
    group = S if S * width * MIN_PIECE <= elements else max(1, elements // (width * MIN_PIECE))
    size = max(1, elements // (group * width))
    return [
        (
            slice(None) if group == S else slice(g, g + group),
            index[g : g + group, :, lo : lo + size].contiguous(),
            labels[g : g + group, lo : lo + size].contiguous(),
        )
        for g in range(0, S, group)
        for lo in range(0, U, size)
    ]


def eval_table(data: Stage) -> tuple[torch.Tensor, torch.Tensor]:
    """The evaluation pieces put back together: (S, L, U) pair rows and (S, U) labels."""
    return (
        _joined([(seeds, index) for seeds, index, _ in data.eval_chunks], 2),
        _joined([(seeds, y) for seeds, _, y in data.eval_chunks], 1),
    )


def _joined(pieces: list[tuple[slice, torch.Tensor]], dim: int) -> torch.Tensor:
    """Tensors of the evaluation pieces (in `eval_chunks` order) put back together: along
    `dim` within a seed group, then the groups along the seed axis."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for seeds, t in pieces:
        groups.setdefault((seeds.start, seeds.stop), []).append(t)
    return torch.cat([torch.cat(part, dim) for part in groups.values()])


def eval_width(arch: Architecture) -> int:
    """Floats of activations per sequence in an evaluation pass (the largest intermediate)."""
    return max(arch.seq_len * (arch.d + 1), arch.hidden, 1)


def batches(data: Stage, perm: torch.Tensor, B: int):
    """Per-step batches ((S, L, B) pair rows, (S, B) labels) in each seed's shuffled order,
    looked up step by step so that an epoch never copies the whole training set: one gather
    along the sample axis of the (S, L, n) table gives the batch in the layout the step reads."""
    S, n = perm.shape
    L = data.train_rows.shape[1]
    for lo in range(0, n, B):
        rows = perm[:, lo : lo + B]
        yield (
            data.train_rows.gather(2, rows.unsqueeze(1).expand(S, L, rows.shape[1])).long(),
            data.train_labels.gather(1, rows).long(),
        )
