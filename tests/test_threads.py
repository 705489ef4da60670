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


def _not_sampled() -> float:
    raise AssertionError("the load was sampled although nothing could use it")


@pytest.mark.parametrize(
    "argv, environ, modules, busy, wanted",
    [
        (["run", "a.yaml"], {}, set(), lambda: 1.5, "PASSIVE"),  # another process keeps a core busy: threads sleep
        (["--debug", "compare", "a.yaml", "b.yaml"], {}, set(), lambda: 1.5, "PASSIVE"),  # global options before the command
        (["run", "a.yaml"], {}, set(), lambda: 0.0, None),  # idle: OpenMP's own (spinning) default
        (["run", "a.yaml"], {"OMP_WAIT_POLICY": "ACTIVE"}, set(), _not_sampled, "ACTIVE"),  # the user's setting wins
        (["run", "a.yaml"], {}, {"torch"}, _not_sampled, None),  # torch loaded: too late to matter
        (["validate", "a.yaml"], {}, set(), _not_sampled, None),  # trains nothing: no 0.1 s sample
        (["--help"], {}, set(), _not_sampled, None),
    ],
)
def test_openmp_threads_sleep_only_when_other_processes_keep_a_core_busy(argv, environ, modules, busy, wanted):
    from testbed.cli import _choose_openmp_wait_policy

    _choose_openmp_wait_policy(argv, environ, modules, busy)
    assert environ.get("OMP_WAIT_POLICY") == wanted


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
