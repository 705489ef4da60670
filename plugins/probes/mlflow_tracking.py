"""A run in MLflow: a parent run named after the run directory, holding the resolved scenario as
parameters and the run directory's files as artifacts, with one child run per seed holding the
same parameters, `seed`, and the per-epoch metrics p, train_loss, train_acc, test_loss, test_acc
(step = epoch).

Seeds are child runs rather than metric names per seed (`seed_3/test_acc`) because MLflow
compares, charts and searches runs by shared metric and parameter names: with one run per seed,
`metrics.test_acc > 0.9 and params.model.norm = 'smooth'` counts the successful seeds of a
scenario, and seed 3 of two scenarios are two runs side by side.

Store: `MLFLOW_TRACKING_URI` when set, else MLflow's own default, a SQLite file `./mlflow.db`
with artifacts in `./mlruns/`, in the working directory (where `mlflow ui` looks). MLflow
(3.x) keeps its older file store in maintenance mode and refuses it unless
MLFLOW_ALLOW_FILE_STORE=true; with that set, MLFLOW_TRACKING_URI=file:./mlruns selects it.

Everything is logged when the probe finishes, so a run that fails leaves nothing in the store.
Artifacts are the files of the run directory as they are at that moment: scenario.yaml and the
files of the probes listed before this one (list it last); summary.json and curves.png are
written after every probe has finished and are not among them (the tag `testbed.run_dir` says
where they are)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from testbed.errors import UserError
from testbed.plugin_api.base import plugin
from testbed.rundir.writer import CHECKPOINT

from .tracked_metrics import TrackingParams, TrackingProbe, as_text, require, run_directory, scenario_parameters

BATCH = 100  # MLflow takes at most 100 parameters and 1000 metrics per log_batch call


# What the staging folder holds for testbed itself, not the run's outputs: the training state a
# stopped run continues from, and the record of a failure.
INTERNAL_FILES = {CHECKPOINT, "error.log"}


class MlflowParams(TrackingParams):
    experiment: str = Field("testbed", min_length=1, description="MLflow experiment to log into (created if absent)")
    artifacts: bool = Field(True, description="copy the run directory's files as they are when this probe finishes (list it last)")


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else ./mlflow.db made absolute now, at build time."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def milliseconds(seconds: float) -> int:
    return int(seconds * 1000)


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


class Mlflow(TrackingProbe):
    def __init__(self, params: MlflowParams, uri: str):
        super().__init__(params)
        self.experiment = params.experiment
        self.artifacts = params.artifacts
        self.uri = uri

    def finish(self, out: Path) -> dict[str, list]:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self.uri)
        created: list[str] = []
        try:
            self.log(client, out, created)
        except MlflowException as exc:
            for run_id in created:  # best effort: mark what was begun as failed
                try:
                    client.set_terminated(run_id, status="FAILED")
                except MlflowException:
                    pass
            message = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise UserError(f"probe 'mlflow': logging to {self.uri} failed: {message}") from None
        return {}

    def experiment_id(self, client) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return client.create_experiment(self.experiment)
            except MlflowException:  # created meanwhile by another run
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise UserError(
                f"probe 'mlflow': experiment '{self.experiment}' is deleted in {self.uri}; restore it or set the probe's experiment to another name"
            )
        return found.experiment_id

    def log(self, client, out: Path, created: list[str]) -> None:
        from mlflow.entities import Metric, Param

        experiment_id = self.experiment_id(client)
        run_dir = run_directory(out)
        scenario = [Param(key, as_text(value)) for key, value in scenario_parameters(self.info.scenario).items()]
        tags = {"testbed.run_dir": str(run_dir), "testbed.scenario": self.info.scenario.name}
        start = milliseconds(self.started)

        parent = client.create_run(experiment_id, start_time=start, tags=tags, run_name=run_dir.name).info.run_id
        created.append(parent)
        for part in chunks(scenario, BATCH):
            client.log_batch(parent, params=part, synchronous=True)

        for j, seed in enumerate(self.info.seeds):
            child_tags = {**tags, "mlflow.parentRunId": parent, "testbed.seed": str(seed)}
            child = client.create_run(experiment_id, start_time=start, tags=child_tags, run_name=f"{run_dir.name} seed {seed}").info.run_id
            created.append(child)
            for part in chunks([*scenario, Param("seed", str(seed))], BATCH):
                client.log_batch(child, params=part, synchronous=True)
            metrics = [
                Metric(key, value, milliseconds(wall_time), ev.epoch)
                for wall_time, ev in self.logged
                for key, value in self.values(ev, j).items()
            ]
            for part in chunks(metrics, 1000):
                client.log_batch(child, metrics=part, synchronous=True)
            client.set_terminated(child, end_time=milliseconds(self.logged[-1][0]))

        if self.artifacts:
            for item in sorted(out.iterdir()):
                if item.name in INTERNAL_FILES:
                    continue
                if item.is_dir():
                    client.log_artifacts(parent, str(item), artifact_path=item.name)
                else:
                    client.log_artifact(parent, str(item))
        client.set_terminated(parent)


@plugin("mlflow", MlflowParams)
def mlflow_probe(params: MlflowParams):
    """Scenario, every seed's metrics (a child run each) and the run's files to MLflow (MLFLOW_TRACKING_URI, else ./mlflow.db)."""
    uri = tracking_uri()
    require("mlflow", "mlflow")
    if uri.startswith("sqlite:"):  # mlflow-skinny needs these for a SQLite store
        require("sqlalchemy", "mlflow")
        require("alembic", "mlflow")
    return Mlflow(params, uri)
