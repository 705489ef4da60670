"""Training speed of testbed against the naive per-seed PyTorch loop, side by side.

What is measured, in one process on this machine:

1. **naive** -- `naive_loop.train_one_seed` (nn.Module, DataLoader batch 32 with shuffling,
   torch.optim.Adam, train + test evaluation every epoch), one seed. Seconds per epoch are
   ``(T(N) - T(0)) / N`` where ``T(N)`` is the wall time of ``train_one_seed(seed, N)`` and
   ``T(0)`` the same call with no epochs (data and model set-up only), after a 1-epoch warm-up.
2. **testbed, 1 seed** -- ``testbed.engine.loop.train`` on the papers' default scenario
   (p=2, L=12, k=5, n=2048, d=2, h=32, Adam 3e-3, batch 32) with the probes
   ``metrics`` (evaluation on train and test every epoch, like the naive loop), ``step_loss`` and
   ``spikes``.
3. **testbed, S seeds** (``--seeds``, default 100) -- the same scenario with seeds ``0..S-1``
   trained as one vectorized program.

For testbed, each measurement trains ``E + 1`` epochs (``--epochs E``) and timestamps every epoch
through the ``progress`` callback; the first epoch (which also carries set-up: parameter init,
dataset sampling, the epoch-0 evaluation) is discarded and seconds per epoch is the mean of the
remaining ``E`` epochs. ``train`` is called with ``out_dir=None``, so the probes' end-of-run file
writing is not timed; their per-step and per-epoch work is. A short 1-seed testbed run and a
1-epoch naive run before any measurement absorb import and first-call overheads.

Reported: naive seed-epochs/s; testbed 1-seed speedup = naive s/epoch / testbed s/epoch
(target >= 2x); testbed S-seed throughput ratio = testbed seed-epochs/s / naive seed-epochs/s
(target >= 50x). Timings use ``time.perf_counter``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_training.py
    .venv/bin/python benchmarks/bench_training.py --seeds 100 --epochs 5 --naive-epochs 5 \
        --threads 2 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # benchmarks/ is not a package
    sys.path.insert(0, str(HERE))
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # testbed itself, should the editable install be missing
    sys.path.append(str(ROOT))

import naive_loop  # noqa: E402
import torch  # noqa: E402

from testbed.config.scenario import validate  # noqa: E402
from testbed.engine.loop import train  # noqa: E402

PROBES = ["metrics", "step_loss", "spikes"]
TARGET_SPEEDUP_1 = 2.0
TARGET_THROUGHPUT = 50.0


def seed_spec(n: int) -> str:
    return "0" if n == 1 else f"0-{n - 1}"


def bench_naive(epochs: int, seed: int = 0) -> dict:
    """Seconds per epoch of the naive loop, set-up excluded."""
    naive_loop.train_one_seed(seed, 1)  # warm-up: DataLoader, autograd, Adam first calls
    setups = []
    for _ in range(3):
        t = time.perf_counter()
        naive_loop.train_one_seed(seed, 0)
        setups.append(time.perf_counter() - t)
    setup = statistics.median(setups)
    t = time.perf_counter()
    history = naive_loop.train_one_seed(seed, epochs)
    total = time.perf_counter() - t
    assert len(history) == epochs
    per_epoch = (total - setup) / epochs
    return {
        "seeds": 1,
        "epochs_timed": epochs,
        "total_s": total,
        "setup_s": setup,
        "s_per_epoch": per_epoch,
        "seed_epochs_per_s": 1.0 / per_epoch,
        "final_test_acc": history[-1][3],
    }


def bench_testbed(n_seeds: int, epochs: int) -> dict:
    """Seconds per epoch of testbed for `n_seeds` seeds: mean over `epochs` epochs after the first."""
    scenario = validate(
        {"name": "bench", "seeds": seed_spec(n_seeds), "training": {"epochs": epochs + 1}, "probes": PROBES}
    )
    stamps: list[float] = []
    evaluated: list[bool] = []

    def progress(epoch, evaluation):
        stamps.append(time.perf_counter())
        evaluated.append(evaluation is not None)

    start = time.perf_counter()
    result = train(scenario, out_dir=None, progress=progress)
    total = time.perf_counter() - start
    assert len(stamps) == epochs + 1
    assert all(evaluated), "expected an evaluation every epoch (metrics probe, every=1)"
    durations = [b - a for a, b in zip(stamps, stamps[1:])]
    per_epoch = sum(durations) / len(durations)
    return {
        "seeds": n_seeds,
        "epochs_timed": epochs,
        "total_s": total,
        "first_epoch_with_setup_s": stamps[0] - start,
        "s_per_epoch": per_epoch,
        "s_per_epoch_min": min(durations),
        "s_per_epoch_median": statistics.median(durations),
        "seed_epochs_per_s": n_seeds / per_epoch,
        "steps_per_epoch": result.steps // (epochs + 1),
        "mean_final_test_acc": float(result.final.test_acc.mean()),
    }


def table(rows: list[tuple], headers: tuple) -> str:
    cells = [headers] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([fmt(cells[0]), line] + [fmt(r) for r in cells[1:]])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10, help="testbed epochs timed per measurement (default 10)")
    ap.add_argument("--naive-epochs", type=int, default=10, help="naive-loop epochs timed (default 10)")
    ap.add_argument(
        "--repeats", type=int, default=3,
        help="rounds of the three measurements, interleaved; each reports its median round (default 3)",
    )
    ap.add_argument("--seeds", type=int, default=100, help="seeds of the multi-seed testbed run (default 100)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON to this path")
    args = ap.parse_args(argv)
    for name in ("epochs", "naive_epochs", "seeds", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            ap.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)

    meta = {
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    print(
        f"torch {meta['torch_version']}  threads {meta['torch_threads']}  cpus {meta['cpu_count']}  "
        f"python {meta['python']}  {meta['platform']}",
        flush=True,
    )

    wall = time.perf_counter()
    print("warm-up ...", flush=True)
    bench_testbed(1, 1)  # imports, registry, pydantic model, first autograd calls

    rounds: dict[str, list[dict]] = {"naive": [], "tb1": [], "tbs": []}
    for r in range(1, args.repeats + 1):
        # Interleaved, so that a slow spell of the machine hits every measurement alike.
        print(f"round {r}/{args.repeats}: naive loop 1 seed x {args.naive_epochs} epochs, "
              f"testbed 1 seed and {args.seeds} seeds x {args.epochs}+1 epochs ...", flush=True)
        rounds["naive"].append(bench_naive(args.naive_epochs))
        rounds["tb1"].append(bench_testbed(1, args.epochs))
        rounds["tbs"].append(bench_testbed(args.seeds, args.epochs))

    def median_round(runs: list[dict]) -> dict:
        ranked = sorted(runs, key=lambda x: x["s_per_epoch"])
        return ranked[len(ranked) // 2] | {"s_per_epoch_rounds": [x["s_per_epoch"] for x in runs]}

    naive, tb1, tbs = (median_round(rounds[k]) for k in ("naive", "tb1", "tbs"))
    wall = time.perf_counter() - wall

    speedup_1 = naive["s_per_epoch"] / tb1["s_per_epoch"]
    throughput_1 = tb1["seed_epochs_per_s"] / naive["seed_epochs_per_s"]
    throughput_s = tbs["seed_epochs_per_s"] / naive["seed_epochs_per_s"]

    rows = [
        ("naive PyTorch loop", 1, naive["epochs_timed"], f"{naive['s_per_epoch']:.4f}", f"{naive['seed_epochs_per_s']:.2f}", "1.0x"),
        ("testbed", 1, tb1["epochs_timed"], f"{tb1['s_per_epoch']:.4f}", f"{tb1['seed_epochs_per_s']:.2f}", f"{throughput_1:.1f}x"),
        ("testbed", tbs["seeds"], tbs["epochs_timed"], f"{tbs['s_per_epoch']:.4f}", f"{tbs['seed_epochs_per_s']:.2f}", f"{throughput_s:.1f}x"),
    ]
    print()
    print(table(rows, ("run", "seeds", "epochs", "s/epoch", "seed-epochs/s", "vs naive")))
    print()

    def verdict(value, target):
        return "PASS" if value >= target else "FAIL"

    summary = [
        ("naive seed-epochs/s", f"{naive['seed_epochs_per_s']:.2f}"),
        (
            "testbed 1-seed speedup (naive s/epoch / testbed s/epoch)",
            f"{speedup_1:.2f}x  (target >= {TARGET_SPEEDUP_1:g}x: {verdict(speedup_1, TARGET_SPEEDUP_1)})",
        ),
        (
            f"testbed {args.seeds}-seed throughput ratio (seed-epochs/s vs naive)",
            f"{throughput_s:.1f}x  (target >= {TARGET_THROUGHPUT:g}x: {verdict(throughput_s, TARGET_THROUGHPUT)})",
        ),
    ]
    label_w = max(len(k) for k, _ in summary) + 1
    for label, value in summary:
        print(f"{(label + ':').ljust(label_w)}  {value}")
    print(f"benchmark wall time: {wall:.1f} s  (torch threads {meta['torch_threads']}, torch {meta['torch_version']})")

    results = {
        "meta": meta,
        "config": {
            "epochs": args.epochs,
            "naive_epochs": args.naive_epochs,
            "seeds": args.seeds,
            "probes": PROBES,
            "scenario": {
                k: v
                for k, v in validate({"name": "bench", "seeds": "0", "training": {"epochs": args.epochs + 1}, "probes": PROBES}).model_dump(mode="json").items()
                if k in ("task", "model", "optimizer", "training")
            },
        },
        "naive": naive,
        "testbed_1_seed": tb1,
        "testbed_multi_seed": tbs,
        "speedup_1_seed": speedup_1,
        "throughput_ratio_multi_seed": throughput_s,
        "targets": {"speedup_1_seed": TARGET_SPEEDUP_1, "throughput_ratio_multi_seed": TARGET_THROUGHPUT},
        "pass": {
            "speedup_1_seed": speedup_1 >= TARGET_SPEEDUP_1,
            "throughput_ratio_multi_seed": throughput_s >= TARGET_THROUGHPUT,
        },
        "benchmark_wall_s": wall,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
