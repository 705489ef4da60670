"""Importing testbed, and drawing with it, leaves the caller's process as it found it.

A notebook user who picked a matplotlib backend, tuned rcParams or set torch's thread count
must get all of it back after `import testbed` and after rendering a frame, a video or a
comparison report. Checked in a fresh interpreter that first sets a non-Agg backend, an
rcParam and a thread count of its own, then imports every module of testbed and of the
built-in plugins, then draws.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli

CHECK = r'''
import hashlib, importlib, io, json, logging, os, pkgutil, signal, sys, warnings
from pathlib import Path

import matplotlib
matplotlib.use("pdf")  # the caller's choice: not Agg
matplotlib.rcParams["lines.linewidth"] = 2.75  # and a setting of the caller's own
import numpy as np
import torch
torch.set_num_threads(3)
# Libraries' own import-time settings are theirs, not testbed's: scipy adds warning filters
# when first imported, so it is imported before the "before" state is taken.
import scipy.stats

run_a, run_b, work, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def state() -> dict:
    return {
        "matplotlib backend": matplotlib.get_backend(),
        "matplotlib rcParams": {k: repr(v) for k, v in matplotlib.rcParams.items()},
        "pyplot imported": "matplotlib.pyplot" in sys.modules,
        "torch threads": torch.get_num_threads(),
        "torch interop threads": torch.get_num_interop_threads(),
        "torch default dtype": str(torch.get_default_dtype()),
        "torch default device": str(torch.get_default_device()),
        "torch grad enabled": torch.is_grad_enabled(),
        "torch deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "torch global generator": digest(torch.random.get_rng_state().numpy().tobytes()),
        "numpy errors": np.geterr(),
        "numpy print options": repr(np.get_printoptions()),
        "numpy global generator": digest(np.random.get_state()[1].tobytes()),
        "warnings filters": repr(warnings.filters),
        "environment": dict(os.environ),
        "working directory": os.getcwd(),
        "logging root": repr((logging.root.level, logging.root.handlers)),
        "excepthook": repr(sys.excepthook),
        "SIGINT handler": repr(signal.getsignal(signal.SIGINT)),
    }


def changes(before: dict, after: dict) -> dict:
    out = {}
    for key in before:
        if before[key] != after[key]:
            if isinstance(before[key], dict):
                keys = sorted(k for k in before[key].keys() | after[key].keys() if before[key].get(k) != after[key].get(k))
                out[key] = {k: [before[key].get(k), after[key].get(k)] for k in keys}
            else:
                out[key] = [before[key], after[key]]
    return out


start = state()
report = {"backend before": start["matplotlib backend"], "threads before": start["torch threads"]}
if mode == "inject":  # what testbed used to do at import: the check must see it
    matplotlib.use("Agg")
    torch.set_num_threads(1)
    report["after import"] = changes(start, state())
else:
    import testbed
    import testbed_plugins

    imported = []
    for package in (testbed, testbed_plugins):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
    report["imported"] = imported
    report["after import"] = changes(start, state())

    from rich.console import Console
    from testbed.render.command import render

    quiet = Console(file=io.StringIO())
    written = render(run_a, epoch=2, seed=1, out=work / "frame.png", console=quiet)
    written += render(run_a, seed=1, video=True, out=work / "video.mp4", console=quiet, quiet=True)
    report["after rendering"] = changes(start, state())

    # the comparison's figures, drawn by the command as the console script runs it
    from testbed.cli import main

    sys.argv = ["testbed", "compare", str(run_a), str(run_b), "--out", str(work / "report"), "--quiet"]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    report["compare exit status"] = code
    report["written"] = [str(p) for p in written] + sorted(str(p) for p in (work / "report" / "figures").glob("*.png"))
    after = changes(start, state())
    after.pop("excepthook", None)  # typer's, installed by any in-process call of the console script's main()
    report["after comparing"] = after
(work / "state.json").write_text(json.dumps(report, default=repr))
'''


def check(runs: tuple[Path, Path], work: Path, mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHECK, str(runs[0]), str(runs[1]), str(work), mode],
                          capture_output=True, text=True, cwd=work, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads((work / "state.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny trained runs with snapshots at epochs 0, 2, 4, to draw and to compare."""
    root = tmp_path_factory.mktemp("global_state")
    out = []
    for name, norm in (("tiny", "rms"), ("tiny_smooth", "smooth")):
        scenario = root / f"{name}.yaml"
        scenario.write_text(yaml.safe_dump(TINY | {"name": name, "model": {"hidden": 8, "norm": norm}}))
        proc = cli("run", str(scenario), "--out", str(root / name), "--quiet")
        assert proc.returncode == 0, proc.stderr
        out.append(root / name)
    return out[0], out[1]


def test_the_check_sees_a_switched_backend_and_thread_count(runs, tmp_path):
    report = check(runs, tmp_path, "inject")
    assert [b.lower() for b in report["after import"]["matplotlib backend"]] == ["pdf", "agg"]
    assert report["after import"]["torch threads"] == [3, 1]


def test_importing_every_module_and_drawing_change_nothing(runs, tmp_path):
    report = check(runs, tmp_path, "import-and-draw")
    assert report["backend before"] == "pdf" and report["threads before"] == 3
    assert "testbed.render.figure" in report["imported"] and "testbed_plugins.panels.loss" in report["imported"]
    assert report["after import"] == {}
    assert report["compare exit status"] == 0
    written = [Path(p) for p in report["written"]]
    assert [p.name for p in written[:2]] == ["frame.png", "video.mp4"]
    assert {"loss.png", "accuracy.png", "spike_raster.png", "distributions.png"} <= {p.name for p in written}
    for path in written:
        head = path.read_bytes()[:12]
        assert head.startswith(b"\x89PNG") or head[4:8] == b"ftyp", path
    assert report["after rendering"] == {}
    assert report["after comparing"] == {}
