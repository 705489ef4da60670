"""`testbed view RUN --export DIR`: one seed's frames rendered ahead into a folder with a page
of its own (the same slider, play button and arrow keys), which opens from disk with no server
and no internet: a run to share in a paper's supplement or a blog post.

Frames are lossless WebP: half the bytes of PNG for the same pixels (a 960 x 800 frame: 80 kB
against 140 kB), and every current browser shows it.

Written into a hidden staging folder beside DIR and renamed into place when complete, so an
interrupted export leaves nothing half-written."""

from __future__ import annotations

import html
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from testbed.errors import UserError
from testbed.render import rundata
from testbed.view.frames import DPI, SeedFrames

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 12px; color: #222; }}
.controls {{ display: flex; gap: 8px; align-items: center; margin: 6px 0; }}
#slider {{ width: 480px; }} img {{ border: 1px solid #ddd; max-width: 100%; }}
</style></head>
<body>
<h2>{title}</h2>
<p>{note}</p>
<div class="controls"><button id="play">&#9654; play</button><input type="range" id="slider" min="0" step="1">
<span id="epoch-label"></span></div>
<img id="frame" alt="frame">
<script>
"use strict";
const frames = {frames};
const slider = document.getElementById("slider"), img = document.getElementById("frame"), label = document.getElementById("epoch-label");
const kept = frames.map((f) => {{ const im = new Image(); im.src = f.file; return im; }});
let i = frames.length - 1, timer = null;
function show(k) {{
  i = Math.max(0, Math.min(frames.length - 1, k));
  img.src = frames[i].file; img.dataset.shown = String(frames[i].epoch);
  slider.value = String(i); label.textContent = "epoch " + frames[i].epoch;
}}
function play() {{
  const button = document.getElementById("play");
  if (timer) {{ clearInterval(timer); timer = null; button.innerHTML = "&#9654; play"; return; }}
  if (i >= frames.length - 1) show(0);
  button.innerHTML = "&#9208; pause";
  timer = setInterval(() => {{ if (i >= frames.length - 1) return play(); show(i + 1); }}, 120);
}}
slider.max = String(frames.length - 1);
slider.addEventListener("input", () => show(Number(slider.value)));
document.getElementById("play").addEventListener("click", play);
document.addEventListener("keydown", (e) => {{
  if (e.target === slider) return;
  if (e.key === "ArrowRight" || e.key === "ArrowLeft") {{ e.preventDefault(); show(i + (e.key === "ArrowRight" ? 1 : -1)); }}
  else if (e.key === " ") {{ e.preventDefault(); play(); }}
}});
show(i);
</script>
</body></html>
"""


def export(run_dir: Path, out: Path, seed: int | None = None, epochs: str | None = None, panels: list[str] | None = None,
           dpi: float = DPI, advance: Callable[[int, int], None] | None = None) -> Path:
    """Render seed `seed` (default: the run's first) at the snapshots `epochs` picks
    ('A-B[:STEP]', default: all) into `out`: index.html and frames/*.webp. `advance(done, total)`
    is called as frames are drawn."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--export {out}: exists and is not an empty folder")
    run = rundata.load(Path(run_dir))
    seed = run.seeds[run.seed_index(seed)]
    snapshots = run.snapshot_range(epochs)
    frames = SeedFrames(run, seed, panels, dpi, snapshots)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        (stage / "frames").mkdir(parents=True)
        listed = []
        for i, snapshot in enumerate(snapshots):
            epoch = int(run.epochs[snapshot])
            name = f"frames/epoch{epoch:06d}.webp"
            Image.fromarray(frames.pixels(i)).save(stage / name, "WEBP", lossless=True, method=4)
            listed.append({"epoch": epoch, "file": name})
            if advance:
                advance(i + 1, len(snapshots))
        title = f"{run.scenario.name}, seed {seed}"
        note = (f"{len(listed)} frames of epochs {listed[0]['epoch']}-{listed[-1]['epoch']} from {run.path.name} "
                "(drawn by testbed's panel plugins). Slider, arrow keys or play; the page needs nothing but this folder.")
        (stage / "index.html").write_text(PAGE.format(title=html.escape(title), note=html.escape(note), frames=json.dumps(listed)))
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out
