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

FPS = 25
IN_PROCESS_BELOW = 60  # fewer frames than this render in this process (no worker start-up)


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


_CACHE: dict = {}


def _grid_for(job: Job, q):
    """This process's figure for `job`, built once and reused for every chunk."""
    from testbed.render.figure import Grid
    from testbed.render.figure import build_panels

    if _CACHE.get("job") != job:
        if "grid" in _CACHE:
            _CACHE["grid"].close()
        grid = Grid(build_panels(list(job.panels)), job.grid, q, list(job.extents), job.dpi, pixel_multiple=16, labels=job.labels)
        grid.start_blitting()
        _CACHE.update(job=job, grid=grid)
    return _CACHE["grid"]


def _run(job: Job):
    from testbed.render import rundata

    if _CACHE.get("run_path") != job.run_path:
        _CACHE.update(run_path=job.run_path, run=rundata.load(Path(job.run_path)))
    return _CACHE["run"]


def render_chunk(args) -> tuple[int, int]:
    """Render snapshot indices `idx` of the job into the MP4 segment `segment`."""
    import torch

    from testbed.render.quantities import snapshot_quantities

    torch.set_num_threads(1)
    job, chunk, idx, segment = args
    run = _run(job)
    q = snapshot_quantities(run, job.seed_col, np.asarray(idx))
    grid = _grid_for(job, q)
    import imageio.v2 as imageio

    with imageio.get_writer(segment, format="FFMPEG", mode="I", fps=FPS, codec="libx264", quality=None,
                            pixelformat="yuv420p", macro_block_size=16,
                            ffmpeg_params=["-preset", "veryfast", "-crf", "20", "-threads", "1"],
                            ffmpeg_log_level="error") as w:
        for i in range(len(idx)):
            w.append_data(grid.frame(q, i))
    return chunk, len(idx)


def write(job: Job, frames: np.ndarray, out: Path, workers: int, advance) -> None:
    """Render snapshot indices `frames` into `out` (.mp4 or .gif), calling advance(n) as
    frames complete. Written to a temporary name and renamed when complete."""
    n = len(frames)
    workers = workers or min(os.cpu_count() or 1, 8)
    if n < IN_PROCESS_BELOW:
        workers = 1
    size = max(5, min(100, math.ceil(n / (workers * 4))))
    chunks = [frames[lo : lo + size] for lo in range(0, n, size)]
    with tempfile.TemporaryDirectory(prefix=".render-", dir=out.parent) as tmp:
        tasks = [(job, c, list(map(int, idx)), str(Path(tmp) / f"seg{c:05d}.mp4")) for c, idx in enumerate(chunks)]

        def collect(result):
            advance(result[1])

        if workers == 1:
            for t in tasks:
                collect(render_chunk(t))
        else:
            with mp.get_context("spawn").Pool(workers) as pool:
                for result in pool.imap_unordered(render_chunk, tasks):
                    collect(result)
        partial = out.with_name(f".{out.stem}.partial{out.suffix}")
        if job.fmt == "gif":
            joined = Path(tmp) / "joined.mp4"
            _concat([t[3] for t in tasks], joined, Path(tmp))
            _ffmpeg(["-i", str(joined), "-vf", "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse", "-loop", "0", str(partial)])
        else:
            _concat([t[3] for t in tasks], partial, Path(tmp))
        os.replace(partial, out)


def _concat(segments: list[str], out: Path, tmp: Path) -> None:
    listing = tmp / "segments.txt"
    listing.write_text("".join(f"file '{s}'\n" for s in segments))
    _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", "-movflags", "+faststart", str(out)])


def _ffmpeg(args: list[str]) -> None:
    import imageio_ffmpeg

    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {proc.stderr.strip()}")
