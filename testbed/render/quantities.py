"""Everything a frame shows, computed once for many frames of one seed at a time.

The model's forward pass takes a leading seed axis; here that axis holds the frames instead
(the snapshots of one seed), so a whole video's intermediates come from a few batched passes,
and every panel reads the same arrays instead of recomputing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from testbed.engine.model import forward, pair_index
from testbed.render import sentences as sentences_mod
from testbed.render.rundata import SnapshotRun
from testbed.render.style import wheel

FIELD_CHUNK = 1 << 21  # grid points x hidden units per batched field evaluation


def _torch(params: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {n: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for n, a in params.items()}


def run_forward(run: SnapshotRun, params: dict[str, torch.Tensor], tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Trace of the forward pass of `tokens` (N, L) under F parameter sets -> numpy arrays."""
    F = next(iter(params.values())).shape[0]
    tok = torch.from_numpy(tokens).long().unsqueeze(0).expand(F, *tokens.shape)
    trace: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        logits = forward(run.arch, params, pair_index(tok, run.arch.n_tokens), trace)
        trace["probs"] = torch.softmax(logits, -1)
    return {k: v.numpy() for k, v in trace.items()}


@dataclass
class Quantities:
    """Intermediates of F frames of one seed. Arrays carry the frame axis first."""

    run: SnapshotRun
    sentences: sentences_mod.Sentences
    seed: int
    epochs: np.ndarray  # (F,) epoch shown by each frame (fractional for step-level frames)
    captions: list[str]
    params: dict[str, np.ndarray]  # name -> (F, ...)
    trace: dict[str, np.ndarray]  # forward trace of the probe sentences
    tables: dict[str, np.ndarray]  # x (E+P), z (normalized), vz: (F, V, L, d)
    cloud_tokens: np.ndarray
    cloud_xi: np.ndarray  # (F, Nc, d)
    focus_tokens: np.ndarray  # (L,)
    focus_attn: np.ndarray  # (F, L)
    focus_prev: np.ndarray  # (F, L) the same one update (frame) earlier
    history_epochs: np.ndarray  # (n,) every snapshot of the run
    history_attn: np.ndarray  # (n, L)
    step_level: bool = False  # frames of a spike figure: steps apart, not snapshots
    _fields: dict = field(default_factory=dict, repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.epochs)

    @classmethod
    def build(
        cls,
        run: SnapshotRun,
        seed_col: int,
        params: dict[str, np.ndarray],
        prev: dict[str, np.ndarray],
        epochs: np.ndarray,
        captions: list[str],
    ) -> Quantities:
        sent = sentences_mod.build(run.arch.seq_len, run.k, run.p)
        tp, tprev = _torch(params), _torch(prev)
        trace = run_forward(run, tp, sent.tokens)
        F, V, L, d = len(epochs), run.arch.n_tokens, run.arch.seq_len, run.arch.d
        trace["attn"] = trace["attn"].transpose(0, 2, 1)  # (F, N, L)
        z_table = trace.pop("z_table").reshape(F, V, L, d)
        tables = {
            "x": trace.pop("x_table"),
            "z": z_table,
            "vz": np.einsum("fvld,fed->fvle", z_table, params["value"]),
        }
        for key in ("z", "scores", "mass"):
            trace.pop(key, None)
        cloud = sentences_mod.cloud(L, run.p)
        cloud_xi = run_forward(run, tp, cloud)["xi"]
        focus = sentences_mod.focus(sent)
        focus_attn = run_forward(run, tp, focus[None])["attn"][:, :, 0]
        focus_prev = run_forward(run, tprev, focus[None])["attn"][:, :, 0]
        hist = run_forward(run, _torch(run.seed_params(seed_col)), focus[None])["attn"][:, :, 0]
        return cls(
            run, sent, run.seeds[seed_col], np.asarray(epochs, float), captions, params, trace, tables,
            cloud, cloud_xi, focus, focus_attn, focus_prev, run.epochs.astype(float), hist,
        )

    def field(self, kind: str, extent: tuple[float, float, float, float], G: int) -> np.ndarray:
        """(F, G, G, 3) colour-wheel image of p(y | point) over the square `extent`, for a point
        taken as the sequence embedding xi ('xi': through the MLP and the decoding) or as the
        transformed sequence zeta ('zeta': decoding only). Row 0 is the bottom."""
        key = (kind, tuple(round(e, 9) for e in extent), G)
        if key not in self._fields:
            self._fields[key] = self._compute_field(kind, extent, G)
        return self._fields[key]

    def _compute_field(self, kind: str, extent, G: int) -> np.ndarray:
        x0, x1, y0, y1 = extent
        xs, ys = np.linspace(x0, x1, G), np.linspace(y0, y1, G)
        gx, gy = np.meshgrid(xs, ys)
        grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32))  # (G*G, 2)
        p = _torch(self.params)
        arch = self.run.arch
        out = []
        F = self.n_frames
        step = max(1, FIELD_CHUNK // (G * G * max(arch.hidden, 1)))
        with torch.inference_mode():
            for lo in range(0, F, step):
                sl = slice(lo, min(F, lo + step))
                E = p["tok_emb"][sl]
                g = grid.unsqueeze(0).expand(E.shape[0], *grid.shape)
                if kind == "xi":
                    m = arch.mlp_norm(g)
                    pre = torch.baddbmm(p["mlp.fc1.bias"][sl].unsqueeze(1), m, p["mlp.fc1.weight"][sl].transpose(1, 2))
                    hid = arch.activation(pre)
                    zeta = torch.baddbmm(p["mlp.fc2.bias"][sl].unsqueeze(1), hid, p["mlp.fc2.weight"][sl].transpose(1, 2)) + g
                else:
                    zeta = g
                probs = torch.softmax(torch.matmul(zeta, E.transpose(1, 2)), -1)[..., : self.run.p]
                probs = probs / probs.sum(-1, keepdim=True)
                out.append(wheel(probs.numpy()).reshape(-1, G, G, 3).astype(np.float32))
        return np.concatenate(out)


def snapshot_quantities(run: SnapshotRun, s: int, idx: np.ndarray) -> Quantities:
    """Quantities of snapshots `idx` of seed column s; each frame's previous frame is the snapshot before.
    Lives here, not in the command, so that video workers and the command share it without
    importing each other."""
    idx = np.asarray(idx, dtype=int)
    seed = run.seeds[s]
    captions = [f"{run.scenario.name} - seed {seed} - epoch {int(run.epochs[i])}" for i in idx]
    return Quantities.build(run, s, run.seed_params(s, idx), run.seed_params(s, np.maximum(idx - 1, 0)), run.epochs[idx], captions)
