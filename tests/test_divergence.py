"""A seed that diverges is seen: the detector reports it, the summary names its step and epoch,
and it never changes the trajectory of another seed."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import torch
import yaml
from conftest import TINY, cli

from testbed.analysis.spike_detector import SpikeParams, detect, first_nonfinite
from testbed.config.scenario import validate
from testbed.engine.loop import train
from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.hookspecs import hookimpl
from testbed.plugin_api.probe import Probe
from testbed.plugin_api.registry import Registry


def test_detector_reports_divergence_once_at_the_first_nonfinite_step():
    rng = np.random.default_rng(0)
    losses = 0.5 + 0.01 * rng.random((300, 3))
    losses[120:, 1] = np.nan  # seed 11 diverges at step 120 and stays NaN
    losses[0:, 2] = np.inf  # seed 12 diverges at its very first step
    found = detect(losses, [10, 11, 12], SpikeParams())
    assert first_nonfinite(losses).tolist() == [-1, 120, 0]
    diverged = [s for s in found if s.diverged]
    assert [(s.seed, s.start, s.end) for s in diverged] == [(11, 120, 299), (12, 0, 299)]
    assert math.isclose(diverged[0].baseline, float(np.median(losses[70:120, 1])))
    assert math.isnan(diverged[1].baseline)  # nothing finite came before
    assert all(s.start < 120 for s in found if s.seed == 11 and not s.diverged)


def test_a_seed_that_recovers_is_a_divergence_ending_where_the_loss_is_finite_again():
    losses = np.full((100, 1), 0.3)
    losses[60:65, 0] = np.inf
    (spike,) = detect(losses, [0], SpikeParams())
    assert spike.diverged and (spike.start, spike.end) == (60, 64)


class PoisonParams(Params):
    seed: int = 0
    epoch: int = 2


class Poison(Probe):
    """Fault injection: sets one seed's weights to NaN after an epoch."""

    def __init__(self, params: PoisonParams):
        self.params = params

    def after_epoch(self, epoch, flat, evaluation):
        if epoch == self.params.epoch:
            flat[self.info.seeds.index(self.params.seed)] = float("nan")


@plugin("poison", PoisonParams)
def poison(params):
    """Sets one seed's weights to NaN after an epoch."""
    return Poison(params)


def _registry() -> Registry:
    module = types.ModuleType("poison_plugins")
    module.testbed_probes = hookimpl(lambda: [poison])
    return Registry.load(extra=[module])


def test_one_diverging_seed_leaves_the_others_bit_identical(tmp_path):
    reg = _registry()
    base = dict(TINY, probes=["metrics", "step_loss"])
    poisoned = validate(dict(base, seeds=[0, 1, 2], probes=base["probes"] + [{"name": "poison", "seed": 1, "epoch": 2}]), registry=reg)
    clean = validate(dict(base, seeds=[0, 2]), registry=reg)
    a = train(poisoned, tmp_path / "a", registry=reg)
    b = train(clean, tmp_path / "b", registry=reg)
    la = np.load(tmp_path / "a" / "step_loss.npz")["loss"]
    lb = np.load(tmp_path / "b" / "step_loss.npz")["loss"]
    np.testing.assert_array_equal(la[:, [0, 2]], lb)
    assert np.isfinite(la[:, [0, 2]]).all() and not np.isfinite(la[:, 1]).all()
    steps_per_epoch = la.shape[0] // TINY["training"]["epochs"]
    assert a.diverged_step == [-1, 2 * steps_per_epoch, -1]  # the first step of epoch 3
    assert a.diverged_epoch() == [-1, 3, -1]
    assert b.diverged_step == [-1, -1]
    for f in ("train_loss", "test_acc"):
        assert torch.equal(getattr(a.final, f)[[0, 2]], getattr(b.final, f))


def test_run_says_how_many_seeds_diverged_and_where(tmp_path):
    data = dict(TINY, seeds="0-3", model={"hidden": 8, "norm": "identity"}, optimizer={"name": "sgd", "lr": 20.0})
    (tmp_path / "sgd.yaml").write_text(yaml.safe_dump(data))
    proc = cli("run", "sgd.yaml", "--out", "run", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["aggregate"]["diverged"] == 4
    assert all(e >= 1 for e in summary["per_seed"]["diverged_epoch"])
    assert all(s >= 0 for s in summary["per_seed"]["diverged_step"])
    rows = (tmp_path / "run" / "spikes.csv").read_text().splitlines()
    assert rows[0].endswith(",diverged") and sum(r.endswith(",1") for r in rows[1:]) == 4
    assert "4 of 4 seeds diverged" in proc.stdout
