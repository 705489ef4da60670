"""The hand-written training gradient equals autograd through the reference forward pass, for
every built-in norm and activation, for plugins without a `vjp` (autograd fallback), and the
built-in plugins' own vjp equals autograd's."""

from __future__ import annotations

import itertools

import pytest
import torch

from testbed.engine.gradients import loss_and_grad
from testbed.engine.model import Architecture, ParamSpace, forward, pair_index, per_seed_loss
from testbed.plugin_api import Activation, Norm
from testbed.plugin_api.registry import default_registry

REG = default_registry()
NORMS = [("rms", {}), ("l2", {}), ("identity", {})] + [("smooth", {"shape": s, "radius": 1.3}) for s in ("linear", "cubic", "quintic")]
ACTIVATIONS = [("gelu", {}), ("gelu", {"approximate": "tanh"}), ("relu", {}), ("silu", {}), ("tanh", {})]


def build(kind: str, name: str, params: dict):
    plugin = REG.get(kind, name)
    return plugin.build(plugin.params(**params))


def autograd_reference(arch, space, flat, index, labels):
    leaf = flat.clone().requires_grad_(True)
    losses = per_seed_loss(forward(arch, space.views(leaf), index), labels)
    (grad,) = torch.autograd.grad(losses.sum(), leaf)
    return losses.detach(), grad


def setup(arch: Architecture, S: int = 3, N: int = 17, seed: int = 0):
    space = ParamSpace(arch.shapes())
    flat = space.init(list(range(S))).double()
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(arch.n_tokens, (S, N, arch.seq_len), generator=g)
    labels = torch.randint(arch.n_tokens, (S, N), generator=g)
    return space, flat, pair_index(tokens, arch.n_tokens), labels


@pytest.mark.parametrize("norm, activation", list(itertools.product(NORMS, ACTIVATIONS)))
def test_training_gradient_matches_autograd(norm, activation):
    arch = Architecture(
        d=2, hidden=5, n_tokens=3, seq_len=6,
        embedding_norm=build("norm", *norm), mlp_norm=build("norm", *norm), activation=build("activation", *activation),
    )
    space, flat, index, labels = setup(arch)
    losses, grad = loss_and_grad(arch, space.views(flat), index, labels)
    ref_losses, ref_grad = autograd_reference(arch, space, flat, index, labels)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


class SoftNorm(Norm):
    """x / sqrt(1 + |x|^2), written without a vjp."""

    def __call__(self, x):
        return x / (1.0 + x.pow(2).sum(-1, keepdim=True)).sqrt()


class TanhNorm(Norm):
    def __call__(self, x):
        return torch.tanh(x)


class SigmoidGate(Activation):
    def __call__(self, x):
        return x * torch.sigmoid(2 * x)


def test_plugins_without_vjp_fall_back_to_autograd():
    """A third-party norm and activation that leave `vjp` to the base class."""
    assert not SoftNorm.has_own_vjp() and not SigmoidGate.has_own_vjp()
    arch = Architecture(d=3, hidden=4, n_tokens=2, seq_len=5, embedding_norm=SoftNorm(), mlp_norm=TanhNorm(), activation=SigmoidGate())
    space, flat, index, labels = setup(arch, S=2, N=9, seed=3)
    losses, grad = loss_and_grad(arch, space.views(flat), index, labels)
    ref_losses, ref_grad = autograd_reference(arch, space, flat, index, labels)
    torch.testing.assert_close(losses, ref_losses)
    torch.testing.assert_close(grad, ref_grad)


def test_default_vjp_is_autograd_of_call():
    """The base class's vjp, callable on any norm or activation, differentiates __call__."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    grad_out = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    for fn in (SoftNorm(), SigmoidGate()):
        leaf = x.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(fn(leaf), leaf, grad_out)
        torch.testing.assert_close(fn.vjp(x, fn(x), grad_out), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind, name, params", [("norm", n, p) for n, p in NORMS] + [("activation", n, p) for n, p in ACTIVATIONS])
def test_builtin_vjp_matches_autograd(kind, name, params):
    fn = build(kind, name, params)
    assert fn.has_own_vjp(), "a built-in's backward is written by hand"
    g = torch.Generator().manual_seed(1)
    # radii from deep inside the smooth norm's radius to well beyond it
    x = (torch.randn(64, 3, generator=g, dtype=torch.float64) * torch.logspace(-3, 1, 64, dtype=torch.float64)[:, None])
    grad_out = torch.randn(64, 3, generator=g, dtype=torch.float64)
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(fn(leaf), leaf, grad_out)
    torch.testing.assert_close(fn.vjp(x, fn(x), grad_out), expected, rtol=1e-9, atol=1e-12)
