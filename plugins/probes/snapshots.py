"""All weights of every seed every few epochs, for rendering later -> snapshots.npz; with
`spike_steps`, also the weights just before and after each step whose loss jumps ->
spike_steps.npz (what `testbed render --spikes` shows: a spike happens within one step, far
finer than any epoch snapshot)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.probe import Evaluation, Probe
from testbed.rundir import seed_merge


class SnapshotParams(Params):
    every: int = Field(10, ge=1, description="snapshot every this many epochs (and at 0 and the last)")
    spike_steps: bool = Field(False, description="also keep the weights before and after every step whose loss jumps (spike_steps.npz)")

    def keeps(self, epoch: int, last: int) -> bool:
        """Whether a run of `last` epochs snapshots epoch `epoch` (what a warm start may start from)."""
        return epoch % self.every == 0 or epoch == last


class Snapshots(Probe):
    def __init__(self, params: SnapshotParams):
        self.params = params
        self.epochs: list[int] = []
        self.flats: list[torch.Tensor] = []

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        if self.params.keeps(epoch, self.info.epochs):
            self.epochs.append(epoch)
            self.flats.append(flat.detach().clone())

    def state_dict(self) -> dict:
        return {"epochs": list(self.epochs), "flats": torch.stack(self.flats) if self.flats else None}

    def load_state_dict(self, state: dict) -> None:
        self.epochs = list(state["epochs"])
        self.flats = list(state["flats"].unbind(0)) if state["flats"] is not None else []

    def finish(self, out: Path) -> dict[str, list]:
        space = self.info.space
        stacked = torch.stack(self.flats)  # (n, S, P)
        arrays = {
            f"param/{name}": stacked[:, :, sl].reshape(len(self.epochs), stacked.shape[1], *space.shapes[name]).numpy()
            for name, sl in space.slices.items()
        }
        np.savez(  # not compressed: float weights shrink by a sixth, at 25 MB/s
            out / "snapshots.npz",
            epochs=np.asarray(self.epochs),
            seeds=np.asarray(self.info.seeds),
            layout=np.asarray(json.dumps({n: list(s) for n, s in space.shapes.items()})),
            **arrays,
        )
        return {}

    def combine(self, parts, seeds, out: Path) -> bool:
        seed_merge.seed_npz(parts, seeds, "snapshots.npz", out, seed_axis=lambda key: 1 if key.startswith("param/") else None)
        return True


class SpikeSnapshots(Snapshots):
    """Snapshots plus the weights around loss jumps.

    The loss of each step is compared, per seed, with the median of the previous `window` step
    losses (the window moved every REFRESH steps), with the `ratio` and `min_delta` of the spike
    detector (the scenario's `spikes` probe settings, else its defaults; its noise test is left
    out, so this keeps a superset of what the detector reports). The first elevated step s of a
    jump (one more than `merge_gap` steps after the previous elevated step) keeps the weights
    that gave the normal loss of step s - 1 and those that gave the elevated loss of step s; at
    most `MAX_EVENTS` jumps are kept per seed.

    The weights entering each step go into a ring where training runs. On the CPU each step is
    examined as it ends and a ring of two suffices; on a device the steps of an epoch are
    examined at its end, from one copy of their losses (a check every step would make the CPU
    wait for the device every step), and the ring holds the epoch's steps and the one before."""

    steps_on_device = True
    MAX_EVENTS = 64
    REFRESH = 10  # steps between recomputations of the median baseline

    def start(self, info) -> None:
        from testbed.analysis.spike_detector import SpikeParams

        super().start(info)
        found = [p for p in getattr(info.scenario, "probes", []) if getattr(p, "name", None) == "spikes"]
        self.detector = SpikeParams(**found[0].model_dump(exclude={"name"})) if found else SpikeParams()
        self.flat: torch.Tensor | None = info.live  # updated in place by the optimizer: read after every step
        self.deferred = info.off_host
        self.depth = info.steps_per_epoch + 2 if self.deferred else 2
        where = info.live.device if info.live is not None else None
        self.ring = torch.zeros(self.depth, len(info.seeds), info.space.size, device=where)  # weights entering step n at n % depth
        self.waiting: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet examined (deferred only)
        self.steps = 0
        self.lowest = torch.full((len(info.seeds),), float("inf"))  # the least loss of the baseline's window
        self.window = (0, 0)  # the steps of the baseline's window
        self.base_until = 0
        self.last_elevated = [-(10**9)] * len(info.seeds)
        self.kept = [0] * len(info.seeds)
        self.events: list[tuple[int, int, float, torch.Tensor, torch.Tensor]] = []

    def after_epoch(self, epoch: int, flat: torch.Tensor, evaluation: Evaluation | None) -> None:
        super().after_epoch(epoch, flat, evaluation)
        if epoch == 0:
            if self.flat is None:  # a RunInfo made by hand, without the live parameters
                self.flat = flat
            self.ring[0].copy_(self.flat)
        if self.waiting:
            losses = torch.stack([loss for _, loss in self.waiting]).cpu()  # the one wait of the epoch
            for (step, _), loss in zip(self.waiting, losses):
                self._examine(step, loss)
            self.waiting.clear()

    def after_step(self, step: int, epoch: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        if self.deferred:
            self.waiting.append((step, loss))
        else:
            self._examine(step, loss)
        self.ring[step % self.depth].copy_(self.flat)
        self.steps = step

    def _examine(self, step: int, loss: torch.Tensor) -> None:
        """Whether step `step`'s loss (S,) jumps, seed by seed; keep the weights around a new jump."""
        s = step - 1  # the step whose loss this is, computed with the weights entering it
        det = self.detector
        if s < max(det.min_history, 1):
            return
        if s >= self.base_until:  # the baseline's window, moved every REFRESH steps
            self.window = (max(0, s - det.window), s)
            history = self.info.step_losses[self.window[0] : s]
            self.lowest = torch.nan_to_num(history, nan=float("inf")).amin(0)  # the median is at least this
            self.base_until = s + self.REFRESH
        # A loss that beats the window's lowest value by the ratio and the margin is a candidate;
        # only candidates need the median (10,000 seeds' medians cost 10 ms, their minima 0.5).
        finite = torch.isfinite(loss)
        candidate = (loss > det.ratio * self.lowest) & (loss - self.lowest > det.min_delta) | ~finite
        if not bool(candidate.any()):
            return
        seeds = torch.nonzero(candidate).flatten()
        base = torch.nanmedian(self.info.step_losses[self.window[0] : self.window[1], seeds], 0).values
        jump = (loss[seeds] > det.ratio * base) & (loss[seeds] - base > det.min_delta) | ~finite[seeds]
        for j in seeds[jump].tolist():
            new = s - self.last_elevated[j] > det.merge_gap
            self.last_elevated[j] = s
            if new and self.kept[j] < self.MAX_EVENTS:
                self.kept[j] += 1
                before, after = self.ring[(s - 1) % self.depth, j].cpu().clone(), self.ring[s % self.depth, j].cpu().clone()
                self.events.append((j, s, float(loss[j]), before, after))

    def state_dict(self) -> dict:
        """After an epoch: the weights entering the last step and the next (all the ring the
        next epoch's first examination reads), and what the examination has found."""
        recent = torch.stack([self.ring[(self.steps - 1) % self.depth], self.ring[self.steps % self.depth]]).cpu()
        kept = ("steps", "lowest", "window", "base_until", "last_elevated", "kept", "events")
        return {"snapshots": super().state_dict(), "recent": recent, **{name: getattr(self, name) for name in kept}}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state["snapshots"])
        self.steps = state["steps"]
        self.ring[(self.steps - 1) % self.depth].copy_(state["recent"][0])
        self.ring[self.steps % self.depth].copy_(state["recent"][1])
        self.lowest, self.window, self.base_until = state["lowest"], tuple(state["window"]), state["base_until"]
        self.last_elevated, self.kept = list(state["last_elevated"]), list(state["kept"])
        self.events = [tuple(event) for event in state["events"]]

    def finish(self, out: Path) -> dict[str, list]:
        super().finish(out)
        space, n = self.info.space, len(self.events)
        arrays = {}
        for key, col in (("before", 3), ("after", 4)):
            stacked = torch.stack([e[col] for e in self.events]) if n else torch.zeros(0, space.size)
            for name, sl in space.slices.items():
                arrays[f"{key}/{name}"] = stacked[:, sl].reshape(n, *space.shapes[name]).numpy()
        np.savez_compressed(
            out / "spike_steps.npz",
            seed=np.asarray([self.info.seeds[e[0]] for e in self.events], dtype=np.int64),
            step=np.asarray([e[1] for e in self.events], dtype=np.int64),
            before_step=np.asarray([e[1] - 1 for e in self.events], dtype=np.int64),
            loss=np.asarray([e[2] for e in self.events], dtype=np.float64),
            **arrays,
        )
        return {}

    def combine(self, parts, seeds, out: Path) -> bool:
        super().combine(parts, seeds, out)
        seed_merge.seed_rows_npz(parts, seeds, "spike_steps.npz", out, major="step")  # kept step by step, seeds in order
        return True


@plugin("snapshots", SnapshotParams)
def snapshots(params: SnapshotParams):
    """Every parameter of every seed every `every` epochs (snapshots.npz: param/<name> (n, S, ...)); spike_steps: weights around loss jumps."""
    return SpikeSnapshots(params) if params.spike_steps else Snapshots(params)
