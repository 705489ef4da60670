"""What a panel plugin builds: an object that draws one quantity onto a matplotlib Axes.

A panel creates its artists once (`setup`) and afterwards only changes their data (`update`),
so a video redraws a few hundred points per panel and frame instead of rebuilding axes, ticks
and text. Geometry panels keep the same square, equal-aspect view over a whole video (the
`extent` of their `points` over all frames), so motion is seen against fixed axes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes

from testbed.render.style import class_marker, square_extent

if TYPE_CHECKING:  # the panel API is imported by the registry; the frame quantities import the engine
    from testbed.render.quantities import Quantities

TITLE_SIZE = 9
LABEL_SIZE = 6.5


class Panel(ABC):
    """Base class of panels. Required: `setup` and `update`. Optional: `points` (what must stay
    in view). Set `title` and the axis labels as class attributes; `geometric = False` for
    panels that are not points in the plane (curves, images with their own axes).

    `testbed render` builds the panel with its parameters (`self.params`), computes
    `extent(q)` over every frame it will draw, calls `setup(ax, q, extent)` once and then
    `update(q, i)` for each frame i. Frames come in batches: a video calls `update` with later
    batches' `Quantities` than the one `setup` saw, so read everything that changes between
    frames from the `q` that `update` receives. Register every artist that `update` changes
    with `keep` (a video redraws only those over a fixed background); what `setup` draws
    without `keep` must not change.
    """

    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    geometric: bool = True  # equal aspect, square view fitted to `points`
    include_origin: bool = True  # keep the origin in view (where norms are steep)
    labels: bool = True  # text labels on points; videos turn them off (text is the dearest to draw)

    def __init__(self, params=None):
        self.params = params
        self.artists: list[Artist] = []

    def points(self, q: Quantities) -> np.ndarray | None:
        """(F, n, 2) what must stay in view; None for panels with fixed coordinates."""
        return None

    def extent(self, q: Quantities) -> tuple[float, float, float, float] | None:
        """A square view holding `points` over the frames of q (robust to a few outlying frames)."""
        pts = self.points(q)
        if pts is None:
            return None
        pts = np.where(np.isfinite(pts), pts, np.nan)
        if pts.shape[0] > 20:
            lo = np.nanquantile(np.nanmin(pts, 1), 0.02, axis=0)
            hi = np.nanquantile(np.nanmax(pts, 1), 0.98, axis=0)
            pts = np.stack([lo, hi])[None]
        return square_extent(pts, include_origin=self.include_origin)

    def prepare(self, ax: Axes, extent) -> None:
        """Title, axis labels and tick sizes; for a geometric panel also the square view
        `extent` (x0, x1, y0, y1) with the axes through the origin. Call it first in `setup`."""
        self.ax = ax
        ax.set_title(self.title, fontsize=TITLE_SIZE)
        ax.set_xlabel(self.xlabel, fontsize=LABEL_SIZE + 1, labelpad=1)
        ax.set_ylabel(self.ylabel, fontsize=LABEL_SIZE + 1, labelpad=1)
        ax.tick_params(labelsize=LABEL_SIZE, length=2, pad=1)
        if self.geometric and extent is not None:
            ax.set_xlim(extent[0], extent[1])
            ax.set_ylim(extent[2], extent[3])
            ax.set_aspect("equal", adjustable="box")
            ax.axhline(0, color="0.85", lw=0.5, zorder=0)
            ax.axvline(0, color="0.85", lw=0.5, zorder=0)

    @abstractmethod
    def setup(self, ax: Axes, q: Quantities, extent: tuple[float, float, float, float] | None) -> None:
        """Draw what stays and create the artists that `update` moves (registered with `keep`)."""

    @abstractmethod
    def update(self, q: Quantities, i: int) -> None:
        """Show frame i of q (0 <= i < q.n_frames): change the data of the kept artists."""

    def keep(self, *artists: Artist):
        """Register artists that change between frames; returns them (one artist alone)."""
        self.artists.extend(artists)
        return artists[0] if len(artists) == 1 else artists


MIN_LABEL_GAP = 0.09  # labels closer than this (in axes fractions) to a shown one are hidden


def place_labels(ax: Axes, texts, pts: np.ndarray) -> None:
    """Move labels to their points, hiding any that would sit on a label already shown, so
    labels of collapsed points do not pile up."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    shown: list[tuple[float, float]] = []
    for t, (x, y) in zip(texts, pts):
        t.set_position((x, y))
        fx, fy = (x - x0) / ((x1 - x0) or 1), (y - y0) / ((y1 - y0) or 1)
        ok = np.isfinite(fx) and np.isfinite(fy) and 0 <= fx <= 1 and 0 <= fy <= 1
        ok = ok and all(abs(fx - a) > MIN_LABEL_GAP * 1.6 or abs(fy - b) > MIN_LABEL_GAP * 0.5 for a, b in shown)
        t.set_visible(bool(ok))
        if ok:
            shown.append((fx, fy))


