"""The opt-in compiled training step (`training.compile`) against the reference: the forward
pass of testbed.engine.model with autograd, and the default hand-written step. Fused kernels
round differently, so the comparison is to float32 tolerance, not bit for bit."""

from __future__ import annotations

import copy

import torch
from conftest import TINY

from testbed.config.scenario import validate
from testbed.engine import loop
from testbed.engine.gradients import compiled_loss_and_grad, loss_and_grad
from testbed.engine.model import Architecture, ParamSpace, forward, pair_index, per_seed_loss
from testbed.plugin_api.registry import default_registry
from testbed.store import store_key


def build(kind: str, name: str):
    plugin = default_registry().get(kind, name)
    return plugin.build(plugin.params())


def test_the_compiled_step_matches_the_reference_forward_and_backward():
    arch = Architecture(d=2, hidden=8, n_tokens=2, seq_len=6, embedding_norm=build("norm", "rms"), mlp_norm=build("norm", "rms"),
                        activation=build("activation", "gelu"))
    space = ParamSpace(arch.shapes())
    flat = space.init([0, 1])
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(2, (2, 16, 6), generator=g)
    labels = tokens[..., :3].sum(-1) % 2
    index = pair_index(tokens, 2)
    losses, grad = compiled_loss_and_grad()(arch, space.views(flat), index, labels)
    leaf = flat.clone().requires_grad_(True)
    ref_losses = per_seed_loss(forward(arch, space.views(leaf), index), labels)
    (ref_grad,) = torch.autograd.grad(ref_losses.sum(), leaf)
    torch.testing.assert_close(losses, ref_losses.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-5)
    hand_losses, hand_grad = loss_and_grad(arch, space.views(flat), index, labels)
    torch.testing.assert_close(grad, hand_grad, rtol=1e-4, atol=1e-5)


def test_a_compiled_run_uses_the_compiled_step_and_is_keyed_apart(monkeypatch):
    """The loop takes the compiled step only when asked (a stand-in here: compiling costs a
    minute, and the step itself is checked above)."""
    calls = []

    def stand_in():
        def step(*args):
            calls.append(1)
            return loss_and_grad(*args)

        return step

    monkeypatch.setattr(loop, "compiled_loss_and_grad", stand_in)
    data = copy.deepcopy(TINY)
    data["probes"] = ["metrics"]
    default = validate(data)
    data["training"]["compile"] = True
    compiled = validate(data)
    a = loop.train(default)
    assert not calls
    b = loop.train(compiled)
    assert len(calls) == b.steps
    assert torch.equal(a.final.train_loss, b.final.train_loss)
    assert "compile" not in store_key.identity(default)["scenario"]["training"]
    assert store_key.identity(compiled)["scenario"]["training"]["compile"] is True
