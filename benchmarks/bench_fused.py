"""The fused engine against the reference engine and the papers' loop, with the FLOP count.

Each measurement runs in a fresh process, rounds interleave every row, and each row reports its
fastest round (the minimum: on a shared machine the noise only ever adds time). Rows: the plain
per-seed loop the papers' public code trains with (`naive_loop.py`, one seed), and testbed's
default scenario (p = 2, L = 12, k = 5, n = 2048, d = 2, h = 32, rms norm, GELU, Adam, batch 32;
probes metrics (train and test evaluation every epoch), step_loss, spikes) on 1 to 1000 seeds
with `training.engine: reference` and `fused`. Threads follow testbed's policy (1 below 16
seeds, else every core); `--clock cpu` reports the process's CPU seconds (steadier under load).

The FLOP count (`flops`) is exact for the fused kernel's own arithmetic: every float addition,
subtraction, multiplication, division and square root it executes for one seed-epoch, exp, log
and GELU at the cost of their written-out polynomials (`testbed.engine.fused.mathlib`).
`model_flops` counts the same with each exp, log and erf as one operation (the usual convention,
which makes the model look cheaper: GELU's polynomial is most of the kernel's arithmetic).

Peak of this machine (`--peak`): an AMD EPYC of family 25, model 17 (Zen 4, Genoa): 2 cores,
one thread each, 2.6 GHz as /proc/cpuinfo reports it. A Zen 4 core issues two 256-bit FP
multiply (or FMA) and two 256-bit FP add operations per cycle (AVX-512 runs as two halves), so
8 float32 lanes x (2 multiplies + 2 adds) = 32 float32 FLOP per cycle, with or without FMA:
2 cores x 2.6e9 x 32 = 166 GFLOP/s. (The fused kernels use no FMA, which on Zen 4 costs no peak.)

    .venv/bin/python benchmarks/bench_fused.py --clock cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_training import measure_naive, peak_rss_mb, table  # noqa: E402

EPOCHS = {1: 8, 10: 5, 100: 3, 1000: 2}
PROBES = ["metrics", "step_loss", "spikes"]
PEAK_FLOPS = 2 * 2.6e9 * 32
# The papers' default scenario: positions, width, hidden units, tokens, batch, training samples.
DEFAULT = {"L": 12, "d": 2, "h": 32, "V": 2, "N": 32, "n": 2048}

# exp, log and GELU as the kernels compute them (mathlib), in +, -, *, /, sqrt:
EXP = 2 + 2 + 12 + 1  # k = floor(x log2 e + 1/2); r = x - k ln 2; degree-6 Horner; times 2^k
LOG = 3 + 1 + 20 + 4  # f = (m-1)/(m+1); f^2; 10-term Horner; e ln 2 + 2 f series
GELU_VALUE = 2 + EXP + 1 + 10 + 3 + 21 + 2 + 1  # x^2/2, exp, z, erf series, t, erfc, Phi, x Phi
GELU_SLOPE = 3  # Phi + x (e / sqrt(2 pi))


def flops(L: int, d: int, h: int, V: int, N: int, n: int, U: float, exp: int = EXP, log: int = LOG,
          gelu: int = GELU_VALUE, slope: int = GELU_SLOPE) -> dict:
    """FLOP of one seed-epoch of the fused kernels: `n / N` steps of N sequences (the last
    batch as full: n = 2048 is a multiple of 32 here) and an evaluation of U distinct sequences.
    A dot product of k terms counts 2k (the kernels add onto a zero)."""
    P = V * d + L * d + d + d * d + h * d + h + d * h + d
    VL = V * L
    fold = 1
    while fold < h:
        fold *= 2
    table = VL * (d + (2 * d + 3 + 2) + (d + 2 * d))  # E + P; rms norm (sum of squares, sqrt, scale, eps, divide); scaled query . z
    attention = L * (1 + exp) + L + L + 2 * L * d  # exp(s - max), their sum, a = e / sum, zbar
    head_fwd = 2 * d * d + (2 * d + 3 + d) + 2 * d * h + h  # V zbar; rms norm; fc1 and its bias
    head_out = d * (h + (fold - 1) + 2) + 2 * V * d  # fc2 products, folded sum, bias and residual; logits
    softmax = V * (1 + exp) + V  # exp(logit - max) and their sum
    forward_train = attention + head_fwd + h * (gelu + slope) + head_out + softmax + (log + 2)
    backward = (V * (1 + exp + 3) + 2 * V * d * 2  # dlogits (exp again), dE_out, dzeta
                + d + 2 * d * h * 2 + h + h + 2 * d * h + d * (h + fold - 1)  # db2, dW2, dpre, slope, db1, dW1, dm
                + (2 * d + 2 + 3 * d) + d + 2 * d * d * 2  # rms backward, residual, dV, dzbar
                + L * 4 * d + 2 * L + 3 * L)  # dZ, da, sum a da, dscore
    after_batch = 2 * VL * d + d + VL * 3 * d + VL * (2 * d + 2 + 3 * d) + V * d * L + L * d * V  # dq, dZ += dscore q, norm backward, dE, dP
    update = 14 * P  # Adam: m (3), v (4), denominator (3), step (4)
    step = table + N * (forward_train + backward) + after_batch + update + 1
    evaluation = table + U * (attention + head_fwd + h * gelu + head_out + softmax + (log + 2) + 8)
    steps = n // N
    return {"per_step": step, "training": steps * step, "evaluation": evaluation, "total": steps * step + evaluation, "params": P}


def model_flops(U: float) -> dict:
    """The same count with exp, log and the GELU (erf) as one operation each."""
    return flops(**DEFAULT, U=U, exp=1, log=1, gelu=2, slope=2)


def distinct_sequences(seeds: int = 100) -> float:
    """The mean number of distinct sequences the evaluation runs over per seed (default scenario)."""
    from testbed.engine.task import make_dataset

    ds = make_dataset(list(range(seeds)), 2, 12, 5, 2048, 2048, "iid")
    from testbed.engine.model import Architecture
    from testbed.engine.stage import Stage

    arch = Architecture(2, 32, 2, 12, None, None, None)
    return float(Stage.prepare(ds, arch).last.double().add(1).mean())


def measure(engine: str, n_seeds: int, epochs: int) -> dict:
    import torch

    from testbed.config.scenario import validate
    from testbed.engine import threads as threads_mod
    from testbed.engine.loop import train

    scenario = validate({"name": "bench", "seeds": f"0-{n_seeds - 1}", "training": {"epochs": epochs + 1, "engine": engine}, "probes": PROBES})
    wall, cpu = [], []

    def progress(epoch, evaluation):
        wall.append(time.perf_counter())
        cpu.append(time.process_time())

    with threads_mod.intra_op_threads(threads_mod.choose(n_seeds)) as used:
        train(scenario, progress=progress)
    return {
        "engine": engine, "seeds": n_seeds, "threads": used, "torch": torch.__version__,
        "s_per_epoch": statistics.median(b - a for a, b in zip(wall, wall[1:])),
        "cpu_s_per_epoch": statistics.median(b - a for a, b in zip(cpu, cpu[1:])),
        "peak_rss_mb": peak_rss_mb(),
    }


def one(kind: str, seeds: int, epochs: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", kind, str(seeds), str(epochs)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {seeds} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; each row reports its fastest")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--naive-epochs", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        kind, seeds, epochs = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(measure_naive(epochs) if kind == "naive" else measure(kind, seeds, epochs)))
        return {}

    one("fused", 1, 1)  # compile the kernels once (numba caches them on disk), outside the timings
    U = distinct_sequences()
    count, model = flops(**DEFAULT, U=U), model_flops(U)
    print(f"FLOP per seed-epoch (U = {U:.0f} distinct sequences evaluated per seed): kernel {count['total'] / 1e6:.2f} M "
          f"(training {count['training'] / 1e6:.2f} M, evaluation {count['evaluation'] / 1e6:.2f} M); "
          f"with exp/log/erf as 1 FLOP: {model['total'] / 1e6:.2f} M")
    jobs = [("naive", 1, args.naive_epochs)] + [(e, s, EPOCHS.get(s, 2)) for s in args.seeds for e in ("reference", "fused")]
    results: dict[tuple, list[dict]] = {}
    for r in range(args.repeats):
        for job in jobs:
            results.setdefault(job, []).append(one(*job))
        print(f"round {r + 1} of {args.repeats} done", file=sys.stderr)
    key = "cpu_s_per_epoch" if args.clock == "cpu" else "s_per_epoch"
    best = {job: min(m[key] for m in ms) for job, ms in results.items()}
    naive_rate = 1.0 / best[jobs[0]]
    rows = [("papers' loop", 1, f"{best[jobs[0]]:.4f}", f"{naive_rate:.1f}", "1.0x", "", "")]
    for job in jobs[1:]:
        engine, seeds, _ = job
        rate = seeds / best[job]
        rows.append((engine, seeds, f"{best[job]:.4f}", f"{rate:.1f}", f"{rate / naive_rate:.1f}x",
                     f"{rate * count['total'] / 1e9:.2f}", f"{rate * count['total'] / PEAK_FLOPS:.2%}" if engine == "fused" else ""))
    print(table(rows, ("engine", "seeds", f"{args.clock} s/epoch", "seed-epochs/s", "vs papers' loop", "GFLOP/s (kernel count)", "of peak")))
    out = {"flops": count, "model_flops": model, "U": U, "clock": args.clock, "rounds": {f"{e}/{s}": results[(e, s, n)] for e, s, n in jobs}}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
