"""The two arithmetics of `testbed.engine.arithmetic`, checked on the CPU: the portable one
(the CPU's) and the pairwise one (a GPU's) compute what torch's kernels compute, pairwise sums
are unchanged by trailing zeros (the padding other seeds impose), and with either a seed's
training and evaluation are independent of the seeds beside it."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_replicas import VARIANTS, assert_seed_matches, run

from testbed.engine import arithmetic
from testbed.engine.arithmetic import PAIRWISE, PORTABLE


@pytest.fixture
def pairwise_everywhere(monkeypatch):
    """The GPU's arithmetic on the CPU."""
    monkeypatch.setattr(arithmetic, "of", lambda x: PAIRWISE)


@pytest.mark.parametrize("ops", [PORTABLE, PAIRWISE], ids=["portable", "pairwise"])
def test_the_operations_compute_what_torch_does(ops):
    g = torch.Generator().manual_seed(0)
    a, b, bias = torch.randn(5, 7, 13, generator=g), torch.randn(5, 13, 3, generator=g), torch.randn(5, 1, 3, generator=g)
    x = torch.randn(4, 9, 6, generator=g)
    for dim in (0, 1, 2, -1):
        torch.testing.assert_close(ops.sum(x, dim), x.sum(dim))
        torch.testing.assert_close(ops.sum(x, dim, keepdim=True), x.sum(dim, keepdim=True))
        torch.testing.assert_close(ops.mean(x, dim, keepdim=True), x.mean(dim, keepdim=True))
    torch.testing.assert_close(ops.norm(x, -1, keepdim=True), torch.linalg.vector_norm(x, dim=-1, keepdim=True))
    # every layout the portable product chooses between: long or short sides, strided operands
    for n, k, m in [(7, 13, 3), (40, 2, 3), (3, 2, 40), (2, 40, 3), (40, 40, 40), (1, 2, 1), (9, 3, 9)]:
        a, b = torch.randn(5, n, k, generator=g), torch.randn(5, k, m, generator=g)
        for left in (a, a.transpose(1, 2).contiguous().transpose(1, 2)):
            for right in (b, b.transpose(1, 2).contiguous().transpose(1, 2)):
                torch.testing.assert_close(ops.bmm(left, right), torch.bmm(a, b))
    torch.testing.assert_close(ops.baddbmm(bias, a[..., :13, :13], b[..., :13, :3]), torch.baddbmm(bias, a[..., :13, :13], b[..., :13, :3]))
    torch.testing.assert_close(ops.log_softmax(x), torch.log_softmax(x, -1))
    labels = torch.randint(6, (4, 9), generator=g)
    torch.testing.assert_close(ops.cross_entropy(x, labels), torch.nn.functional.cross_entropy(x.transpose(1, 2), labels, reduction="none"))
    index = torch.stack([torch.stack([torch.randperm(20, generator=g)[:4] for _ in range(9)], 1) for _ in range(3)])  # (3, 4, 9)
    values = torch.randn(3, 4, 9, generator=g)
    expected = torch.zeros(3, 20, dtype=torch.float64)
    for s_, t, n in itertools.product(range(3), range(4), range(9)):
        expected[s_, index[s_, t, n]] += values[s_, t, n].double()
    torch.testing.assert_close(ops.scatter_sum(20, index, values), expected.float())
    w, last = torch.rand(3, 9, generator=g).double(), torch.tensor([8, 3, 0])
    v = torch.randn(3, 9, generator=g)
    expected = torch.stack([(v[i, : last[i] + 1].double() * w[i, : last[i] + 1]).sum() for i in range(3)])
    torch.testing.assert_close(ops.weighted_total(v, w, last), expected)


def test_trailing_zeros_change_no_pairwise_sum():
    g = torch.Generator().manual_seed(1)
    for n in (1, 2, 3, 5, 12, 31, 32, 33, 100):
        x = torch.randn(4, n, generator=g)
        for pad in (1, 2, 7, 64):
            padded = torch.cat([x, torch.zeros(4, pad)], 1)
            assert torch.equal(PAIRWISE.sum(padded, 1), PAIRWISE.sum(x, 1)), (n, pad)


@pytest.mark.usefixtures("pairwise_everywhere")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_with_pairwise_sums_a_seed_trains_the_same_alone_and_among_others(variant, tmp_path):
    """The evaluation's padding differs with the company (each seed's distinct sequences are
    padded to the most any seed has): the sums must not see it."""
    seeds = [0, 1, 2, 3, 4]
    together, together_loss = run(variant, seeds, tmp_path / "all")
    for i in (0, 3):
        alone, alone_loss = run(variant, [seeds[i]], tmp_path / f"alone-{i}")
        assert_seed_matches(together, together_loss, i, alone, alone_loss)


@pytest.mark.usefixtures("pairwise_everywhere")
@pytest.mark.parametrize("norm", [("rms", {}), ("smooth", {"shape": "cubic", "radius": 1.3})])
@pytest.mark.parametrize("scored", [None, 2])
def test_with_pairwise_sums_the_training_gradient_matches_autograd(norm, scored):
    """d = 3 and p = 4: sums of three terms and more at every site (d = 2 would hide them)."""
    from test_gradients import build, setup

    from testbed.engine.gradients import loss_and_grad
    from testbed.engine.model import Architecture, forward, per_seed_loss

    arch = Architecture(d=3, hidden=5, n_tokens=4, seq_len=6, embedding_norm=build("norm", *norm), mlp_norm=build("norm", *norm),
                        activation=build("activation", "gelu", {}))
    space, flat, index, labels = setup(arch)
    labels = labels % (scored or arch.n_tokens)
    losses, grad = loss_and_grad(arch, space.views(flat), index, labels, scored)
    leaf = flat.clone().requires_grad_(True)
    ref_losses = per_seed_loss(forward(arch, space.views(leaf), index, scored=scored), labels)
    (ref_grad,) = torch.autograd.grad(ref_losses.sum(), leaf)
    torch.testing.assert_close(losses, ref_losses.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


def test_pairwise_training_is_the_same_function_with_other_rounding(tmp_path, monkeypatch):
    """Non-vacuity of the tests above: the pairwise step does run (the losses differ in their
    last bits from the portable arithmetic's) and computes the same training (they stay close)."""
    _, native = run("default", [0, 1], tmp_path / "native")
    monkeypatch.setattr(arithmetic, "of", lambda x: PAIRWISE)
    _, pairwise = run("default", [0, 1], tmp_path / "pairwise")
    first = native["epoch"] == 1
    assert not (native["loss"] == pairwise["loss"]).all()
    torch.testing.assert_close(torch.from_numpy(pairwise["loss"][first]), torch.from_numpy(native["loss"][first]), rtol=1e-5, atol=1e-6)
