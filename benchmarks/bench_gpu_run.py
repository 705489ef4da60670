"""A whole scenario on many seeds, end to end, as a user runs it: `testbed.run` on
scenarios/baseline.yaml (the papers' default: 1000 epochs of 64 steps, metrics every epoch,
step losses, spikes, snapshots every 10 epochs with the weights around loss jumps) for seeds
0..S-1 on `--device`, with the default checkpoints (every 60 s of training).

Reported: seconds to the end of epoch 1 (set-up: sampling, the one sort, moving the tables),
seconds of training after it, seconds from the last epoch to the finished run directory (the
probes' files), the whole, and the peak memory of the process and of the GPU. Progress is
printed every `--every` epochs, so a run cut short still says how far it got and how fast.

    python benchmarks/bench_gpu_run.py --seeds 10000 --device cuda --out /tmp/run10k
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=None, help="default: the scenario's (1000)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "baseline.yaml")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--every", type=int, default=50, help="print progress every this many epochs")
    ap.add_argument("--compile", action="store_true", help="training.compile: the fused step (not bit-identical)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    import testbed

    fields = {"training.device": args.device, "training.compile": args.compile, **({"training.epochs": args.epochs} if args.epochs else {})}
    scenario = testbed.load_scenario(args.scenario, seeds=f"0-{args.seeds - 1}", **fields)
    print(f"{args.scenario.name}: {args.seeds} seeds x {scenario.training.epochs} epochs, batch {scenario.training.batch_size}, on {args.device}", flush=True)
    epochs = scenario.training.epochs
    stamps: dict[int, float] = {}
    start = time.perf_counter()

    def progress(event) -> None:
        now = time.perf_counter()
        stamps[event.epoch] = now
        if event.epoch and (event.epoch % args.every == 0 or event.epoch in (1, epochs)):
            rate = (event.epoch - 1) / (now - stamps[1]) if event.epoch > 1 else float("nan")
            print(f"epoch {event.epoch}/{epochs}  {now - start:7.1f} s  {rate:6.2f} epochs/s  ({rate * args.seeds:,.0f} seed-epochs/s)", flush=True)

    run = testbed.run(scenario, out=args.out, progress=progress, store=False, force=True)
    end = time.perf_counter()
    cuda = args.device.startswith("cuda")
    result = {
        "seeds": args.seeds,
        "epochs": epochs,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__,
        "compile": args.compile,
        "setup_and_first_epoch_s": stamps[1] - start,
        "training_after_first_epoch_s": stamps[epochs] - stamps[1],
        "files_s": end - stamps[epochs],
        "total_s": end - start,
        "s_per_epoch": (stamps[epochs] - stamps[1]) / max(1, epochs - 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "final_test_acc_mean": float(run.summary["test_acc"].mean()) if "test_acc" in run.summary else None,
        "run_bytes": sum(f.stat().st_size for f in Path(run.path).rglob("*") if f.is_file()),
    }
    print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
