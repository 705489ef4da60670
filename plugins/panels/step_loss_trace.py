"""The training loss of every optimizer step (step_loss.npz), where spikes show: the whole run
for ordinary frames, a few hundred steps around the frames of a spike figure, the frame's step
marked."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import NullFormatter
from pydantic import Field

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel

MAX_POINTS = 4000  # longer runs are drawn as the maximum of each bucket of steps (spikes stay visible)


class StepLossParams(Params):
    around: int = Field(150, ge=5, description="steps shown on each side of a spike")


class StepLoss(Panel):
    title, xlabel, ylabel = "Step loss (train batches)", "step", "cross-entropy"
    geometric = False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.spe = q.run.steps_per_epoch
        self.now = self.keep(ax.axvline(0, color="red", lw=0.9, ls="--"))
        losses = q.run.step_losses()
        if losses is None:
            ax.text(0.5, 0.5, "no step_loss.npz", ha="center", transform=ax.transAxes, fontsize=7)
            return
        y = losses[:, q.run.seeds.index(q.seed)]
        steps = q.epochs * self.spe
        if q.step_level:  # a spike figure: zoom in
            lo, hi = int(max(0, steps.min() - self.params.around)), int(min(len(y), steps.max() + self.params.around + 1))
            x = np.arange(lo, hi)
            y = y[lo:hi]
        else:
            x = np.arange(len(y))
            if len(y) > MAX_POINTS:
                b = -(-len(y) // MAX_POINTS)
                n = len(y) // b * b
                x, y = x[:n:b], np.nanmax(y[:n].reshape(-1, b), 1)
        ax.plot(x, y, color="tab:blue", lw=0.6)
        ax.set_xlim(x[0], x[-1] if len(x) > 1 else x[0] + 1)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, lw=0.4)

    def update(self, q, i):
        s = q.epochs[i] * self.spe
        self.now.set_xdata([s, s])


@plugin("step_loss", StepLossParams)
def step_loss(params: StepLossParams):
    """Loss of every optimizer step; zoomed around the spike in spike figures."""
    return StepLoss(params)
