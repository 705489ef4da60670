"""Consistency across hyper-parameters, for studies that change one of them on the same seeds:
the MLP width h keeps the shared hidden units' initial draws."""

from __future__ import annotations

import math

import pytest
import torch

from testbed.engine.model import Architecture, ParamSpace
from testbed.engine.seeding import generator

WIDEST = 4096  # the schema's largest model.hidden


def space(hidden: int, d: int = 2) -> ParamSpace:
    def same(x):
        return x

    return ParamSpace(Architecture(d=d, hidden=hidden, n_tokens=3, seq_len=6, embedding_norm=same, mlp_norm=same, activation=same).shapes())


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.usefixtures("threads")
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
