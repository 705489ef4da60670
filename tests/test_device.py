"""training.device: every tensor of the training state on the named device, random draws on
the CPU. No test here needs a GPU: the copying path a device takes (parameters apart from the
CPU copy probes read, step losses gathered per epoch, evaluations brought back) runs on the CPU
by telling the loop that the CPU is not where probes read, and must give the very results of
the plain path."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TINY, assert_npz_equal, cli

from testbed.config.scenario import validate
from testbed.engine import device as device_mod
from testbed.engine import loop
from testbed.engine.model import Architecture, ParamSpace
from testbed.engine.optimizer import Optimizer
from testbed.engine.stage import Stage
from testbed.engine.task import make_dataset
from testbed.errors import UserError
from testbed.plugin_api.registry import default_registry
from testbed.store import store_key
from testbed.study.executors import gpus_for

STEP_PROBES = TINY["probes"] + [{"name": "grad_norms", "per": "step"}]  # grad_norms reads steps on the CPU
SPIKE_STEPS = TINY["probes"][:-1] + [{"name": "snapshots", "every": 2, "spike_steps": True}]  # reads steps on the device
SPIKY = {"optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True}}  # loss jumps that spike_steps keeps


def tiny(**training):
    data = copy.deepcopy(TINY)
    data["training"].update(training)
    return data


@pytest.mark.parametrize(
    "probes", [TINY["probes"], STEP_PROBES, SPIKE_STEPS, STEP_PROBES[:-2] + SPIKE_STEPS[-1:] + STEP_PROBES[-1:]],
    ids=["epoch-probes", "host-step-probes", "device-step-probes", "both"],
)
def test_the_device_path_gives_the_results_of_the_plain_path(probes, tmp_path, monkeypatch, one_and_two_threads):
    scenario = validate({**tiny(), **SPIKY, "probes": probes})
    plain = loop.train(scenario, tmp_path / "plain")
    monkeypatch.setattr(loop, "HOST", "elsewhere")  # the CPU treated as a device: parameters copied for probes
    moved = loop.train(scenario, tmp_path / "moved")
    for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert torch.equal(getattr(plain.final, name), getattr(moved.final, name))
    written = sorted(f.name for f in (tmp_path / "plain").glob("*.npz"))
    assert written == sorted(f.name for f in (tmp_path / "moved").glob("*.npz"))
    for name in written:
        assert_npz_equal(tmp_path / "plain" / name, tmp_path / "moved" / name)
    if "spike_steps.npz" in written:  # the steps examined an epoch late found the very jumps
        assert len(np.load(tmp_path / "plain" / "spike_steps.npz")["step"]) > 0
    assert (tmp_path / "plain" / "metrics.csv").read_bytes() == (tmp_path / "moved" / "metrics.csv").read_bytes()


def test_state_moves_where_asked():
    """Stage, optimizer and rule state land on the device (meta: shapes only, no values)."""
    registry = default_registry()

    def build(kind, name, **params):
        plugin = registry.get(kind, name)
        return plugin.build(plugin.params(**params))

    arch = Architecture(d=2, hidden=4, n_tokens=2, seq_len=5, embedding_norm=build("norm", "rms"), mlp_norm=build("norm", "rms"),
                        activation=build("activation", "gelu"))
    meta = torch.device("meta")
    stage = Stage.prepare(make_dataset([0, 1], 2, 5, 3, 16, 8, "iid"), arch).to(meta)
    tensors = [stage.train_rows, stage.train_labels, stage.train_weight, stage.test_weight, stage.last]
    tensors += [t for _, index, y in stage.eval_chunks for t in (index, y)]
    assert all(t.device == meta for t in tensors)
    space = ParamSpace(arch.shapes())
    params = registry.get("optimizer", "adam").params()
    opt = Optimizer(build("optimizer", "adam"), params, space)
    opt.to(meta)
    flat = space.init([0, 1]).to(meta)
    opt.step(flat, torch.zeros_like(flat))
    assert opt.lr(1).device == meta and opt.rule.m.device == meta and opt.rule.v.device == meta
    state = device_mod.to({"a": [torch.zeros(2), (torch.ones(1), 3)], "b": "x"}, meta)
    assert state["a"][0].device == meta and state["a"][1][0].device == meta and state["a"][1][1] == 3 and state["b"] == "x"


def test_the_device_field():
    assert validate(tiny()).training.device == "cpu"
    for name in ("cuda", "cuda:1", "mps", "auto", "cpu"):
        assert validate(tiny(device=name)).training.device == name
    for name in ("gpu", "cuda:", "tpu"):
        with pytest.raises(UserError):
            validate(tiny(device=name))
    assert gpus_for(validate(tiny())) == 0 and gpus_for(validate(tiny(device="cuda"))) == 1


def test_the_store_key_names_the_device_only_off_the_cpu():
    default = store_key.identity(validate(tiny()))
    assert "device" not in default["scenario"]["training"]  # runs stored before the field keep their keys
    assert store_key.identity(validate(tiny(device="cpu"))) == default
    cuda = store_key.identity(validate(tiny(device="cuda")))
    assert cuda["scenario"]["training"]["device"] == "cuda" and store_key.digest(cuda) != store_key.digest(default)
    auto = store_key.identity(validate(tiny(device="auto")))
    assert auto["scenario"]["training"].get("device", "cpu") == device_mod.resolve("auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine with CUDA trains there")
def test_a_device_that_is_not_here_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="CUDA is not available"):
        loop.train(validate(tiny(device="cuda")))
    (tmp_path / "s.yaml").write_text("name: tiny\ntask: {seq_len: 6, sparsity: 3, n_train: 48, n_test: 32}\ntraining: {epochs: 1}\nseeds: 0\n")
    proc = cli("run", str(tmp_path / "s.yaml"), "--device", "cuda", "--out", str(tmp_path / "run"), "-q", "--no-store", cwd=tmp_path)
    assert proc.returncode != 0 and "CUDA is not available" in proc.stderr


class Stop(Exception):
    """Stands for a kill, right after an epoch's checkpoint."""


def test_the_device_path_resumes_from_its_checkpoints_bit_for_bit(tmp_path, monkeypatch):
    """Checkpoints of a run off the CPU hold CPU tensors and restore the optimizer's state onto
    the device: stopped after every epoch, it ends as the plain uninterrupted run."""
    import testbed
    from testbed.errors import RunFailure

    sc = validate({**tiny(), **SPIKY, "probes": SPIKE_STEPS})
    reference = testbed.run(sc, out=tmp_path / "reference", checkpoint_every="off", store=False)
    monkeypatch.setattr(loop, "HOST", "elsewhere")
    out = tmp_path / "stopped"

    def stop_after(epoch):
        def progress(event) -> None:
            if event.resumed_from is None and event.epoch == epoch:
                raise Stop

        return progress

    for epoch in range(1, sc.training.epochs + 1):
        with pytest.raises(RunFailure):
            testbed.run(sc, out=out, checkpoint_every=1, progress=stop_after(epoch), store=False)
    run = testbed.run(sc, out=out, checkpoint_every=1, store=False)
    for name in ("step_loss.npz", "snapshots.npz", "spike_steps.npz"):
        assert_npz_equal(reference.path / name, run.path / name)
    assert len(np.load(run.path / "spike_steps.npz")["step"]) > 0
    assert (reference.path / "metrics.csv").read_bytes() == (run.path / "metrics.csv").read_bytes()
