"""What the study machinery costs: a 6-cell study trained by `testbed.sweep` against the same
cells trained by hand (one `run_scenario` each, no store), and the Ray executor against the
local one, side by side with interleaved repeats.

    .venv/bin/python benchmarks/bench_sweep.py [--epochs 100] [--seeds 10] [--repeats 2] [--ray]

Reported: the median wall time of each way; the sweep's overhead over the hand-run cells
(planning, store, linking the cell directories; the analysis is timed on its own) as a share of
its wall time; Ray's wall time against the local executor's."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def study_file(folder: Path, epochs: int, seeds: int) -> Path:
    path = folder / "bench_study.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "scenarios": [str(ROOT / "scenarios" / "baseline.yaml")],
                "seeds": f"0-{seeds - 1}",
                "set": {"training.epochs": epochs, "probes": [{"name": "metrics", "every": 10}, "step_loss", "spikes"]},
                "axes": {"model.hidden": [16, 32], "optimizer.lr": [0.001, 0.003, 0.01]},
            }
        )
    )
    return path


def by_hand(path: Path, out: Path) -> float:
    """Each cell's scenario trained straight into a folder, one after another."""
    from testbed.study import cells
    from testbed.trainer import run_scenario

    study = cells.load(path)
    started = time.perf_counter()
    for cell in study.cells:
        run_scenario(cell.scenario, out / f"cell{cell.index}")
    return time.perf_counter() - started


def swept(path: Path, out: Path, executor: str) -> tuple[float, float]:
    """(wall time of the sweep, of which its analysis), in a fresh store."""
    import testbed
    from testbed.study import sweep_report

    analysis: list[float] = []
    original = sweep_report.analyse

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            analysis.append(time.perf_counter() - t)

    sweep_report.analyse = timed
    try:
        started = time.perf_counter()
        testbed.sweep(path, out=out / "study", store=out / "store", executor=executor)
        return time.perf_counter() - started, analysis[0]
    finally:
        sweep_report.analyse = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="also time the Ray executor (a local Ray instance on every core)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"by hand": [], "sweep (local)": [], "sweep analysis": []}
    if args.ray:
        times["sweep (ray)"] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = study_file(Path(tmp), args.epochs, args.seeds)
        for r in range(args.repeats):  # interleaved: a slow spell of the machine hits every way alike
            hand = Path(tmp) / f"hand{r}"
            times["by hand"].append(by_hand(path, hand))
            wall, analysis = swept(path, Path(tmp) / f"local{r}", "local")
            times["sweep (local)"].append(wall)
            times["sweep analysis"].append(analysis)
            if args.ray:
                times["sweep (ray)"].append(swept(path, Path(tmp) / f"ray{r}", "ray")[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"6 cells x {args.seeds} seeds x {args.epochs} epochs, median of {args.repeats}:")
    for k, v in med.items():
        print(f"  {k:16s} {v:7.2f} s   ({', '.join(f'{x:.2f}' for x in times[k])})")
    machinery = med["sweep (local)"] - med["sweep analysis"] - med["by hand"]
    print(f"  sweep machinery over the hand-run cells: {machinery:+.2f} s = {100 * machinery / med['sweep (local)']:+.1f}% of the sweep's wall time")
    print(f"  analysis (sweep.csv, figures, report): {med['sweep analysis']:.2f} s = {100 * med['sweep analysis'] / med['sweep (local)']:.1f}%")
    if args.ray:
        print(f"  ray / local wall time: {med['sweep (ray)'] / med['sweep (local)']:.2f}")


if __name__ == "__main__":
    main()
