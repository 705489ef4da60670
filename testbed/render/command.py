"""`testbed render`: one frame, a video, or the frames around every loss spike of a run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from testbed.errors import UserError
from testbed.render import figure, rundata
from testbed.render.quantities import snapshot_quantities

STILL_FORMATS = (".png", ".pdf", ".svg")
VIDEO_FORMATS = (".mp4", ".gif")
STILL_DPI, VIDEO_DPI = 110, 60
SPIKE_PANELS = ("norm_emb", "seq_emb", "xi_field", "mlp_input", "assemblers", "zeta", "attention_graph", "step_loss")


def _out_path(out: Path | None, default: Path, allowed: tuple[str, ...], flag: str) -> Path:
    path = Path(out) if out is not None else default
    if path.suffix.lower() not in allowed:
        raise UserError(f"--out {path}: {flag} writes {', '.join(allowed)} files")
    if path.is_dir():
        raise UserError(f"--out {path}: is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def render(run_dir: Path, *, epoch: int | None = None, seed: int | None = None, out: Path | None = None,
           video: bool = False, spikes: bool = False, top: int | None = None, panels: str | None = None,
           grid: str | None = None, dpi: float | None = None, workers: int = 0, console: Console | None = None,
           quiet: bool = False, sparsity: bool = False, grad_norms: bool = False, attention: bool = False,
           fps: float | None = None, epochs: str | None = None) -> list[Path]:
    """Draw a run: one frame (the default), a video (`video`), the spike figures (`spikes`), or
    the figure of a probe's file (`sparsity`: sparsity.npz, `grad_norms`: grad_norms.npz and
    metrics.csv), with the meaning of the command's options of the same names; returns the
    files written.
    Options are keyword-only: eleven positional parameters are too easy to pass in the wrong
    order. Messages go to `console` (default: standard error)."""
    console = console if console is not None else Console(stderr=True)
    if sparsity or grad_norms:
        return [_probe_figure(run_dir, "sparsity" if sparsity else "grad_norms", out, dpi, sparsity and grad_norms,
                              {"--epoch": epoch, "--seed": seed, "--video": video or None, "--spikes": spikes or None,
                               "--top": top, "--panels": panels, "--grid": grid})]
    if attention:
        return [_attention(run_dir, seed, epoch, out, dpi, {"--video": video or None, "--spikes": spikes or None, "--top": top,
                                                            "--panels": panels, "--grid": grid})]
    if (fps is not None or epochs is not None) and not video:
        raise UserError(f"{'--fps' if fps is not None else '--epochs'} sets a video's frames; use it with --video")
    if video and spikes:
        raise UserError("--video and --spikes: choose one")
    if top is not None and not spikes:
        raise UserError("--top chooses among spikes; use it with --spikes")
    if (video or spikes) and epoch is not None:
        raise UserError("--epoch selects one frame; it cannot be combined with --video or --spikes")
    names: list[str] = figure.parse_panels(panels) if (panels or not spikes) else list(SPIKE_PANELS)
    if not spikes:
        shape = figure.parse_grid(grid, len(names))
    run = rundata.load(run_dir)
    s = run.seed_index(seed)
    if spikes:
        from testbed.render.spike_figures import render_spikes

        return render_spikes(run, seed, names, out, dpi or STILL_DPI, console, top, quiet)
    if video:
        return [_video(run, s, names, shape, out, dpi or VIDEO_DPI, workers, console, quiet, fps, run.snapshot_range(epochs))]
    i, note = run.snapshot_index(epoch)
    if note:
        console.print(note, highlight=False, soft_wrap=True)
    default = run.path / "render" / f"epoch{int(run.epochs[i]):05d}-seed{run.seeds[s]}.png"
    path = _out_path(out, default, STILL_FORMATS, "a single frame")
    q = snapshot_quantities(run, s, np.array([i]))
    built = figure.build_panels(names)
    g = figure.Grid(built, shape, q, [p.extent(q) for p in built], dpi or STILL_DPI)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        g.save(q, 0, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return [path]


def _probe_figure(run_dir: Path, kind: str, out: Path | None, dpi: float | None, both: bool, others: dict) -> Path:
    """The figure of one probe's file (`testbed.render.probe_figures`), one per run: it needs no snapshots."""
    from testbed.render import probe_figures
    from testbed.rundir.reader import Run

    flag = "--" + kind.replace("_", "-")
    if both:
        raise UserError("--sparsity and --grad-norms: choose one")
    given = [name for name, value in others.items() if value is not None]
    if given:
        raise UserError(f"{flag} draws one figure of the whole run; it takes --out and --dpi, not {', '.join(given)}")
    run = Run(run_dir)
    run.require(*probe_figures.NEEDS[kind], needed_by=flag)
    path = _out_path(out, run.path / "render" / f"{kind}.png", STILL_FORMATS, flag)
    return probe_figures.DRAW[kind](run, path, dpi or STILL_DPI)


def _attention(run_dir: Path, seed: int | None, epoch: int | None, out: Path | None, dpi: float | None, others: dict) -> Path:
    """The first paper's Figure 8 for one seed: attention maps at the first snapshot and at
    `epoch` (default: the last), side by side (`testbed.render.attention_figure`)."""
    from testbed.render import attention_figure

    given = [name for name, value in others.items() if value is not None]
    if given:
        raise UserError(f"--attention draws one figure; it takes --seed, --epoch, --out and --dpi, not {', '.join(given)}")
    run = rundata.load(run_dir)
    s = run.seed_index(seed)
    end, _ = run.snapshot_index(epoch)
    path = _out_path(out, run.path / "render" / f"attention-seed{run.seeds[s]}.png", STILL_FORMATS, "--attention")
    return attention_figure.draw(run, s, end, path, dpi or STILL_DPI)


def _video(run, s, names, shape, out, dpi, workers, console, quiet, fps=None, frames=None) -> Path:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from testbed.render import video

    default = run.path / "render" / f"seed{run.seeds[s]}.mp4"
    path = _out_path(out, default, VIDEO_FORMATS, "--video")
    frames = np.arange(len(run.epochs)) if frames is None else frames
    if fps is not None and not 0 < fps <= video.MAX_FPS:
        raise UserError(f"--fps {fps:g}: give a frame rate above 0 and at most {video.MAX_FPS}")
    fps = fps if fps is not None else video.default_fps(run.epochs[frames])
    started = time.perf_counter()
    # Views are fixed over the whole video: fitted once to every frame's data (no fields needed).
    q_all = snapshot_quantities(run, s, frames)
    extents = tuple(p.extent(q_all) for p in figure.build_panels(names))
    job = video.Job(str(run.path.absolute()), s, tuple(names), shape, extents, dpi, path.suffix.lower().lstrip("."), fps=fps)
    bar = Progress(TextColumn("[bold]rendering"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, disable=quiet)
    with bar:
        task = bar.add_task("render", total=len(frames))
        video.write(job, frames, path, workers, lambda n: bar.advance(task, n))
    if not quiet:
        console.print(f"{len(frames)} frames in {time.perf_counter() - started:.1f} s; {len(frames) / fps:.1f} s at {fps:.3g} fps",
                      highlight=False, soft_wrap=True)
    return path
