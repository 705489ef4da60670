"""The field xi -> p(y | xi) (MLP then decoding) as colours of the class colour wheel, with the
probe sentences on it: where a cluster sits in the wrong colour, or on a colour boundary, the
model errs or is about to spike."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.panel import Panel, SentencePoints


class FieldParams(Params):
    resolution: int = Field(48, ge=4, le=512, description="grid points per side of the field")


class XiField(Panel):
    title = "Field xi -> p(y|xi), sentences"
    kind, source = "xi", "xi"

    def points(self, q):
        return q.trace[self.source]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.extent, G = extent, self.params.resolution
        self.im = self.keep(ax.imshow(np.ones((G, G, 3)), extent=extent, origin="lower", interpolation="bilinear", zorder=1))
        self.pts = SentencePoints(self, ax, q, size=12, labels=False)

    def update(self, q, i):
        self.im.set_data(q.field(self.kind, self.extent, self.params.resolution)[i])
        self.pts.update(q.trace[self.source][i])


@plugin("xi_field", FieldParams)
def xi_field(params: FieldParams):
    """Colour-wheel field xi -> p(y|xi) with the probe sentences' xi."""
    return XiField(params)