class SentencePoints:
    """The probe sentences as points: colour by prefix, marker by class, a few text labels."""

    def __init__(self, panel: Panel, ax: Axes, q: Quantities, size: float = 16, labels: bool = True):
        s = q.sentences
        self.groups = s.by_class()
        self.scatters = [
            ax.scatter(np.zeros(len(idx)), np.zeros(len(idx)), c=s.colors[idx], marker=class_marker(y), s=size,
                       edgecolors="k", linewidths=0.3, zorder=3, label=f"y={y}")
            for y, idx in self.groups
        ]
        self.label_idx = np.flatnonzero(s.labelled) if labels and panel.labels else np.array([], int)
        self.texts = [ax.text(0, 0, " " + s.text(int(i)), fontsize=5, color="0.15", zorder=4, clip_on=True, va="center") for i in self.label_idx]
        self.ax = ax
        panel.keep(*self.scatters, *self.texts) if self.texts else panel.keep(*self.scatters)

    def update(self, pts: np.ndarray) -> None:
        for sc, (_, idx) in zip(self.scatters, self.groups):
            sc.set_offsets(pts[idx])
        place_labels(self.ax, self.texts, pts[self.label_idx])


class TablePoints:
    """Points of the (token, position) table: circles for t <= k, squares for t > k, one colour
    per position shared by every token; (x, t) labels on the first and last positions only
    (text is the dearest thing to draw in a video frame)."""

    def __init__(self, panel: Panel, ax: Axes, q: Quantities, size: float = 18, label: bool = True):
        from testbed.render.style import PREFIX_MARKER, SUFFIX_MARKER, position_colors

        V, L, k = q.run.arch.n_tokens, q.run.arch.seq_len, q.run.k
        colors = position_colors(L)
        self.parts = []
        for marker, ts in ((PREFIX_MARKER, np.arange(min(k, L))), (SUFFIX_MARKER, np.arange(k, L))):
            if len(ts) == 0:
                continue
            c = np.tile(colors[ts], (V, 1))
            sc = ax.scatter(np.zeros(V * len(ts)), np.zeros(V * len(ts)), c=c, marker=marker, s=size,
                            edgecolors="k", linewidths=0.3, zorder=3)
            self.parts.append((sc, ts))
        shown = sorted({0, L - 1})
        self.labels = [(x, t) for x in range(V) for t in shown] if label and panel.labels else []
        self.texts = [ax.text(0, 0, f" ({x},{t + 1})", fontsize=5, color="0.2", zorder=4, clip_on=True, va="center") for x, t in self.labels]
        self.ax = ax
        panel.keep(*[sc for sc, _ in self.parts], *self.texts)

    def update(self, table: np.ndarray) -> None:
        """table (V, L, 2)."""
        for sc, ts in self.parts:
            sc.set_offsets(table[:, ts].reshape(-1, 2))
        place_labels(self.ax, self.texts, np.array([table[x, t] for x, t in self.labels]).reshape(-1, 2))


def position_legend(ax: Axes, k: int) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", ls="", mfc="0.6", mec="k", mew=0.3, ms=4, label=f"t <= {k}"),
        Line2D([], [], marker="s", ls="", mfc="0.6", mec="k", mew=0.3, ms=4, label=f"t > {k}"),
    ]
    ax.legend(handles=handles, fontsize=5, loc="upper right", framealpha=0.6, handletextpad=0.2, borderpad=0.3)


def class_legend(ax: Axes, p: int) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=class_marker(y), ls="", mfc="0.6", mec="k", mew=0.3, ms=4, label=f"y={y}") for y in range(p)]
    ax.legend(handles=handles, fontsize=5, loc="upper right", framealpha=0.6, handletextpad=0.2, borderpad=0.3,
              ncol=1 if p <= 3 else 2)


class TablePanel(Panel):
    """Every (token, position) pair of one of the per-frame tables (`q.tables[table]`), with the
    position legend: the panels that differ only by which table they draw."""

    table = ""

    def points(self, q):
        t = q.tables[self.table]
        return t.reshape(t.shape[0], -1, 2)

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.pairs = TablePoints(self, ax, q)
        position_legend(ax, q.run.k)

    def update(self, q, i):
        self.pairs.update(q.tables[self.table][i])


class SentencePanel(Panel):
    """The probe sentences at one traced quantity (`q.trace[quantity]`), with the class legend:
    the panels that differ only by which quantity they draw."""

    quantity = ""

    def points(self, q):
        return q.trace[self.quantity]

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.pts = SentencePoints(self, ax, q)
        class_legend(ax, q.run.p)

    def update(self, q, i):
        self.pts.update(q.trace[self.quantity][i])
