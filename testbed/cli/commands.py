"""The commands of `testbed`: run, compare, power, sweep, store, render, barrier, trajectories, spikes, validate, schema, plugins. Each is a thin
layer over the Python API (`testbed.api`) that owns the printing."""

# pyright: reportArgumentType=false, reportGeneralTypeIssues=false, reportAttributeAccessIssue=false
# (typer's shared Option objects as parameter defaults and pandas columns, which the checker cannot follow)

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
import typer.core

from testbed.comparison.options import PowerOptions, UntilDecidedOptions
from testbed.errors import UserError

EXIT_STATUS = (
    "Exit status: 0 done; 1 a failure during the work, one line naming what failed (the plugin, its "
    "phase, epoch and step) and what was kept, the traceback in error.log of the run or with --debug; "
    "2 bad input, one line per problem, nothing written; 130 interrupted."
)


class Commands(typer.core.TyperGroup):
    """typer turns Ctrl-C during a command into exit status 130 and drops the interrupt; keep it
    in the context's object for `testbed.cli.main`, which says what the interrupted work kept."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            if isinstance(ctx.obj, dict):
                ctx.obj["interrupted"] = exc
            raise

    def get_command(self, ctx, name):
        """The command, its arguments shown by their metavars (RUN, SCENARIO) alone: typer would
        add their Python types (`<list[Path]>`), which say nothing to a user."""
        command = super().get_command(ctx, name)
        for param in getattr(command, "params", []):
            if isinstance(param, typer.core.TyperArgument):
                param.display_type_rich = lambda ctx: None
        return command


app = typer.Typer(
    cls=Commands,
    add_completion=True,  # --install-completion and --show-completion (bash, zsh, fish, PowerShell)
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Plugin-based optimizer and normalization testbed on a d=2 one-layer transformer.",
    epilog=EXIT_STATUS,
)


def _version(shown: bool) -> None:
    if shown:
        from testbed import __version__

        print(f"testbed {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", envvar="TESTBED_DEBUG", help="on a failure, also print the full traceback"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print testbed's version and exit"),
) -> None:
    """Options of every command, given before it: testbed --debug run ..."""
    if isinstance(ctx.obj, dict):  # `testbed.cli.main` reads it back when a command fails
        ctx.obj["debug"] = debug


# One grammar: an option means the same on every command that takes it (README, "Command line").
# A help text may say what the option does there; its name, metavar and values never change.
def _seeds(what: str) -> typer.models.OptionInfo:
    return typer.Option(None, "--seeds", metavar="0-99", help=f"{what}: a seed list, e.g. 0-99 or 0,3,5-9")


def _sets(where: str = "the scenario") -> typer.models.OptionInfo:
    return typer.Option(None, "--set", metavar="KEY=VALUE", help=f"set a field of {where}, e.g. --set training.epochs=50 (repeatable)")


def _out(what: str) -> typer.models.OptionInfo:
    return typer.Option(None, "--out", metavar="PATH", help=what)


def _force(what: str = "replace --out if it exists") -> typer.models.OptionInfo:
    return typer.Option(False, "--force", help=what)


SETS = _sets()
QUIET = typer.Option(False, "--quiet", "-q", help="no progress display")
QUIET_PATHS = typer.Option(False, "--quiet", "-q", help="print only the paths written (no table or summary)")
STORE = typer.Option(None, "--store", metavar="PATH", help="the run store's folder (default: $TESTBED_STORE, else runs/store)")
NO_STORE = typer.Option(False, "--no-store", help="train every seed straight into the run directory, bypassing the run store")
THREADS = typer.Option(
    None, "--threads", min=1, metavar="N",
    help="intra-op threads (default: 1 below 16 seeds, else every core; OMP_NUM_THREADS respected); results do not depend on it",
)
DEVICE = typer.Option(
    None, "--device", metavar="cpu|cuda|mps|auto",
    help="train on cpu, cuda (cuda:N), mps or auto (sets training.device; results are identical per device, not across devices)",
)


def _terminal(stderr: bool = False, min_width: int | None = None):
    """A rich console, imported when a command prints (not for --help); at least `min_width`
    columns wide so that tables do not fold in a pipe."""
    from rich.console import Console

    return Console(stderr=stderr) if min_width is None else Console(width=max(min_width, Console().width))


def _with_device(sets: list[str] | None, device: str | None) -> list[str]:
    """`--device X` is `--set training.device=X`, so a bad one is reported as that field."""
    return (sets or []) + ([f"training.device={device}"] if device else [])


def _seed_problems(seeds: str | None, flag: str = "--seeds") -> list[str]:
    """The problem of a seed list, as its line (none when it parses)."""
    if seeds is None:
        return []
    from testbed.config.scenario import parse_seeds

    try:
        parse_seeds(seeds)
    except ValueError as exc:
        return [f"{flag}: {exc}"]
    return []


def _scenario_problems(paths: list[Path], sets: list[str]) -> list[str]:
    """The problems of the scenario files among `paths` with `sets` applied, one line each."""
    from testbed.rundir import scenarios

    found = []
    for path in paths:
        if path.suffix in (".yaml", ".yml") and path.is_file():
            try:
                scenarios.load(path, sets)
            except UserError as exc:
                found += str(exc).splitlines()
    return found


def _report(problems: list[str]) -> None:
    """Every problem of the command line at once, one line each (exit status 2)."""
    if problems:
        raise UserError("\n".join(dict.fromkeys(problems)))


def _refuse_existing(out: Path | None, force: bool) -> None:
    """An --out that exists is replaced only with --force (checked before any work)."""
    if out is not None and not force and out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise UserError(f"--out {out}: exists; add --force to replace it")


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """The block with `n` intra-op threads (torch's own choice when None)."""
    if n is None:
        yield
        return
    from testbed.engine.threads import intra_op_threads

    with intra_op_threads(n):
        yield


def _registry():
    """The installed plugins, without Python's own display of a broken package's warning (two
    lines, one of them testbed's source): the commands say it themselves."""
    from testbed.plugin_api.registry import BrokenPluginPackage, default_registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BrokenPluginPackage)
        return default_registry()


