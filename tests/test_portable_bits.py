"""The same bits on every x86-64 CPU: short scenarios covering every built-in norm,
activation and optimizer (tests/portable_bits_worker.py) are trained under each kernel
selection one machine can emulate, and every seed's step losses, snapshots and evaluations
must be the very bytes of the plain run:

- MKL's code paths (`MKL_CBWR`): the BLAS a matrix product used to go to;
- ATen's kernels (`ATEN_CPU_CAPABILITY` default / avx2 / avx512): the scalar build is what a
  CPU without AVX2 and, for the multiply-adds it does not fuse, an ARM CPU runs;
- oneDNN's JIT code (`ONEDNN_MAX_CPU_ISA` AVX2 / AVX-512), where torch's GELU used to go;
- one and two threads; a seed alone, among two, and among 300.

`test_the_emulation_changes_torchs_own_kernels` shows the settings bite on this machine: under
them torch's own bmm, GELU and log_softmax (what the CPU path computed with before) give other
bits, and so do the scalar build's float32 randn and uniform_(a, b) (what initialised the
weights before), so the invariance above is not vacuous. Where this CPU cannot emulate a setting (no
AVX-512, another BLAS) that check says so and skips it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("portable_bits_worker.py")
KERNEL_SELECTIONS = {
    "two-threads": ({}, 2),
    "mkl-compatible": ({"MKL_CBWR": "COMPATIBLE"}, 1),
    "mkl-avx2": ({"MKL_CBWR": "AVX2"}, 1),
    "mkl-avx512": ({"MKL_CBWR": "AVX512"}, 1),
    "aten-default": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
    "aten-avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, 1),
    "aten-avx512": ({"ATEN_CPU_CAPABILITY": "avx512"}, 1),
    "onednn-avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1),
    "onednn-avx512": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, 1),
}
SETTINGS = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def _env(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return env | settings


def digests(out: Path, settings: dict[str, str], threads: int, seeds: str, *variants: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out), str(threads), seeds, *variants],
        capture_output=True, text=True, env=_env(settings), timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """Seeds 0 and 7, one thread, no setting: what every other run must reproduce."""
    return digests(tmp_path_factory.mktemp("plain"), {}, 1, "0,7")


@pytest.mark.parametrize("selection", list(KERNEL_SELECTIONS))
def test_every_kernel_selection_gives_the_same_bytes(selection, plain_run, tmp_path):
    settings, threads = KERNEL_SELECTIONS[selection]
    got = digests(tmp_path, settings, threads, "0,7")
    differing = [(v, s, k) for v in plain_run for s in plain_run[v] for k in plain_run[v][s] if got[v][s][k] != plain_run[v][s][k]]
    assert not differing, f"{selection}: other bits in {differing}"


def test_a_seed_gives_the_same_bytes_alone_and_among_300(plain_run, tmp_path):
    variant = "smooth-gelu-adam"
    among = digests(tmp_path / "among", {}, 2, "0-299", variant)[variant]
    alone = digests(tmp_path / "alone", {}, 1, "7", variant)[variant]
    assert among["0"] == plain_run[variant]["0"]
    assert among["7"] == plain_run[variant]["7"] == alone["7"]


TORCH_KERNELS = """
import hashlib, json, torch
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
a, b, x = torch.randn(64, 32, 2, generator=g), torch.randn(64, 2, 32, generator=g), torch.randn(64, 333, generator=g)  # (N, d) @ (d, h): the old step's fc1
out = {"bmm": torch.bmm(a, b), "gelu": torch.nn.functional.gelu(x), "log_softmax": torch.log_softmax(x, -1),
       "randn": torch.randn(1000, generator=torch.Generator().manual_seed(1)),  # what initialised the embeddings
       "uniform": torch.empty(1000).uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(2))}  # and the linear maps
print(json.dumps({k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in out.items()}))
"""


def _torch_kernels(settings: dict[str, str]) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", TORCH_KERNELS], capture_output=True, text=True, env=_env(settings), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def test_the_emulation_changes_torchs_own_kernels():
    import torch

    if "BLAS_INFO=mkl" not in torch.__config__.show() or "avx512f" not in _cpu_flags():
        pytest.skip("needs torch with MKL on a CPU with AVX-512 to emulate the kernel selections of other CPUs")
    avx512 = _torch_kernels({})
    checks = {
        "MKL_CBWR=COMPATIBLE changes torch.bmm": _torch_kernels({"MKL_CBWR": "COMPATIBLE"})["bmm"] != avx512["bmm"],
        "ATEN_CPU_CAPABILITY=avx2 changes log_softmax": _torch_kernels({"ATEN_CPU_CAPABILITY": "avx2"})["log_softmax"] != avx512["log_softmax"],
        "ONEDNN_MAX_CPU_ISA=AVX2 changes GELU": _torch_kernels({"ONEDNN_MAX_CPU_ISA": "AVX2"})["gelu"] != avx512["gelu"],
    }
    scalar = _torch_kernels({"ATEN_CPU_CAPABILITY": "default"})
    checks["ATEN_CPU_CAPABILITY=default changes float32 randn"] = scalar["randn"] != avx512["randn"]
    checks["ATEN_CPU_CAPABILITY=default changes uniform_(-0.3, 0.3)"] = scalar["uniform"] != avx512["uniform"]
    assert all(checks.values()), checks
