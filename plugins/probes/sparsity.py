"""How sparse the MLP's hidden activations are (first paper, appendix A.2): at some epochs, the
fraction of hidden activations (after the activation function) with |a| < eps over the
training set's sequences, for a log-spaced grid of eps, per seed -> sparsity.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.probe import Evaluation, Probe, RunInfo
from testbed.rundir import seed_merge

EPS_LOW, EPS_HIGH = 1e-5, 1e2
CHUNK_ELEMENTS = 1 << 22  # S * sequences * hidden activations per forward piece


class SparsityParams(Params):
    every: int = Field(10, ge=1, description="measure every this many epochs (and at 0 and the last)")
    epochs: list[int] | None = Field(None, description="measure at exactly these epochs (0 = initialisation) instead of `every`")
    n_eps: int = Field(29, ge=2, description="thresholds eps, log-spaced from 1e-5 to 1e2 (29: 4 per decade)")


def eps_grid(n: int) -> np.ndarray:
    return np.logspace(np.log10(EPS_LOW), np.log10(EPS_HIGH), n)


def fraction_below(hidden_abs: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """(S, E) counts of the values of each seed's row of `hidden_abs` (S, M) below each eps (E,)."""
    S = hidden_abs.shape[0]
    E = eps.numel()
    # bin i: eps[i-1] <= |a| < eps[i]; |a| < eps[j] for every bin i <= j
    bins = torch.bucketize(hidden_abs, eps, right=True) + (E + 1) * torch.arange(S, device=hidden_abs.device)[:, None]
    hist = torch.bincount(bins.reshape(-1), minlength=S * (E + 1)).view(S, E + 1)
    return hist.cumsum(1)[:, :E]


class Sparsity(Probe):
    def __init__(self, params: SparsityParams):
        self.every = params.every
        self.chosen = sorted(set(params.epochs)) if params.epochs is not None else None
        self.eps = eps_grid(params.n_eps)
        self.measured: list[int] = []
        self.fractions: list[torch.Tensor] = []  # (S, E) float64 per measured epoch

    def start(self, info: RunInfo) -> None:
        super().start(info)
        self._model = None  # (architecture, curriculum), built on first use; not state
        self._data: dict[int, torch.Tensor] = {}  # p -> (S, L, N) pair rows of the training sequences

    def wanted(self, epoch: int) -> bool:
        if self.chosen is not None:
            return epoch in self.chosen
        return epoch % self.every == 0 or epoch == self.info.epochs

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        if self.wanted(epoch):
            self.measured.append(epoch)
            self.fractions.append(self.measure(epoch, flat))

    def _rows(self, epoch: int):
        from testbed.engine.loop import build
        from testbed.engine.model import pair_index
        from testbed.engine.task import make_dataset

        if self._model is None:
            c = build(self.info.scenario.model_copy(update={"probes": []}))
            self._model = (c.arch, c.curriculum)
        arch, curriculum = self._model
        p = curriculum.p_at(max(epoch, 1))  # the vocabulary the epoch trained on (epoch 0: epoch 1's)
        if p not in self._data:
            task, seeds = self.info.scenario.task, list(self.info.seeds)
            ds = make_dataset(seeds, p, task.seq_len, task.sparsity, task.n_train, task.n_test, task.test_split)
            self._data = {p: pair_index(ds.train.tokens, arch.n_tokens)}
        return arch, self._data[p]

    @torch.no_grad()
    def measure(self, epoch: int, flat: torch.Tensor) -> torch.Tensor:
        """(S, E) fraction of hidden activations with |a| < eps over the training sequences."""
        from testbed.engine.model import forward

        arch, rows = self._rows(epoch)
        rows = rows.to(flat.device)
        S, _, N = rows.shape
        views = self.info.space.views(flat)
        eps = torch.as_tensor(self.eps, dtype=flat.dtype, device=flat.device)
        counts = torch.zeros(S, len(self.eps), dtype=torch.int64, device=flat.device)
        chunk = max(1, CHUNK_ELEMENTS // (S * arch.hidden))
        for lo in range(0, N, chunk):
            trace: dict[str, torch.Tensor] = {}
            forward(arch, views, rows[:, :, lo : lo + chunk], trace)
            counts += fraction_below(trace["hidden"].abs().reshape(S, -1), eps)
        return (counts.double() / (N * arch.hidden)).cpu()

    def state_dict(self) -> dict:
        return {"measured": list(self.measured), "fractions": torch.stack(self.fractions) if self.fractions else None}

    def load_state_dict(self, state: dict) -> None:
        self.measured = list(state["measured"])
        self.fractions = list(state["fractions"].unbind(0)) if state["fractions"] is not None else []

    def finish(self, out: Path) -> dict[str, list]:
        S, E = len(self.info.seeds), len(self.eps)
        fraction = torch.stack(self.fractions).numpy() if self.fractions else np.zeros((0, S, E))
        np.savez_compressed(
            out / "sparsity.npz",
            epochs=np.asarray(self.measured, dtype=np.int64),
            eps=self.eps,
            seeds=np.asarray(self.info.seeds),
            fraction=fraction,
        )
        return {}

    def combine(self, parts, seeds, out: Path) -> bool:
        seed_merge.seed_npz(parts, seeds, "sparsity.npz", out, seed_axis=lambda key: 1 if key == "fraction" else None)
        return True


@plugin("sparsity", SparsityParams)
def sparsity(params: SparsityParams):
    """Fraction of MLP hidden activations with |a| < eps (log grid 1e-5..1e2) per seed at some epochs (sparsity.npz: fraction (n, S, E))."""
    return Sparsity(params)
