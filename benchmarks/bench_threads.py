"""The thread policy on an idle and on a busy machine, old against new, side by side.

A run is one fresh process training the default scenario (`--epochs` epochs) on a few seeds and
on many seeds, timed from inside (training only, not interpreter start-up). Policies:

- **old**: what testbed did before the policy: torch's default thread count (every core) and
  OpenMP's default waiting (its threads spin a while before they sleep);
- **new**: `testbed.engine.threads.choose` for the seed count, and the wait policy the `testbed`
  command chooses when it starts (`testbed.cli.openmp_wait_policy`: passive when other
  processes keep at least half a core busy, else OpenMP's spinning default).

"Busy" starts one competing process that keeps a core busy (a pure-Python loop) for the whole
measurement. Rounds interleave the policies so that a slow spell of the machine hits both.

    .venv/bin/python benchmarks/bench_threads.py
    .venv/bin/python benchmarks/bench_threads.py --seeds 4,100 --epochs 5 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from testbed.cli import busy_cores, openmp_wait_policy

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from testbed.config.scenario import validate
    from testbed.engine.loop import train
    from testbed.engine.threads import choose, intra_op_threads
    seeds, epochs, policy = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    sc = validate({"name": "bench", "seeds": list(range(seeds)), "training": {"epochs": epochs}, "probes": ["metrics", "step_loss"]})
    threads = torch.get_num_threads() if policy == "old" else choose(seeds)
    with intra_op_threads(threads):
        start = time.perf_counter()
        train(sc)
        print(json.dumps({"seconds": time.perf_counter() - start, "threads": threads}))
    """
)


def run_once(seeds: int, epochs: int, policy: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if policy == "new":
        chosen = openmp_wait_policy(False, None, busy_cores())
        if chosen is not None:
            env["OMP_WAIT_POLICY"] = chosen
    out = subprocess.run([sys.executable, "-c", CHILD, str(seeds), str(epochs), policy], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def competitor() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="4,100", help="seed counts, comma-separated (default 4,100)")
    ap.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported (default 3)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    seed_counts = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[float]] = {}
    threads: dict[str, int] = {}
    for load in ("idle", "busy"):
        other = competitor() if load == "busy" else None
        try:
            for r in range(args.repeats):
                for seeds in seed_counts:
                    for policy in ("old", "new"):
                        got = run_once(seeds, args.epochs, policy)
                        key = f"{load}/{seeds}/{policy}"
                        results.setdefault(key, []).append(got["seconds"])
                        threads[key] = got["threads"]
                        print(f"round {r + 1}: {key}: {got['seconds']:.2f} s ({got['threads']} threads)", flush=True)
        finally:
            if other is not None:
                other.kill()
                other.wait()
    print(f"\n{'machine':8} {'seeds':>5} | {'old: s (threads)':>18} | {'new: s (threads)':>18} | old/new")
    for load in ("idle", "busy"):
        for seeds in seed_counts:
            old, new = (statistics.median(results[f"{load}/{seeds}/{p}"]) for p in ("old", "new"))
            to, tn = threads[f"{load}/{seeds}/old"], threads[f"{load}/{seeds}/new"]
            print(f"{load:8} {seeds:>5} | {old:>12.2f} ({to}) | {new:>12.2f} ({tn}) | {old / new:5.2f}x")
    summary = {"epochs": args.epochs, "cpus": os.cpu_count(), "seconds": results, "threads": threads}
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