def _load_plugins():
    """Load the plugins before the command's work, so that a plugin package that failed to load
    is named first: one `warning:` line each, in every command (the registry is cached per
    process and only records it), while the other packages' plugins keep working."""
    registry = _registry()
    for broken in registry.broken:
        print(f"warning: {broken.message()}", file=sys.stderr)


@app.command()
def run(
    scenario: Path = typer.Argument(..., metavar="SCENARIO", help="scenario YAML file"),
    seeds: str | None = _seeds("seeds to train (default: the file's)"),
    set_: list[str] | None = SETS,
    out: Path | None = _out("run directory (default: runs/<name>-<time>, or the newest one already made of what the store serves)"),
    force: bool = _force("replace --out if it exists, and discard a stopped run there that cannot be continued"),
    quiet: bool = QUIET,
    threads: int | None = THREADS,
    resume: bool | None = typer.Option(
        None,
        "--resume/--no-resume",
        help="continue a stopped run of this scenario from its last checkpoint: the one in --out, else the newest under the output root "
        "(default: continue --out's if it has one); --no-resume: start afresh",
    ),
    checkpoint_every: str | None = typer.Option(
        None,
        "--checkpoint-every",
        metavar="N|30s|5m|1h|off",
        help="save the training state every N epochs, or every 30s, 5m, 1h of training, or off (default 60s); also after the last epoch",
    ),
    store: Path | None = STORE,
    no_store: bool = NO_STORE,
    device: str | None = DEVICE,
) -> None:
    """Train the seeds of a scenario as one vectorized program and write a run directory.

    Seeds are trained into the run store, only those it lacks: the same scenario asked again
    trains nothing, and more seeds train only the new ones."""
    from testbed import api
    from testbed.cli.progress import ProgressDisplay
    from testbed.cli.tables import divergence_lines, run_table, store_line
    from testbed.engine.checkpoint import Policy
    from testbed.rundir import scenarios

    _load_plugins()
    problems = _seed_problems(seeds)
    sc = None
    try:
        sc = scenarios.load(scenario, _with_device(set_, device), None if problems else seeds)
    except UserError as exc:
        problems += str(exc).splitlines()
    try:
        Policy.parse(checkpoint_every)
    except UserError as exc:
        problems.append(str(exc))
    _report(problems)
    err = _terminal(stderr=True)
    with ProgressDisplay(err) as display:

        def show(event) -> None:
            if event.resumed_from is not None:
                err.print(f"resuming from epoch {event.epoch} of {event.epochs}: {event.resumed_from}", highlight=False, soft_wrap=True)
            if not quiet:
                display(event)

        result = api.run(
            sc, out=out, force=force, progress=show, threads=threads, resume=resume, checkpoint_every=checkpoint_every,
            store=False if no_store else store,
        )
    console = _terminal(min_width=120)
    stored = result.provenance.get("store")
    console.print(run_table([result.summary_json], served=bool(stored) and not any(p["trained_now"] for p in stored["parts"])))
    if stored:
        console.print(store_line(stored, result.summary_json, result.provenance), highlight=False, soft_wrap=True)
    for line in divergence_lines(result.summary_json):
        console.print(line, style="bold red", highlight=False, soft_wrap=True)
    console.print(f"run directory: {result.path}")


