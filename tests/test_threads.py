"""The thread policy: few seeds train on one thread, many on every core, a request or the user's
OMP_NUM_THREADS wins, the caller's torch setting is restored, and run.json records what ran."""

from __future__ import annotations

import json
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


def test_openmp_threads_sleep_only_when_other_processes_keep_a_core_busy():
    from testbed.cli import BUSY_CORES, openmp_wait_policy

    assert openmp_wait_policy(False, None, busy=BUSY_CORES + 0.5) == "PASSIVE"
    assert openmp_wait_policy(False, None, busy=0.0) is None  # idle: OpenMP's own (spinning) default
    assert openmp_wait_policy(True, None, busy=2.0) is None  # torch loaded: too late to matter
    assert openmp_wait_policy(False, "ACTIVE", busy=2.0) is None  # the user's setting wins


def test_busy_cores_sees_a_process_that_keeps_a_core_busy():
    from testbed.cli import busy_cores

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        seen = busy_cores(interval=0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert seen >= 0.6  # one core's worth, give or take the scheduler


def _write(tmp_path):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path
