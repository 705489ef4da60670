"""Training throughput of testbed over 1 to 10,000 seeds, against the naive per-seed loop.

What is measured, each measurement in a fresh process (so that its peak resident memory is its
own), interleaved round by round so that a slow spell of a shared machine hits every
measurement alike:

1. **naive** -- `naive_loop.train_one_seed` (nn.Module, DataLoader batch 32 with shuffling,
   torch.optim.Adam, train + test evaluation every epoch), one seed, the way the papers' public
   code trains. Seconds per epoch are ``(T(E) - T(0)) / E`` (set-up excluded), after a 1-epoch
   warm-up.
2. **testbed, S seeds** for S in ``--seeds`` (default 1, 10, 100, 1000, 10000) --
   ``testbed.engine.loop.train`` on the papers' default scenario (p=2, L=12, k=5, n=2048, d=2,
   h=32, Adam 3e-3, batch 32) with the default probes ``metrics`` (evaluation of train and test
   every epoch, like the naive loop), ``step_loss`` and ``spikes``, seeds ``0..S-1`` as one
   vectorized program. Each measurement trains ``E + 1`` epochs and timestamps every epoch
   through the ``progress`` callback; the first epoch (which also carries set-up: sampling,
   initialisation, the epoch-0 evaluation) is left out and seconds per epoch is the median of
   the other ``E``. ``E`` shrinks with S (``EPOCHS``) so that the whole curve takes minutes.
   Threads follow testbed's own policy (``testbed.engine.threads``: 1 below 16 seeds, else
   every core) unless ``--threads``.
3. with ``--baseline DIR`` (a checkout of another commit, e.g. ``git worktree add
   /tmp/base <commit>``), the same testbed measurements with that checkout's code, in the same
   rounds: the before/after table.

Reported per row: seconds per epoch, seed-epochs per second, the ratio to the naive loop's
seed-epochs per second, and the peak resident memory of the process (``ru_maxrss``).

Run from the repository root::

    .venv/bin/python benchmarks/bench_training.py
    .venv/bin/python benchmarks/bench_training.py --seeds 1 100 --repeats 3 --baseline /tmp/base --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EPOCHS = {1: 10, 10: 6, 100: 3, 1000: 2, 10000: 1}  # timed epochs per measurement, by seed count
PROBES = ["metrics", "step_loss", "spikes"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def measure_naive(epochs: int) -> dict:
    sys.path.insert(0, str(HERE))
    import naive_loop

    naive_loop.train_one_seed(0, 1)  # warm-up: DataLoader, autograd, Adam first calls
    setups, cpu_setups = [], []
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        naive_loop.train_one_seed(0, 0)
        setups.append(time.perf_counter() - t)
        cpu_setups.append(time.process_time() - c)
    t, c = time.perf_counter(), time.process_time()
    naive_loop.train_one_seed(0, epochs)
    total, cpu_total = time.perf_counter() - t, time.process_time() - c
    return {
        "seeds": 1,
        "epochs_timed": epochs,
        "s_per_epoch": (total - statistics.median(setups)) / epochs,
        "cpu_s_per_epoch": (cpu_total - statistics.median(cpu_setups)) / epochs,
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_testbed(n_seeds: int, epochs: int, threads: int | None, device: str = "cpu", compile_step: bool = False) -> dict:
    import torch

    from testbed.config.scenario import validate
    from testbed.engine import threads as threads_mod
    from testbed.engine.loop import train

    scenario = validate(
        {"name": "bench", "seeds": "0" if n_seeds == 1 else f"0-{n_seeds - 1}", "training": {"epochs": epochs + 1, **_if_set(device, compile_step)},
         "probes": PROBES}
    )
    stamps: list[float] = []
    cpu_stamps: list[float] = []
    evaluated: list[bool] = []

    def progress(epoch, evaluation):
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        evaluated.append(evaluation is not None)

    with threads_mod.intra_op_threads(threads_mod.choose(n_seeds, threads)) as used:
        start = time.perf_counter()
        train(scenario, out_dir=None, progress=progress)
    assert len(stamps) == epochs + 1 and all(evaluated), "expected an evaluation every epoch (metrics probe, every=1)"
    durations = [b - a for a, b in zip(stamps, stamps[1:])]
    cpu_durations = [b - a for a, b in zip(cpu_stamps, cpu_stamps[1:])]
    return {
        "seeds": n_seeds,
        "epochs_timed": epochs,
        "threads": used,
        "first_epoch_with_setup_s": stamps[0] - start,
        "s_per_epoch": statistics.median(durations),
        "s_per_epoch_all": durations,
        "cpu_s_per_epoch": statistics.median(cpu_durations),
        "peak_rss_mb": peak_rss_mb(),
        "torch": torch.__version__,
        "device": device,
        "compile": compile_step,
        **({"gpu": torch.cuda.get_device_name(), "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20} if device.startswith("cuda") else {}),
    }


def _if_set(device: str, compile_step: bool) -> dict:
    """The training fields a measurement sets beyond the defaults (a baseline checkout may
    predate them)."""
    return {**({"device": device} if device != "cpu" else {}), **({"compile": True} if compile_step else {})}


def one(kind: str, seeds: int, epochs: int, threads: int | None, code: Path, device: str = "cpu", compile_step: bool = False) -> dict:
    """One measurement in a fresh process running the code of checkout `code`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", kind, str(seeds), str(epochs), "--device", device]
    if compile_step:
        cmd.append("--compile")
    if threads is not None:
        cmd += ["--threads", str(threads)]
    paths = [str(code), str(_plugins_of(code))] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    proc = subprocess.run(cmd, env=env, cwd=str(code), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {seeds} seeds ({code}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _plugins_of(code: Path) -> Path:
    """A folder where `testbed_plugins` is `code`'s plugins/ (the installed entry points name
    `testbed_plugins`, which an editable install maps to this checkout's plugins/)."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"testbed-bench-plugins-{abs(hash(str(code.resolve())))}"
    link = folder / "testbed_plugins"
    if not link.exists():
        folder.mkdir(parents=True, exist_ok=True)
        link.symlink_to(code.resolve() / "plugins")
    return folder


def table(rows: list[tuple], headers: tuple) -> str:
    cells = [headers] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 10, 100, 1000, 10000], help="seed counts of the curve")
    ap.add_argument("--epochs", type=int, default=None, help="timed epochs of every testbed measurement (default: by seed count, EPOCHS)")
    ap.add_argument("--naive-epochs", type=int, default=5, help="naive-loop epochs timed (default 5)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds; each row reports its median round (default 2)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads of every measurement (default: testbed's policy; torch's for the naive loop)")
    ap.add_argument("--baseline", type=Path, default=None, help="a checkout of another commit, measured in the same rounds")
    ap.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall",
        help="what the rates and ratios use: wall-clock seconds, or the process's CPU seconds (steadier on a shared machine; "
        "equal to wall time with one thread on an idle machine)",
    )
    ap.add_argument("--device", default="cpu", help="training.device of the testbed measurements (cuda: the GPU path; the naive loop stays on the CPU)")
    ap.add_argument("--compile", action="store_true", help="training.compile in the testbed measurements (the fused step, opt-in, not bit-identical)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON to this path")
    ap.add_argument("--one", nargs=3, metavar=("KIND", "SEEDS", "EPOCHS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:  # a single measurement, in this fresh process
        kind, seeds, epochs = args.one[0], int(args.one[1]), int(args.one[2])
        if kind == "naive" and args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        result = measure_naive(epochs) if kind == "naive" else measure_testbed(seeds, epochs, args.threads, args.device, args.compile)
        print(json.dumps(result))
        return result

    import torch

    meta = {"torch": torch.__version__, "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "device": args.device}
    if args.device.startswith("cuda"):
        meta["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    print(f"torch {meta['torch']}  cpus {meta['cpus']}  python {meta['python']}  {meta['platform']}  device {args.device} {meta.get('gpu', '')}", flush=True)
    codes = {"after": ROOT} | ({"before": args.baseline.resolve()} if args.baseline else {})
    rounds: dict[tuple, list[dict]] = {}
    wall = time.perf_counter()
    for r in range(1, args.repeats + 1):
        print(f"round {r}/{args.repeats}", flush=True)
        rounds.setdefault(("naive", 1, "naive"), []).append(one("naive", 1, args.naive_epochs, args.threads, ROOT))
        for seeds in args.seeds:
            epochs = args.epochs or EPOCHS.get(seeds, 1)
            for label, code in codes.items():
                got = one("testbed", seeds, epochs, args.threads, code, args.device, args.compile)
                rounds.setdefault((label, seeds, "testbed"), []).append(got)
                gpu = f", GPU peak {got['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in got else ""
                print(f"  {label:6s} {seeds:6d} seeds: {got['s_per_epoch']:.4f} s/epoch ({got['cpu_s_per_epoch']:.4f} CPU), "
                      f"{seeds / got['s_per_epoch']:.0f} seed-epochs/s, peak {got['peak_rss_mb']:.0f} MB{gpu}", flush=True)

    key = "s_per_epoch" if args.clock == "wall" else "cpu_s_per_epoch"

    def median(runs: list[dict]) -> dict:
        ranked = sorted(runs, key=lambda x: x[key])
        return ranked[len(ranked) // 2] | {"rounds": [(x["s_per_epoch"], x["cpu_s_per_epoch"]) for x in runs]}

    results = {key: median(runs) for key, runs in rounds.items()}
    naive = results[("naive", 1, "naive")]
    naive_rate = 1.0 / naive[key]
    rows = [("naive loop", 1, f"{naive['s_per_epoch']:.4f}", f"{naive['cpu_s_per_epoch']:.4f}", f"{naive_rate:.1f}", "1.0x", "",
             f"{naive['peak_rss_mb']:.0f}")]
    for seeds in args.seeds:
        for label in codes:
            got = results[(label, seeds, "testbed")]
            rate = seeds / got[key]
            vs_before = ""
            if label == "after" and "before" in codes:
                vs_before = f"{results[('before', seeds, 'testbed')][key] / got[key]:.2f}x"
            rows.append((f"testbed ({label})" if len(codes) > 1 else "testbed", seeds, f"{got['s_per_epoch']:.4f}", f"{got['cpu_s_per_epoch']:.4f}",
                         f"{rate:.0f}", f"{rate / naive_rate:.0f}x", vs_before, f"{got['peak_rss_mb']:.0f}"))
    print()
    print(f"rates and ratios from {args.clock} time; medians of {args.repeats} interleaved rounds")
    print(table(rows, ("run", "seeds", "wall s/epoch", "cpu s/epoch", "seed-epochs/s", "vs naive", "after/before", "peak RSS MB")))
    wall = time.perf_counter() - wall
    print(f"benchmark wall time: {wall:.0f} s")
    listed = [{"label": k[0], "seeds": k[1], **v} for k, v in results.items()]
    out = {"meta": meta, "rounds": args.repeats, "clock": args.clock, "results": listed, "wall_s": wall}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
