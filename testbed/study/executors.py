"""Where a study's runs train: here, one after another (`local`, the default), or as Ray tasks
(`ray`: a local Ray instance or an existing cluster, `pip install 'testbed[ray]'`).

Either way a run lands in the run store as soon as it is finished, and a run that fails is
named in one line while the others go on. Ray workers need no shared file system: a worker
trains into a temporary folder and sends the run directory back (a gzipped tar), which the
driver unpacks into the store's staging folder and renames into place, as a local run is."""

from __future__ import annotations

import io
import logging
import socket
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.config.schema import Scenario
from testbed.errors import RunFailure, UserError, describe
from testbed.rundir import checksums
from testbed.rundir import writer as rundir
from testbed.store.run_store import Plan

RAY_INSTALL = "pip install 'testbed[ray]'"


@dataclass(frozen=True)
class Job:
    """The missing seeds of one cell, to train into the store."""

    plan: Plan
    label: str  # on the progress display: "[3/12] model.hidden=8 (100 seeds)"


Failures = list[tuple[Job, BaseException]]


class LocalExecutor:
    name = "local"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def train(self, jobs: list[Job], progress: Callable[[Any], None] | None = None) -> Failures:
        failures: Failures = []
        for job in jobs:
            try:
                job.plan.store.fill(job.plan, progress=progress, label=job.label, threads=self.threads)
            except (RunFailure, UserError) as exc:
                failures.append((job, exc))
            finally:
                job.plan.release()  # another command waiting for these seeds goes on
        return failures


def gpus_for(scenario: Scenario) -> int:
    """A GPU per cell where the scenario asks to train on one."""
    device = str(getattr(getattr(scenario, "training", None), "device", "cpu") or "cpu")
    return 0 if device == "cpu" else 1


def _import_ray():
    import os

    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # not a warning a second while a join is retried: our one line says it
    try:
        import ray
        import ray.exceptions
    except ImportError:
        raise UserError(f"--executor ray: Ray is not installed ({RAY_INSTALL})") from None
    return ray


