"""Curricula: the vocabulary switch of the papers' transfer experiment, end to end."""

from __future__ import annotations

import csv

import pytest
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
