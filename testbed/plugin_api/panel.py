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
    """Base class of panels: one quantity of a frame drawn onto matplotlib axes, for `testbed
    render` (images, videos, the spike figures). Required: `setup` and `update`; optional:
    `points` (what must stay in view); `extent`, `prepare` and `keep` are helpers to call, not
    to override. Set `title` and the axis labels as class attributes; `geometric = False` for
    panels that are not points in the plane (curves, images with their own axes).

    `testbed render` builds the panel with its parameters (`self.params`) for each figure (and
    in each worker process of a video), computes `extent(q)` over every frame it will draw,
    calls `setup(ax, q, extent)` once and then `update(q, i)` for each frame i. Frames come in
    batches: a video calls `update` with later batches' `Quantities` than the one `setup` saw,
    so read everything that changes between frames from the `q` that `update` receives.
    Register every artist that `update` changes with `keep` (a video redraws only those over a
    fixed background); what `setup` draws without `keep` must not change. A panel draws only:
    it may not modify `q` (every panel of a figure shares it) or write files.

    What `q` (a `Quantities`) holds: F frames of one seed, numpy arrays (float32 but for
    tokens and labels) with the frame axis first; d is the embedding dimension
    (`q.run.arch.d`), n_tokens the number of token embeddings (`q.run.arch.n_tokens`), L the
    sequence length (`q.run.arch.seq_len`), hidden the MLP width (`q.run.arch.hidden`), N the
    number of probe sentences, Nc of the cloud sentences, n of the run's snapshots.

    - `q.params`, the model's parameters at each frame, by name: `tok_emb` (F, n_tokens, d)
      the token embeddings E (also the unembedding), `pos_emb` (F, L, d) the position
      embeddings P, `query` (F, d), `value` (F, d, d), `mlp.fc1.weight` (F, hidden, d),
      `mlp.fc1.bias` (F, hidden), `mlp.fc2.weight` (F, d, hidden), `mlp.fc2.bias` (F, d).
    - `q.trace`, the forward pass of the probe sentences: `attn` (F, N, L) the attention
      weights, `xi` (F, N, d) the attention output, `mlp_in` (F, N, d) xi after the MLP norm,
      `pre` (F, N, hidden) and `hidden` (F, N, hidden) the MLP before and after the activation,
      `zeta` (F, N, d) the residual stream after the MLP, `logits` (F, N, n_tokens) and `probs`
      (F, N, n_tokens).
    - `q.tables`, every (token, position) pair: `x` (F, n_tokens, L, d) = E[v] + P[t], `z`
      (F, n_tokens, L, d) its embedding norm, `vz` (F, n_tokens, L, d) = V z.
    - `q.sentences`, the probe sentences: `tokens` (N, L), `labels` (N,) the class y, `group`
      (N,) and `n_groups` (prefixes with the same token counts), `colors` (N, 3), `labelled`
      (N,) the few that carry a text label, `k`, `p`, `text(i)` (sentence i's prefix),
      `by_class()` ([(y, indices)]).
    - `q.seed`; `q.epochs` (F,) the epoch of each frame (fractional where `q.step_level`: the
      frames of a spike figure, steps apart); `q.n_frames` = F; `q.captions` (F strings).
    - `q.cloud_tokens` (Nc, L) random sentences and `q.cloud_xi` (F, Nc, d) their xi;
      `q.focus_tokens` (L,) the sentence followed over training, `q.focus_attn` (F, L) its
      attention and `q.focus_prev` (F, L) that of the frame before; `q.history_epochs` (n,) and
      `q.history_attn` (n, L) its attention at every snapshot of the run.
    - `q.field(kind, extent, G)`: (F, G, G, 3) the colour-wheel image of p(y | point) over the
      square `extent`, a point taken as xi (`kind="xi"`) or zeta (`"zeta"`); row 0 the bottom.
    - `q.run`, the run: `arch` (`d`, `hidden`, `n_tokens`, `seq_len`, the built
      `embedding_norm`, `mlp_norm` and `activation`), `scenario` (validated), `space`, `k` (the
      task's sparsity), `p` (the largest vocabulary the run uses), `epochs` (n,) and `params`
      (name -> (n, S, *shape)) of every snapshot, `seed_params(column, index)` (name -> those
      of one seed column at snapshots `index`), `seeds`, `steps_per_epoch`, `spikes` (rows of
      spikes.csv), `metrics`, `seed_metrics(seed)` (column -> values of one seed, by epoch, or
      None), `step_losses()` ((steps, S), or None), `snapshot_range(spec)` (the snapshot
      indices of an epoch range "A-B" or "A-B:STEP"), `path` and `run` (its directory and files).
    """

    title: str = ""
    """Class attribute: the panel's title (`prepare` sets it)."""
    xlabel: str = ""
    """Class attribute: the x axis label."""
    ylabel: str = ""
    """Class attribute: the y axis label."""
    geometric: bool = True
    """Class attribute. True: points in the plane, drawn with equal aspect in a square view
    fitted to `points` over all frames, so motion shows against fixed axes; False: curves,
    tables, images with axes of their own (`extent` is then None)."""
    include_origin: bool = True
    """Class attribute: keep the origin in view (where norms are steep)."""
    labels: bool = True
    """Text labels on points; `testbed render` sets it False for videos (text is the dearest
    thing to draw)."""

    def __init__(self, params=None):
        self.params = params
        """The validated parameters it was built with (the model's defaults: `--panels` takes
        names only)."""
        self.artists: list[Artist] = []
        """The artists `keep` registered: what a video redraws each frame."""

    def points(self, q: Quantities) -> np.ndarray | None:
        """Optional. (F, n, 2), the n points of each frame of q that must stay in view (NaN
        and infinities are ignored); a geometric panel's `extent` is fitted to them. Default:
        None, for panels with fixed coordinates (then `extent` is None)."""
        return None

    def extent(self, q: Quantities) -> tuple[float, float, float, float] | None:
        """A helper, not to override: (x0, x1, y0, y1), a square view holding `points` over the
        frames of q (robust to a few outlying frames), or None without points. `testbed render`
        calls it with every frame it will draw and passes the result to `setup`."""
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
        """A helper: call it first in `setup`. Title, axis labels and tick sizes; for a
        geometric panel also the square view `extent` (x0, x1, y0, y1) with the axes through
        the origin. Keeps `ax` as `self.ax`."""
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
        """Required. Once per figure, before any `update`: `ax` the panel's empty matplotlib
        Axes, `q` the first batch of frames, `extent` what `extent` returned over all frames.
        Call `self.prepare(ax, extent)`, draw what never changes, and create the artists that
        `update` changes, registered with `keep`; return nothing."""

    @abstractmethod
    def update(self, q: Quantities, i: int) -> None:
        """Required. For every frame, in order: show frame i of q (0 <= i < q.n_frames) by
        changing the data of the kept artists only (`set_offsets`, `set_data`, `set_array`,
        `set_text`, ...); create nothing, return nothing."""

    def keep(self, *artists: Artist):
        """A helper: register artists that `update` changes (in `setup`); returns them (one
        artist alone)."""
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
