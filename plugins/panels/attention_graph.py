"""The attention of one sentence as a bipartite graph (second paper, Figure 2): tokens below,
the sentence embedding above, edge width = attention weight, red where the last update (since
the previous frame) strengthened the edge, blue where it weakened it."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel

RED, BLUE, GREY = (0.85, 0.1, 0.1, 0.9), (0.1, 0.3, 0.9, 0.9), (0.5, 0.5, 0.5, 0.7)
MAX_WIDTH = 7.0
CHANGED = 1e-4  # an attention weight change below this is drawn grey


class AttentionGraph(Panel):
    title = "Attention graph of one sentence"
    geometric = False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        L, k = q.run.arch.seq_len, q.run.k
        xs = np.arange(1, L + 1, dtype=float)
        top = ((L + 1) / 2, 1.0)
        # edges stop short of the nodes, so the nodes and their labels can stay in the static
        # background of a video while only the edges are redrawn
        self.edges = self.keep(LineCollection([[(x, 0.09), (top[0], top[1] - 0.09)] for x in xs], linewidths=1, colors=GREY, zorder=2))
        ax.add_collection(self.edges)
        ax.scatter(xs, np.zeros(L), s=60, c="white", edgecolors="k", linewidths=0.6, zorder=3)
        for x, tok in zip(xs, q.focus_tokens):
            ax.text(x, 0, str(tok), ha="center", va="center", fontsize=6, zorder=4)
            ax.text(x, -0.16, str(int(x)), ha="center", va="center", fontsize=5, color="0.4")
        ax.scatter([top[0]], [top[1]], s=90, c="0.85", edgecolors="k", linewidths=0.6, zorder=3)
        ax.text(top[0], top[1] + 0.13, "xi", ha="center", fontsize=6)
        ax.axvline(k + 0.5, color="red", lw=0.6, ls="--")
        ax.set_xlim(0.3, L + 0.7)
        ax.set_ylim(-0.3, 1.3)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("tokens x_t (position below); red: strengthened, blue: weakened", fontsize=5.5)

    def update(self, q, i):
        a, prev = q.focus_attn[i], q.focus_prev[i]
        delta = a - prev
        colors = np.where((delta > CHANGED)[:, None], RED, np.where((delta < -CHANGED)[:, None], BLUE, GREY))
        self.edges.set_linewidths(0.2 + MAX_WIDTH * a)
        self.edges.set_colors(colors)


@plugin("attention_graph", Params)
def attention_graph(params: Params):
    """Bipartite attention graph of one sentence; red/blue: strengthened/weakened by the last update."""
    return AttentionGraph(params)
