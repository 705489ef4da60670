"""Attention weights of one sentence over training (second paper, Figure 3): one row per
snapshot, one column per position, the line at k marked, the current epoch as a line."""

from __future__ import annotations

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel


class AttentionHistory(Panel):
    title = "Attention of one sentence over training"
    xlabel = "position t"
    ylabel = "epoch"
    geometric = False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        L, k = q.run.arch.seq_len, q.run.k
        e = q.history_epochs
        lo, hi = float(e[0]), float(max(e[-1], e[0] + 1))
        ax.imshow(q.history_attn, aspect="auto", cmap="Greys", vmin=0, vmax=max(float(q.history_attn.max()), 1e-6),
                  interpolation="nearest", origin="lower", extent=(0.5, L + 0.5, lo, hi))
        ax.axvline(k + 0.5, color="red", lw=0.8)
        ax.set_xticks(range(1, L + 1, max(1, L // 6)))
        self.now = self.keep(ax.axhline(lo, color="tab:orange", lw=1.0))

    def update(self, q, i):
        self.now.set_ydata([q.epochs[i], q.epochs[i]])


@plugin("attention_history", Params)
def attention_history(params: Params):
    """Attention weights of one sentence at every snapshot (rows) over positions (columns)."""
    return AttentionHistory(params)
