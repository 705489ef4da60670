"""Built-in probes, one module each."""

from testbed.plugin_api.hookspecs import hookimpl

from .grad_norms import grad_norms
from .metrics import metrics
from .mlflow_tracking import mlflow_probe
from .sharpness import sharpness
from .snapshots import snapshots
from .sparsity import sparsity
from .spikes import spikes
from .step_loss import step_loss
from .tensorboard_tracking import tensorboard_probe


@hookimpl
def testbed_probes():
    return [metrics, step_loss, grad_norms, snapshots, sparsity, sharpness, spikes, tensorboard_probe, mlflow_probe]
