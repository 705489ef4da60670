"""The run store: a folder of trained runs, one entry per key (`store_key`), each entry a set of
run directories ("shards") of that scenario on disjoint or overlapping seed sets.

    <root>/<key>/entry.json          what the key is the digest of, and the first name it had
    <root>/<key>/seeds-0-99/         a run directory of seeds 0-99 (written staged, as any run)
    <root>/<key>/seeds-100-199/      more seeds, trained later

Asking for a scenario on some seeds plans which shards give which seeds and which seeds are
missing; only those are trained, as one run (`fill`), and the run directory asked for is made
from the shards (`testbed.store.materialize`). A shard lands whole or not at all (renamed into
place when complete), with every file's checksum (`testbed.rundir.checksums`); one stopped
midway keeps its checkpoint in its staging folder, and the same request continues it. Finished
shards are never touched again, so a failure or an interrupt of the command that asked loses
only the run in flight. A shard is verified against its checksums before it is planned from:
one that differs (or an entry whose entry.json does not hold its key) is named in a warning,
set aside under `<root>/.quarantine/`, and its seeds train again."""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.config.scenario import format_seeds
from testbed.config.schema import Scenario
from testbed.errors import StoreWarning, UserError
from testbed.rundir import checksums, scenarios
from testbed.rundir import writer as rundir
from testbed.store import claims, store_key

DEFAULT_ROOT = Path("runs") / "store"
ENVIRONMENT = "TESTBED_STORE"
ENTRY_FILE = "entry.json"
SERVED = ".served"  # inside a store entry: run directories of its seed sets, made for warm starts
QUARANTINE = ".quarantine"  # under the root: shards and entries that failed their checks, kept for inspection


def default_root() -> Path:
    """$TESTBED_STORE, else runs/store under the working directory."""
    return Path(os.environ.get(ENVIRONMENT) or DEFAULT_ROOT)


@dataclass(frozen=True)
class Shard:
    """A finished run directory of the store and the seeds it holds."""

    path: Path
    seeds: tuple[int, ...]


def shard_name(seeds: list[int]) -> str:
    spec = format_seeds(seeds)
    if len(spec) <= 64:
        return f"seeds-{spec}"
    return f"seeds-{seeds[0]}-{seeds[-1]}-n{len(seeds)}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def finished_seeds(folder: Path) -> tuple[int, ...] | None:
    """The seeds of a finished, complete run directory (None for anything else: a run written
    without some outputs, listed in its summary's failures, is not served)."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("failures") or not (folder / "scenario.yaml").is_file():
        return None
    return tuple(int(s) for s in summary.get("seeds", []))


class Entry:
    """The runs of one key."""

    def __init__(self, root: Path, key: str):
        self.key = key
        self.path = root / key

    def shards(self) -> list[Shard]:
        """The finished, sealed shards (not yet verified: `RunStore.plan` verifies those it uses)."""
        if not self.path.is_dir():
            return []
        found = []
        for folder in sorted(self.path.iterdir()):
            if folder.is_dir() and not folder.name.startswith(".") and checksums.sealed(folder):
                seeds = finished_seeds(folder)
                if seeds:
                    found.append(Shard(folder, seeds))
        return found

    def info(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / ENTRY_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def record(self, scenario: Scenario, ident: dict[str, Any]) -> None:
        """entry.json, written once (atomically) when the entry's first run is trained."""
        target = self.path / ENTRY_FILE
        if target.exists():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{ENTRY_FILE}.{os.getpid()}"
        tmp.write_text(json.dumps({"name": scenario.name, "key": self.key, "identity": ident}, indent=1) + "\n")
        tmp.replace(target)


