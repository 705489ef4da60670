"""Output level lines: the decoding zeta -> softmax(E zeta) is linear in zeta, so its level
lines are straight. Drawn: the colour-wheel field, for each pair of classes the lines where
their probability ratio is 1 (solid) and 9 or 1/9 (dotted, p = 2 only), the directions of
the token embeddings (arrows of a fixed length: only their direction decides), and the
sentences' zeta."""

from __future__ import annotations

import itertools
import math

import numpy as np
from matplotlib.collections import LineCollection

from testbed.plugin_api.base import plugin
from testbed.plugin_api.panel import Panel, SentencePoints
from testbed.render.style import class_colors
from testbed_plugins.panels.xi_field import FieldParams

LEVELS_P2 = (-math.log(9), 0.0, math.log(9))


class OutputLevels(Panel):
    title = "Output level lines in the zeta plane"

    def points(self, q):
        return q.trace["zeta"]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.extent, G = extent, self.params.resolution
        self.im = self.keep(ax.imshow(np.ones((G, G, 3)), extent=extent, origin="lower", interpolation="bilinear", zorder=1))
        p = q.run.p
        self.pairs = [(a, b, c) for a, b in itertools.combinations(range(p), 2) for c in (LEVELS_P2 if p == 2 else (0.0,))]
        styles = ["-" if c == 0 else ":" for _, _, c in self.pairs]
        self.lines = self.keep(LineCollection(np.zeros((len(self.pairs), 2, 2)), colors="k", linewidths=0.7, linestyles=styles, zorder=2))
        ax.add_collection(self.lines)
        self.pts = SentencePoints(self, ax, q, size=10, labels=False)
        self.reach = 4 * (extent[1] - extent[0])
        self.arrow_length = 0.35 * (extent[1] - extent[0])
        self.arrows = self.keep(ax.quiver(np.zeros(p), np.zeros(p), np.ones(p), np.zeros(p), angles="xy", scale_units="xy",
                                          scale=1, color=class_colors(p), edgecolor="k", linewidth=0.3, width=0.012, zorder=4))

    def update(self, q, i):
        E = q.params["tok_emb"][i]
        segs = []
        for a, b, c in self.pairs:
            w = E[b] - E[a]  # logit_b - logit_a = w . zeta = c
            n2 = max(float(w @ w), 1e-12)
            foot, direction = (c / n2) * w, np.array([-w[1], w[0]]) / math.sqrt(n2)
            segs.append([foot - self.reach * direction, foot + self.reach * direction])
        self.lines.set_segments(np.asarray(segs))
        self.im.set_data(q.field("zeta", self.extent, self.params.resolution)[i])
        self.pts.update(q.trace["zeta"][i])
        u = E[: q.run.p] / np.maximum(np.linalg.norm(E[: q.run.p], axis=1, keepdims=True), 1e-12) * self.arrow_length
        self.arrows.set_UVC(u[:, 0], u[:, 1])


@plugin("output_lines", FieldParams)
def output_lines(params: FieldParams):
    """Level lines of p(y|zeta) (straight: decoding is linear) over the colour-wheel field."""
    return OutputLevels(params)
