"""The output p(y | x) of every probe sentence as a colour-wheel strip above the strip of its
true class: a column whose two colours differ is a sentence the model gets wrong."""

from __future__ import annotations

import numpy as np

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel
from testbed.render.style import class_colors, wheel


class Output(Panel):
    title = "Output p(y|x) vs target"
    xlabel = "probe sentence (by prefix)"
    geometric = False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        N, p = len(q.sentences.labels), q.run.p
        target = class_colors(p)[q.sentences.labels]
        img = np.stack([np.ones((N, 3)), target, q.sentences.colors])  # rows: output, target, prefix colour
        self.img = img
        self.im = self.keep(ax.imshow(img, aspect="auto", interpolation="nearest", extent=(-0.5, N - 0.5, 2.5, -0.5)))
        ax.set_yticks([0, 1, 2], ["output", "target", "prefix"], fontsize=6)
        ax.set_xticks([])
        self.acc = self.keep(ax.text(0.99, -0.08, "", transform=ax.transAxes, ha="right", va="top", fontsize=6))

    def update(self, q, i):
        probs = q.trace["probs"][i][:, : q.run.p]
        self.img[0] = wheel(probs / probs.sum(1, keepdims=True))
        self.im.set_data(self.img)
        acc = float((probs.argmax(1) == q.sentences.labels).mean())
        self.acc.set_text(f"probe accuracy {acc:.2f}")


@plugin("output", Params)
def output(params: Params):
    """Colour-wheel output p(y|x) of each probe sentence against its target class."""
    return Output(params)