@app.command()
def compare(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT", help="two or more scenario files or run directories (the first is the reference)"),
    seeds: str | None = _seeds("seeds to compare (default: the first input's)"),
    set_: list[str] | None = _sets("every scenario file"),
    out: Path | None = _out("report directory (default: reports/<a>-vs-<b>-<time>)"),
    force: bool = _force(),
    lr_grid: str | None = typer.Option(
        None, "--lr-grid", metavar="LR,LR,...", help="also train every scenario at these learning rates, e.g. 1e-3,3e-3,1e-2,3e-2,1e-1"
    ),
    quiet: bool = QUIET,
    threads: int | None = THREADS,
    store: Path | None = STORE,
    no_store: bool = NO_STORE,
    device: str | None = DEVICE,
    spike_causes: bool = typer.Option(False, "--spike-causes", help="label every spike by cause where a run lacks spike_causes.csv (replays the spike steps)"),
    until_decided: bool = typer.Option(
        False, "--until-decided", help="train seeds 0, 1, ... in batches until B − A on --metric is decided (anytime-valid confidence sequence)"
    ),
    metric: str | None = typer.Option(
        None, "--metric", metavar="NAME",
        help=f"with --until-decided: the metric decided on, e.g. success, final_test_acc, spikes_per_seed (default {UntilDecidedOptions.metric})",
    ),
    margin: float | None = typer.Option(
        None, "--margin", metavar="X",
        help=f"with --until-decided: equivalent when B − A lies within ±margin, in the metric's units (default {UntilDecidedOptions.margin})",
    ),
    max_seeds: int | None = typer.Option(
        None, "--max-seeds", metavar="N", help=f"with --until-decided: undecided after this many seeds (default {UntilDecidedOptions.max_seeds})"
    ),
    batch: int | None = typer.Option(
        None, "--batch", metavar="N", help=f"with --until-decided: seeds trained between looks (default {UntilDecidedOptions.batch})"
    ),
    alpha: float | None = typer.Option(
        None, "--alpha", metavar="X", help=f"with --until-decided: error rate of the decision (default {UntilDecidedOptions.alpha})"
    ),
) -> None:
    """Train scenarios on the same seeds (or reuse run directories) and report, with paired
    statistics and figures, which trains better and more stably.

    With --until-decided, A and B are trained seed batch by seed batch until the paired
    difference on --metric is decided: B better, B worse, equivalent within --margin, or
    undecided at --max-seeds."""
    from testbed import api
    from testbed.cli.progress import ProgressDisplay
    from testbed.cli.tables import show_comparison, show_sequential

    sets = _with_device(set_, device)
    sequential = {"--metric": metric, "--margin": margin, "--max-seeds": max_seeds, "--batch": batch, "--alpha": alpha}
    problems = _seed_problems(seeds)
    if not until_decided:
        problems += [f"{name}: only with --until-decided" for name, value in sequential.items() if value is not None]
    else:
        problems += [f"{name}: not with --until-decided (it trains seeds 0, 1, ... batch by batch)"
                     for name, value in {"--seeds": seeds, "--lr-grid": lr_grid, "--spike-causes": spike_causes or None}.items() if value is not None]
        given = {name.lstrip("-").replace("-", "_"): value for name, value in sequential.items() if value is not None}
        decide = UntilDecidedOptions(**given)
        problems += decide.problems()
    if problems:  # the scenario files' own problems on the same lines, before anything trains
        _load_plugins()
        _report(problems + _scenario_problems(inputs, sets))
    _load_plugins()
    err = _terminal(stderr=True)
    with ProgressDisplay(err) as display:
        if until_decided:

            def show(event) -> None:
                if not quiet or hasattr(event, "decision"):  # the line of each look, even when quiet
                    display(event)

            decided = api.until_decided(
                inputs, decide, overrides=sets, out=out, force=force, progress=show, threads=threads, store=False if no_store else store
            )
            result = decided.comparison
        else:
            result = api.compare(
                inputs, seeds=seeds, overrides=sets, out=out, force=force, lr_grid=lr_grid, progress=None if quiet else display,
                threads=threads, store=False if no_store else store, spike_causes=spike_causes,
            )
    console = _terminal(min_width=140)
    show_comparison(result, console)
    if until_decided:
        show_sequential(decided, console)


