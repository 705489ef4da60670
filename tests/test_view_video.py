"""Videos of a chosen epoch range at a chosen frame rate (`testbed render --video --epochs
A-B[:STEP] --fps N`), counted by frames and duration as ffmpeg reads them back."""

from __future__ import annotations

import copy

import imageio_ffmpeg
import numpy as np
import pytest
import yaml
from conftest import TINY, cli_here

from testbed import api
from testbed.render.video import default_fps

PANELS = "seq_emb,loss"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    data = copy.deepcopy(TINY) | {"name": "tiny_video", "training": {"epochs": 6, "batch_size": 16}, "seeds": "0"}
    data["probes"] = ["metrics", "step_loss", {"name": "snapshots", "every": 1}]
    (root / "tiny.yaml").write_text(yaml.safe_dump(data))
    return api.run(root / "tiny.yaml", out=root / "run", store=False).path


def frames_and_seconds(path) -> tuple[int, float]:
    return imageio_ffmpeg.count_frames_and_secs(str(path))


def test_an_epoch_range_at_a_frame_rate(run_dir, tmp_path):
    out = tmp_path / "range.mp4"
    proc = cli_here("render", str(run_dir), "--video", "--epochs", "2-5", "--fps", "2", "--panels", PANELS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    frames, seconds = frames_and_seconds(out)
    assert frames == 4 and seconds == pytest.approx(2.0, abs=0.1)  # epochs 2, 3, 4, 5 at 2 frames a second
    stepped = tmp_path / "stepped.mp4"
    proc = cli_here("render", str(run_dir), "--video", "--epochs", "0-6:3", "--fps", "3", "--panels", PANELS, "--out", str(stepped))
    assert proc.returncode == 0, proc.stderr
    assert frames_and_seconds(stepped) == (3, pytest.approx(1.0, abs=0.1))  # epochs 0, 3, 6


def test_the_default_rate_plays_1000_epochs_in_about_30_seconds():
    for every in (1, 2, 10):
        epochs = np.arange(0, 1001, every)
        assert len(epochs) / default_fps(epochs) == pytest.approx(30, rel=0.02)
    assert default_fps(np.linspace(0, 10, 1001)) == 60  # at most 60 frames a second
    assert default_fps(np.array([0, 1000])) == 1  # at least one


@pytest.mark.parametrize("args, says", [
    (["--epochs", "5-2"], "--epochs '5-2'"),
    (["--epochs", "0-6:0"], "--epochs '0-6:0'"),
    (["--epochs", "100-200"], "no snapshot in epochs 100-200"),
    (["--fps", "0"], "--fps 0"),
])
def test_bad_ranges_and_rates_are_refused(run_dir, tmp_path, args, says):
    r = cli_here("render", str(run_dir), "--video", *args, "--out", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_fps_and_epochs_go_with_video(run_dir, tmp_path):
    r = cli_here("render", str(run_dir), "--fps", "10", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "--fps" in r.stderr and "--video" in r.stderr, r.stderr
