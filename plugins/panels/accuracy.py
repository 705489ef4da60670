"""Train and test accuracy of the seed over epochs, the frame's epoch marked."""

from __future__ import annotations

from testbed.plugin_api.base import Params, plugin
from testbed_plugins.panels.loss import Curves


class Accuracy(Curves):
    title, ylabel = "Accuracy", "accuracy"
    columns = ("train_acc", "test_acc")
    log = False


@plugin("accuracy", Params)
def accuracy(params: Params):
    """Train/test accuracy of the seed, the current epoch marked."""
    return Accuracy(params)
