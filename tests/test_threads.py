"""The thread policy: few seeds train on one thread, many on every core, a request or the user's
OMP_NUM_THREADS wins, the caller's torch setting is restored, and run.json records what ran."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TINY

import testbed
from testbed.engine import threads


@pytest.fixture
def no_omp_env(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_few_seeds_get_one_thread_many_get_every_core(no_omp_env):
    assert threads.choose(1) == 1
    assert threads.choose(threads.FEW_SEEDS - 1) == 1
    assert threads.choose(threads.FEW_SEEDS) == threads.available_cores()
    assert threads.choose(1000, requested=3) == 3


def test_the_users_omp_num_threads_is_respected(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.choose(1000) == torch.get_num_threads()


def test_a_run_restores_the_callers_threads_and_records_its_own(tmp_path, no_omp_env):
    before = torch.get_num_threads()
    run = testbed.run(testbed.load_scenario(_write(tmp_path)), out=tmp_path / "run", threads=1)
    assert torch.get_num_threads() == before
    assert json.loads((tmp_path / "run" / "run.json").read_text())["threads"] == 1
    assert run.provenance["threads"] == 1


def test_the_console_script_asks_openmp_to_wait_passively_before_torch_loads():
    code = "import os, testbed.cli as c; c._openmp_waits_passively(); print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "PASSIVE"
    loaded = "import torch, os, testbed.cli as c; c._openmp_waits_passively(); print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", loaded], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "None"  # too late to matter once torch is loaded: left alone
    mine = subprocess.run([sys.executable, "-c", code], env=dict(env, OMP_WAIT_POLICY="ACTIVE"), capture_output=True, text=True, check=True)
    assert mine.stdout.strip() == "ACTIVE"


def _write(tmp_path):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path
