"""`testbed spikes RUN` and `testbed.spike_causes`: the forensics of every detected spike of a
finished run -> spike_causes.csv (one row per row of spikes.csv).

For each spike, the step that made it is the update between the weights entering step
start - 1 and those entering step start (start: the spike's first elevated step); its batch is
the batch of step start. The weights come from spike_steps.npz where the snapshots probe kept
that very step (`weights` = kept), else from a deterministic replay of the seed's training
(`weights` = replayed; `testbed.forensics.recovery`), else nothing (`missing`, with
replay=False). Every row checks itself: `step_loss` is the loss the run recorded at step
start, `loss_after` the loss recomputed from the recovered weights on the recovered batch, and
`check` says `ok` when they agree (MISMATCH: the run was trained by another version of the
engine, whose steps this one does not reproduce: its forensics are not the run's).

Columns beyond spikes.csv's: see `testbed.forensics.attribution` (loss jump per parameter
group, the norm sites' radii and turns, the distance to the MLP's decision boundary, the
assemblers, the cause label) and

  - sharpness_before: lambda_max of the Hessian of the seed's training loss at the weights
    before the step (`testbed.forensics.hessian`), beside sharpness_threshold = 2 / lr;
  - probe_sharpness, probe_preconditioned: the sharpness probe's last values at or before the
    step (when the run has sharpness.npz), beside probe_step, the step they were measured at.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from testbed.errors import UserError
from testbed.forensics.attribution import CAUSES, Rule, attribute
from testbed.forensics.hessian import sharpness
from testbed.forensics.recovery import StepData, replay_weights
from testbed.rundir.reader import Run

SPIKE_FIELDS = ["seed", "start", "peak", "end", "epoch", "baseline", "peak_loss", "ratio", "diverged"]
CHUNK = 64  # spikes per vectorized sharpness computation
CHECK_TOLERANCE = 1e-4  # relative: the reference forward against the training step's loss, both float32


@dataclass
class SpikeForensics:
    """What `testbed.spike_causes` returns: the table (spike_causes.csv), where it was
    written, the seconds the forensics took, and how many spikes' weights were kept,
    replayed or missing."""

    table: pd.DataFrame
    path: Path | None
    seconds: float
    kept: int
    replayed: int
    missing: int
    timings: dict[str, float] | None = None  # seconds spent replaying, in the attribution, on the sharpness

    def per_cause(self) -> pd.DataFrame:
        """Count and mean jump (peak - baseline) per cause."""
        return per_cause(self.table)


def per_cause(table: pd.DataFrame) -> pd.DataFrame:
    size = table["peak_loss"] - table["baseline"]
    rows = [{"cause": c, "count": int((table["cause"] == c).sum()), "mean_size": float(size[table["cause"] == c].mean())} for c in CAUSES]  # type: ignore[arg-type]  # pandas' types do not follow this column through
    return pd.DataFrame(rows)


def _flat(arrays: dict[str, np.ndarray], prefix: str, j: int, space) -> torch.Tensor:
    return torch.cat([torch.as_tensor(arrays[f"{prefix}/{name}"][j]).reshape(-1) for name in space.slices]).float()


def _probe_series(run: Run, seed: int, step: int) -> tuple[float, float, int]:
    if not run.has("sharpness.npz"):
        return np.nan, np.nan, -1
    z = run.sharpness
    seeds = [int(s) for s in z["seeds"]]
    if seed not in seeds:
        return np.nan, np.nan, -1
    at = np.flatnonzero(z["steps"] <= step)
    if at.size == 0:
        return np.nan, np.nan, -1
    i, j = at[-1], seeds.index(seed)
    pre = z["preconditioned"][i, j] if "preconditioned" in z else np.nan
    return float(z["sharpness"][i, j]), float(pre), int(z["steps"][i])


def spike_causes(run_path, *, out=None, rule: Rule | None = None, replay: bool = True, use_kept: bool = True,
                 with_sharpness: bool = True, iterations: int = 20, registry=None, threads: int | None = None) -> SpikeForensics:
    """See `testbed.api.spike_causes`."""
    from testbed.engine.threads import choose, intra_op_threads

    run = run_path if isinstance(run_path, Run) else Run(run_path)
    run.require("spikes.csv", "step_loss.npz", needed_by="testbed spikes")
    with intra_op_threads(choose(len(run.seeds), threads)):
        return _spike_causes(run, out, rule or Rule(), replay, use_kept, with_sharpness, iterations, registry)


def _spike_causes(run: Run, out, rule: Rule, replay: bool, use_kept: bool, with_sharpness: bool, iterations: int, registry) -> SpikeForensics:
    started = time.perf_counter()
    spikes = run.spikes.copy()
    if "diverged" not in spikes:
        spikes["diverged"] = 0
    data = StepData(run.scenario, registry)
    space, arch = data.space, data.arch
    losses = run.step_loss

    kept_at: dict[tuple[int, int], int] = {}
    steps_file = run.spike_steps if run.has("spike_steps.npz") else None
    if steps_file is not None and use_kept:
        for j, (sd, st) in enumerate(zip(steps_file["seed"].tolist(), steps_file["step"].tolist())):
            kept_at.setdefault((int(sd), int(st)), j)
    wanted = [(int(sd), int(st)) for sd, st in zip(spikes["seed"], spikes["start"])]
    # A spike at the very first step (a divergence there) has no step before it to examine.
    source = ["kept" if w in kept_at else ("replayed" if replay and w[1] >= 1 else "missing") for w in wanted]
    need = sorted({(sd, st + k) for (sd, st), src in zip(wanted, source) if src == "replayed" for k in (-1, 0)})
    clock = time.perf_counter()
    replayed = replay_weights(run.scenario, need, registry) if need else {}
    timings = {"replay": time.perf_counter() - clock}

    rows = [i for i, src in enumerate(source) if src != "missing"]
    before = torch.zeros(len(rows), space.size)
    after = torch.zeros(len(rows), space.size)
    for k, i in enumerate(rows):
        sd, st = wanted[i]
        if source[i] == "kept":
            assert steps_file is not None  # a spike is kept only where spike_steps.npz is
            j = kept_at[(sd, st)]
            before[k], after[k] = _flat(steps_file, "before", j, space), _flat(steps_file, "after", j, space)
        else:
            before[k], after[k] = replayed[(sd, st - 1)], replayed[(sd, st)]

    table = spikes[[c for c in SPIKE_FIELDS if c in spikes]].reset_index(drop=True)
    table["weights"] = source
    table["step_loss"] = [float(losses.at[st, sd]) for sd, st in wanted]
    lr = float(run.scenario.optimizer.lr)
    table["sharpness_threshold"] = 2.0 / lr
    if rows:
        clock = time.perf_counter()
        found = data.batches_at([wanted[i] for i in rows])
        baseline = table["baseline"].to_numpy(dtype=float)  # type: ignore[attr-defined]  # pyright reads table[name] as the array last assigned to it; pandas made it a Series
        for width in sorted({x.shape[1] for x, _ in found}):  # batches of one width at a time (a short last batch apart)
            ks = [k for k, (x, _) in enumerate(found) if x.shape[1] == width]
            at = [rows[k] for k in ks]
            # One curriculum stage scores one set of tokens; spikes of stages that score differently go apart.
            cols = {}
            for scored in sorted({data.scored(wanted[i][1]) or 0 for i in at}):
                sub = [k for k, i in zip(ks, at) if (data.scored(wanted[i][1]) or 0) == scored]
                got = attribute(arch, space, before[sub], after[sub], torch.stack([found[k][0] for k in sub]),
                                torch.stack([found[k][1] for k in sub]), rule, baseline=baseline[[rows[k] for k in sub]],
                                scored=scored or None)
                order = [ks.index(k) for k in sub]
                for name, values in got.items():
                    if name not in cols:
                        cols[name] = np.empty(len(ks), dtype=values.dtype if values.dtype.kind != "U" else object)
                    cols[name][order] = values
            for name, values in cols.items():
                if name not in table:
                    table[name] = np.full(len(table), np.nan, dtype=object if values.dtype == object or values.dtype.kind == "U" else float)
                column = table[name].to_numpy().copy()  # type: ignore[attr-defined]  # pyright reads table[name] as the array last assigned to it; pandas made it a Series
                column[at] = values
                table[name] = column
        timings["attribution"] = time.perf_counter() - clock
        clock = time.perf_counter()
        if with_sharpness:
            table["sharpness_before"] = np.nan
            for lo in range(0, len(rows), CHUNK):
                part = rows[lo : lo + CHUNK]
                sets = [data.training_set(wanted[i][0], data.p_at_step(wanted[i][1] - 1)) for i in part]
                idx = torch.stack([s[0] for s in sets])
                lab = torch.stack([s[1] for s in sets])
                for scored in sorted({data.scored(wanted[i][1] - 1) or 0 for i in part}):
                    sub = [k for k, i in enumerate(part) if (data.scored(wanted[i][1] - 1) or 0) == scored]
                    top, _ = sharpness(arch, space, before[lo : lo + CHUNK][sub], idx[sub], lab[sub], [wanted[part[k]][0] for k in sub],
                                       iterations=iterations, scored=scored or None)
                    table.loc[[part[k] for k in sub], "sharpness_before"] = top.double().numpy()
            timings["sharpness"] = time.perf_counter() - clock
    else:
        table["cause"] = pd.Series([None] * len(table), dtype=object)
    if "loss_after" in table:  # the recovered weights and batch are the run's: their loss is the one it recorded
        recorded = table["step_loss"].to_numpy(dtype=float)  # type: ignore[attr-defined]  # pyright reads table[name] as the array last assigned to it; pandas made it a Series
        with np.errstate(invalid="ignore"):
            close = np.abs(table["loss_after"].to_numpy(dtype=float) - recorded) <= CHECK_TOLERANCE * (1.0 + np.abs(recorded))  # type: ignore[attr-defined]  # pyright reads table[name] as the array last assigned to it; pandas made it a Series
        table["check"] = np.where(table["weights"] == "missing", "none", np.where(close | ~np.isfinite(recorded), "ok", "MISMATCH"))
    probe = [_probe_series(run, sd, st - 1) for sd, st in wanted]
    table["probe_sharpness"] = [p[0] for p in probe]
    table["probe_preconditioned"] = [p[1] for p in probe]
    table["probe_step"] = [p[2] for p in probe]
    table["cause"] = table["cause"].where(table["weights"] != "missing", "unknown")  # type: ignore[attr-defined]  # pyright reads table[name] as the array last assigned to it; pandas made it a Series
    if "cause_reason" in table:
        table["cause_reason"] = table["cause_reason"].where(table["weights"] != "missing", "no_weights")  # type: ignore[attr-defined]  # pyright reads table[name] as the array last assigned to it; pandas made it a Series
    seconds = time.perf_counter() - started

    path = Path(out) if out is not None else run.path / "spike_causes.csv"
    if path.exists() and path.is_dir():
        path = path / "spike_causes.csv"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        table.to_csv(partial, index=False, float_format="%.9g")
        os.replace(partial, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write spike_causes.csv ({exc.strerror or exc})") from None
    n = {s: source.count(s) for s in ("kept", "replayed", "missing")}
    return SpikeForensics(table, path, seconds, n["kept"], n["replayed"], n["missing"], timings)  # type: ignore[arg-type]  # pandas' types do not follow this column through
