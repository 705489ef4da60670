"""Seeds trained side by side are replicas: seed s among S seeds trains exactly as seed s alone.

Every random stream derives from (seed, purpose), every training-step operation acts on each
seed's slice, and the optimizers use correctly rounded elementwise operations, so the results
are meant to be bit-identical (torch.equal), not merely close.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from testbed.config.scenario import validate
from testbed.engine.loop import train

FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc")

BASE = {
    "name": "replicas",
    "task": {"seq_len": 6, "sparsity": 3, "p": 2, "n_train": 64, "n_test": 64},
    "model": {"hidden": 8},
    "training": {"epochs": 3, "batch_size": 16},
    "probes": ["metrics", "step_loss"],
    "seeds": [0, 1, 2],
}

VARIANTS = {
    "default": {},
    "smooth-sgd": {
        "model": {"hidden": 8, "norm": {"name": "smooth", "radius": 0.8, "shape": "cubic"}},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
    },
    "adamw-clip": {
        "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.05, "clip_grad_norm": 0.05},
    },
    "p3-uneven-batches-warmup": {
        "task": {"seq_len": 7, "sparsity": 4, "p": 3, "n_train": 50, "n_test": 40, "test_split": "disjoint"},
        "model": {"hidden": 8, "embedding_norm": "l2", "mlp_norm": "rms", "activation": "silu"},
        "training": {"epochs": 3, "batch_size": 16},  # 50 = 3 * 16 + 2: a short last batch
        "optimizer": {"name": "adam", "lr": 0.01, "warmup_steps": 5, "lr_multipliers": {"mlp": 0.3}},
    },
}


def scenario(variant: str, seeds: list[int], **overrides):
    data = copy.deepcopy(BASE)
    for key, value in VARIANTS[variant].items():
        data[key] = copy.deepcopy(value)
    data.update(overrides)
    data["seeds"] = list(seeds)
    return validate(data)


def run(variant: str, seeds: list[int], out: Path, **overrides):
    out.mkdir(parents=True, exist_ok=True)
    result = train(scenario(variant, seeds, **overrides), out)
    step_loss = np.load(out / "step_loss.npz")
    return result, step_loss


def assert_seed_matches(together, together_loss, i: int, alone, alone_loss, j: int = 0) -> None:
    # training first (the step losses), then the final evaluation
    la, lb = together_loss["loss"][:, i], alone_loss["loss"][:, j]
    assert np.isfinite(la).all()
    assert np.array_equal(la, lb), f"step losses differ at steps {np.flatnonzero(la != lb)[:10].tolist()}"
    assert np.array_equal(together_loss["epoch"], alone_loss["epoch"])
    assert together.final.epoch == alone.final.epoch
    assert together.final.p == alone.final.p
    for f in FIELDS:
        a, b = getattr(together.final, f)[i], getattr(alone.final, f)[j]
        assert torch.equal(a, b), f"final {f}: {a.item()!r} among seeds vs {b.item()!r} alone"


@pytest.mark.usefixtures("one_and_two_threads")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_seed_trains_the_same_alone_and_among_others(variant, tmp_path):
    seeds = [0, 1, 2]
    together, together_loss = run(variant, seeds, tmp_path / "all")
    assert together.seeds == seeds
    assert together.steps == together_loss["loss"].shape[0]
    assert together_loss["seeds"].tolist() == seeds
    for i, seed in enumerate(seeds):
        alone, alone_loss = run(variant, [seed], tmp_path / f"alone-{seed}")
        assert_seed_matches(together, together_loss, i, alone, alone_loss)


@pytest.mark.usefixtures("one_and_two_threads")
def test_a_seed_trains_the_same_in_any_company(tmp_path):
    """Seed 5 with neighbours [2, 5, 9] and with [5, 11, 12, 13]: same numbers."""
    a, la = run("adamw-clip", [2, 5, 9], tmp_path / "a")
    b, lb = run("adamw-clip", [5, 11, 12, 13], tmp_path / "b")
    assert_seed_matches(a, la, 1, b, lb, 0)


def test_seeds_differ_from_each_other(tmp_path):
    """Non-vacuity: the seeds of a run are not copies of one another."""
    result, losses = run("default", [0, 1, 2], tmp_path)
    loss = losses["loss"]
    assert not np.array_equal(loss[:, 0], loss[:, 1])
    assert not np.array_equal(loss[:, 1], loss[:, 2])


@pytest.mark.parametrize("variant", ["default", "smooth-sgd", "adamw-clip"])
def test_the_same_scenario_run_twice_gives_identical_results(variant, tmp_path):
    a, la = run(variant, [0, 3], tmp_path / "a")
    b, lb = run(variant, [0, 3], tmp_path / "b")
    for f in FIELDS:
        assert torch.equal(getattr(a.final, f), getattr(b.final, f))
    assert np.array_equal(la["loss"], lb["loss"])
    assert a.steps == b.steps


@pytest.mark.usefixtures("one_and_two_threads")
def test_clipping_is_per_seed(tmp_path):
    """A clip threshold that binds for every step: still seed-by-seed identical, and different from
    the unclipped run (so clipping actually happened)."""
    seeds = [0, 1]
    clipped, clipped_loss = run("adamw-clip", seeds, tmp_path / "clipped")
    for i, seed in enumerate(seeds):
        alone, alone_loss = run("adamw-clip", [seed], tmp_path / f"alone-{seed}")
        assert_seed_matches(clipped, clipped_loss, i, alone, alone_loss)
    free_optimizer = {"name": "adamw", "lr": 0.01, "weight_decay": 0.05}
    free, free_loss = run("adamw-clip", seeds, tmp_path / "free", optimizer=free_optimizer)
    assert not np.array_equal(free_loss["loss"], clipped_loss["loss"])
