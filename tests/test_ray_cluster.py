"""The Ray executor and clusters: `--executor ray` alone always starts its own instance (never
the cluster a variable or a stale record names), and `--address` joins a cluster started apart
with `ray start --head` under Ray's default token authentication, or says what to do."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY, cli

pytest.importorskip("ray")
# One xdist worker runs every Ray test in turn: two Ray instances starting at once on two cores
# have timed out waiting for their GCS.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def study(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**TINY, "seeds": "0-1", "probes": ["metrics"]}))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"name": "st", "scenarios": ["tiny.yaml"], "axes": {"model.hidden": [4, 8]}}))
    return path


@pytest.fixture
def ray_home(monkeypatch):
    """A home and a Ray temporary folder of the test's own (short: Ray's sockets live there), so
    that neither a token nor a cluster record of the machine's user is used or changed; and no
    authentication setting inherited (a Ray started in this process sets RAY_AUTH_MODE)."""
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    home = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    (home / "tmp").mkdir()
    yield home
    shutil.rmtree(home, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_local_executor_starts_its_own_instance_whatever_the_machine_recorded(study, tmp_path, ray_home):
    """A stale `ray start` record and RAY_ADDRESS once made it hang, or join someone's cluster."""
    (ray_home / "tmp" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    env = {"HOME": str(ray_home), "RAY_TMPDIR": str(ray_home / "tmp"), "RAY_ADDRESS": "127.0.0.1:1"}
    proc = cli("sweep", str(study), "-q", "--executor", "ray", "--out", str(tmp_path / "sw"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sw" / "sweep.csv").is_file()


def test_a_sweep_joins_a_head_started_apart_with_token_authentication(study, tmp_path, ray_home):
    (ray_home / ".ray").mkdir()
    (ray_home / ".ray" / "auth_token").write_text(secrets.token_hex(16))  # what `ray get-auth-token --generate` leaves
    port = _free_port()
    env = dict(os.environ, HOME=str(ray_home), RAY_TMPDIR=str(ray_home / "tmp"))
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--include-dashboard", "false", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        for line in head.stdout:  # the head says when it is up
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail(f"ray start --head ended: {head.wait()}")
        address = f"127.0.0.1:{port}"
        joined = cli("sweep", str(study), "-q", "--executor", "ray", "--address", address, "--out", str(tmp_path / "sw"), env=env)
        assert joined.returncode == 0, joined.stderr
        assert cli("sweep", str(study), "-q", "--store", str(tmp_path / "other"), "--out", str(tmp_path / "local")).returncode == 0
        assert (tmp_path / "sw" / "sweep.csv").read_bytes() == (tmp_path / "local" / "sweep.csv").read_bytes()
        stranger = tmp_path / "stranger"  # a home without the cluster's token
        stranger.mkdir()
        refused = cli("sweep", str(study), "-q", "--executor", "ray", "--address", address, "--store", str(tmp_path / "s3"),
                      env={**env, "HOME": str(stranger), "RAY_gcs_rpc_server_reconnect_timeout_s": "3"})
        assert refused.returncode == 2
        line = refused.stderr.splitlines()[-1]
        assert [x for x in refused.stderr.splitlines() if x.startswith("error:")] == [line]
        assert line.startswith(f"error: --address {address}: cannot start or join Ray (")
        assert line.endswith("or RAY_AUTH_MODE=disabled on both sides; a head on this machine is reached at the address it advertises: "
                             "start it with --node-ip-address 127.0.0.1")
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the head and the processes it started, by the group this test made (SIGTERM: 33 s of shutdown)
        head.wait(timeout=60)


def test_sigterm_stops_a_ray_sweep_like_ctrl_c_and_the_same_command_goes_on(tmp_path, ray_home):
    """A Ray sweep once died of SIGTERM with exit status 134 and a crash dump (ray.init installs
    its own handler)."""
    from test_store_faults import Gated

    gated = Gated(tmp_path)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "st", "scenarios": [str(gated.scenario)], "axes": {"model.hidden": [4, 8]}}))
    gated.env.update({"HOME": str(ray_home), "RAY_TMPDIR": str(ray_home / "tmp")})
    args = ("--executor", "ray", "--out", str(tmp_path / "sw"))
    proc = gated.start(*args, command="sweep", target=study)
    while not any(gated.folder.glob("reached-*")):  # a Ray worker holds at the gate
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.splitlines()[-1] == (
        f"terminated (SIGTERM); 0 of 2 runs to train had finished and are in the run store {tmp_path / 'store'}; "
        "the same command again trains only the rest"
    )
    gated.open()
    again = gated.cli("sweep", str(study), "-q", "--store", str(tmp_path / "store"), *args)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "sw" / "sweep.csv").is_file()
