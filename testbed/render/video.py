"""Videos of a whole run: frames rendered in parallel worker processes, each encoding its chunk
of frames as an MP4 segment; segments are then joined without re-encoding (and, for a GIF,
converted with a palette in one streaming ffmpeg pass, so frames never pile up in memory). The
encoder comes from the imageio-ffmpeg package (it ships an ffmpeg binary), so no system ffmpeg
is needed."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SECONDS_PER_1000_EPOCHS = 30  # the default frame rate plays 1000 epochs in about 30 s, however often snapshots were kept
MAX_FPS = 60
IN_PROCESS_BELOW = 60  # by default, fewer frames than this render in this process (no worker start-up)


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to render frames of one seed, picklable."""

    run_path: str
    seed_col: int
    panels: tuple[str, ...]
    grid: tuple[int, int]
    extents: tuple
    dpi: float
    fmt: str  # "mp4" or "gif"
    labels: bool = False  # point labels cost more to draw than anything else in a frame
    fps: float = 25.0


def default_fps(epochs: np.ndarray) -> float:
    """Frames per second that show the epochs `epochs` (of the frames, in order) at
    SECONDS_PER_1000_EPOCHS: 1001 snapshots of 1000 epochs at 33 fps, 101 at 3.4 fps."""
    span = float(epochs[-1] - epochs[0]) if len(epochs) > 1 else 0.0
    if span <= 0:
        return 1.0
    return float(min(MAX_FPS, max(1.0, len(epochs) / (SECONDS_PER_1000_EPOCHS * span / 1000))))


class ChunkRenderer:
    """Renders chunks of one job's frames into MP4 segments, keeping the loaded run and the
    figure from one chunk to the next."""

    def __init__(self, job: Job):
        from testbed.render import rundata

        self.job = job
        self.run = rundata.load(Path(job.run_path))
        self.grid = None

    def __call__(self, task: tuple[int, list[int], str]) -> tuple[int, int]:
        """task = (chunk, snapshot indices, segment file): render those frames into that MP4
        segment; -> (chunk, number of frames)."""
        import imageio.v2 as imageio

        from testbed.render.figure import Grid, build_panels
        from testbed.render.quantities import snapshot_quantities

        chunk, idx, segment = task
        job = self.job
        q = snapshot_quantities(self.run, job.seed_col, np.asarray(idx))
        if self.grid is None:  # the panels' setup needs a frame's quantities
            self.grid = Grid(build_panels(list(job.panels)), job.grid, q, list(job.extents), job.dpi, pixel_multiple=16, labels=job.labels)
            self.grid.start_blitting()
        with imageio.get_writer(segment, format="FFMPEG", mode="I", fps=job.fps, codec="libx264", quality=None,
                                pixelformat="yuv420p", macro_block_size=16,
                                ffmpeg_params=["-preset", "veryfast", "-crf", "20", "-threads", "1"],
                                ffmpeg_log_level="error") as w:
            for i in range(len(idx)):
                w.append_data(self.grid.frame(q, i))  # type: ignore[attr-defined]  # an FFMPEG writer (format='FFMPEG', mode='I'); imageio types it as the base reader-writer
        return chunk, len(idx)


_WORKER: ChunkRenderer | None = None  # set in worker processes only


def _start_worker(job: Job) -> None:
    """Pool initializer, run in each worker process: one intra-op thread per worker (the
    workers already fill the cores), and the job's renderer."""
    global _WORKER
    import torch

    torch.set_num_threads(1)
    _WORKER = ChunkRenderer(job)


def _render_in_worker(task: tuple[int, list[int], str]) -> tuple[int, int]:
    assert _WORKER is not None, "_start_worker runs first in every worker"
    return _WORKER(task)


def write(job: Job, frames: np.ndarray, out: Path, workers: int, advance) -> None:
    """Render snapshot indices `frames` into `out` (.mp4 or .gif), calling advance(n) as
    frames complete. Written to a temporary name and renamed when complete; nothing is left
    behind on failure. Relative paths are taken from the current directory, as a user means
    them: ffmpeg is only ever given absolute paths."""
    out = Path(out).absolute()
    n = len(frames)
    if not workers:  # automatic: one per core, none for a short video (no worker start-up)
        workers = 1 if n < IN_PROCESS_BELOW else min(os.cpu_count() or 1, 8)
    size = max(5, min(100, math.ceil(n / (workers * 4))))
    chunks = [frames[lo : lo + size] for lo in range(0, n, size)]
    workers = min(workers, len(chunks))
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        with tempfile.TemporaryDirectory(prefix=".render-", dir=out.parent) as tmp:
            tmp = Path(tmp)
            tasks = [(c, list(map(int, idx)), str(tmp / f"seg{c:05d}.mp4")) for c, idx in enumerate(chunks)]
            if workers == 1:
                render = ChunkRenderer(job)  # in this process: no thread setting touched, nothing kept after
                for t in tasks:
                    advance(render(t)[1])
            else:
                with mp.get_context("spawn").Pool(workers, initializer=_start_worker, initargs=(job,)) as pool:
                    for _, count in pool.imap_unordered(_render_in_worker, tasks):
                        advance(count)
            segments = [Path(t[2]) for t in tasks]
            if job.fmt == "gif":
                joined = tmp / "joined.mp4"
                _concat(segments, joined, tmp)
                _ffmpeg(["-i", str(joined), "-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse", "-loop", "0", str(partial)])
            else:
                _concat(segments, partial, tmp)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def _concat(segments: list[Path], out: Path, tmp: Path) -> None:
    """Join MP4 segments of `tmp` without re-encoding. The concat demuxer resolves a listed
    file relative to the list's own folder, so the list names the segments by file name only."""
    listing = tmp / "segments.txt"
    listing.write_text("".join(f"file '{s.name}'\n" for s in segments))
    _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(out)])


def _ffmpeg(args: list[str]) -> None:
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.strip()}")
