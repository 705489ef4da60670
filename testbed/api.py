"""The Python API: load a scenario, train it into a run directory, read runs back as pandas
DataFrames, and compare scenarios with the statistics of `testbed compare`.

    import testbed
    sc = testbed.load_scenario("scenarios/smooth_norm.yaml", seeds="0-9", **{"training.epochs": 200})
    run = testbed.run(sc, out="runs/x")
    run.metrics                      # long format: seed, epoch, p, train_loss, train_acc, test_loss, test_acc
    run.step_loss                    # one row per optimizer step, one column per seed
    run.summary                      # final metrics, one row per seed
    testbed.load_run("runs/x")       # the same from the directory on disk
    cmp = testbed.compare([run, "runs/y"])
    cmp.table()                      # estimates, confidence intervals, p-values, verdicts
    testbed.barrier("runs/x", "runs/y", pair_seeds=True).barriers   # loss barrier between final weights

Nothing here prints: `progress=True` draws a progress bar on stderr, and a callable receives a
`Progress` before the first epoch and after every epoch of each run it trains (and, from
`compare`, an `Analysing` when the analysis begins). Bad input raises `UserError`, whose
message names the field or file, as the command line prints it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.comparison.options import PowerOptions, UntilDecidedOptions, options_of
from testbed.config.schema import Scenario
from testbed.errors import UserError
from testbed.rundir import scenarios
from testbed.rundir.reader import Run, Snapshots
from testbed.trainer import Progress, run_scenario

__all__ = [
    "load_scenario", "run", "load_run", "compare", "until_decided", "power", "sweep", "barrier", "trajectories", "spike_causes",
    "Run", "Snapshots", "Progress", "UserError",
]

PathLike = str | Path  # what the commands take: a str or a pathlib.Path
ProgressOption = bool | Callable[[Any], None] | None


def load_scenario(path: PathLike, *, seeds: str | Sequence[int] | None = None, **fields: Any):
    """Read and validate a scenario file. `seeds` ('0-99', '0,3,7' or a list) replaces the
    file's; `fields` set dotted fields to Python values, e.g. **{"training.epochs": 200,
    "model.norm": {"name": "smooth", "radius": 0.5}} (what `--set` does on the command line).
    Returns the validated, frozen Scenario."""
    if isinstance(seeds, range):
        seeds = list(seeds)
    return scenarios.load(path, fields, seeds)


@contextmanager
def _progress(progress: ProgressOption) -> Iterator[Callable[[Any], None] | None]:
    """The callback for a `progress` option: True draws on stderr, as the command line does."""
    if progress is True:
        from testbed.cli.progress import ProgressDisplay

        with ProgressDisplay() as display:
            yield display
    else:
        yield progress or None


def run(
    scenario: Scenario | PathLike,
    *,
    out: PathLike | None = None,
    force: bool = False,
    progress: ProgressOption = None,
    threads: int | None = None,
    resume: bool | None = None,
    checkpoint_every: int | str | None = None,
    store: str | Path | bool | None = None,
) -> Run:
    """Train every seed of `scenario` (a Scenario, or the path of a scenario file) into the run
    directory `out` (default: a new folder under the scenario's output root, runs/), which
    must not exist or be empty unless `force`. `threads`: intra-op threads for this run
    (default: one for fewer than 16 seeds, else every core; results do not depend on it).
    Returns the run, read lazily from disk.

    Checkpoints: the training state is saved in the run's staging folder every
    `checkpoint_every` (epochs, e.g. 50, or training time, '30s', '5m', '1h'; default '60s';
    'off' for none) and after the last epoch. A run that stopped (killed, interrupted) is
    continued from its last checkpoint by the same call: with `resume` None, when `out` holds
    a stopped run of the same scenario (one of another scenario is refused, or discarded with
    `force`); `resume=True` requires one, and without `out` continues the newest stopped run
    of this scenario under the output root; `resume=False` starts afresh. A continued run
    ends exactly as an uninterrupted one (only times differ).

    Run store: the seeds are trained into the store (`store`: its folder; default
    $TESTBED_STORE, else runs/store), only those it does not hold yet, and the run directory
    `out` is made from it: asking again trains nothing (and, without `out`, hands back the
    directory made the last time when it is unchanged: `testbed.store.served_dirs`), asking
    for more seeds trains only the new ones. A stopped training keeps its checkpoint in the store, where the same call
    continues it. `store=False` trains every seed straight into `out`, checkpoints beside it."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    options: dict[str, Any] = dict(threads=threads, resume=resume, checkpoint_every=checkpoint_every)
    with _progress(progress) as callback:
        if store is False:  # (a source scenario to start from is still served by the default store)
            from testbed.store.serve import bound

            return run_scenario(bound(scenario, progress=callback, **options), out, force=force, progress=callback, **options)
        from testbed.store.serve import serve

        return serve(scenario, out, store=store, force=force, progress=callback, **options).run


def load_run(path: PathLike) -> Run:
    """A run directory on disk, as `run` returns it."""
    return Run(path)


def compare(
    inputs: Sequence[Any],
    *,
    seeds: str | Sequence[int] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    out: PathLike | None = None,
    force: bool = False,
    lr_grid: Sequence[float] | str | None = None,
    progress: ProgressOption = None,
    threads: int | None = None,
    store: str | Path | bool | None = None,
    spike_causes: bool = False,
):
    """Compare two or more scenarios seed by seed, as `testbed compare` does, and write its
    report directory `out` (default: reports/<a>-vs-<b>-<time>).

    `inputs`: Run objects, run directories and report directories (reused, never retrained),
    scenario files and Scenario objects (trained on the shared seeds); the first is the
    reference. `seeds`: the compared seeds (default: the first input's). `overrides`: dotted
    fields set in every scenario that is trained ({"training.epochs": 50}, or `--set` strings).
    `lr_grid`: also train every scenario at these learning rates (Wortsman's sensitivity).
    Scenarios are trained through the run store (`store`, as in `run`): what it holds is reused.
    `spike_causes`: label every spike by its cause (`spike_causes`) where a run has no
    spike_causes.csv yet, replaying the spike steps (about the cost of another training);
    without it the report's "Spikes by cause" uses the runs' own spike_causes.csv only.
    Returns a `Comparison`: `.table()`, `.outcomes()`, `.verdicts`, `.runs`, `.path`."""
    from testbed.comparison.runner import compare as run_comparison

    if isinstance(inputs, (str, os.PathLike)):
        raise UserError(f"compare: inputs must be a list of runs or scenarios, not the single {str(inputs)!r}")
    items = [item.path if isinstance(item, Run) else item for item in inputs]
    if isinstance(seeds, range):
        seeds = list(seeds)
    with _progress(progress) as callback:
        return run_comparison(
            items, seeds=seeds, overrides=overrides, out=out, force=force, lr_grid=lr_grid, progress=callback, threads=threads, store=store,
            spike_causes=spike_causes,
        )


def until_decided(
    inputs: Sequence[Any],
    options: UntilDecidedOptions | None = None,
    *,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    out: PathLike | None = None,
    force: bool = False,
    progress: ProgressOption = None,
    threads: int | None = None,
    store: str | Path | bool | None = None,
    **fields: Any,
):
    """`testbed compare A B --until-decided`: train seeds 0 .. batch − 1 of both scenario files
    (or Scenario objects), then the next batch, ..., through the run store, until the
    anytime-valid confidence sequence of the mean paired difference B − A on `metric` (a key of
    compare's metrics: success, final_test_acc, spikes (or spikes_per_seed), ...) lies above or
    below 0 (B better or worse, by the metric's direction) or within ±`margin` (equivalent), or
    `max_seeds` are spent (undecided); then compare every seed it took into `out`, as `compare`
    does, with the sequence added. The options (`metric`, `margin`, `max_seeds`, `batch`,
    `alpha`) are those of `UntilDecidedOptions`, given as keywords or as `options`.
    `progress` also receives a `Checked` after each batch.
    Returns a `Sequential`: `.decision`, `.sentence`, `.seeds`, `.table()` (a row per look),
    `.comparison` (the `Comparison` of those seeds), `.path`."""
    from testbed.comparison.until_decided import until_decided as decide

    if isinstance(inputs, (str, os.PathLike)):
        raise UserError(f"until_decided: inputs must be a list of two scenarios, not the single {str(inputs)!r}")
    chosen = options_of(UntilDecidedOptions, options, fields, "until_decided")
    with _progress(progress) as callback:
        return decide(list(inputs), chosen, overrides=overrides, out=out, force=force, progress=callback, threads=threads, store=store)


def power(
    inputs: Sequence[Any],
    options: PowerOptions | None = None,
    *,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    out: PathLike | None = None,
    force: bool = False,
    progress: ProgressOption = None,
    threads: int | None = None,
    store: str | Path | bool | None = None,
    **fields: Any,
):
    """`testbed power A B --pilot 0-19`: from the pilot seeds of two scenarios (trained through
    the run store, or run directories holding them), the paired seeds each metric of `compare`
    needs for `power` at two-sided `alpha`, for the pilot's difference or `effect` (one number
    for every metric in its own units, or {"success": 0.1, ...}); the options (`pilot`,
    `effect`, `power`, `alpha`) are those of `PowerOptions`, given as keywords or as `options`.
    Written to `out` (default reports/power-<a>-vs-<b>-<time>: power.csv, power.md). Returns
    a `PowerResult`: `.table()`."""
    from testbed.comparison.pilot import power as plan

    if isinstance(inputs, (str, os.PathLike)):
        raise UserError(f"power: inputs must be a list of two scenarios, not the single {str(inputs)!r}")
    if isinstance(fields.get("pilot"), range):
        fields["pilot"] = list(fields["pilot"])
    chosen = options_of(PowerOptions, options, fields, "power")
    with _progress(progress) as callback:
        return plan(list(inputs), chosen, overrides=overrides, out=out, force=force, progress=callback, threads=threads, store=store)


def sweep(
    study: PathLike,
    *,
    seeds: str | Sequence[int] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    axes: Mapping[str, list] | Sequence[str] = (),
    out: PathLike | None = None,
    force: bool = False,
    executor: str = "local",
    address: str | None = None,
    cpus_per_cell: int = 1,
    progress: ProgressOption = None,
    threads: int | None = None,
    store: str | Path | bool | None = None,
    confirm: Callable[[int, float], bool] | None = None,
):
    """Train every cell of the study file `study` through the run store and analyse it, as
    `testbed sweep` does, into the study directory `out` (default: sweeps/<name>-<time>); a
    finished study directory is analysed again without training (in place unless `out`).

    `seeds` replaces the study's; `overrides` set fields in every cell (not an axis); `axes`
    replace the values of some axes ({"model.hidden": [8, 32]}, or `--axis` strings);
    `executor`: "local" or "ray" (`address`: "local", "auto" or "HOST:PORT"; each cell's task
    declares `cpus_per_cell` CPUs). Returns a `StudyResult`: `.table()` (sweep.csv, one row
    per cell, seed and metric), `.cells()` (per-cell means, spreads and success rates),
    `.path`. `confirm(cells, estimated_seconds)` is asked before a study of more than 1000
    cells starts (False stops it); `store=False` trains in a store of its own, removed after."""
    from testbed.study.sweep_runner import sweep as run_study

    if isinstance(seeds, range):
        seeds = list(seeds)
    with _progress(progress) as callback:
        return run_study(
            study, seeds=seeds, overrides=overrides, axes=axes, out=out, force=force, executor_name=executor, address=address,
            cpus_per_cell=cpus_per_cell, progress=callback, threads=threads, store=store, confirm=confirm,
        )


def barrier(
    run_a: PathLike | Run,
    run_b: PathLike | Run | None = None,
    *,
    seed: int | None = None,
    pair: str | Sequence[int] | None = None,
    pair_seeds: bool = False,
    epochs: str | Sequence[int] | None = None,
    points: int = 51,
    extend: float = 0.0,
    split: str | Sequence[str] = "train,test",
    out: PathLike | None = None,
    force: bool = False,
):
    """Loss and accuracy of the weights (1 - t) theta_A + t theta_B along a line, as `testbed
    barrier` does (second paper, Figure 6), written into the report directory `out` (default:
    reports/barrier-<time>): barrier.csv, barriers.csv, barrier.png, report.md.

    The ends, read from the runs' snapshots.npz (the snapshots probe writes it): with two runs,
    the final weights of seed `seed` of each (default: their first common seed), or of every
    common seed paired (`pair_seeds`), or the two seeds `pair` = (A of run_a, B of run_b); with one
    run, two of its seeds (`pair`) or two of its snapshot epochs (`epochs` = (EA, EB), also
    usable with two runs; default: the last of each). t takes `points` values in
    [-extend, 1 + extend] (0 and 1 always among them). Every line is evaluated on the task of
    run_b (the end run) at its final p, on the training and/or test samples (`split`) of its
    end seed. The runs must have the same parameter shapes, norms, activation and MLP biases
    (curricula may differ). Returns a `BarrierResult`: `.curves`, `.barriers`, `.p`, `.path`."""
    from testbed.loss_barrier.barrier_command import barrier as run_barrier

    a = run_a.path if isinstance(run_a, Run) else run_a
    b = run_b.path if isinstance(run_b, Run) else run_b
    return run_barrier(a, b, seed=seed, pair=pair, pair_seeds=pair_seeds, epochs=epochs, points=points, extend=extend, split=split,
                       out=out, force=force)


def trajectories(
    runs: Sequence[Any],
    *,
    method: str = "pca",
    seeds: str | Sequence[int] | None = None,
    color: str = "run",
    perplexity: float = 30.0,
    out: PathLike | None = None,
    force: bool = False,
):
    """Map the parameter trajectories of `runs` (Run objects or run directories with
    snapshots.npz), as `testbed trajectories` does: every snapshot of every seed (`seeds`: of
    every run, default all) is a point of one joint 2-D map of the flattened parameters,
    `method` "pca" (the default: exact, fast, deterministic) or "tsne" (scikit-learn, the
    extra testbed[maps]; `perplexity`), coloured by "run", "epoch" or "test_acc". Writes the
    report directory `out` (default: reports/trajectories-<time>): trajectories.csv,
    trajectories.png, report.md. Returns a `TrajectoryMap`: `.table()` (the csv), `.path`,
    `.method`, `.explained` (PCA: each axis's share of the variance)."""
    from testbed.trajectory.trajectory_map import trajectories as map_trajectories

    if isinstance(runs, (str, os.PathLike, Run)):
        runs = [runs]
    if isinstance(seeds, range):
        seeds = list(seeds)
    return map_trajectories(list(runs), method=method, seeds=seeds, color=color, perplexity=perplexity, out=out, force=force)


def spike_causes(run: PathLike | Run, *, out: PathLike | None = None, replay: bool = True, sharpness: bool = True, threads: int | None = None):
    """The forensics of every detected spike of a finished run (rows of spikes.csv), as
    `testbed spikes` does, never training the run again but, where spike_steps.npz lacks the
    weights of a spike's step, replaying its seed deterministically up to that step (`replay`;
    without it, such spikes get `weights` = missing and cause `unknown`): the loss jump each
    parameter group's update explains, the norm sites' smallest input radius and largest turn,
    the distance of the batch's sequences to the MLP's decision boundary, the assemblers, a
    cause label (norm_curvature, mlp_boundary or other; rule in
    `testbed.forensics.attribution`) and, with `sharpness`, the loss Hessian's largest
    eigenvalue before the step. Written to spike_causes.csv in the run (or to `out`). Returns
    a `SpikeForensics`: `.table`, `.path`, `.seconds`, `.kept`, `.replayed`, `.missing`,
    `.per_cause()`, `.timings`. `threads`: intra-op threads, as for `run`."""
    from testbed.forensics.spike_causes import spike_causes as forensics

    return forensics(run, out=out, replay=replay, with_sharpness=sharpness, threads=threads)


FIGURE_KINDS = ("sparsity", "grad_norms", "attention")


def figure(run: PathLike | Run, kind: str, *, out: PathLike | None = None, dpi: float | None = None,
           seed: int | None = None, epoch: int | None = None):
    """A figure of a run, as `testbed render RUN --sparsity`, `--grad-norms` or `--attention`
    draws it: `kind` "sparsity" (sparsity.npz: activation sparsity against eps per seed,
    successful against failed seeds), "grad_norms" (grad_norms.npz and metrics.csv: loss,
    accuracy and every parameter's gradient norm over epochs) or "attention" (snapshots.npz:
    one seed's attention maps of the probe sentences at the start and at `epoch`, default the
    end, side by side; the first paper's Figure 8). Written to `out` (.png, .pdf or .svg;
    default RUN/render/<kind>.png, attention-seed<S>.png); returns its path."""
    from testbed.render.command import render

    if kind not in FIGURE_KINDS:
        raise UserError(f"figure: kind {kind!r} is not one of {', '.join(FIGURE_KINDS)}")
    path = run.path if isinstance(run, Run) else Path(run)
    return render(path, out=Path(out) if out is not None else None, dpi=dpi, seed=seed, epoch=epoch,
                  sparsity=kind == "sparsity", grad_norms=kind == "grad_norms", attention=kind == "attention")[0]
