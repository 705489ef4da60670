"""Make the run directory of a scenario on its seeds from the store's shards.

A shard of exactly those seeds is copied file by file (a reflink where the file system has one:
never a hard link, so that editing the run directory cannot reach the store); otherwise every probe combines its files from the parts
(`Probe.combine`), the summary is combined seed by seed, and curves.png is drawn again. The
run's scenario.yaml is the scenario asked for (its name and seeds), and run.json adds which
shards of which store entry gave which seeds. Per-seed files come out as a run of exactly
these seeds would have written them (tests compare them)."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.config import scenario as scenario_mod
from testbed.config.scenario import format_seeds
from testbed.errors import PluginError
from testbed.plugin_api.registry import default_registry
from testbed.rundir import summary as summary_mod
from testbed.rundir.checksums import NOT_LISTED, copy_file, copy_tree
from testbed.store.run_store import Plan, Shard

RUN_FILES = ("scenario.yaml", "summary.json", "run.json", "curves.png")  # written by the run, not a probe


def materialize(plan: Plan, stage: Path) -> list[PluginError]:
    """Write the run directory of `plan.scenario` into the (empty) folder `stage`; -> the probes
    that could not combine their files (listed in summary.json's `failures`)."""
    failures: list[PluginError] = []
    scenario = plan.scenario
    seeds = plan.seeds
    sources = plan.sources()
    whole = len(sources) == 1 and list(sources[0][0].seeds) == seeds
    first = sources[0][0]
    if whole:
        copy_tree(first.path, stage, skip=(*RUN_FILES, *NOT_LISTED))
    else:
        parts = [(shard.path, taken) for shard, taken in sources]
        registry = default_registry()
        for ref in scenario.probes:
            plugin = registry.get("probe", ref.name)
            if not plugin.build(ref).combine(parts, seeds, stage):
                failures.append(PluginError("probe", ref.name, plugin.source, "combine", "it returned False: its files are missing"))
    (stage / "scenario.yaml").write_text(scenario_mod.to_yaml(scenario))
    summaries = [(json.loads((shard.path / "summary.json").read_text()), taken) for shard, taken in sources]
    summary = summary_mod.combine(summaries, seeds, scenario.name)
    if failures:
        summary["failures"] = [*summary.get("failures", []), *(failure.record() for failure in failures)]
    (stage / "summary.json").write_text(json.dumps(summary, indent=1, allow_nan=True))
    (stage / "run.json").write_text(json.dumps(_provenance(plan, sources), indent=1) + "\n")
    same_name = summaries[0][0].get("scenario") == scenario.name
    if whole and same_name and (first.path / "curves.png").exists():
        copy_file(first.path / "curves.png", stage / "curves.png")
    elif (stage / "metrics.csv").exists():
        from testbed.rundir import curves  # matplotlib only when a figure is drawn

        curves.curves(stage / "metrics.csv", stage / "curves.png", scenario.name)
    return failures


def restate_provenance(plan: Plan, folder: Path) -> None:
    """Rewrite the run.json of a run directory made earlier from `plan`'s shards, handed out
    again (`testbed.store.served_dirs`): the store served it now, nothing trained (atomically)."""
    tmp = folder / ".run.json.tmp"
    tmp.write_text(json.dumps(_provenance(plan, plan.sources()), indent=1) + "\n")
    tmp.replace(folder / "run.json")


def _provenance(plan: Plan, sources: list[tuple[Shard, list[int]]]) -> dict:
    """The first shard's run.json, with where each seed came from in the store."""
    record = json.loads((sources[0][0].path / "run.json").read_text())
    record["store"] = {
        "root": str(plan.store.root.absolute()),
        "key": plan.entry.key,
        "code": plan.identity.get("code"),  # the content of the code that trained every part (the first part's git state is only its own)
        "parts": [
            {"run": shard.path.name, "seeds": format_seeds(sorted(taken)), "trained_now": shard is plan.trained or shard.path in plan.trained_now}
            for shard, taken in sources
        ],
    }
    return record
