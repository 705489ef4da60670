"""`testbed compare`: train what is missing on the shared seeds, then analyse, draw and report.

Everything is written into a staged report directory (renamed into place when complete). The
runs it trains live under its runs/ folder, so the report can be redrawn, or the runs compared
again with others, without retraining. A comparison that fails or is interrupted keeps its
staging folder with the runs it finished.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.analysis.outcomes import RunData, computable, not_computed, outcomes
from testbed.comparison import figures, manifest
from testbed.comparison import report as rep
from testbed.comparison.inputs import Entry, final_task, resolve, switch_epochs, with_probes, with_seeds
from testbed.comparison.lr_sweep import lr_of, parse_grid, summarize, with_lr
from testbed.comparison.pairwise import Analysis, analyze, pairs
from testbed.comparison.result import Analysing, Comparison
from testbed.config.scenario import format_seeds
from testbed.config.schema import Scenario
from testbed.errors import Interrupted, RunFailure, UserError, describe
from testbed.rundir import writer as rundir
from testbed.rundir.reader import Run
from testbed.store.serve import serve
from testbed.trainer import Progress

REPORT_ROOT = "reports"


@dataclass(frozen=True)
class Job:
    """One run of the comparison: trained here (scenario set) or reused (path given)."""

    label: str
    lr: float
    scenario: Scenario
    rel: Path  # where it lives, relative to the report directory if trained, else as given
    trained: bool


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "scenario"


def _same_lr(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def plan(
    entries: list[Entry], seeds: list[int], grid: list[float] | None, known: dict[tuple[Path, float], Path] | None = None
) -> tuple[list[Job], dict[str, dict[float, Job]]]:
    """The main run of every entry, and with a grid, a run per (entry, learning rate); a run at
    an entry's own learning rate is its main run, not a second one, and a grid run an earlier
    report already trained (`known`: (main run, lr) -> run) is reused."""
    known = known or {}
    main, sweep = [], {}
    for e in entries:
        lr = lr_of(e.scenario)
        job = Job(e.label, lr, e.scenario, e.run_dir or Path("runs") / slug(e.label), e.run_dir is None)
        main.append(job)
        if grid is None:
            continue
        base = with_seeds(with_probes(e.scenario), seeds)
        sweep[e.label] = {}
        for g in grid:
            earlier = known.get((e.run_dir.resolve(), g)) if e.run_dir is not None else None
            if _same_lr(g, lr):
                sweep[e.label][g] = job
            elif earlier is not None:
                sweep[e.label][g] = Job(e.label, g, e.scenario, earlier, False)
            else:
                sweep[e.label][g] = Job(e.label, g, with_lr(base, g), Path("runs") / f"{slug(e.label)}-lr{g:g}", True)
    return main, sweep


def compare(
    inputs: list,
    *,
    seeds: str | Sequence[int] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    out: str | Path | None = None,
    force: bool = False,
    lr_grid: str | Sequence[float] | None = None,
    progress: Callable[[Progress | Analysing], None] | None = None,
    threads: int | None = None,
    store=None,
    spike_causes: bool = False,
    sections: Callable[[Path], list] | None = None,
) -> Comparison:
    """Compare `inputs` (scenario files or objects to train, run or report directories to
    reuse) on shared seeds into the report directory `out`; `progress` hears of every epoch
    trained and of the start of the analysis. Runs are served by the run store (`store`, see
    `testbed.store.serve`): what it holds is not trained again, and what is trained stays in it
    whatever happens to the comparison. `sections(stage)` gives report blocks to add after the
    verdicts (it may write files into the staging folder, figures/ included)."""
    started = time.perf_counter()
    expanded = manifest.expand(list(inputs))
    entries, chosen = resolve(expanded.paths, seeds, overrides)
    if lr_grid is not None and not isinstance(lr_grid, str):
        lr_grid = ",".join(repr(float(g)) for g in lr_grid)
    grid = parse_grid(lr_grid) if lr_grid is not None else expanded.grid
    main, sweep = plan(entries, chosen, grid, expanded.known_runs)
    path = Path(out) if out is not None else rundir.default_path(REPORT_ROOT, "-vs-".join(slug(e.label) for e in entries))
    rundir.check_writable(path.parent, f"--out {path}")  # refused before anything trains
    if store is not False:
        from testbed.store.serve import open_store

        open_store(store).check_writable()
    with rundir.staged(path, force) as stage, _keeping_finished_runs(stage) as finished:
        to_train = [j for j in main if j.trained] + [j for lrs in sweep.values() for j in lrs.values() if j.trained and j not in main]
        for i, job in enumerate(to_train, 1):
            sc = job.scenario
            label = f"[{i}/{len(to_train)}] {job.label}" + (f" lr={job.lr:g}" if grid else "") + f" ({len(sc.seeds)} seeds)"
            serve(sc, stage / job.rel, store=store, progress=progress, label=label, threads=threads)
            finished.append(stage / job.rel)

        loaded: dict[Path, RunData] = {}

        def data(job: Job) -> RunData:
            """The run of a job, read once (a grid's run at a scenario's own rate is its main run)."""
            where = stage / job.rel if job.trained else job.rel
            if where not in loaded:
                loaded[where] = RunData.of(Run(where), chosen)
            return loaded[where]

        if progress is not None:
            progress(Analysing(len(main), len(chosen), grid is not None))
        runs: dict[str, RunData] = {j.label: data(j) for j in main}
        per_seed = {label: outcomes(run) for label, run in runs.items()}
        analysis = analyze(per_seed, chosen, max(r.total_epochs for r in runs.values()), computable(runs.values()))
        sweeps = None
        if grid is not None:
            sweeps = {label: summarize(grid, [data(lrs[g]) for g in grid]) for label, lrs in sweep.items()}
        seconds = time.perf_counter() - started
        sweep_tables = rep.sweep_tables(sweeps) if sweeps is not None else []
        report = build_report(stage, entries, main, runs, per_seed, analysis, sweeps, sweep_tables, seconds, spike_causes, sections)
        (stage / "report.md").write_text(rep.to_markdown(report))
        (stage / "report.html").write_text(rep.to_html(report, stage))
        rep.write_comparison_csv(stage / "comparison.csv", analysis, per_seed)
        rep.write_statistics_csv(stage / "statistics.csv", analysis)
        if sweeps is not None:
            rep.write_sweep_csv(stage / "lr_sweep.csv", chosen, sweeps)
        final = lambda job: path / job.rel if job.trained else job.rel  # noqa: E731  (where runs live once renamed)
        manifest.write(
            stage, path, chosen, grid, [(j.label, final(j)) for j in main], {label: {g: final(j) for g, j in lrs.items()} for label, lrs in sweep.items()}
        )
    compared = {j.label: Run(final(j)) for j in main}
    return Comparison(path, analysis, compared, per_seed, sweep_tables, time.perf_counter() - started, report)


@contextmanager
def _keeping_finished_runs(stage: Path) -> Iterator[list[Path]]:
    """Yield the list of the runs trained so far. If the comparison then fails or is
    interrupted, its staging folder is kept whenever it holds work: the finished runs (under
    runs/), or a run that failed and kept what it had; the error says where."""
    finished: list[Path] = []
    try:
        yield finished
    except UserError as exc:  # e.g. a reused run found unreadable at the analysis
        if not finished:
            raise
        error = UserError(f"{exc}\n{_kept_runs(finished, stage)}")
        error.kept = stage  # type: ignore[attr-defined]  (what `staged` looks for)
        raise error from None
    except RunFailure as failure:  # a run failed; it says what it kept of itself
        if finished or failure.kept is not None:
            failure.kept = stage
        if finished:
            failure.notes.append(_kept_runs(finished, stage))
        raise
    except KeyboardInterrupt:
        if not finished:
            raise
        raise Interrupted([_kept_runs(finished, stage)], stage) from None
    except Exception as exc:  # the analysis, a figure, the report
        failure = RunFailure("", "compare", describe(exc))
        failure.__cause__ = exc
        if finished:
            failure.kept = stage
            failure.log = rundir.write_error_log(stage, [failure])
            failure.notes.append(f"{_kept_runs(finished, stage)} (traceback in {failure.log})")
        raise failure from exc


def _kept_runs(finished: list[Path], stage: Path) -> str:
    n = len(finished)
    kept = f"compare kept the {n} run{'s' if n != 1 else ''} it finished in {stage / 'runs'}"
    return f"{kept} (and in the run store: the same command again trains only what is missing)"


def build_report(
    stage: Path, entries, main: list[Job], runs, per_seed, analysis: Analysis, sweeps, sweep_tables: list[rep.Table], seconds: float,
    spike_causes: bool = False, sections: Callable[[Path], list] | None = None,
) -> rep.Report:
    fig_dir = stage / "figures"
    fig_dir.mkdir()
    rel = lambda p: p.relative_to(stage)  # noqa: E731
    labels = analysis.labels
    r = rep.Report(f"Comparison: {' vs '.join(labels)}")
    r.add(
        rep.Paragraph(
            f"{len(analysis.seeds)} paired seeds ({_seed_text(analysis.seeds)}); "
            f"{_trained_text(main)}; {seconds:.0f} s in all."
        ),
        rep.Table(
            ["scenario", "from", "run directory", "epochs", "lr", "norm", "optimizer"],
            [
                [
                    e.label,
                    str(e.source),
                    (str(j.rel) + (" (trained here)" if j.trained else " (reused)")),
                    str(e.scenario.training.epochs),
                    f"{j.lr:g}",
                    _norm_text(e.scenario),
                    e.scenario.optimizer.name,
                ]
                for e, j in zip(entries, main)
            ],
        ),
        rep.Heading("Verdict"),
        rep.Bullets([analysis.verdicts[p] for p in pairs(labels)]),
        *(sections(stage) if sections is not None else []),
        *([rep.Paragraph(missing)] if (missing := not_computed(runs)) else []),
        rep.Heading("Per scenario"),
        rep.scenario_table(analysis),
        rep.Heading("Paired differences"),
    )
    for a, b in pairs(labels):
        r.add(rep.pair_table(analysis, a, b))
    from testbed.forensics.by_cause import section  # spikes per cause: the runs' spike_causes.csv, or computed when asked

    r.add(*section({label: run.path for label, run in runs.items()}, analysis.seeds, stage / "spike_causes", compute=spike_causes))
    switches = {e.label: switch_epochs(e.scenario) for e in entries}
    switches = {label: epochs for label, epochs in switches.items() if epochs}
    if switches:
        said = "; ".join(f"{label}: p changes at epoch {', '.join(map(str, epochs))}" for label, epochs in switches.items())
        r.add(
            rep.Heading("Curricula"),
            rep.Paragraph(
                f"{said}. Final metrics (test accuracy, success, final losses) are taken at the last epoch, on the final task "
                f"(p = {final_task(entries[0].scenario)['p']}) that every compared run ends on; epochs to 0.9 / 1.0, the loss AUC "
                "and the spikes count over the whole run, every stage included, from its first epoch. The figures mark each switch "
                "with a dotted line."
            ),
        )
    r.add(rep.Heading("Figures"))
    r.add(
        rep.Figure(
            rel(figures.losses(runs, fig_dir / "loss.png", switches)),
            "Train and test loss over epochs and train loss over steps: median and interquartile band over seeds",
        ),
        rep.Figure(
            rel(figures.accuracy(runs, fig_dir / "accuracy.png", switches)),
            "Train and test accuracy over epochs: median and interquartile band; dashed: share of seeds above 0.9",
        ),
        rep.Figure(rel(figures.spike_raster(runs, fig_dir / "spike_raster.png")), "Loss spikes by seed and step, one panel per scenario"),
        rep.Figure(rel(figures.distributions(per_seed, fig_dir / "distributions.png")), "Distributions over seeds of final test accuracy and spike counts"),
    )
    from testbed.forensics.forensics_figures import compare_figures  # where the runs have sharpness.npz

    r.add(*compare_figures({label: run.path for label, run in runs.items()}, analysis.seeds, stage))
    for i, (a, b) in enumerate(pairs(labels)):
        name = f"paired_{i + 1}_{slug(b)}_vs_{slug(a)}.png"
        r.add(rep.Figure(rel(figures.paired_differences(a, b, per_seed, fig_dir / name)), f"Paired differences per seed: {b} vs {a}"))
    if sweeps is not None:
        r.add(
            rep.Heading("Learning-rate sensitivity"),
            rep.Paragraph(
                "After Wortsman et al. (2024): every scenario trained at every learning rate of the grid on the same seeds. "
                "Sensitivity = mean over learning rates of min(final loss, initial loss) minus the best final loss, "
                "losses averaged over seeds; a diverged run counts as its initial loss. Lower is more stable."
            ),
            *sweep_tables,
            rep.Figure(rel(figures.lr_sensitivity(sweeps, fig_dir / "lr_sensitivity.png")), "Final loss and success rate against the learning rate"),
        )
    r.add(rep.Heading("Method"), rep.Bullets(rep.METHOD))
    return r


def _trained_text(main: list[Job]) -> str:
    trained = sum(j.trained for j in main)
    if trained == len(main):
        return "every scenario trained for this report"
    if trained == 0:
        return "every scenario reused from its run directory"
    return f"{trained} of {len(main)} scenarios trained for this report, {len(main) - trained} reused"


def _seed_text(seeds: list[int]) -> str:
    return "seeds " + format_seeds(seeds)


def _plugin_text(ref) -> str:
    """smooth(radius=1.0, shape=quintic) from a plugin reference."""
    params = {k: v for k, v in ref.model_dump().items() if k != "name"}
    return ref.name + (f"({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")


def _norm_text(scenario: Scenario) -> str:
    m = scenario.model
    emb, mlp = _plugin_text(m.embedding_norm or m.norm), _plugin_text(m.mlp_norm or m.norm)
    return emb if emb == mlp else f"{emb} / {mlp}"
