"""On a CUDA GPU the guarantees of the CPU hold per device: a seed among hundreds trains bit for
bit as it does alone, and the same run twice is identical (tests/test_replicas.py says the same
of the CPU). Across devices results are close, not equal. Skipped where torch sees no GPU;
`benchmarks/gpu_check.sh` runs them on one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TINY, assert_npz_equal
from test_replicas import BASE, VARIANTS, assert_seed_matches, run

from testbed.config.scenario import validate
from testbed.engine import loop

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SPIKY = {  # loss jumps, which the snapshots probe's spike_steps keeps from the device's ring
    **copy.deepcopy(TINY),
    "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9, "nesterov": True},
    "probes": ["metrics", "step_loss", "spikes", {"name": "snapshots", "every": 2, "spike_steps": True}, {"name": "grad_norms", "per": "step"}],
}


def on(device: str, variant: str) -> dict:
    return {**copy.deepcopy(VARIANTS[variant].get("training", BASE["training"])), "device": device}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_on_the_gpu_a_seed_trains_the_same_alone_and_among_hundreds(variant, tmp_path):
    seeds = list(range(300))
    together, together_loss = run(variant, seeds, tmp_path / "together", training=on("cuda", variant))
    for i in (0, 7, 299):
        alone, alone_loss = run(variant, [i], tmp_path / f"alone{i}", training=on("cuda", variant))
        assert_seed_matches(together, together_loss, i, alone, alone_loss)


def test_on_the_gpu_the_same_run_twice_is_identical(tmp_path):
    scenario = validate({**SPIKY, "training": {**SPIKY["training"], "device": "cuda"}, "seeds": "0-63"})
    loop.train(scenario, tmp_path / "a")
    loop.train(scenario, tmp_path / "b")
    written = sorted(f.name for f in (tmp_path / "a").glob("*.npz"))
    assert {"step_loss.npz", "snapshots.npz", "spike_steps.npz", "grad_norms.npz"} <= set(written)
    for name in written:
        assert_npz_equal(tmp_path / "a" / name, tmp_path / "b" / name)
    assert len(np.load(tmp_path / "a" / "spike_steps.npz")["step"]) > 0
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()


def test_the_gpu_computes_what_the_cpu_does(tmp_path):
    """The first epoch's step losses agree to float32 rounding (later, chaotic training lets
    rounding differences grow)."""
    _, cpu = run("default", [0, 1, 2], tmp_path / "cpu", training=on("cpu", "default"))
    _, gpu = run("default", [0, 1, 2], tmp_path / "gpu", training=on("cuda", "default"))
    first = cpu["epoch"] == 1
    np.testing.assert_allclose(gpu["loss"][first], cpu["loss"][first], rtol=1e-4)


def test_the_step_replayed_from_a_cuda_graph_is_the_step_launched_op_by_op(tmp_path, monkeypatch):
    scenario = validate({**SPIKY, "training": {**SPIKY["training"], "device": "cuda"}, "seeds": "0-63"})
    loop.train(scenario, tmp_path / "graphs")
    monkeypatch.setenv("TESTBED_CUDA_GRAPHS", "0")
    loop.train(scenario, tmp_path / "eager")
    for name in sorted(f.name for f in (tmp_path / "graphs").glob("*.npz")):
        assert_npz_equal(tmp_path / "graphs" / name, tmp_path / "eager" / name)
    assert (tmp_path / "graphs" / "metrics.csv").read_bytes() == (tmp_path / "eager" / "metrics.csv").read_bytes()
