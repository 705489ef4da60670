"""Curricula: the vocabulary switch of the papers' transfer experiment, end to end."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import yaml

from testbed.config.scenario import ScenarioError, validate
from testbed.engine.loop import train

SWITCH = {
    "name": "transfer",
    "task": {"seq_len": 6, "sparsity": 3, "p": 2, "n_train": 64, "n_test": 32},
    "model": {"hidden": 8, "n_tokens": 3},
    "curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3}]},
    "training": {"epochs": 5, "batch_size": 16},
    "probes": ["metrics", "step_loss", {"name": "snapshots", "every": 1}],
    "seeds": "0-1",
}


def test_vocab_schedule_switches_p_at_the_given_epoch(tmp_path):
    result = train(validate(SWITCH), tmp_path)
    assert result.final.p == 3
    with open(tmp_path / "metrics.csv") as f:
        p_of_epoch = {int(r["epoch"]): int(r["p"]) for r in csv.DictReader(f)}
    assert p_of_epoch == {0: 2, 1: 2, 2: 2, 3: 3, 4: 3, 5: 3}


def test_the_model_keeps_its_weights_across_the_switch(tmp_path):
    """Fine-tuning starts from the pre-trained weights: the snapshot after epoch 2 is where
    epoch 3 starts, and the third token embedding existed (and had its row) from the start."""
    import numpy as np

    train(validate(SWITCH), tmp_path)
    snaps = np.load(tmp_path / "snapshots.npz")
    assert snaps["param/tok_emb"].shape[2] == 3
    epochs = list(snaps["epochs"])
    before, after = epochs.index(2), epochs.index(3)
    assert not np.array_equal(snaps["param/tok_emb"][before], snaps["param/tok_emb"][after])  # trained on
    assert np.allclose(snaps["param/pos_emb"][before], snaps["param/pos_emb"][after], atol=0.05)  # a few small steps


def test_the_same_pretraining_stage_is_shared_with_a_constant_run(tmp_path):
    """Until the switch, the transfer run is the p=2 run with 3 embeddings, step for step."""
    import numpy as np

    constant = dict(SWITCH, curriculum="constant", probes=["step_loss"])
    train(validate(SWITCH), tmp_path / "switch")
    train(validate(constant), tmp_path / "constant")
    a = np.load(tmp_path / "switch" / "step_loss.npz")["loss"]
    b = np.load(tmp_path / "constant" / "step_loss.npz")["loss"]
    steps_before_switch = 2 * 4  # 64 sequences / 16 per batch = 4 steps per epoch
    assert np.array_equal(a[:steps_before_switch], b[:steps_before_switch])
    assert not np.array_equal(a[steps_before_switch:], b[steps_before_switch:])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"hidden": 8, "n_tokens": 2}}, "model.n_tokens: must be >= 3"),
        ({"curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 4, "p": 3}, {"epoch": 2, "p": 4}]}}, "strictly increasing"),
        ({"curriculum": {"name": "vocab_schedule", "switches": []}}, "curriculum.switches"),
    ],
)
def test_bad_schedules_are_refused(change, message):
    with pytest.raises(ScenarioError, match=message):
        validate(dict(SWITCH, **change))


@pytest.mark.parametrize(
    "change, p",
    [
        ({"task": {**SWITCH["task"], "p": 3}}, 3),  # what `--set task.p=3` does to a 2 -> 3 schedule
        ({"curriculum": {"name": "pretrain", "p": 2, "epochs": 2}}, 2),  # pretraining on task.p itself
    ],
    ids=["vocab_schedule", "pretrain"],
)
def test_a_switch_that_keeps_p_is_refused(change, p):
    with pytest.raises(ScenarioError) as err:
        validate({**SWITCH, **change})
    assert err.value.problems == [("curriculum", f"switches from p = {p} to p = {p}: a switch must change p (task.p is the first stage's p)")]


def test_compare_takes_runs_that_end_on_one_task_and_marks_the_switch(tmp_path):
    import testbed

    scratch = {**SWITCH, "name": "scratch", "task": {**SWITCH["task"], "p": 3}, "curriculum": "constant", "probes": ["metrics", "step_loss", "spikes"]}
    curriculum = {**SWITCH, "probes": ["metrics", "step_loss", "spikes"]}
    paths = []
    for data in (scratch, curriculum):
        path = tmp_path / f"{data['name']}.yaml"
        path.write_text(yaml.safe_dump(data))
        paths.append(path)
    result = testbed.compare(paths, out=tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "transfer: p changes at epoch 3" in report and "final task (p = 3)" in report
    assert set(result.table()["metric"]) >= {"final_test_acc"}
    other = tmp_path / "p4.yaml"
    other.write_text(yaml.safe_dump({**scratch, "name": "p4", "task": {**SWITCH["task"], "p": 4}, "model": {"hidden": 8}}))
    with pytest.raises(testbed.UserError, match=r"final p: 4 vs 3\); compare needs runs that end on one task"):
        testbed.compare([paths[1], other], out=tmp_path / "refused")


FULL_BATCH = {  # one Adam step an epoch, a snapshot after each: the step across the switch is visible
    **SWITCH,
    "task": {**SWITCH["task"], "n_train": 32},
    "training": {"epochs": 4, "batch_size": "full"},
    "optimizer": {"name": "adam", "lr": 0.01},
    "probes": ["metrics", {"name": "snapshots", "every": 1}],
}


def _steps(tmp_path, switch: dict, **fields) -> tuple[np.ndarray, np.ndarray]:
    """Snapshots (epochs, seeds, P) of a run whose switch (epoch 3, p = 3) has `switch`'s options."""
    data = {**FULL_BATCH, **fields, "curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3, **switch}]}}
    train(validate(data), tmp_path)
    with np.load(tmp_path / "snapshots.npz") as z:
        names = sorted(k for k in z.files if k.startswith("param/"))
        flat = np.concatenate([z[k].reshape(z[k].shape[0], z[k].shape[1], -1) for k in names], axis=2)
        return flat, z["param/tok_emb"]


def test_a_switch_can_start_a_fresh_optimizer(tmp_path):
    """Adam's first step moves every coordinate by lr (g / sqrt(g^2)): with the reset, the step
    of the switch epoch is a first step again; without it, it is not."""
    reset, _ = _steps(tmp_path / "reset", {"reset_optimizer": True})
    kept, _ = _steps(tmp_path / "kept", {})
    np.testing.assert_array_equal(reset[:3], kept[:3])  # identical up to the switch
    moved = np.abs(reset[3] - reset[2])
    first_step = np.abs(np.abs(moved) - 0.01) < 1e-5
    assert first_step[moved > 1e-6].mean() > 0.95
    moved_kept = np.abs(kept[3] - kept[2])
    assert (np.abs(moved_kept - 0.01) < 1e-5)[moved_kept > 1e-6].mean() < 0.5


def test_a_switch_can_draw_the_new_tokens_embeddings_afresh(tmp_path):
    from testbed.engine.seeding import generator

    frozen = {"optimizer": {"name": "adam", "lr": 0.01, "lr_multipliers": {"tok_emb": 0.0}}}  # embeddings move only by the reset
    _, emb = _steps(tmp_path, {"reinit_new_tokens": True}, **frozen)
    for i, seed in enumerate([0, 1]):
        fresh = torch.randn((1, emb.shape[-1]), generator=generator(seed, "init", "tok_emb", "epoch", 3))
        np.testing.assert_array_equal(emb[3, i, 2:3], fresh.numpy())  # token 2, new at p = 3
        np.testing.assert_array_equal(emb[3, i, :2], emb[0, i, :2])  # the old tokens keep theirs
        assert not np.array_equal(emb[2, i, 2], emb[3, i, 2])


def test_restricted_logits_leave_unused_tokens_untouched_until_they_are_used(tmp_path):
    """With `logits: active`, the p = 2 stage scores tokens 0 and 1 only: token 2 never occurs in
    the data, so its embedding gets no gradient at all and is still its initial value at the
    switch; scoring all tokens (the papers' code) trains it as a wrong answer."""
    curriculum = dict(SWITCH["curriculum"], logits="active")
    train(validate(dict(SWITCH, curriculum=curriculum)), tmp_path / "active")
    train(validate(SWITCH), tmp_path / "all")
    active = np.load(tmp_path / "active" / "snapshots.npz")["param/tok_emb"]
    scored_all = np.load(tmp_path / "all" / "snapshots.npz")["param/tok_emb"]
    np.testing.assert_array_equal(active[2, :, 2], active[0, :, 2])  # epoch 2, the last at p = 2
    assert not np.array_equal(active[5, :, 2], active[0, :, 2])  # in use from epoch 3
    assert not np.array_equal(scored_all[2, :, 2], scored_all[0, :, 2])
    with open(tmp_path / "active" / "metrics.csv") as f:
        assert {int(r["p"]) for r in csv.DictReader(f)} == {2, 3}


def test_restricted_logits_gradient_matches_autograd():
    from testbed.engine.gradients import loss_and_grad
    from testbed.engine.model import Architecture, ParamSpace, forward, pair_index, per_seed_loss
    from testbed.plugin_api.registry import default_registry

    reg = default_registry()
    arch = Architecture(d=2, hidden=5, n_tokens=4, seq_len=6, embedding_norm=reg.get("norm", "rms").build(reg.get("norm", "rms").params()),
                        mlp_norm=reg.get("norm", "rms").build(reg.get("norm", "rms").params()),
                        activation=reg.get("activation", "gelu").build(reg.get("activation", "gelu").params()))
    space = ParamSpace(arch.shapes())
    flat = space.init([0, 1, 2]).double()
    g = torch.Generator().manual_seed(0)
    index = pair_index(torch.randint(2, (3, 17, 6), generator=g), arch.n_tokens)
    labels = torch.randint(2, (3, 17), generator=g)
    losses, grad = loss_and_grad(arch, space.views(flat), index, labels, scored=2)
    leaf = flat.clone().requires_grad_(True)
    logits = forward(arch, space.views(leaf), index, scored=2)
    assert logits.shape == (3, 17, 2)
    ref = per_seed_loss(logits, labels)
    (ref_grad,) = torch.autograd.grad(ref.sum(), leaf)
    torch.testing.assert_close(losses, ref.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)
    rows = space.views(grad)["tok_emb"]
    assert torch.count_nonzero(rows[:, 2:]) == 0  # tokens 2 and 3: neither scored nor in a sequence
