"""The pairwise arithmetic a GPU run uses (`testbed.engine.arithmetic`), checked on the CPU:
the same functions as torch's kernels, sums unchanged by trailing zeros (the padding other
seeds impose), and a seed's training and evaluation independent of the seeds beside it."""

from __future__ import annotations

import pytest
import torch
from test_replicas import VARIANTS, assert_seed_matches, run

from testbed.engine import arithmetic
from testbed.engine.arithmetic import NATIVE, PAIRWISE


@pytest.fixture
def pairwise_everywhere(monkeypatch):
    """The GPU's arithmetic on the CPU."""
    monkeypatch.setattr(arithmetic, "of", lambda x: PAIRWISE)


def test_the_pairwise_operations_compute_what_torch_does():
    g = torch.Generator().manual_seed(0)
    a, b, bias = torch.randn(5, 7, 13, generator=g), torch.randn(5, 13, 3, generator=g), torch.randn(5, 1, 3, generator=g)
    x = torch.randn(4, 9, 6, generator=g)
    for dim in (0, 1, 2, -1):
        torch.testing.assert_close(PAIRWISE.sum(x, dim), x.sum(dim))
        torch.testing.assert_close(PAIRWISE.sum(x, dim, keepdim=True), x.sum(dim, keepdim=True))
        torch.testing.assert_close(PAIRWISE.mean(x, dim, keepdim=True), x.mean(dim, keepdim=True))
    torch.testing.assert_close(PAIRWISE.norm(x, -1, keepdim=True), NATIVE.norm(x, -1, keepdim=True))
    torch.testing.assert_close(PAIRWISE.bmm(a, b), torch.bmm(a, b))
    torch.testing.assert_close(PAIRWISE.baddbmm(bias, a, b), torch.baddbmm(bias, a, b))
    torch.testing.assert_close(PAIRWISE.log_softmax(x), torch.log_softmax(x, -1))
    labels = torch.randint(6, (4, 9), generator=g)
    torch.testing.assert_close(PAIRWISE.cross_entropy(x, labels), NATIVE.cross_entropy(x, labels))
    index = torch.stack([torch.stack([torch.randperm(20, generator=g)[:4] for _ in range(9)], 1) for _ in range(3)])  # (3, 4, 9)
    values = torch.randn(3, 4, 9, generator=g)
    torch.testing.assert_close(PAIRWISE.scatter_sum(20, index, values), NATIVE.scatter_sum(20, index, values))
    w, last = torch.rand(3, 9, generator=g).double(), torch.tensor([8, 3, 0])
    v = torch.randn(3, 9, generator=g)
    torch.testing.assert_close(PAIRWISE.weighted_total(v, w, last), NATIVE.weighted_total(v, w, last))


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
    last bits from torch's kernels') and computes the same training (they stay close)."""
    _, native = run("default", [0, 1], tmp_path / "native")
    monkeypatch.setattr(arithmetic, "of", lambda x: PAIRWISE)
    _, pairwise = run("default", [0, 1], tmp_path / "pairwise")
    first = native["epoch"] == 1
    assert not (native["loss"] == pairwise["loss"]).all()
    torch.testing.assert_close(torch.from_numpy(pairwise["loss"][first]), torch.from_numpy(native["loss"][first]), rtol=1e-5, atol=1e-6)
