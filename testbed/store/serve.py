"""A scenario's run directory, served from the run store: what `testbed run`, `compare` and
`sweep` ask for. Only the seeds the store lacks are trained (into the store, where they stay
whatever happens next); the run directory asked for is then made from the store's runs.
A scenario with a probe that cannot combine its files across seed sets (the tracking probes,
a third-party probe without `combine`) is trained straight into its run directory instead.

A run that starts from a source scenario (`model.init: {scenario: FILE}`) gets the source's run
on the same seeds, served the same way into a run directory kept inside the source's store
entry (`bound`), so that every run fine-tuned from it, in any study cell, shares one
pre-training."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.config import scenario as scenario_mod
from testbed.config.schema import Scenario
from testbed.errors import RunFailure, describe
from testbed.rundir import scenarios
from testbed.rundir import writer as rundir
from testbed.rundir.reader import Run
from testbed.store import served_dirs, store_key
from testbed.store.materialize import materialize, restate_provenance
from testbed.store.run_store import SERVED, Plan, RunStore, finished_seeds, shard_name
from testbed.trainer import run_scenario


@dataclass(frozen=True)
class Served:
    run: Run
    trained: list[int]  # seeds trained for this request
    reused: list[int]  # seeds the store already held


def open_store(store: RunStore | str | Path | bool | None) -> RunStore:
    if isinstance(store, RunStore):
        return store
    if store is False:
        raise ValueError("store=False is no store: the caller trains without one")
    return RunStore(None if store is None or store is True else store)


def serve(scenario: Scenario, out: str | Path | None, *, store: RunStore | str | Path | bool | None = None, force: bool = False, **train: Any) -> Served:
    """The run of `scenario` in the run directory `out` (default: a new folder under the
    scenario's output root, or the one made there before when the store serves every seed
    from the same shards: `testbed.store.served_dirs`), training only what the store lacks;
    `train` options go to `testbed.trainer.run_scenario` (progress, label, threads, resume,
    checkpoint_every)."""
    path = Path(out) if out is not None else rundir.default_path(scenario.output.root, scenario.name)
    rundir.check_target(path, force)  # a bad --out is refused before anything trains
    rundir.check_creatable(path)
    rundir.check_writable(path.parent, f"--out {path}")
    if store is False:  # --no-store: every seed straight into the run directory (a source scenario is still served by the default store)
        return Served(run_scenario(bound(scenario, **train), path, force=force, **train), list(scenario.seeds), [])
    the_store = open_store(store)
    the_store.check_writable()
    plan = the_store.plan(scenario)
    if not plan.combinable:
        # A probe that cannot combine its files (tracking probes log to a server, under the run
        # directory's name) would tie the store to exact seed sets and log under the store's
        # folder names: such a run trains straight into its directory, as with store=False.
        if plan.missing:
            plan.scenario = bound(plan.scenario, the_store, **train)
        return Served(run_scenario(plan.scenario, path, force=force, **train), list(scenario.seeds), [])

    used = []

    def train_missing(plan: Plan) -> None:
        plan.scenario = bound(plan.scenario, the_store, **train)  # a source scenario it starts from is served first
        used.append(plan.scenario)
        the_store.fill(plan, discard=force, **train)

    plan = the_store.settle(scenario, train_missing)  # waits for seeds another process trains now, and shares them
    if used:  # scenario.yaml says what it trained from
        plan.scenario = used[-1]
    trained = sorted(s for shard, taken in plan.parts if shard.path in plan.trained_now for s in taken)
    reused = sorted(s for shard, taken in plan.parts if shard.path not in plan.trained_now for s in taken)
    if out is None and not trained:
        again = served_dirs.find(plan, Path(scenario.output.root), scenario.name)
        if again is not None:
            restate_provenance(plan, again)
            return Served(Run(Path(scenario.output.root) / again.name), trained, reused)
    run = write_run(plan, path, force)
    if out is None:
        served_dirs.record(plan, path)
    return Served(run, trained, reused)


def write_run(plan: Plan, path: Path, force: bool = False) -> Run:
    """The run directory of a plan whose missing seeds are trained, written staged; a failure
    to write it (a full disk) is one line saying that the seeds are safe in the store."""
    try:
        with rundir.staged(path, force) as stage:
            failures = materialize(plan, stage)
    except OSError as exc:
        failure = RunFailure("", f"writing the run directory {path}", describe(exc))
        failure.notes.append(f"every seed is in the run store {plan.entry.path}: the same command again only writes the run directory")
        raise failure from exc
    if failures:
        listed = "the failure" if len(failures) == 1 else f"all {len(failures)} failures"
        failures[0].notes.append(f"the run is in {path} without this probe's outputs (summary.json lists {listed})")
        failures[0].kept = path
        raise failures[0]
    return Run(path)


LOCK_POLL_SECONDS = 1.0


def bound(scenario: Scenario, store: RunStore | None = None, **train: Any):
    """`scenario` with `model.init.run` naming its source scenario's run on its seeds (served
    by `store`, default the default store; `train` options as for `serve`), or `scenario`
    itself when it names no source scenario to serve."""
    init = scenario.model.init
    if not isinstance(init, scenario_mod.WarmStart) or init.scenario is None or init.run is not None:
        return scenario
    store = store or RunStore()
    seeds = list(scenario.seeds)
    source = scenarios.load(init.scenario, seeds=seeds)
    train = {k: v for k, v in train.items() if k != "label"} | {"label": f"{source.name} (source, {len(seeds)} seeds)"}
    folder = store.entry(store_key.digest(store_key.identity(source))).path / SERVED / shard_name(seeds)
    while rundir.is_locked(folder):  # another process serves this source on these seeds (a sweep beside this one): wait, then share it
        time.sleep(LOCK_POLL_SECONDS)
    if finished_seeds(folder) != tuple(seeds):
        serve(source, folder, store=store, force=True, **train)  # a source of a source is served there in turn
    model = scenario.model.model_dump(mode="json")
    model["init"]["run"] = str(folder.resolve())
    return scenarios.revised(scenario, model=model)
