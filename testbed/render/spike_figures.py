"""Frames just before and just after every loss spike, side by side (first paper, Figures
13-14): the step-level parameters the snapshots probe kept around each spike when it has them
(spike_steps: true), otherwise the nearest epoch snapshots around the spike."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from testbed.render import figure, rundata
from testbed.render.quantities import Quantities


def _stack(a: dict, b: dict) -> dict:
    return {n: np.stack([a[n], b[n]]) for n in a}


def largest(spikes: list[dict], top: int | None) -> list[dict]:
    """The `top` spikes with the largest loss jump (peak - baseline), in the order of spikes.csv."""
    if top is None or len(spikes) <= top:
        return spikes
    jump = [float(sp["peak_loss"]) - float(sp["baseline"]) for sp in spikes]
    keep = sorted(np.argsort(np.nan_to_num(jump, nan=np.inf), kind="stable")[::-1][:top])
    return [spikes[i] for i in keep]


def render_spikes(run: rundata.SnapshotRun, seed: int | None, names: list[str], out: Path | None, dpi: float, console: Console,
                  top: int | None = None, quiet: bool = False) -> list[Path]:
    spikes = [sp for sp in run.spikes if seed is None or int(sp["seed"]) == seed]
    spikes = largest([sp for sp in spikes if int(sp["seed"]) in run.seeds], top)
    out_dir = Path(out) if out is not None else run.path / "render" / "spikes"
    if out_dir.exists() and not out_dir.is_dir():
        from testbed.errors import UserError

        raise UserError(f"--out {out_dir}: --spikes writes a folder of PNG files; this is a file")
    if not spikes:
        where = "spikes.csv" if (run.path / "spikes.csv").is_file() else "this run (no spikes.csv: add the spikes probe)"
        console.print(f"no spikes found in {where}{'' if seed is None else f' for seed {seed}'}; nothing written", highlight=False, soft_wrap=True)
        return []
    steps = rundata.load_spike_steps(run.path)
    if steps is None:
        console.print("no step-level parameters (spike_steps.npz): showing the nearest epoch snapshots around each spike; "
                      "for the exact steps add spike_steps: true to the snapshots probe", highlight=False, soft_wrap=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    spe = run.steps_per_epoch
    written = []
    causes = SpikeCauses(run.path)
    for sp in track(spikes, description="spike figures", console=console, disable=quiet or len(spikes) < 2, transient=True):
        sd, start, peak, end = int(sp["seed"]), int(sp["start"]), int(sp["peak"]), int(sp["end"])
        s = run.seeds.index(sd)
        pair = _step_pair(steps, run, sd, start, end)
        if pair is not None:
            before, after, b_step, a_step = pair
            labels = (f"before: step {b_step}", f"after: step {a_step}")
            epochs = np.array([b_step / spe, a_step / spe])
        else:
            if steps is not None:
                console.print(f"seed {sd}, step {start}: no step-level weights kept for this spike; showing the nearest epoch snapshots",
                              highlight=False, soft_wrap=True)
            e = start // spe + 1  # epoch of the first elevated step; the snapshot of e - 1 precedes it
            lo = int(np.searchsorted(run.epochs, e, side="left")) - 1
            hi = int(np.searchsorted(run.epochs, e, side="left"))
            lo, hi = max(lo, 0), min(hi, len(run.epochs) - 1)
            before, after = run.seed_params(s, lo), run.seed_params(s, hi)
            labels = (f"before: epoch {run.epochs[lo]}", f"after: epoch {run.epochs[hi]}")
            epochs = run.epochs[[lo, hi]].astype(float)
        params = _stack(before, after)
        prev = _stack(before, before)  # the attention graph of the 'after' row shows the spike's update
        q = Quantities.build(run, s, params, prev, epochs, list(labels))
        q.step_level = True
        built = figure.build_panels(names) + figure.build_panels(names)
        extents = [p.extent(q) for p in built]
        caption = (f"{run.scenario.name} - seed {sd} - spike at step {peak} (epoch {peak // spe + 1}), "
                   f"loss {sp['baseline']:.3g} -> {sp['peak_loss']:.3g}.  Top row {labels[0]}; bottom row {labels[1]}"
                   + causes.caption(sd, start))
        g = figure.Grid(built, (2, len(names)), q, extents, dpi, slots=[0] * len(names) + [1] * len(names))
        path = out_dir / f"spike-seed{sd}-step{peak}.png"
        partial = path.with_name(f".{path.name}.partial.png")
        try:
            g.save(q, 0, partial, caption)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        written.append(path)
    if causes.table is not None or (run.path / "sharpness.npz").is_file():  # the spikes by cause beside the sharpness
        from testbed.forensics.forensics_figures import run_overview
        from testbed.rundir.reader import Run

        written.append(run_overview(Run(run.path), out_dir / "overview.png", seeds=None if seed is None else [seed]))
    console.print(f"{len(written)} spike figure{'s' if len(written) != 1 else ''} in {out_dir}", highlight=False, soft_wrap=True)
    return written


class SpikeCauses:
    """spike_causes.csv of a run (written by `testbed spikes`), if it has one: a caption line per spike."""

    def __init__(self, folder: Path):
        import pandas as pd

        file = Path(folder) / "spike_causes.csv"
        self.table = pd.read_csv(file).set_index(["seed", "start"]) if file.is_file() else None

    def caption(self, seed: int, start: int) -> str:
        if self.table is None or (seed, start) not in self.table.index:
            return ""
        r = self.table.loc[(seed, start)]
        groups = [c for c in self.table.columns if c.startswith("jump_") and c != "jump_interaction"]
        top = max(groups, key=lambda c: r[c])
        sharp = f"; sharpness {r['sharpness_before']:.3g} (2/lr {r['sharpness_threshold']:.3g})" if "sharpness_before" in r else ""
        return (f"  |  cause: {r['cause']} ({r['weights']}): norm output moved {r['culprit_norm_move']:.2f} at {r['culprit_norm_site']} norm, "
                f"boundary distance {r['culprit_boundary_distance']:.2g}; {top[5:]} step alone: {r[top]:+.3g} of {r['jump']:+.3g}{sharp}")


def _step_pair(steps: dict | None, run: rundata.SnapshotRun, seed: int, start: int, end: int):
    """(before params, after params, before step, after step) saved for this spike, if any."""
    if steps is None or len(steps.get("seed", [])) == 0:
        return None
    ok = np.flatnonzero((steps["seed"] == seed) & (steps["step"] >= start - 1) & (steps["step"] <= end))
    if len(ok) == 0:
        return None
    j = ok[np.argmin(np.abs(steps["step"][ok] - start))]
    before = {n: steps[f"before/{n}"][j] for n in run.space.shapes}
    after = {n: steps[f"after/{n}"][j] for n in run.space.shapes}
    return before, after, int(steps["before_step"][j]), int(steps["step"][j])
