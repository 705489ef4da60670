"""The vectorized model and trainer agree with a plain per-seed nn.Module trained with
torch.optim.Adam, the way the papers' public code is written (benchmarks/naive_loop.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from testbed.config import scenario as scenario_mod
from testbed.engine.loop import build, train
from testbed.engine.model import pair_index
from testbed.engine.seeding import generator
from testbed.engine.task import make_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from naive_loop import Transformer  # noqa: E402

CONFIG = {
    "name": "ref",
    "task": {"seq_len": 8, "sparsity": 3, "p": 3, "n_train": 40, "n_test": 24},
    "model": {"hidden": 6},
    "training": {"epochs": 3, "batch_size": 16},
    "probes": ["metrics", "step_loss"],
    "seeds": [3, 11],
}


def reference_model(views: dict[str, torch.Tensor], s: int, vocab: int, L: int, hidden: int, mlp_bias: bool = True) -> Transformer:
    m = Transformer(vocab, L, d=2, hidden=hidden)
    if not mlp_bias:  # as the papers' public code ablates them
        m.fc1, m.fc2 = nn.Linear(2, hidden, bias=False), nn.Linear(hidden, 2, bias=False)
    with torch.no_grad():
        m.tok.weight.copy_(views["tok_emb"][s])
        m.pos.weight.copy_(views["pos_emb"][s])
        m.query.weight.copy_(views["query"][s].unsqueeze(0))
        m.value.weight.copy_(views["value"][s])
        m.fc1.weight.copy_(views["mlp.fc1.weight"][s])
        m.fc2.weight.copy_(views["mlp.fc2.weight"][s])
        if mlp_bias:
            m.fc1.bias.copy_(views["mlp.fc1.bias"][s])
            m.fc2.bias.copy_(views["mlp.fc2.bias"][s])
    return m


def test_forward_matches_the_reference_module():
    sc = scenario_mod.validate(CONFIG)
    c = build(sc)
    flat = c.space.init(sc.seeds)
    views = c.space.views(flat)
    tokens = torch.randint(3, (2, 50, 8), generator=torch.Generator().manual_seed(0))
    from testbed.engine.model import forward

    logits = forward(c.arch, views, pair_index(tokens, 3))
    for s in range(2):
        ref = reference_model(views, s, 3, 8, 6)
        torch.testing.assert_close(logits[s], ref(tokens[s]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mlp_bias, clip", [(True, None), (False, None), (False, 0.01)], ids=["bias", "no-bias", "no-bias-clipped"])
def test_training_follows_the_reference_loop_step_by_step(tmp_path, mlp_bias, clip):
    """Same data, initialisation and batch order: the step losses of testbed's vectorized Adam
    match torch.optim.Adam on the reference module, seed by seed; with model.mlp_bias false, a
    module whose fc1 and fc2 are Linear(bias=False), whose gradient norm clipping (binding at
    0.01) knows of no biases."""
    optimizer = {"name": "adam", "lr": 3e-3, "clip_grad_norm": clip}
    sc = scenario_mod.validate({**CONFIG, "model": {**CONFIG["model"], "mlp_bias": mlp_bias}, "optimizer": optimizer})
    result = train(sc, tmp_path)
    import numpy as np

    step_loss = np.load(tmp_path / "step_loss.npz")["loss"]
    c = build(sc)
    views = c.space.views(c.space.init(sc.seeds))
    ds = make_dataset(sc.seeds, 3, 8, 3, 40, 24, "iid")
    for s, seed in enumerate(sc.seeds):
        model = reference_model(views, s, 3, 8, 6, mlp_bias)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        order = generator(seed, "batches")
        x, y = ds.train.tokens[s], ds.train.labels[s]
        losses, clipped = [], []
        for _ in range(3):
            perm = torch.randperm(40, generator=order)
            for lo in range(0, 40, 16):
                idx = perm[lo : lo + 16]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                if clip is not None:
                    clipped.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip)) > clip)
                opt.step()
                losses.append(loss.item())
        torch.testing.assert_close(torch.tensor(step_loss[:, s]), torch.tensor(losses), rtol=1e-4, atol=1e-5)
        assert clip is None or all(clipped), "the clipping threshold should bind at every step"
        with torch.no_grad():
            test_acc = (model(ds.test.tokens[s]).argmax(1) == ds.test.labels[s]).float().mean()
        assert abs(float(result.final.test_acc[s]) - float(test_acc)) < 1e-6
