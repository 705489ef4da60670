"""Per-seed outcomes of two compared inputs on some seeds, without a report: what `compare
--until-decided` reads after each batch and `testbed power` reads of its pilot. Scenarios are
served by the run store into a scratch folder (the store keeps what was trained; the folder
goes), run directories are read where they are."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from testbed.analysis.outcomes import RunData, outcomes
from testbed.comparison.inputs import Entry, with_seeds
from testbed.comparison.runner import slug
from testbed.rundir.reader import Run
from testbed.store.serve import serve


def outcomes_of(
    entries: list[Entry], seeds: list[int], *, store=None, progress: Callable | None = None, threads: int | None = None, note: str = ""
) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    """(label -> metric key -> (S,) values over `seeds`, the value standing for "never reached"
    of time metrics). `note` is added to each training's progress label."""
    per_seed, last_epoch = {}, 0
    with tempfile.TemporaryDirectory(prefix="testbed-seeds-") as scratch:
        for i, e in enumerate(entries, 1):
            if e.run_dir is not None:
                data = RunData.of(Run(e.run_dir), seeds)
            else:
                where = Path(scratch) / slug(e.label)
                label = f"[{i}/{len(entries)}] {e.label} ({len(seeds)} seeds{note})"
                served = serve(with_seeds(e.scenario, seeds), where, store=store, progress=progress, label=label, threads=threads)
                data = RunData.of(served.run, seeds)
            per_seed[e.label] = outcomes(data)
            last_epoch = max(last_epoch, data.total_epochs)
    return per_seed, float(last_epoch + 1)
