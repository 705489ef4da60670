"""Frames of a run for the viewer: the grid of panels of `testbed render` (the same plugins, a
third party's included), drawn for every snapshot of one seed and kept as PNG bytes.

The intermediates of all of a seed's snapshots are computed in one batched pass (as a video
does), the panels' views fitted once to every frame (so the axes do not jump while scrubbing),
and each frame is drawn by blitting only what changes. A background thread renders the frames
nearest the one last asked for first, so scrubbing finds them ready.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from testbed.render import figure, rundata
from testbed.render.quantities import snapshot_quantities

DPI = 60  # the default frame: 20 panels in a 4x5 grid, 960 x 800 pixels, as a video frame
PNG_COMPRESSION = 1  # fast to encode; a frame is about 150 kB either way


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=PNG_COMPRESSION)
    return buf.getvalue()


class SeedFrames:
    """Every snapshot of one seed of a run, drawn on demand and cached (thread-safe: a matplotlib
    figure draws one frame at a time)."""

    def __init__(self, run: rundata.SnapshotRun, seed: int, panels: list[str] | None = None, dpi: float = DPI, snapshots: np.ndarray | None = None,
                 wanted: Callable[[], bool] = lambda: True):
        self.run, self.seed, self.dpi = run, seed, dpi
        self.wanted_still = wanted  # prefetching stops when this says the seed is no longer looked at
        self.names = figure.parse_panels(",".join(panels) if panels else None)
        self.shape = figure.parse_grid(None, len(self.names))
        s = run.seed_index(seed)
        self.snapshots = np.arange(len(run.epochs)) if snapshots is None else np.asarray(snapshots)  # frame i shows snapshot snapshots[i]
        self.q = snapshot_quantities(run, s, self.snapshots)
        built = figure.build_panels(self.names)
        self.extents = [p.extent(self.q) for p in built]
        self.grid = figure.Grid(built, self.shape, self.q, self.extents, dpi)
        self._still = None  # a grid drawn in full (no blitting), for SVG and PDF downloads
        self.lock = threading.Lock()
        self.cache: dict[int, bytes] = {}
        self.wanted = 0  # the frame last asked for: prefetching starts around it
        self._prefetch: threading.Thread | None = None

    @property
    def n(self) -> int:
        return len(self.snapshots)

    def png(self, i: int) -> bytes:
        """PNG bytes of frame i."""
        self.wanted = i
        got = self.cache.get(i)
        if got is None:
            with self.lock:
                got = self.cache.get(i)
                if got is None:
                    got = self.cache[i] = png(self.grid.frame(self.q, i))
        self.prefetch()
        return got

    def pixels(self, i: int) -> np.ndarray:
        """(H, W, 3) pixels of frame i, drawn here, nothing kept (an export draws every frame once, in order)."""
        with self.lock:
            return self.grid.frame(self.q, i)

    def vector(self, i: int, fmt: str) -> bytes:
        """Frame i as an SVG (or PDF): drawn in full, text kept as text."""
        with self.lock:
            if self._still is None:
                self._still = figure.Grid(figure.build_panels(self.names), self.shape, self.q, self.extents, self.dpi)
            self._still.update(self.q, i)
            buf = io.BytesIO()
            self._still.fig.savefig(buf, format=fmt, dpi=self.dpi)
            return buf.getvalue()

    def prefetch(self) -> None:
        """Start the background thread that renders the frames not yet cached (again, if it
        stopped while another seed was looked at)."""
        if self._prefetch is None or not self._prefetch.is_alive():
            self._prefetch = threading.Thread(target=self._fill, name=f"frames-seed{self.seed}", daemon=True)
            self._prefetch.start()

    def _fill(self) -> None:
        while len(self.cache) < self.n and self.wanted_still():
            missing = [i for i in range(self.n) if i not in self.cache]
            i = min(missing, key=lambda j: (abs(j - self.wanted), j))
            with self.lock:
                if i not in self.cache:
                    self.cache[i] = png(self.grid.frame(self.q, i))


class RunFrames:
    """The frames of one run directory, one `SeedFrames` per seed asked for."""

    def __init__(self, path: Path, panels: list[str] | None = None, dpi: float = DPI):
        self.path, self.panels, self.dpi = Path(path), panels, dpi
        self._run: rundata.SnapshotRun | None = None
        self._seeds: dict[int, SeedFrames] = {}
        self._spikes: dict[tuple[int, int, int], tuple[list[bytes], list[str]] | None] = {}
        self._lock = threading.Lock()
        self.current: int | None = None  # the seed last asked for: the only one prefetched
        self.closed = False

    def close(self) -> None:
        """Stop prefetching (the server is stopping)."""
        self.closed = True

    @property
    def run(self) -> rundata.SnapshotRun:
        with self._lock:
            if self._run is None:
                self._run = rundata.load(self.path)
            return self._run

    def spike(self, seed: int, start: int, end: int):
        """`spike_step_frames` of a spike, drawn once."""
        key = (seed, start, end)
        if key not in self._spikes:
            self._spikes[key] = spike_step_frames(self.run, seed, start, end, self.panels, self.dpi)
        return self._spikes[key]

    def seed(self, seed: int) -> SeedFrames:
        run = self.run
        with self._lock:
            self.current = seed
            if seed not in self._seeds:
                self._seeds[seed] = SeedFrames(run, seed, self.panels, self.dpi, wanted=lambda: self.current == seed and not self.closed)
            return self._seeds[seed]


def spike_step_frames(run: rundata.SnapshotRun, seed: int, start: int, end: int, panels: list[str] | None = None,
                      dpi: float = DPI) -> tuple[list[bytes], list[str]] | None:
    """The frames of the weights just before and just after the step of a spike (seed, start,
    end of spikes.csv), from spike_steps.npz, as `testbed render --spikes` draws them; None
    where the run kept no weights for it. -> ([before PNG, after PNG], their labels)."""
    from testbed.render.quantities import Quantities
    from testbed.render.spike_figures import _step_pair

    steps = rundata.load_spike_steps(run.path)
    pair = _step_pair(steps, run, seed, start, end)
    if pair is None:
        return None
    before, after, b_step, a_step = pair
    s = run.seed_index(seed)
    params = {n: np.stack([before[n], after[n]]) for n in before}
    prev = {n: np.stack([before[n], before[n]]) for n in before}  # the attention graph's 'after' shows the spike's update
    spe = run.steps_per_epoch
    labels = [f"{run.scenario.name} - seed {seed} - before the spike: step {b_step} (epoch {b_step / spe:.2f})",
              f"{run.scenario.name} - seed {seed} - after the spike: step {a_step} (epoch {a_step / spe:.2f})"]
    q = Quantities.build(run, s, params, prev, np.array([b_step / spe, a_step / spe]), labels)
    q.step_level = True
    names = figure.parse_panels(",".join(panels) if panels else None)
    built = figure.build_panels(names)
    grid = figure.Grid(built, figure.parse_grid(None, len(names)), q, [p.extent(q) for p in built], dpi)
    return [png(grid.frame(q, i)) for i in (0, 1)], [f"step {b_step}", f"step {a_step}"]
