"""Consistency across hyper-parameters, for studies that change one of them on the same seeds:
the MLP width h keeps the shared hidden units' initial draws, and the batch size keeps the order
in which an epoch visits the training examples."""

from __future__ import annotations

import math

import pytest
import torch

from testbed.config.scenario import validate
from testbed.engine import loop
from testbed.engine.model import Architecture, ParamSpace, pair_index
from testbed.engine.seeding import generator
from testbed.engine.task import make_dataset

WIDEST = 4096  # the schema's largest model.hidden


def space(hidden: int, d: int = 2) -> ParamSpace:
    def same(x):
        return x

    return ParamSpace(Architecture(d=d, hidden=hidden, n_tokens=3, seq_len=6, embedding_norm=same, mlp_norm=same, activation=same).shapes())


@pytest.mark.usefixtures("one_and_two_threads")
@pytest.mark.parametrize("d", [1, 2, 64])
def test_torchs_uniform_draws_are_prefix_consistent_up_to_the_widest_width(d):
    """What the width-consistent initialisation rests on: torch's CPU generator fills a shorter
    tensor with a prefix of a longer one's uniform draws (unlike randn, whose vectorized path
    transforms blocks of 16), at every width up to the schema's largest, 4096 units of d draws."""
    widths = [*range(1, 40), 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 2047, 2048, 2049, 4095]
    for low, high in ((-1.0, 1.0), (-1 / math.sqrt(d), 1 / math.sqrt(d))):
        widest = torch.empty(WIDEST, d).uniform_(low, high, generator=generator(9, "init", "probe"))
        for h in widths:
            drawn = torch.empty(h, d).uniform_(low, high, generator=generator(9, "init", "probe"))
            assert torch.equal(drawn, widest[:h]), f"h={h}, d={d}: not a prefix of the {WIDEST}-unit draw"


def unit_draws(seed: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The contract for fc2: unit-uniform draws in [-1, 1) from the parameter's own stream."""
    return torch.empty(shape).uniform_(-1.0, 1.0, generator=generator(seed, "init", name))


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_widths_share_their_hidden_units_initial_draws(seed):
    widths = (4, 8, 32, WIDEST)
    views = {h: space(h).views(space(h).init([seed])) for h in widths}
    first = views[widths[0]]
    fc2_units = unit_draws(seed, "mlp.fc2.weight", (WIDEST, 2))  # row j: unit j's outgoing weights
    fc2_bias_units = unit_draws(seed, "mlp.fc2.bias", (2,))
    for h, v in views.items():
        bound = 1 / math.sqrt(h)
        # nothing outside the MLP depends on h
        for name in ("tok_emb", "pos_emb", "query", "value"):
            assert torch.equal(v[name], first[name]), (h, name)
        # fc1: unit j's row and bias are the same numbers at every width (its bound is 1/sqrt(d))
        assert torch.equal(v["mlp.fc1.weight"][0, :4], first["mlp.fc1.weight"][0]), h
        assert torch.equal(v["mlp.fc1.bias"][0, :4], first["mlp.fc1.bias"][0]), h
        assert v["mlp.fc1.weight"].abs().max() <= 1 / math.sqrt(2)
        # fc2: column j is unit j's draws times this width's bound, rounded once
        assert torch.equal(v["mlp.fc2.weight"][0], (fc2_units[:h].double() * bound).float().t()), h
        assert torch.equal(v["mlp.fc2.bias"][0], (fc2_bias_units.double() * bound).float()), h
        assert v["mlp.fc2.weight"].abs().max() <= bound
        # so the first 4 units' columns agree across widths up to the ratio of the bounds
        torch.testing.assert_close(v["mlp.fc2.weight"][0, :, :4] * math.sqrt(h), first["mlp.fc2.weight"][0] * 2.0, rtol=2e-7, atol=0)
    # non-vacuity: the draws fill the range, and widths differ beyond the shared units
    assert views[WIDEST]["mlp.fc2.weight"].abs().max() > 0.99 / math.sqrt(WIDEST)
    assert not torch.equal(views[8]["mlp.fc1.weight"][0, 4:], views[8]["mlp.fc1.weight"][0, :4])


@pytest.mark.parametrize("hidden", [4, 32])
def test_a_seed_initialises_the_same_alone_and_among_others(hidden):
    s = space(hidden)
    seeds = [5, 0, 9, 123]
    together = s.init(seeds)
    for i, seed in enumerate(seeds):
        assert torch.equal(s.init([seed])[0], together[i]), seed
    assert not torch.equal(together[0], together[1])


N_TRAIN = 50  # 7 and 32 leave a short last batch

ORDER = {
    "name": "order",
    "task": {"seq_len": 6, "sparsity": 3, "p": 2, "n_train": N_TRAIN, "n_test": 16},
    "model": {"hidden": 4},
    "training": {"epochs": 2},
    "probes": ["metrics"],
    "seeds": [0, 3, 8],
}


def visited(batch_size, monkeypatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Train through the real loop and record, per epoch, the pair rows (S, L, n_train) and
    labels (S, n_train) of the training examples its steps used, in the order they used them."""
    steps: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = loop.loss_and_grad

    def spy(arch, views, index, labels, *rest):  # rest: the tokens scored (logits: active), since main's 8eac208
        steps.append((index.clone(), labels.clone()))
        return real(arch, views, index, labels, *rest)

    monkeypatch.setattr(loop, "loss_and_grad", spy)
    result = loop.train(validate({**ORDER, "training": {**ORDER["training"], "batch_size": batch_size}}))
    per_epoch = result.steps_per_epoch
    assert len(steps) == 2 * per_epoch == result.steps
    epochs = [steps[e * per_epoch : (e + 1) * per_epoch] for e in range(2)]
    return [torch.cat([x for x, _ in e], 2) for e in epochs], [torch.cat([y for _, y in e], 1) for e in epochs]


def test_an_epoch_visits_the_same_permutation_at_every_batch_size(monkeypatch):
    """The batch order is one permutation per seed and epoch from the seed's own stream, cut
    into batches: the batch size changes where it is cut, never the order."""
    rows, labels = visited("full", monkeypatch)
    for batch_size in (1, 7, 32):
        other_rows, other_labels = visited(batch_size, monkeypatch)
        for epoch in range(2):
            assert torch.equal(other_rows[epoch], rows[epoch]), (batch_size, epoch)
            assert torch.equal(other_labels[epoch], labels[epoch]), (batch_size, epoch)
    # and that order is the seed's permutation: randperm(n_train) from generator(seed, "batches")
    task = ORDER["task"]
    data = make_dataset(ORDER["seeds"], task["p"], task["seq_len"], task["sparsity"], N_TRAIN, task["n_test"], "iid")
    train_rows = pair_index(data.train.tokens, task["p"])  # (S, L, n_train)
    for s, seed in enumerate(ORDER["seeds"]):
        order = generator(seed, "batches")
        for epoch in range(2):
            perm = torch.randperm(N_TRAIN, generator=order)
            assert torch.equal(rows[epoch][s], train_rows[s][:, perm]), (seed, epoch)
            assert torch.equal(labels[epoch][s], data.train.labels[s][perm]), (seed, epoch)
    assert not torch.equal(rows[0], rows[1])  # a new permutation every epoch
