"""Per-epoch metrics of every seed as TensorBoard event files inside the run directory: one
TensorBoard run per seed (`<run>/tensorboard/seed_<s>/`) holding the scalars p, train_loss,
train_acc, test_loss, test_acc by epoch and the resolved scenario as its hyperparameters, so
`tensorboard --logdir runs` overlays every seed of every run and the HParams tab tabulates them.
Written when the probe finishes (the run directory does not exist earlier), with each value's
wall-clock time as measured during training."""

from __future__ import annotations

from pathlib import Path, PurePath

from pydantic import Field, field_validator

from testbed.plugin_api.base import plugin

from .tracked_metrics import METRICS, TrackingParams, TrackingProbe, as_text, require, scenario_parameters


class TensorBoardParams(TrackingParams):
    log_dir: str = Field("tensorboard", description="folder of the event files, relative to the run directory")

    @field_validator("log_dir")
    @classmethod
    def inside_run_directory(cls, value: str) -> str:
        path = PurePath(value)
        if path.is_absolute() or ".." in path.parts or str(path) == ".":
            raise ValueError("must be a folder inside the run directory (a relative path without '..')")
        return value


def hparam(value):
    """TensorBoard's HParams take numbers and strings; booleans and null become text (torch would
    turn True into 1.0 and drop None)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else as_text(value)


class TensorBoard(TrackingProbe):
    def __init__(self, params: TensorBoardParams, writer_class):
        super().__init__(params)
        self.log_dir = params.log_dir
        self.SummaryWriter = writer_class

    def finish(self, out: Path) -> dict[str, list]:
        from torch.utils.tensorboard.summary import hparams  # the package is there: the builder imported it

        scenario = {key: hparam(value) for key, value in scenario_parameters(self.info.scenario).items()}
        for j, seed in enumerate(self.info.seeds):
            with self.SummaryWriter(log_dir=str(out / self.log_dir / f"seed_{seed}")) as writer:
                for wall_time, ev in self.logged:
                    for tag, value in self.values(ev, j).items():
                        writer.add_scalar(tag, value, ev.epoch, walltime=wall_time)
                # Only the metrics' names are written: they point the HParams table at the scalars above.
                for summary in hparams({**scenario, "seed": seed}, {name: 0.0 for name in METRICS}):
                    writer.file_writer.add_summary(summary, walltime=self.logged[-1][0])
        return {}


@plugin("tensorboard", TensorBoardParams)
def tensorboard_probe(params: TensorBoardParams):
    """Metrics of every seed every `every` epochs as TensorBoard event files under the run directory (log_dir/seed_<s>/), the scenario as hyperparameters."""
    module = require("torch.utils.tensorboard", "tensorboard")
    return TensorBoard(params, module.SummaryWriter)