@app.command()
def power(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT", help="two scenario files or run directories: A, then B"),
    pilot: str = typer.Option(PowerOptions.pilot, "--pilot", metavar="0-19", help="the pilot seeds: a seed list"),
    effect: list[str] | None = typer.Option(
        None, "--effect", metavar="X|METRIC=X",
        help="the difference to power for: 0.1 (every metric, in its own units) or success=0.1 (repeatable); default: the pilot's",
    ),
    power_: float = typer.Option(PowerOptions.power, "--power", metavar="X", help="the power wanted"),
    alpha: float = typer.Option(PowerOptions.alpha, "--alpha", metavar="X", help="two-sided significance level of each metric's test"),
    set_: list[str] | None = _sets("both scenario files"),
    out: Path | None = _out("folder for power.csv and power.md (default: reports/power-<a>-vs-<b>-<time>)"),
    force: bool = _force(),
    quiet: bool = QUIET,
    threads: int | None = THREADS,
    store: Path | None = STORE,
    no_store: bool = NO_STORE,
    device: str | None = DEVICE,
) -> None:
    """From pilot seeds of A and B (trained through the run store), the paired seeds each
    metric of compare needs for its test to detect a difference with 80% power."""
    from testbed import api
    from testbed.cli.progress import ProgressDisplay
    from testbed.cli.tables import rich_table
    from testbed.comparison.pilot import power_table

    sets = _with_device(set_, device)
    plan = PowerOptions(pilot=pilot, effect=effect or None, power=power_, alpha=alpha)
    _load_plugins()
    problems = plan.problems() + _seed_problems(pilot, "--pilot")
    if problems:
        _report(problems + _scenario_problems(inputs, sets))
    with ProgressDisplay(_terminal(stderr=True)) as display:
        result = api.power(
            inputs, plan, overrides=sets, out=out, force=force, progress=None if quiet else display, threads=threads,
            store=False if no_store else store,
        )
    console = _terminal(min_width=140)
    console.print(rich_table(power_table(result)))
    console.print(f"written: {result.path / 'power.csv'} and power.md", highlight=False, soft_wrap=True)


@app.command()
def sweep(
    study: Path = typer.Argument(..., metavar="STUDY", help="study YAML file (or a finished study directory, to analyse again)"),
    seeds: str | None = _seeds("seeds of every cell (default: the study file's)"),
    set_: list[str] | None = _sets("every cell (not an axis)"),
    axis: list[str] | None = typer.Option(
        None, "--axis", metavar="KEY=[V, ...]", help="replace an axis's values, e.g. --axis 'model.hidden=[8, 32]' (repeatable)"
    ),
    out: Path | None = _out("study directory (default: sweeps/<name>-<time>)"),
    force: bool = _force(),
    executor: str = typer.Option("local", "--executor", metavar="local|ray", help="local (one run after another, here) or ray"),
    address: str | None = typer.Option(
        None, "--address", metavar="local|auto|HOST:PORT",
        help="with --executor ray: local (a Ray instance for this study, the default), auto, or a cluster's HOST:PORT",
    ),
    cpus_per_cell: int = typer.Option(
        1, "--cpus-per-cell", min=1, metavar="N", help="with --executor ray: CPUs each cell's task declares (and its threads)"
    ),
    quiet: bool = QUIET,
    threads: int | None = THREADS,
    store: Path | None = STORE,
    no_store: bool = typer.Option(False, "--no-store", help="train every cell afresh in a temporary store removed afterwards, reusing nothing"),
    device: str | None = DEVICE,
    yes: bool = typer.Option(False, "--yes", "-y", help="start a study of more than 1000 cells without asking"),
) -> None:
    """Train every cell of a study (scenario fields x values x seeds) through the run store, then
    write sweep.csv, figures and a report. What the store holds is never trained again: after a
    failure or an interrupt, the same command trains only what is missing."""
    from testbed import api
    from testbed.cli.progress import ProgressDisplay

    def confirm(cells: int, seconds: float) -> bool:
        said = f"{study}: {cells} cells, about {_duration(seconds)} of training on one core (less what the run store holds)"
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UserError(f"{said}; add --yes to start it")
        return typer.confirm(f"{said}; start?", err=True)

    sets = _with_device(set_, device)
    _load_plugins()
    problems = _seed_problems(seeds)
    if problems and study.is_file():  # the study's own problems on the same lines
        from testbed.study import cells

        try:
            cells.load(study, None, sets, axis or [])
        except UserError as exc:
            problems += str(exc).splitlines()
    _report(problems)
    with ProgressDisplay(_terminal(stderr=True)) as display:
        result = api.sweep(
            study, seeds=seeds, overrides=sets, axes=axis or [], out=out, force=force, executor=executor, address=address,
            cpus_per_cell=cpus_per_cell, progress=None if quiet else display, threads=threads, store=False if no_store else store,
            confirm=confirm,
        )
    from testbed.cli.tables import study_table

    console = _terminal(min_width=120)
    console.print(study_table(result))
    console.print(f"study directory: {result.path} (report.md, report.html, sweep.csv)")


