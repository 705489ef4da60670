"""Train/test loss and accuracy per seed, every few epochs -> metrics.csv (long format)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from pydantic import Field

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.probe import Evaluation, Probe, stack_evaluations, unstack_evaluations
from testbed.rundir import seed_merge

COLUMNS = ("seed", "epoch", "p", "train_loss", "train_acc", "test_loss", "test_acc")


class MetricsParams(Params):
    every: int = Field(1, ge=1, description="evaluate every this many epochs (and at 0 and the last)")


class Metrics(Probe):
    def __init__(self, params: MetricsParams):
        self.every = params.every
        self.rows: list[Evaluation] = []

    def eval_epochs(self, epochs: int) -> set[int]:
        return set(range(0, epochs + 1, self.every)) | {epochs}

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        if evaluation is not None:
            self.rows.append(evaluation)

    def state_dict(self) -> dict:
        return {"rows": stack_evaluations(self.rows)}

    def load_state_dict(self, state: dict) -> None:
        self.rows = unstack_evaluations(state["rows"])

    def finish(self, out: Path) -> dict[str, list]:
        seeds = self.info.seeds
        with open(out / "metrics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for ev in self.rows:
                cols = [t.tolist() for t in (ev.train_loss, ev.train_acc, ev.test_loss, ev.test_acc)]
                for j, seed in enumerate(seeds):
                    w.writerow([seed, ev.epoch, ev.p] + [f"{c[j]:.6g}" for c in cols])
        return {}

    def combine(self, parts, seeds, out: Path) -> bool:
        seed_merge.seed_csv(parts, seeds, "metrics.csv", out, major="epoch")
        return True


@plugin("metrics", MetricsParams)
def metrics(params: MetricsParams):
    """Train/test loss and accuracy of every seed every `every` epochs (metrics.csv)."""
    return Metrics(params)
