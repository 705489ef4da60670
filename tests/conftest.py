"""Shared helpers: the real `testbed` entry point and tiny scenarios that train in a second."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

TESTBED = str(Path(sys.executable).with_name("testbed"))

TINY = {
    "name": "tiny",
    "task": {"seq_len": 6, "sparsity": 3, "p": 2, "n_train": 48, "n_test": 32},
    "model": {"hidden": 8},
    "training": {"epochs": 4, "batch_size": 16},
    "probes": ["metrics", "step_loss", "spikes", {"name": "snapshots", "every": 2}],
    "seeds": "0-2",
}


# A third-party norm package as its author would write it (the README's example), for the tests
# of entry points and of broken plugin packages.
CLIPPED_RMS_PACKAGE = '''
from pydantic import Field
from testbed.plugin_api import Norm, Params, hookimpl, plugin

class ClipParams(Params):
    limit: float = Field(2.0, gt=0)

class ClippedRMS(Norm):
    def __init__(self, limit):
        self.limit = limit

    def __call__(self, x):
        return (x / (x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-5)).clamp(-self.limit, self.limit)

@plugin("clipped_rms", ClipParams)
def clipped_rms(params):
    """RMS norm of x, with the output clamped coordinatewise."""
    return ClippedRMS(params.limit)

@hookimpl
def testbed_norms():
    return [clipped_rms]
'''


def pytest_configure(config):
    """Before any fixture (session-scoped ones train too): a run store outside the checkout."""
    import tempfile

    os.environ["TESTBED_STORE"] = config._testbed_store = tempfile.mkdtemp(prefix="testbed-test-store-")


def pytest_unconfigure(config):
    import shutil

    shutil.rmtree(getattr(config, "_testbed_store", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def own_run_store(tmp_path_factory, monkeypatch):
    """Each test trains into a run store of its own (a shared one would serve one test's runs to
    the next): $TESTBED_STORE, which the API and the command line (run in a subprocess or
    here) read."""
    monkeypatch.setenv("TESTBED_STORE", str(tmp_path_factory.mktemp("store")))


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def one_and_two_threads(request):
    """Each test twice, with 1 and 2 intra-op threads: bit-identity must hold whatever the
    number of threads (the caller's setting is given back)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def assert_npz_equal(want_path: Path, got_path: Path) -> None:
    """The same arrays under the same names in two .npz files (their zip containers may differ)."""
    import numpy as np

    with np.load(want_path) as want, np.load(got_path) as got:
        assert sorted(got.files) == sorted(want.files), got_path
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{got_path.name}:{key}")


def cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `testbed` console script."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([TESTBED, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def third_party_package(root: Path, module: str, source: str, dist: str, version: str, entry_point: str = "acme") -> dict[str, str]:
    """Lay out an installed package testbed has never heard of: a module under `root` and its
    dist-info with an entry point in the `testbed.plugins` group (packages installed side by
    side need different entry-point names). Returns the environment in which the console
    script finds it."""
    site = root / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[testbed.plugins]\n{entry_point} = {module}\n")
    return {"PYTHONPATH": str(site)}


def cli_here(*args: str) -> subprocess.CompletedProcess:
    """Run the command line in this process (no interpreter start-up, no torch import): the
    same `main()` the console script calls, with its exit status and captured output."""
    from testbed.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["testbed", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(["testbed", *args], code, out.getvalue(), err.getvalue())


def scenario_file(folder: Path, data: dict) -> Path:
    """Write scenario `data` as `<folder>/<name>.yaml` (for module-scoped fixtures, which have no tmp_path)."""
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def write_scenario(tmp_path: Path):
    def write(data: dict | str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return write
