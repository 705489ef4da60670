"""Time scrubbing in `testbed view`, in the browser: from moving the epoch slider to the new
frame shown (the image's load event), median and 95th percentile, at the default frame size
(20 panels, 960 x 800 pixels).

Usage: .venv/bin/python benchmarks/bench_view.py [--run DIR] [--seed 4] [--moves 60]

Without --run it first trains the default scenario (scenarios/smooth_norm.yaml) for one seed,
a snapshot every 10 epochs (101 frames), into runs/bench_view (not timed). The viewer is
served from this process, the page opened in Debian's headless chromium (Playwright), and
the latencies are measured by the page itself (performance.now() at the slider's input event
and at the image's load event):

- cold: the first moves of a seed just opened, to frames not yet rendered (the server draws
  them on demand, the nearest first);
- warm: once every frame of the seed is rendered and kept by the browser (what scrubbing is
  after a few seconds on a seed), random moves along the slider.

The floor is one display refresh (16.7 ms at 60 Hz): a frame cannot be seen sooner.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TESTBED = str(Path(sys.executable).with_name("testbed"))
REFRESH_MS = 1000 / 60


def ensure_run(path: Path, seed: int) -> Path:
    if (path / "snapshots.npz").is_file():
        return path
    print(f"training {path} (seed {seed}, a snapshot every 10 epochs) ...", flush=True)
    cmd = [TESTBED, "run", str(ROOT / "scenarios" / "smooth_norm.yaml"), "--seeds", str(seed), "--out", str(path), "--force", "--quiet",
           "--no-store", "--set", "probes=[metrics, step_loss, spikes, {name: snapshots, every: 10}]"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return path


def move(page, i: int, epoch: int) -> None:
    """Move the slider to index i as a user's drag does (an input event), and wait for its frame."""
    page.evaluate("i => { const s = document.querySelector('#slider'); s.value = String(i); s.dispatchEvent(new Event('input')); }", i)
    page.wait_for_function(f"document.querySelector('#frame').dataset.shown === '{epoch}'", timeout=120_000)


def stats(name: str, ms: list[float]) -> str:
    a = np.asarray(ms)
    return (f"{name}: {len(a)} moves, median {np.median(a):.1f} ms, p95 {np.percentile(a, 95):.1f} ms, max {a.max():.1f} ms "
            f"(median {np.median(a) / REFRESH_MS:.1f} display refreshes; goal: median < 100 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "bench_view")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--moves", type=int, default=60)
    ap.add_argument("--cold-moves", type=int, default=8)
    args = ap.parse_args()
    run = ensure_run(args.run, args.seed)

    from testbed.view.browser import chromium, watched_page
    from testbed.view.server import Background

    app = Background([run])
    rng = random.Random(0)
    try:
        with chromium() as context:
            page = watched_page(context)
            started = time.perf_counter()
            page.goto(f"{app.url}#run/0/{args.seed}")
            page.wait_for_function("document.querySelector('#frame') && document.querySelector('#frame').dataset.shown", timeout=300_000)
            first = time.perf_counter() - started
            epochs = page.evaluate("window.viewScrubber.epochs")
            n = len(epochs)
            print(f"{run}: seed {args.seed}, {n} frames; first frame shown {first:.1f} s after opening the page "
                  "(loading the run, the seed's intermediates for every frame, the first frame)", flush=True)
            page.evaluate("window.viewLatencies = []")
            for i in rng.sample(range(n - 1), min(args.cold_moves, n - 1)):  # frames the prefetching may not have reached yet
                move(page, i, epochs[i])
            cold = page.evaluate("window.viewLatencies")
            page.wait_for_function(f"window.viewScrubber.kept.size >= {n}", timeout=600_000, polling=200)
            all_kept = time.perf_counter() - started
            page.evaluate("window.viewLatencies = []")
            for _ in range(args.moves):
                i = rng.randrange(n)
                while i == int(page.evaluate("window.viewScrubber.i")):
                    i = rng.randrange(n)
                move(page, i, epochs[i])
            warm = page.evaluate("window.viewLatencies")
            size = page.evaluate("[document.querySelector('#frame').naturalWidth, document.querySelector('#frame').naturalHeight]")
            assert not page.console_errors, page.console_errors
    finally:
        app.stop()
    print(f"frame size {size[0]} x {size[1]} pixels; every frame rendered and kept {all_kept:.1f} s after opening ({all_kept / n * 1000:.0f} ms a frame)")
    print(stats("cold (frames drawn on demand)", cold))
    print(stats("warm (frames kept)", warm))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes' work included)")


if __name__ == "__main__":
    main()