def _reachable(address: str) -> None:
    """Refuse at once an address where nothing listens (Ray itself would retry for a minute)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"--address {address}: expected auto, local or HOST:PORT")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster reachable there ({exc.strerror or exc})") from None




def use_token_if_available() -> None:
    """Ray (2.5x) turns token authentication on by itself for `ray start --head` and a local
    `ray.init()` once a token exists, but never when joining an explicit address: the join is
    then refused ("Authentication token is missing or incorrect"). Where the user has not
    chosen (RAY_AUTH_MODE unset) and a token is at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    ~/.ray/auth_token), send it, as Ray does for a cluster it finds itself."""
    import os
    import sys

    if "RAY_AUTH_MODE" in os.environ or "ray" in sys.modules:  # chosen, or too late: a loaded Ray has read its mode
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def join_advice(address: str | None) -> str:
    """What to do when joining a cluster failed (Ray's token authentication, on by default since
    Ray 2.5x, is the usual cause)."""
    if address is None:
        return ""
    return (
        "; a cluster with token authentication needs its token here: RAY_AUTH_TOKEN=<token> or RAY_AUTH_TOKEN_PATH=<file> "
        "(the head keeps it in ~/.ray/auth_token), or RAY_AUTH_MODE=disabled on both sides; a head on this machine "
        "is reached at the address it advertises: start it with --node-ip-address 127.0.0.1"
    )


class RayExecutor:
    """Cells as Ray tasks, each declaring `cpus_per_cell` CPUs (and a GPU where its scenario
    trains on one). `address`: None or 'local' starts a Ray instance on this machine for the
    study (loopback only) and stops it after; 'auto' or HOST:PORT joins a running cluster."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_cell: int = 1, threads: int | None = None):
        self.address = None if address in (None, "local") else address
        if self.address not in (None, "auto"):
            _reachable(self.address)
        if self.address is not None:
            use_token_if_available()  # before Ray loads: it reads its authentication mode once
        self.ray = _import_ray()
        self.cpus_per_cell = cpus_per_cell
        self.threads = threads or cpus_per_cell

    def _connect(self) -> bool:
        """Connect (or start); True when this executor started the Ray instance it must stop."""
        ray = self.ray
        if ray.is_initialized():
            return False
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
        import signal

        ours = signal.getsignal(signal.SIGTERM)  # ray.init replaces it by sys.exit(15): keep SIGTERM an interrupt
        try:
            if self.address is None:  # "local": a new instance, whatever RAY_ADDRESS or the record of an earlier `ray start` says
                ray.init(address="local", _node_ip_address="127.0.0.1", **options)
            else:
                ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"--address {self.address or 'local'}: cannot start or join Ray ({describe(exc)}){join_advice(self.address)}") from None
        finally:
            if ours is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, ours)
        return True

    def train(self, jobs: list[Job], progress: Callable[[Any], None] | None = None) -> Failures:
        import testbed
        from testbed.config.scenario import to_yaml
        from testbed.trainer import Progress

        if not jobs:
            return []
        ray = self.ray
        started = self._connect()
        failures: Failures = []
        try:
            task = ray.remote(train_in_worker)
            pending = {}
            for job in jobs:
                scenario = job.plan.to_train()
                ref = task.options(num_cpus=self.cpus_per_cell, num_gpus=gpus_for(scenario)).remote(
                    to_yaml(scenario), self.threads, testbed.__version__
                )
                pending[ref] = job
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    payload = ray.get(done[0])
                    land(job.plan, payload)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if isinstance(getattr(exc, "cause", None), (RunFailure, UserError)) else None
                    failures.append((job, cause or RunFailure("", "a Ray task", describe(exc))))
                    continue
                except ray.exceptions.RayError as exc:  # a worker or node lost
                    failures.append((job, RunFailure("", "a Ray task", describe(exc))))
                    continue
                finally:
                    job.plan.release()
                if progress is not None:  # a remote run reports when it has landed
                    epochs = job.plan.scenario.training.epochs
                    progress(Progress(job.label, epochs, epochs))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if started:
                ray.shutdown()
        return failures


def train_in_worker(scenario_yaml: str, threads: int, version: str) -> bytes:
    """On a Ray worker: train the scenario into a temporary folder and return the run directory
    as a gzipped tar."""
    import tempfile

    import yaml

    import testbed
    from testbed.rundir import scenarios
    from testbed.trainer import run_scenario

    if testbed.__version__ != version:
        raise UserError(f"a Ray worker has testbed {testbed.__version__}, the driver {version}: install the same version on every node")
    scenario = scenarios.validate(yaml.safe_load(scenario_yaml), "the scenario sent to a Ray worker")
    with tempfile.TemporaryDirectory(prefix="testbed-ray-") as tmp:
        folder = Path(tmp) / "run"
        try:
            run_scenario(scenario, folder, threads=threads, checkpoint_every="off")
        except RunFailure as failure:
            failure.notes = ["on a Ray worker, which keeps nothing"]
            failure.kept = failure.log = None
            raise
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(folder, arcname=".")
        return buffer.getvalue()


def land(plan: Plan, payload: bytes) -> None:
    """Unpack a run directory sent back by a worker into the store, staged like a local run."""
    plan.entry.record(plan.scenario, plan.identity)
    with rundir.staged(plan.shard_path, force=plan.replace, finish=checksums.seal, named=f"the run store's {plan.shard_path}") as stage:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
            tar.extractall(stage, filter="data")
    plan.landed()


def executor(name: str, address: str | None = None, cpus_per_cell: int = 1, threads: int | None = None):
    if name == "local":
        if address is not None:
            raise UserError("--address: only with --executor ray")
        return LocalExecutor(threads)
    if name == "ray":
        return RayExecutor(address, cpus_per_cell, threads)
    raise UserError(f"--executor {name}: unknown; use local or ray")
