"""Token embeddings E(x): one point per token, in its class colour (E also decodes, by tying)."""

from __future__ import annotations

import numpy as np

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel
from testbed.render.style import class_colors


class TokenEmbeddings(Panel):
    title = "Token embeddings E(x)"

    def points(self, q):
        return q.params["tok_emb"]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        V, p = q.run.arch.n_tokens, q.run.p
        colors = np.array([class_colors(p)[x] if x < p else (0.6, 0.6, 0.6) for x in range(V)])
        self.sc = self.keep(ax.scatter(np.zeros(V), np.zeros(V), c=colors, s=40, edgecolors="k", linewidths=0.5, zorder=3))
        self.texts = [self.keep(ax.text(0, 0, f" {x}", fontsize=7, zorder=4, clip_on=True)) for x in range(V)] if self.labels else []

    def update(self, q, i):
        E = q.params["tok_emb"][i]
        self.sc.set_offsets(E)
        for x, t in enumerate(self.texts):
            t.set_position(E[x])


@plugin("token_emb", Params)
def token_emb(params: Params):
    """Token embeddings E(x), coloured by class."""
    return TokenEmbeddings(params)
