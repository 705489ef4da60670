"""`testbed view` without a browser: what it serves, what it refuses (paths out of the given
directories), that it never writes into a run, its frames being `render`'s, and the run still
training read from its checkpoint."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, cli_here, scenario_file

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from testbed import api  # noqa: E402
from testbed.errors import Interrupted  # noqa: E402
from testbed.rundir.reader import Run  # noqa: E402
from testbed.view.server import Background, is_loopback  # noqa: E402

SCENARIO = {**TINY, "name": "tiny_view", "training": {"epochs": 6, "batch_size": 16}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("view")
    out = root / "runs" / "tiny"
    api.run(scenario_file(root, SCENARIO), out=out, store=False)
    (out / "render").mkdir()
    (out / "render" / "note.txt").write_text("a file of the run\n")
    return out


@pytest.fixture(scope="module")
def served(run_dir):
    app = Background([run_dir])
    yield app
    app.stop()


def get(app: Background, path: str) -> tuple[int, bytes, dict]:
    """A raw request: `path` goes out as written (no client-side normalisation of `..`)."""
    host, port = app.sock.getsockname()[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()} | {
        "(folders)": ",".join(str(p.relative_to(folder)) for p in sorted(folder.rglob("*")) if p.is_dir())}


def test_files_inside_the_given_directory_are_served_and_nothing_outside(served, run_dir):
    status, body, _ = get(served, "/files/0/render/note.txt")
    assert (status, body) == (200, b"a file of the run\n")
    secret = run_dir.parent / "secret.txt"
    secret.write_text("not the viewer's\n")
    (run_dir / "link").symlink_to(secret)
    for path in ("/files/0/../secret.txt", "/files/0/%2e%2e/secret.txt", "/files/0/render/../../secret.txt", "/files/0//etc/passwd",
                 "/files/0/%2Fetc%2Fpasswd", "/files/0/link", "/files/1/render/note.txt", "/files/0/", "/files/0/render",
                 "/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        status, body, _ = get(served, path)
        assert status == 404, (path, status, body[:100])
        assert b"not the viewer" not in body and b"root:" not in body and b"Starlette" not in body


def test_a_run_its_seeds_curves_and_frames(served, run_dir):
    status, body, _ = get(served, "/api/run/0")
    run = json.loads(body)
    assert status == 200 and run["kind"] == "run" and [r["seed"] for r in run["seeds"]] == [0, 1, 2]
    assert run["epochs"] == [int(e) for e in Run(run_dir).snapshots.epochs]
    summary = Run(run_dir).summary
    assert [r["test_acc"] for r in run["seeds"]] == pytest.approx(summary["test_acc"].tolist())
    curves = json.loads(get(served, "/api/run/0/curves/1")[1])
    m = Run(run_dir).metrics
    assert curves["test_loss"] == pytest.approx(m[m["seed"] == 1].sort_values("epoch")["test_loss"].tolist())
    first = get(served, "/api/run/0/frame/1/0.png")
    last = get(served, f"/api/run/0/frame/1/{len(run['epochs']) - 1}.png")
    assert first[0] == last[0] == 200 and first[1][:8] == b"\x89PNG\r\n\x1a\n" and first[1] != last[1]
    assert first[2]["x-epoch"] == "0" and last[2]["x-epoch"] == str(run["epochs"][-1])
    svg = get(served, "/api/run/0/frame/1/0.svg")
    assert svg[0] == 200 and b"<svg" in svg[1][:1000] and "attachment" in svg[2]["content-disposition"]
    assert get(served, "/api/run/0/frame/1/999.png")[0] == 404
    assert get(served, "/api/run/7")[0] == 404


def test_a_frame_is_the_frame_render_draws(served, run_dir, tmp_path):
    """The viewer's frame of an epoch shows what `testbed render --epoch` shows, by the same
    panels: the same size, and pixels close (the viewer fits each panel's view to the whole
    run, as a video does, so the axes may differ slightly)."""
    from PIL import Image

    from testbed.render.command import render

    run = json.loads(get(served, "/api/run/0")[1])
    i = len(run["epochs"]) // 2
    out = tmp_path / "frame.png"
    render(run_dir, epoch=run["epochs"][i], seed=2, out=out, dpi=60, quiet=True)
    import io

    ours = np.asarray(Image.open(io.BytesIO(get(served, f"/api/run/0/frame/2/{i}.png")[1])).convert("RGB"), dtype=float)
    theirs = np.asarray(Image.open(out).convert("RGB"), dtype=float)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).mean() < 12  # an unrelated frame of another epoch or seed differs far more


def test_viewing_never_writes_into_the_run(run_dir):
    before = checksums(run_dir)
    app = Background([run_dir], panels=["seq_emb", "xi_field", "loss"])  # what is written does not depend on the panels
    try:
        run = json.loads(get(app, "/api/run/0")[1])
        for seed in (0, 2):
            for i in range(len(run["epochs"])):
                assert get(app, f"/api/run/0/frame/{seed}/{i}.png")[0] == 200
            assert get(app, f"/api/run/0/frame/{seed}/1.svg")[0] == 200
            assert get(app, f"/api/run/0/curves/{seed}")[0] == 200
        assert get(app, "/api/sources")[0] == 200
    finally:
        app.stop()
    assert checksums(run_dir) == before


def test_a_run_still_training_shows_the_evaluations_of_its_checkpoint(tmp_path):
    """A real training stopped at epoch 3 leaves its staging folder and checkpoint, as one
    still training does: the viewer reads the evaluations so far, the very ones the finished
    run writes to metrics.csv."""
    scenario = scenario_file(tmp_path, {**SCENARIO, "name": "tiny_live"})
    out = tmp_path / "runs" / "live"

    def stop_at_3(event):
        if event.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        api.run(scenario, out=out, store=False, checkpoint_every=1, progress=stop_at_3)
    stage = out.parent / ".live.partial"
    assert not out.exists() and (stage / "checkpoint.pt").is_file()
    app = Background([out])
    try:
        run = json.loads(get(app, "/api/run/0")[1])
        assert run["kind"] == "live" and run["epochs"] == [] and [r["seed"] for r in run["seeds"]] == [0, 1, 2]
        curves = json.loads(get(app, "/api/run/0/curves/2")[1])
        assert curves["epoch"] and curves["epoch"][-1] <= 3
        finished = api.run(scenario, out=tmp_path / "whole", store=False)
        m = finished.metrics[(finished.metrics["seed"] == 2) & finished.metrics["epoch"].isin(curves["epoch"])].sort_values("epoch")
        assert curves["test_loss"] == pytest.approx(m["test_loss"].tolist(), rel=1e-5)
        shutil.copytree(finished.path, out)  # the run lands: the same id shows the finished run
        assert json.loads(get(app, "/api/run/0")[1])["kind"] == "run"
    finally:
        app.stop()


def test_loopback_unless_told_otherwise():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_bad_paths_are_refused_with_one_line(tmp_path, run_dir):
    r = cli_here("view", str(tmp_path / "nothing"), "--no-browser", "--port", "0")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nothing" in r.stderr, r.stderr
    r = cli_here("view", str(run_dir), "--no-browser", "--port", "0", "--panels", "seq_emb,no_such_panel")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no_such_panel" in r.stderr, r.stderr


# A panel from a package testbed has never heard of, installed through the entry-point group.
ACME_PANEL = '''
import numpy as np
from testbed.plugin_api.base import Params, plugin
from testbed.plugin_api.hookspecs import hookimpl
from testbed.plugin_api.panel import Panel


class Radius(Panel):
    title, geometric = "radius of xi", False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        self.bars = ax.bar(np.arange(len(q.sentences.labels)), np.zeros(len(q.sentences.labels)))
        self.keep(*self.bars)
        ax.set_ylim(0, 5)

    def update(self, q, i):
        for bar, r in zip(self.bars, np.linalg.norm(q.trace["xi"][i], axis=1)):
            bar.set_height(r)


@plugin("xi_radius")
def xi_radius(params: Params):
    """Distance of each probe sentence's xi from the origin."""
    return Radius(params)


