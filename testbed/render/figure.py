"""The grid of panels: choosing panels, laying them out, drawing still frames and fast
(blitted) video frames.

For a video, everything that does not change (axes, ticks, titles, legends, static images) is
drawn once into a background; each frame restores it and draws only the panels' changing
artists, which is what makes a thousand-frame video cheap.

Figures are matplotlib `Figure`s on their own Agg canvas, never pyplot's: pyplot would keep
every figure in its registry and choose (and in a notebook, switch) the caller's backend.
"""

from __future__ import annotations

import math
import re
from typing import cast

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from testbed.errors import PluginError, UserError, describe
from testbed.plugin_api.base import Params, Plugin
from testbed.plugin_api.registry import Registry, default_registry, unknown_message

DEFAULT_PANELS = (
    "token_emb", "pos_emb", "emb_sum", "norm_emb", "value",
    "attention_map", "attention_graph", "attention_history", "seq_emb", "attention_output",
    "mlp_input", "receptors", "assemblers", "xi_field", "zeta",
    "output_lines", "output", "loss", "accuracy", "step_loss",
)
PANEL_INCHES = 3.2


def parse_panels(spec: str | None, registry: Registry | None = None) -> list[str]:
    registry = registry or default_registry()
    names: list[str] = list(DEFAULT_PANELS) if not spec else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UserError("--panels: give panel names separated by commas, e.g. seq_emb,xi_field")
    known = registry.names("panel")
    for n in names:
        if n not in known:
            raise UserError("--panels: " + unknown_message("panel", n, known))
    return names


def parse_grid(spec: str | None, n: int) -> tuple[int, int]:
    """'RxC' -> (R, C) with room for n panels; default: about 4:5, as square as possible."""
    if spec is None:
        cols = max(1, math.ceil(math.sqrt(n * 1.25)))
        return math.ceil(n / cols), cols
    m = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", spec)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise UserError(f"--grid {spec!r}: expected ROWSxCOLUMNS, e.g. 4x5")
    r, c = int(m.group(1)), int(m.group(2))
    if r * c < n:
        raise UserError(f"--grid {spec}: {r * c} cells for {n} panels; use at least {parse_grid(None, n)[0]}x{parse_grid(None, n)[1]} or fewer --panels")
    return r, c


def build_panels(names: list[str], registry: Registry | None = None) -> list:
    """The panels `names`, each knowing its plugin, so that a failing one can be named."""
    registry = registry or default_registry()
    out = []
    for n in names:
        plug = registry.get("panel", n)
        try:
            panel = plug.build(plug.params())
        except UserError:
            raise
        except Exception as exc:
            raise _failed(plug, "build", exc) from exc
        panel._testbed_plugin = plug
        out.append(panel)
    return out


def _failed(plug, phase: str, exc: Exception, epoch: float | None = None) -> PluginError:
    """A panel that raised, as a one-line error (what it raised is its `__cause__`), at the
    epoch of the frame it was drawing."""
    error = PluginError(plug.kind, plug.name, plug.source, phase, describe(exc), epoch=epoch)
    error.__cause__ = exc
    return error


def _plugin_of(panel) -> Plugin:
    """The plugin that built `panel` (by `build_panels`), or a stand-in naming its class."""
    return getattr(panel, "_testbed_plugin", None) or Plugin(type(panel).__name__, Params, type(panel), kind="panel", source=type(panel).__module__)


class Grid:
    """A figure holding panels in a grid. `slots` gives, per panel, which frame of a frame set it
    shows (0 for a normal frame; the before/after rows of a spike figure show frames 0 and 1)."""

    def __init__(self, panels, grid: tuple[int, int], q, extents, dpi: float, slots=None, pixel_multiple: int = 1, labels: bool = True):
        self.panels, self.dpi = panels, dpi
        for panel in panels:
            panel.labels = labels
        self.slots = slots or [0] * len(panels)
        R, C = grid
        w, h = C * PANEL_INCHES, R * PANEL_INCHES + 0.35
        if pixel_multiple > 1:  # video encoders want sizes in multiples of 16 pixels
            w = math.ceil(w * dpi / pixel_multiple) * pixel_multiple / dpi
            h = math.ceil(h * dpi / pixel_multiple) * pixel_multiple / dpi
        self.fig = Figure(figsize=(w, h), dpi=dpi)
        FigureCanvasAgg(self.fig)  # draws pixels for blitting and saves every format
        # margins in inches, so that a one-row grid keeps room for its tick and axis labels
        self.fig.subplots_adjust(left=0.55 / w, right=1 - 0.12 / w, bottom=0.45 / h, top=1 - 0.55 / h, wspace=0.38, hspace=0.42)
        axes = self.fig.subplots(R, C, squeeze=False).ravel()
        for ax, panel, ext in zip(axes, panels, extents):
            try:
                panel.setup(ax, q, ext)
            except Exception as exc:
                raise _failed(_plugin_of(panel), "setup", exc) from exc
        for ax in axes[len(panels):]:
            ax.set_axis_off()
        self.caption = self.fig.text(0.5, 1 - 0.12 / h, "", ha="center", va="top", fontsize=11)
        self.background = None

    def update(self, q, i: int, caption: str | None = None) -> None:
        for panel, slot in zip(self.panels, self.slots):
            try:
                panel.update(q, i + slot)
            except Exception as exc:
                epoch = float(q.epochs[i + slot]) if i + slot < len(q.epochs) else None
                raise _failed(_plugin_of(panel), "update", exc, epoch) from exc
        self.caption.set_text(caption if caption is not None else q.captions[i])

    def save(self, q, i: int, path, caption: str | None = None) -> None:
        self.update(q, i, caption)
        self.fig.savefig(path, dpi=self.dpi)

    def start_blitting(self) -> None:
        for a in self._changing():
            a.set_animated(True)
        self.fig.canvas.draw()
        self.background = cast(FigureCanvasAgg, self.fig.canvas).copy_from_bbox(self.fig.bbox)  # made by FigureCanvasAgg(fig)

    def _changing(self):
        for panel in self.panels:
            yield from panel.artists
        yield self.caption

    def frame(self, q, i: int) -> np.ndarray:
        """(H, W, 3) uint8 pixels of frame i of q, drawing only what changes."""
        if self.background is None:
            self.start_blitting()
        self.update(q, i)
        canvas = cast(FigureCanvasAgg, self.fig.canvas)  # made by FigureCanvasAgg(fig)
        canvas.restore_region(self.background)
        renderer = canvas.get_renderer()
        for panel in self.panels:
            for a in panel.artists:
                a.draw(renderer)
        self.caption.draw(renderer)
        return np.asarray(canvas.buffer_rgba())[:, :, :3].copy()