store_app = typer.Typer(help="See and prune the run store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("ls")
def store_ls(store: Path | None = STORE) -> None:
    """List the store's entries: scenario, seeds held, runs, size, and whether the installed code can still use them."""
    from testbed.cli.tables import store_table
    from testbed.store.housekeeping import listing

    _terminal(min_width=120).print(store_table(listing(store)))


@store_app.command("gc")
def store_gc(
    store: Path | None = STORE,
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would be removed, remove nothing"),
    everything: bool = typer.Option(False, "--all", help="remove every run of the store"),
) -> None:
    """Remove what the store can no longer serve: runs of other code (testbed's, torch's or a
    plugin's), stopped or failed trainings no process is writing, runs written without some
    outputs, runs set aside as corrupt. A training in progress is never touched, even with --all."""
    from testbed.store.housekeeping import collect

    removed, freed, kept = collect(store, dry_run=dry_run, everything=everything)
    verb = "would remove" if dry_run else "removed"
    for line in removed:
        print(f"{verb} {line}")
    for line in kept:
        print(f"kept {line}")
    print(f"{verb} {len(removed)} item{'s' if len(removed) != 1 else ''}, {freed / 1e6:.1f} MB")


@store_app.command("verify")
def store_verify(store: Path | None = STORE) -> None:
    """Check every stored file against the checksum written when its run landed; a run that
    differs is set aside (its seeds train again when asked for). Exit status 1 if any did."""
    import time

    from testbed.store.housekeeping import verify

    began = time.perf_counter()
    runs, hashed, problems = verify(store)
    for line in problems:
        print(f"corrupt: {line}")
    seconds = time.perf_counter() - began
    print(f"verified {runs} run{'s' if runs != 1 else ''} ({hashed / 1e6:.1f} MB) in {seconds:.1f} s: "
          + (f"{len(problems)} set aside" if problems else "every file matches its checksum"))
    if problems:
        raise typer.Exit(1)


@app.command()
def validate(
    scenario: Path = typer.Argument(..., metavar="SCENARIO", help="scenario YAML file"),
    set_: list[str] | None = SETS,
) -> None:
    """Check a scenario file; report every error with its path in the file."""
    from testbed.rundir import scenarios

    _load_plugins()
    sc = scenarios.load(scenario, set_ or [])
    print(f"{scenario}: ok ({sc.name}: {len(sc.seeds)} seeds, {sc.training.epochs} epochs)")


@app.command()
def schema(
    out: Path | None = _out("write to this file instead of stdout"),
    study: bool = typer.Option(False, "--study", help="the schema of study files (testbed sweep) instead"),
) -> None:
    """Print the JSON schema of scenario files, or of study files (for editor completion)."""
    from testbed.config import scenario as scenario_mod

    _load_plugins()
    if study:
        from testbed.study.study_file import json_schema as study_schema

        text = json.dumps(study_schema(), indent=2)
    else:
        text = json.dumps(scenario_mod.json_schema(), indent=2)
    if out is None:
        print(text)
        return
    try:
        out.write_text(text + "\n")
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write ({exc.strerror or exc})") from None


@app.command()
def plugins(kind: str | None = typer.Option(None, "--kind", metavar="KIND", help="only this kind (norm, optimizer, ...)")) -> None:
    """List every plugin: kind, name, where it comes from, its parameters."""
    from rich.table import Table

    reg = _registry()  # a broken package is listed below the table, not warned of
    kinds = list(reg.plugins)
    if kind is not None and kind not in kinds:
        raise UserError(f"--kind: unknown kind '{kind}'; known: {', '.join(kinds)}")
    t = Table(title="testbed plugins")
    for col in ("kind", "name", "source", "parameters", "description"):
        t.add_column(col, overflow="fold")
    for k in kinds if kind is None else [kind]:
        for name in reg.names(k):
            p = reg.get(k, name)
            t.add_row(k, name, p.source, _describe_params(p.params), p.doc)
    _terminal(min_width=120).print(t)
    if reg.broken:
        print("broken plugin packages (failed to load; their plugins are unavailable):")
        for broken in reg.broken:
            print(f"  {broken.distribution}: {broken.error}")


@app.command()
def render(
    run_dir: Path = typer.Argument(
        ..., metavar="RUN", help="run directory (with snapshots.npz; sparsity.npz or grad_norms.npz with --sparsity, --grad-norms)"
    ),
    epoch: int | None = typer.Option(None, "--epoch", metavar="N", help="the snapshot to draw (default: the last)"),
    seed: int | None = typer.Option(None, "--seed", metavar="N", help="which seed of the run (default: its first)"),
    out: Path | None = _out("output file (.png/.pdf/.svg, .mp4/.gif with --video) or folder (--spikes); default: under RUN/render"),
    force: bool = _force(),
    video: bool = typer.Option(False, "--video", help="one frame per snapshot, as MP4 (or GIF)"),
    spikes: bool = typer.Option(False, "--spikes", help="frames just before and after every loss spike"),
    top: int | None = typer.Option(None, "--top", min=1, metavar="N", help="with --spikes: only the N largest spikes (by loss jump)"),
    sparsity: bool = typer.Option(False, "--sparsity", help="the sparsity probe's figure: fraction of MLP activations below eps, per seed"),
    grad_norms: bool = typer.Option(False, "--grad-norms", help="loss, accuracy and the gradient norm of every parameter over epochs"),
    attention: bool = typer.Option(False, "--attention", help="attention maps of the probe sentences at the start and at --epoch (default: the end)"),
    panels: str | None = typer.Option(None, "--panels", metavar="NAME,NAME,...", help="comma-separated panel names (see testbed plugins --kind panel)"),
    grid: str | None = typer.Option(None, "--grid", metavar="ROWSxCOLUMNS", help="the panels' layout, e.g. 4x5"),
    dpi: float | None = typer.Option(None, "--dpi", min=20, max=600, metavar="DPI", help="resolution (default 110 for frames, 60 for videos)"),
    workers: int = typer.Option(0, "--workers", min=0, metavar="N", help="video worker processes (0: one per core)"),
    fps: float | None = typer.Option(None, "--fps", metavar="FPS", help="with --video: frames per second (default: 1000 epochs in about 30 s)"),
    epochs: str | None = typer.Option(None, "--epochs", metavar="FIRST-LAST[:STEP]", help="with --video: epochs, e.g. 0-1000:10 (default: all)"),
    quiet: bool = QUIET,
    threads: int | None = THREADS,
) -> None:
    """Draw every layer of the model in the plane from a run's snapshots: a frame, a video, or spikes;
    or the figure of the sparsity or grad_norms probe (--sparsity, --grad-norms); or attention maps at the start and end (--attention)."""
    _refuse_existing(out, force)
    from testbed.render.command import render as render_run

    _load_plugins()
    err = _terminal(stderr=True)
    with _user_paths(run_dir, out), _threads(threads):
        written = render_run(run_dir, epoch=epoch, seed=seed, out=out, video=video, spikes=spikes, top=top, panels=panels,
                             grid=grid, dpi=dpi, workers=workers, console=err, quiet=quiet, sparsity=sparsity, grad_norms=grad_norms, attention=attention,
                             fps=fps, epochs=epochs)
    for path in written:
        print(path)


def _refuse_seeds_on_barrier(value: str | None) -> None:
    """barrier's two seeds were once `--seeds A,B`; `--seeds` is a seed list on every command."""
    if value is not None:
        raise UserError(f"--seeds {value}: barrier takes two seeds as --pair A,B (--seeds is a seed list on every command)")


@app.command()
def barrier(
    run_a: Path = typer.Argument(..., metavar="RUN_A", help="run directory with snapshots.npz (the start, t = 0)"),
    run_b: Path | None = typer.Argument(
        None, metavar="[RUN_B]", help="a second run of the same parameter shapes (the end, t = 1; its task evaluates the line)"
    ),
    seed: int | None = typer.Option(None, "--seed", metavar="N", help="the seed of each run (default: the first common seed)"),
    pair: str | None = typer.Option(None, "--pair", metavar="A,B", help="two seeds: seed A of RUN_A against seed B of RUN_B (or of RUN_A alone)"),
    pair_seeds: bool = typer.Option(False, "--pair-seeds", help="one line per common seed, each seed against itself"),
    old_seeds: str | None = typer.Option(None, "--seeds", hidden=True, help="once two seeds A,B: now --pair A,B"),
    epochs: str | None = typer.Option(None, "--epochs", metavar="EA,EB", help="two snapshot epochs EA,EB (default: the last of each)"),
    points: int = typer.Option(51, "--points", metavar="N", help="values of t (at least 2)"),
    extend: float = typer.Option(0.0, "--extend", metavar="E", help="t runs over [-E, 1 + E]"),
    split: str = typer.Option("train,test", "--split", metavar="train|test|train,test", help="the samples the line is evaluated on"),
    out: Path | None = _out("report directory (default: reports/barrier-<time>)"),
    force: bool = _force(),
    quiet: bool = QUIET_PATHS,
    threads: int | None = THREADS,
) -> None:
    """Loss and accuracy along the straight line between two weight vectors (two runs' final
    weights, two seeds, or two snapshot epochs) and the loss barrier along it (second paper,
    Figure 6). The line is evaluated on the task of the end (RUN_B) at its final p."""
    from testbed import api
    from testbed.cli.tables import barrier_table

    _refuse_seeds_on_barrier(old_seeds)
    _load_plugins()
    with _user_paths(run_a, run_b, out), _threads(threads):
        result = api.barrier(run_a, run_b, seed=seed, pair=pair, pair_seeds=pair_seeds, epochs=epochs, points=points, extend=extend,
                             split=split, out=out, force=force)
    if quiet:
        print(result.path)
        return
    console = _terminal(min_width=120)
    console.print(barrier_table(result))
    console.print(f"report directory: {result.path} (barrier.csv, barriers.csv, barrier.png, report.md)", highlight=False, soft_wrap=True)


@app.command()
def trajectories(
    runs: list[Path] = typer.Argument(..., metavar="RUN", help="one or more run directories with snapshots.npz (the snapshots probe writes it)"),
    method: str = typer.Option(
        "pca", "--method", metavar="pca|tsne", help="pca (fast, deterministic) or tsne (needs scikit-learn: pip install 'testbed[maps]')"
    ),
    seeds: str | None = _seeds("seeds of every run to draw (default: all of each run's)"),
    color: str = typer.Option("run", "--color", metavar="run|epoch|test_acc", help="colour the points by run, epoch or test_acc (grey where not evaluated)"),
    perplexity: float = typer.Option(30.0, "--perplexity", metavar="X", help="with --method tsne: t-SNE's perplexity (below the number of points)"),
    out: Path | None = _out("report directory (default: reports/trajectories-<time>)"),
    force: bool = _force(),
    quiet: bool = QUIET_PATHS,
    threads: int | None = THREADS,
) -> None:
    """Map the parameter trajectories of runs: every snapshot of every seed is a point of one 2-D
    map (PCA or t-SNE) of the flattened parameters, each seed's snapshots joined in epoch
    order; writes trajectories.csv, trajectories.png and report.md."""
    from testbed import api

    _report(_seed_problems(seeds))
    _load_plugins()
    with _user_paths(out), _threads(threads):
        result = api.trajectories(runs, method=method, seeds=seeds, color=color, perplexity=perplexity, out=out, force=force)
    print(result.path)


@app.command()
def spikes(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="run directory with spikes.csv and step_loss.npz (spike_steps.npz saves replaying)"),
    out: Path | None = _out("output CSV, or a folder for spike_causes.csv (default: RUN/spike_causes.csv)"),
    force: bool = _force(),
    no_replay: bool = typer.Option(False, "--no-replay", help="do not replay seeds whose spike weights were not kept (cause: unknown)"),
    no_sharpness: bool = typer.Option(False, "--no-sharpness", help="skip the Hessian's largest eigenvalue before each spike"),
    quiet: bool = QUIET_PATHS,
    threads: int | None = THREADS,
) -> None:
    """Spike forensics: for every detected spike, the loss jump each parameter group's update
    explains, the norm sites' radii and turns (norm curvature), the distance to the MLP's
    decision boundary and the assemblers, a cause label and the sharpness before the step;
    writes spike_causes.csv. Weights the run did not keep are replayed deterministically."""
    from testbed import api

    _refuse_existing(out / "spike_causes.csv" if out is not None and out.is_dir() else out, force)
    _load_plugins()
    with _user_paths(run_dir, out):
        result = api.spike_causes(run_dir, out=out, replay=not no_replay, sharpness=not no_sharpness, threads=threads)
    if "check" in result.table and (result.table["check"] == "MISMATCH").any():
        bad = int((result.table["check"] == "MISMATCH").sum())
        _terminal(stderr=True).print(f"warning: {bad} spike(s) whose recomputed loss is not the run's step loss (column check): "
                                     "this version of testbed does not reproduce the run's steps", style="bold red", highlight=False, soft_wrap=True)
    if not quiet:
        counts = result.per_cause()
        shown = ", ".join(f"{r.cause} {r.count}" for r in counts.itertuples())
        n = len(result.table)
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in (result.timings or {}).items())
        print(f"{n} spike{'s' if n != 1 else ''}: {shown}; weights kept {result.kept}, replayed {result.replayed}, missing {result.missing}; "
              f"{result.seconds:.1f} s ({parts})")
    print(result.path)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextmanager
def _user_paths(*paths: Path | None) -> Iterator[None]:
    """An OSError about one of the user's own `paths` (a file inside one, or a folder in the
    way of one) is bad input, exit status 2; any other stays a failure of the work."""
    mine = [Path(p).absolute() for p in paths if p is not None]
    try:
        yield
    except OSError as exc:
        where = Path(os.fsdecode(exc.filename)).absolute() if exc.filename else None
        if where is None or not any(where.is_relative_to(p) or p.is_relative_to(where) for p in mine):
            raise
        raise UserError(f"{exc.filename}: {exc.strerror or exc}") from None


def _describe_params(model) -> str:
    parts = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        parts.append(f"{name}={default!r}" if not field.is_required() else f"{name} (required)")
    return ", ".join(parts) or "-"


@app.command()
def view(
    paths: list[Path] = typer.Argument(None, help="run, report (comparison) or study directories, or folders of them (default: runs/ and the run store)"),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="port to listen on (0: any free one)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; other than loopback, anyone who can reach it sees the runs"),
    no_browser: bool = typer.Option(False, "--no-browser", help="print the address without opening a browser"),
    panels: str | None = typer.Option(None, "--panels", help="comma-separated panel names, as render's (see testbed plugins --kind panel)"),
    export: Path | None = typer.Option(None, "--export", help="write one seed's frames and a page that opens from disk into this folder, instead of serving"),
    seed: int | None = typer.Option(None, "--seed", help="with --export: the seed (default: the run's first)"),
    epochs: str | None = typer.Option(None, "--epochs", help="with --export: FIRST-LAST[:STEP] epochs, e.g. 0-1000:10 (default: every snapshot)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="with --export: no progress bar"),
) -> None:
    """Explore runs in the browser: each seed's frames on an epoch slider (the panels of `render`), curves with the spikes,
    a comparison's runs side by side, a study's cells as a heatmap, a run still training as it goes. Needs pip install 'testbed[view]'."""
    try:
        from testbed.view.server import serve
    except ImportError as exc:
        raise UserError(f"testbed view needs the web app's packages ({exc.name}): pip install 'testbed[view]'") from None
    _load_plugins()
    err = _terminal(stderr=True)
    if export is not None:
        _export_view(list(paths or []), export, seed, epochs, panels, err, quiet)
        return
    if seed is not None or epochs is not None:
        raise UserError(f"{'--seed' if seed is not None else '--epochs'} chooses the frames of --export; use it with --export DIR")
    serve(list(paths or []), host=host, port=port, browser=not no_browser, panels=panels,
          say=lambda line: print(line, flush=True), warn=lambda line: err.print(line, style="bold yellow", highlight=False, soft_wrap=True))


def _export_view(paths: list[Path], out: Path, seed: int | None, epochs: str | None, panels: str | None, err, quiet: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from testbed.view.export import export

    if len(paths) != 1:
        raise UserError(f"--export writes one run's page: give one run directory, not {len(paths)}")
    bar = Progress(TextColumn("[bold]exporting"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeRemainingColumn(), console=err, disable=quiet)
    with bar, _user_paths(paths[0], out):
        task = bar.add_task("export", total=None)
        written = export(paths[0], out, seed=seed, epochs=epochs, panels=panels.split(",") if panels else None,
                         advance=lambda done, total: bar.update(task, completed=done, total=total))
    size = sum(f.stat().st_size for f in written.rglob("*") if f.is_file())
    print(f"{written / 'index.html'} ({size / 1e6:.1f} MB)")