@hookimpl
def testbed_panels():
    return [xi_radius]
'''


@pytest.mark.subprocess
def test_the_command_prints_its_address_and_serves_a_third_partys_panel(run_dir, tmp_path):
    import os
    import subprocess
    import time

    from conftest import TESTBED, third_party_package

    env = dict(os.environ, **third_party_package(tmp_path, "acme_radius", ACME_PANEL, "acme-radius", "0.1"))
    proc = subprocess.Popen([TESTBED, "view", str(run_dir), "--port", "0", "--no-browser", "--host", "0.0.0.0", "--panels", "xi_radius,seq_emb"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.startswith("testbed view: http://0.0.0.0:"), line
        port = int(line.split(":")[3].split("/")[0])
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/api/run/0")
                response = conn.getresponse()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
        assert response.status == 200 and json.loads(response.read())["name"] == "tiny_view"
        conn.request("GET", "/api/run/0/frame/0/1.png")
        frame = conn.getresponse()
        assert frame.status == 200 and frame.read()[:4] == b"\x89PNG"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "warning: --host 0.0.0.0" in err


def test_export_refuses_a_folder_in_use_and_writes_nothing_on_bad_input(run_dir, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("mine\n")
    r = cli_here("view", str(run_dir), "--export", str(used))
    assert r.returncode == 2 and "--export" in r.stderr and (used / "x").read_text() == "mine\n"
    r = cli_here("view", str(run_dir), "--export", str(tmp_path / "e"), "--epochs", "90-99")
    assert r.returncode == 2 and "no snapshot in epochs 90-99" in r.stderr and not (tmp_path / "e").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["used"]  # no staging folder left
    r = cli_here("view", str(run_dir), "--seed", "1")
    assert r.returncode == 2 and "--export" in r.stderr


def test_alone_it_lists_runs_and_the_run_store(tmp_path, monkeypatch):
    """`testbed view` with no path: the runs under runs/ and the run store's shards, named by
    their scenario (a store entry's folder is a digest)."""
    from testbed.view.server import default_paths

    monkeypatch.chdir(tmp_path)
    file = scenario_file(tmp_path, {**SCENARIO, "name": "tiny_listed"})
    api.run(file, out="runs/mine")  # through the run store ($TESTBED_STORE, outside runs/)
    paths = default_paths()
    assert [str(p) for p in paths[:1]] == ["runs"] and len(paths) == 2
    app = Background(paths)
    try:
        listed = json.loads(get(app, "/api/sources")[1])["sources"]
    finally:
        app.stop()
    runs = [s["label"] for s in listed if s["kind"] == "run"]
    assert "mine" in runs and any(label.startswith("tiny_listed seeds-0-2 (run store ") for label in runs), runs
