"""Train and test loss of the seed over epochs, the frame's epoch marked."""

from __future__ import annotations

from matplotlib.ticker import NullFormatter

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel


class Curves(Panel):
    title, ylabel, xlabel = "Loss", "cross-entropy", "epoch"
    geometric = False
    columns = ("train_loss", "test_loss")
    log = True

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        m = q.run.seed_metrics(q.seed)
        if m is None or len(m["epoch"]) == 0:
            ax.text(0.5, 0.5, "no metrics.csv", ha="center", transform=ax.transAxes, fontsize=7)
        else:
            for col, color in zip(self.columns, ("tab:blue", "tab:orange")):
                ax.plot(m["epoch"], m[col], color=color, lw=0.9, label=col.split("_")[0])
            ax.legend(fontsize=5.5, loc="best", framealpha=0.6)
        if self.log:
            ax.set_yscale("log")
            ax.yaxis.set_minor_formatter(NullFormatter())  # a narrow log range would label minor ticks
        ax.grid(alpha=0.3, lw=0.4)
        self.now = self.keep(ax.axvline(0, color="red", lw=0.9, ls="--"))

    def update(self, q, i):
        self.now.set_xdata([q.epochs[i], q.epochs[i]])


@plugin("loss", Params)
def loss(params: Params):
    """Train/test loss of the seed, the current epoch marked."""
    return Curves(params)
