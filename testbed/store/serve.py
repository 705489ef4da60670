"""A scenario's run directory, served from the run store: what `testbed run`, `compare` and
`sweep` ask for. Only the seeds the store lacks are trained (into the store, where they stay
whatever happens next); the run directory asked for is then made from the store's runs.
A scenario with a probe that cannot combine its files across seed sets (the tracking probes,
a third-party probe without `combine`) is trained straight into its run directory instead."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.rundir import writer as rundir
from testbed.rundir.reader import Run
from testbed.store.materialize import materialize
from testbed.store.run_store import Plan, RunStore
from testbed.trainer import run_scenario


@dataclass(frozen=True)
class Served:
    run: Run
    trained: list[int]  # seeds trained for this request
    reused: list[int]  # seeds the store already held


def open_store(store: RunStore | str | Path | bool | None) -> RunStore:
    return store if isinstance(store, RunStore) else RunStore(None if store in (None, True) else store)


def serve(scenario, out: str | Path | None, *, store: RunStore | str | Path | bool | None = None, force: bool = False, **train: Any) -> Served:
    """The run of `scenario` in the run directory `out` (default: a new folder under the
    scenario's output root), training only what the store lacks; `train` options go to
    `testbed.trainer.run_scenario` (progress, label, threads, resume, checkpoint_every)."""
    path = Path(out) if out is not None else rundir.default_path(scenario.output.root, scenario.name)
    rundir.check_target(path, force)  # a bad --out is refused before anything trains
    rundir.check_creatable(path)
    plan = open_store(store).plan(scenario)
    if not plan.combinable:
        # A probe that cannot combine its files (tracking probes log to a server, under the run
        # directory's name) would tie the store to exact seed sets and log under the store's
        # folder names: such a run trains straight into its directory, as with store=False.
        return Served(run_scenario(scenario, path, force=force, **train), list(scenario.seeds), [])
    plan.store.fill(plan, **train)
    return Served(write_run(plan, path, force), list(plan.missing), [s for _, taken in plan.parts for s in taken])


def write_run(plan: Plan, path: Path, force: bool = False) -> Run:
    """The run directory of a plan whose missing seeds are trained, written staged."""
    with rundir.staged(path, force) as stage:
        materialize(plan, stage)
    return Run(path)
