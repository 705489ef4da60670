"""Trains short scenarios covering every built-in norm, activation and optimizer and prints, as
JSON, a digest of each seed's step losses, snapshots and evaluations (full precision): what
tests/test_portable_bits.py compares across kernel selections, thread counts and seed company.

    python tests/portable_bits_worker.py OUT_DIR THREADS SEEDS [VARIANT ...]

SEEDS is a seed spec (`0-2`, `0-299`); every variant is trained on those seeds.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

# The default task's widths (L = 12, k = 5, h = 32, batch 32), so every product and sum runs at
# the lengths a real run uses, on few sequences and epochs.
TASK = {"seq_len": 12, "sparsity": 5, "p": 2, "n_train": 96, "n_test": 64}
PROBES = ["metrics", "step_loss", {"name": "snapshots", "every": 1}]

VARIANTS = {
    "smooth-gelu-adam": {"model": {"norm": "smooth"}},
    "rms-gelutanh-sgd-clip": {
        "model": {"norm": "rms", "activation": {"name": "gelu", "approximate": "tanh"}},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "clip_grad_norm": 0.5},
    },
    "l2-silu-adamw-p3": {
        "task": {**TASK, "p": 3, "n_train": 90, "test_split": "disjoint"},  # 90 = 2 * 32 + 26: a short last batch
        "model": {"embedding_norm": "l2", "mlp_norm": "rms", "activation": "silu"},
        "optimizer": {"name": "adamw", "lr": 0.01, "warmup_steps": 3, "lr_multipliers": {"mlp": 0.3}},
    },
    "identity-tanh-adam": {"model": {"norm": "identity", "activation": "tanh"}},
    "rms-relu-vocab-schedule": {
        "model": {"norm": "rms", "activation": "relu"},
        "curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3, "reinit_new_tokens": True}], "logits": "active"},
        "training": {"epochs": 4},
    },
}


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def train_variant(name: str, seeds: str, out: Path) -> dict[str, dict[str, str]]:
    from testbed.config.scenario import validate
    from testbed.engine.loop import train

    data = {"name": name, "seeds": seeds, "task": dict(TASK), "training": {"epochs": 3, "batch_size": 32}, "probes": PROBES}
    for key, value in VARIANTS[name].items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) and key != "task" else value
    scenario = validate(data)
    evaluations: list[np.ndarray] = []

    def progress(epoch, ev):
        if ev is not None:
            evaluations.append(torch.stack([ev.train_loss, ev.train_acc, ev.test_loss, ev.test_acc]).numpy().copy())

    train(scenario, out, progress=progress)
    per_seed: dict[str, dict[str, str]] = {}
    evals = np.stack(evaluations)  # (epochs, 4, S)
    with np.load(out / "step_loss.npz") as steps, np.load(out / "snapshots.npz") as snaps:
        params = sorted(k for k in snaps.files if k.startswith("param/"))
        for i, seed in enumerate(steps["seeds"].tolist()):
            per_seed[str(seed)] = {
                "step_loss": digest(steps["loss"][:, i]),
                "snapshots": digest(*(snaps[k][:, i] for k in params)),
                "evaluations": digest(evals[:, :, i]),
            }
    return per_seed


def main() -> None:
    out, threads, seeds, *names = sys.argv[1:]
    torch.set_num_threads(int(threads))
    result = {name: train_variant(name, seeds, Path(out) / name) for name in (names or VARIANTS)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
