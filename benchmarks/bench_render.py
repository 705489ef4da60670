"""Time `testbed render --video` of the default grid over a 1000-snapshot run.

Usage: .venv/bin/python benchmarks/bench_render.py [--run DIR] [--seed 4] [--repeats 1]

Without --run it first trains the default scenario (scenarios/smooth_norm.yaml) for seed 4,
one of the seeds that learns, with a snapshot every epoch (1001 snapshots), into
runs/bench_render (training is not timed). It then times the whole command as a user runs it
(process start, loading, rendering in parallel workers, encoding, joining), wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTBED = str(Path(sys.executable).with_name("testbed"))


def ensure_run(path: Path, seed: int) -> Path:
    if (path / "snapshots.npz").is_file():
        return path
    print(f"training {path} (seed {seed}, snapshot every epoch) ...", flush=True)
    cmd = [TESTBED, "run", str(ROOT / "scenarios" / "smooth_norm.yaml"), "--seeds", str(seed), "--out", str(path), "--force",
           "--quiet", "--set", "probes=[metrics, step_loss, spikes, {name: snapshots, every: 1}]"]
    # one thread: a seed's trajectory is the same with one or two (tests/test_replicas.py), and
    # two threads fight any other busy process on a 2-core machine
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "bench_render")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    run = ensure_run(args.run, args.seed)
    import numpy as np

    with np.load(run / "snapshots.npz") as z:
        frames = len(z["epochs"])
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "video.mp4"
        for r in range(args.repeats):
            started = time.perf_counter()
            subprocess.run([TESTBED, "render", str(run), "--video", "--seed", str(args.seed), "--out", str(out), "--quiet",
                            "--workers", str(args.workers)], check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
            print(f"round {r + 1}: {frames} frames in {times[-1]:.1f} s ({frames / times[-1]:.1f} frames/s), "
                  f"{out.stat().st_size / 1e6:.1f} MB", flush=True)
    print(json.dumps({"frames": frames, "seconds": [round(t, 2) for t in times], "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
