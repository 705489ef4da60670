"""`model.mlp_bias: false` ablates the MLP biases, as the papers' public code did with
Linear(bias=False): fc1.bias and fc2.bias stay exactly 0 under every optimizer, get no gradient
(so clipping and gradient norms never count them), and the model computes what a model without
them computes. tests/test_reference.py follows a bias-free nn.Module step by step."""

from __future__ import annotations

import copy
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from testbed.config.scenario import validate
from testbed.config.validation_errors import ScenarioError
from testbed.engine.loop import build, train
from testbed.engine.model import forward, pair_index
from testbed.engine.optimizer import Optimizer
from testbed.engine.task import make_dataset
from testbed.plugin_api import OptimizerParams, UpdateRule, hookimpl, plugin
from testbed.plugin_api.registry import Registry

BIASES = ("mlp.fc1.bias", "mlp.fc2.bias")

BASE = {
    "name": "no_bias",
    "task": {"seq_len": 6, "sparsity": 3, "p": 2, "n_train": 64, "n_test": 32},
    "model": {"hidden": 8, "mlp_bias": False},
    "training": {"epochs": 3, "batch_size": 16},
    "probes": ["metrics", "step_loss", {"name": "snapshots", "every": 1}, {"name": "grad_norms", "per": "step"}],
    "seeds": [0, 1, 2],
}

OPTIMIZERS = {
    "adam": {"name": "adam", "lr": 0.01},
    "adamw-clip-warmup": {"name": "adamw", "lr": 0.01, "weight_decay": 0.1, "clip_grad_norm": 0.05, "warmup_steps": 3},
    "sgd-nesterov-l2": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "adam-l2-mlp-lr": {"name": "adam", "lr": 0.01, "weight_decay": 0.1, "lr_multipliers": {"mlp": 3.0}},
}


def scenario(optimizer: str, **model):
    data = copy.deepcopy(BASE)
    data["optimizer"] = OPTIMIZERS[optimizer]
    data["model"].update(model)
    return validate(data)


def trained(sc, out):
    result = train(sc, out)
    with np.load(out / "snapshots.npz") as z:
        params = {k.removeprefix("param/"): z[k] for k in z.files if k.startswith("param/")}
    with np.load(out / "grad_norms.npz") as z:
        norms = dict(zip(z["names"].tolist(), np.moveaxis(z["norms"], 2, 0)))  # name -> (steps, S)
    return result, params, norms


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_without_mlp_bias_the_biases_stay_zero_and_the_loss_is_a_bias_free_models(optimizer, tmp_path):
    sc = scenario(optimizer)
    result, params, norms = trained(sc, tmp_path / "run")
    for name in BIASES:
        assert not params[name].any(), f"{name} left 0 under {optimizer}"
        assert not norms[name].any(), f"{name} had a gradient under {optimizer}"
    assert not np.array_equal(params["mlp.fc1.weight"][0], params["mlp.fc1.weight"][-1])  # the rest trained
    # the total gradient norm (what clipping scales by) is that of the other parameters alone
    others = np.sqrt(sum(norms[n] ** 2 for n in norms if n not in (*BIASES, "total")))
    np.testing.assert_allclose(norms["total"], others, rtol=1e-5)

    # the run's final train loss is that of an MLP computed without a bias term
    c = build(sc)
    final = {name: torch.from_numpy(v[-1]) for name, v in params.items()}
    task = sc.task
    ds = make_dataset(sc.seeds, task.p, task.seq_len, task.sparsity, task.n_train, task.n_test, task.test_split)
    trace: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        logits = forward(c.arch, final, pair_index(ds.train.tokens, c.arch.n_tokens), trace)
        hidden = c.arch.activation(trace["mlp_in"] @ final["mlp.fc1.weight"].transpose(1, 2))
        zeta = trace["xi"] + hidden @ final["mlp.fc2.weight"].transpose(1, 2)
        bias_free = zeta @ final["tok_emb"].transpose(1, 2)
    torch.testing.assert_close(logits, bias_free, rtol=1e-6, atol=1e-6)
    loss = F.cross_entropy(bias_free.transpose(1, 2), ds.train.labels, reduction="none").mean(1)
    torch.testing.assert_close(result.final.train_loss, loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "adamw-clip-warmup"])
def test_with_mlp_bias_nothing_changes(optimizer, tmp_path):
    """mlp_bias: true is the default and the model as before; false is another trajectory."""
    explicit, params, norms = trained(scenario(optimizer, mlp_bias=True), tmp_path / "true")
    data = copy.deepcopy(BASE)
    data["optimizer"] = OPTIMIZERS[optimizer]
    del data["model"]["mlp_bias"]
    default, default_params, _ = trained(validate(data), tmp_path / "default")
    for name, values in params.items():
        assert np.array_equal(values, default_params[name]), name
    for name in BIASES:
        assert params[name][0].any() and norms[name].all()  # drawn at init, and trained
    without = train(scenario(optimizer), tmp_path / "false")
    assert not torch.equal(without.final.train_loss, explicit.final.train_loss)
    assert torch.equal(default.final.train_loss, explicit.final.train_loss)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_the_built_in_update_rules_leave_a_zero_parameter_with_zero_gradient_at_zero(optimizer):
    """So the loop's zeroing of the biases after each step is a guard for plugin rules only."""
    sc = scenario(optimizer)
    c = build(sc)
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(3, c.space.size, generator=g)
    zero = torch.zeros(c.space.size, dtype=torch.bool)
    for name in BIASES:
        zero[c.space.slices[name]] = True
    flat[:, zero] = 0.0
    opt = Optimizer(c.optimizer.rule, sc.optimizer, c.space)
    for _ in range(20):
        grad = torch.randn(3, c.space.size, generator=g)
        grad[:, zero] = 0.0
        opt.step(flat, grad)
    assert not flat[:, zero].any()
    assert flat[:, ~zero].all()


class Drift(UpdateRule):
    """A rule that moves every coordinate whatever its gradient (as noise or a decay towards a
    target would)."""

    def update(self, flat, grad, lr, step):
        flat.sub_(grad * lr).add_(lr)


def test_a_plugin_rule_that_moves_every_coordinate_leaves_the_absent_biases_at_zero(tmp_path):
    @plugin("drift", OptimizerParams)
    def drift(params):
        """Gradient descent plus a constant drift."""
        return Drift()

    module = types.ModuleType("acme_drift")
    module.testbed_optimizers = hookimpl(lambda: [drift])
    registry = Registry.load(extra=[module])
    data = {**copy.deepcopy(BASE), "optimizer": {"name": "drift", "lr": 0.01}}
    train(validate(data, registry=registry), tmp_path / "run", registry=registry)
    with np.load(tmp_path / "run" / "snapshots.npz") as z:
        for name in BIASES:
            assert not z[f"param/{name}"].any(), name
        assert (z["param/mlp.fc1.weight"][-1] != z["param/mlp.fc1.weight"][0]).all()


def test_the_ideal_circuit_needs_the_mlp_biases():
    data = {"name": "ideal", "model": {"init": "ideal", "mlp_bias": False}}
    with pytest.raises(ScenarioError) as raised:
        validate(data)
    assert raised.value.problems == [("model.mlp_bias", "must be true with model.init: ideal, whose circuit sets the MLP biases")]
    assert str(raised.value).count("\n") == 0
    validate({"name": "ideal", "model": {"init": "ideal"}})