@dataclass
class Plan:
    """How the store serves `scenario` (on its seeds): `parts` (shard, seeds taken from it),
    and the seeds `missing`, to train into `shard_path` as one run."""

    store: RunStore
    scenario: Any
    entry: Entry
    identity: dict[str, Any]
    parts: list[tuple[Shard, list[int]]]
    missing: list[int]
    combinable: bool = True  # every probe can combine its files across seed sets (`Probe.combine`)
    replace: bool = False  # shard_path holds a run that failed to write some outputs
    trained: Shard | None = field(default=None)
    claim: claims.Claim | None = None  # this process's claim on the missing seeds (`RunStore.acquire`)
    waiting: list[Path] = field(default_factory=list)  # claims of other processes training wanted seeds
    trained_now: list[Path] = field(default_factory=list)  # shards trained by this process for this plan (`RunStore.settle`)

    def release(self) -> None:
        """Release the claim on the missing seeds (trained, failed or abandoned); an entry left
        empty (a training refused before it began) is removed."""
        if self.claim is not None:
            self.claim.release()
            self.claim = None
        try:
            self.entry.path.rmdir()
        except OSError:  # not empty, or gone
            pass

    @property
    def seeds(self) -> list[int]:
        return list(self.scenario.seeds)

    @property
    def shard_path(self) -> Path:
        return self.entry.path / shard_name(self.missing)

    def to_train(self):
        """The scenario of the run that trains the missing seeds."""
        return scenarios.revised(self.scenario, seeds=self.missing) if self.missing != self.seeds else self.scenario

    def landed(self) -> Shard:
        """The missing seeds' shard, now finished (by whichever executor trained it)."""
        seeds = finished_seeds(self.shard_path)
        if seeds is None or sorted(seeds) != sorted(self.missing):
            raise UserError(f"{self.shard_path}: the run trained for the store is not there or incomplete")
        self.trained = Shard(self.shard_path, seeds)
        self.trained_now.append(self.shard_path)
        return self.trained

    def sources(self) -> list[tuple[Shard, list[int]]]:
        """Every part, the newly trained shard included; each wanted seed comes from one."""
        if not self.missing:
            return list(self.parts)
        if self.trained is None:
            raise RuntimeError("the missing seeds have not been trained")
        return [*self.parts, (self.trained, list(self.missing))]


class RunStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"--store {self.root}: exists and is not a directory")

    def check_writable(self) -> None:
        """Refuse at once (exit status 2, before anything trains) a store that cannot be written."""
        rundir.check_writable(self.root, f"run store {self.root} (--store or ${ENVIRONMENT})")

    def entry(self, key: str) -> Entry:
        return Entry(self.root, key)

    def entries(self) -> list[Entry]:
        if not self.root.is_dir():
            return []
        return [Entry(self.root, p.name) for p in sorted(self.root.iterdir()) if p.is_dir() and not p.name.startswith(".")]

    def quarantine(self, folder: Path, what: str, warn: bool = True) -> Path:
        """Set `folder` (a shard or a whole entry) aside under the root's quarantine folder; warn
        (unless not `warn`) in one line naming `what` was wrong and where it went."""
        aside = self.root / QUARANTINE / f"{folder.parent.name}-{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.rename(aside)
        except FileNotFoundError:  # another process set it aside first
            return aside
        if warn:
            warnings.warn(StoreWarning(f"run store: {what}; set aside in {aside}, its seeds train again"), stacklevel=2)
        return aside

    def check_entry(self, entry: Entry, ident: dict[str, Any]) -> None:
        """An entry whose entry.json is unreadable or records another identity is not served."""
        file = entry.path / ENTRY_FILE
        if not file.exists():
            return
        info = entry.info()
        if info.get("key") != entry.key or info.get("identity") != json.loads(json.dumps(ident)):
            why = "unreadable" if not info else "does not record this key's identity"
            self.quarantine(entry.path, f"{file} is {why}")

    def plan(self, scenario: Scenario, busy: frozenset[int] = frozenset()) -> Plan:
        """`plan_from` the shards that pass their checks: a shard whose files differ from their
        checksums is set aside (`quarantine`) and the plan made again without it."""
        ident = store_key.identity(scenario)
        entry = self.entry(store_key.digest(ident))
        self.check_entry(entry, ident)
        while True:
            plan = self.plan_from(scenario, ident, entry, busy)
            bad = [(shard, found) for shard, _ in plan.parts if (found := checksums.verify(shard.path)) is not None]
            if not bad:
                return plan
            for shard, found in bad:
                self.quarantine(shard.path, f"{found.file}: {found.why}")

    def plan_from(self, scenario: Scenario, ident: dict[str, Any], entry: Entry, busy: frozenset[int] = frozenset()) -> Plan:
        """Which stored runs give which of the scenario's seeds, and which seeds must train. A
        run of exactly these seeds is served as it is; otherwise, when every probe of the
        scenario can combine its files (`Probe.combine`), the seeds come from any shards
        (the largest first) and only the rest train; when one cannot, the seeds train as one
        run unless a run of exactly them exists."""
        ident = store_key.identity(scenario)
        entry = self.entry(store_key.digest(ident))
        seeds = list(scenario.seeds)
        shards = entry.shards()
        can_combine = combinable(scenario)
        exact = [s for s in shards if sorted(s.seeds) == seeds]
        if exact:
            return Plan(self, scenario, entry, ident, [(exact[0], seeds)], [], can_combine)
        parts: list[tuple[Shard, list[int]]] = []
        wanted = set(seeds)
        if can_combine:
            for shard in sorted(shards, key=lambda s: (-len(wanted & set(s.seeds)), s.path.name)):
                given = sorted(wanted & set(shard.seeds))
                if given:
                    parts.append((shard, given))
                    wanted -= set(given)
        missing = sorted(wanted - busy)
        plan = Plan(self, scenario, entry, ident, parts, missing, can_combine)
        plan.replace = plan.shard_path.exists() and bool(missing)
        return plan

    def acquire(self, scenario: Scenario) -> Plan:
        """A plan whose missing seeds this process has claimed (`plan.claim`, to release once
        trained), less the seeds other processes are training now, whose claims are in
        `plan.waiting` (wait for them, then plan again)."""
        key = store_key.digest(store_key.identity(scenario))
        with claims.planning(self.root, key):
            plan = self.plan(scenario)
            if not plan.missing:
                return plan
            others = claims.live(plan.entry.path)
            wanted = set(plan.missing)
            plan.waiting = [file for file, seeds in others if seeds & wanted]
            if not plan.waiting:
                plan.claim = claims.claim(plan.entry.path, plan.shard_path.name, plan.missing)
                return plan
            busy = frozenset().union(*(seeds for _, seeds in others))
            if not plan.combinable:  # its seeds train as one run or not at all: wait for the other's
                plan.missing, plan.replace = [], False
                return plan
            waiting = plan.waiting
            plan = self.plan(scenario, busy)
            plan.waiting = waiting
            if plan.missing:
                plan.claim = claims.claim(plan.entry.path, plan.shard_path.name, plan.missing)
            return plan

    def settle(self, scenario: Scenario, train: Callable[[Plan], Any]) -> Plan:
        """The plan of `scenario` with nothing missing: what the store lacks and no other
        process is training is trained here (`train(plan)`, its claim released after), what
        another is training is waited for; `plan.trained_now` lists the runs trained here."""
        trained: list[Path] = []
        while True:
            plan = self.acquire(scenario)
            if plan.missing:
                try:
                    train(plan)
                finally:
                    plan.release()
                trained.append(plan.shard_path)
                continue
            if plan.waiting:
                for file in plan.waiting:
                    claims.wait(file)
                continue
            plan.trained_now = trained
            return plan

    def fill(self, plan: Plan, train: Callable[..., Any] | None = None, discard: bool = False, **options: Any) -> None:
        """Train the plan's missing seeds into the store (with `train`, default
        `testbed.trainer.run_scenario`, given the scenario, the shard path and `options`);
        `discard`: a stopped training there that cannot be continued is discarded (--force)."""
        if not plan.missing:
            return
        if train is None:
            from testbed.trainer import run_scenario as train
        stage = rundir.staging_path(plan.shard_path)
        if options.get("resume") and not (stage / rundir.CHECKPOINT).is_file():  # refused before the entry is written
            raise UserError(f"--resume: the run store {self.root} has no stopped training of this scenario on seeds {format_seeds(plan.missing)} to continue")
        plan.entry.record(plan.scenario, plan.identity)
        train(plan.to_train(), plan.shard_path, force=plan.replace or discard, seal=True, named=f"the run store's {plan.shard_path}", **options)
        plan.landed()


def combinable(scenario: Scenario) -> bool:
    """Whether every probe of the scenario can combine its files across seed sets."""
    from testbed.plugin_api.probe import Probe
    from testbed.plugin_api.registry import default_registry

    registry = default_registry()
    for ref in scenario.probes:
        try:
            probe = registry.get("probe", ref.name).build(ref)
        except Exception:  # the training builds it again and names the failure
            return False
        if type(probe).combine is Probe.combine:
            return False
    return True


def stray_stages(entry: Entry) -> list[Path]:
    """Staging folders of the entry that no process is writing: runs stopped midway (a
    checkpoint to continue from) or failed (their error.log)."""
    if not entry.path.is_dir():
        return []
    return [s for s in entry.path.glob(".*.partial") if not rundir.is_locked(rundir.final_path(s))]
