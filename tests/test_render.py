"""`testbed render` and what it builds on: panels as plugins (built-in and from a third-party
entry point), probe sentences and colours, frames in every format, videos, spike figures, the
step-level weights kept around spikes, the idealized circuit, and bad input.

The command line runs as users type it: from a working directory of its own, with relative
paths (a relative --out once broke every video)."""

from __future__ import annotations

import copy
import itertools
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import TINY, cli, third_party_package
from hypothesis import given, settings
from hypothesis import strategies as st

import testbed
from testbed.engine.model import Architecture, ParamSpace, forward, pair_index
from testbed.plugin_api.registry import default_registry
from testbed.render import rundata, sentences, style
from testbed.render.figure import DEFAULT_PANELS, parse_grid
from testbed.render.quantities import snapshot_quantities

RENDER_TINY = copy.deepcopy(TINY) | {
    "probes": ["metrics", "step_loss", "spikes", {"name": "snapshots", "every": 2, "spike_steps": True}],
    "seeds": "0-1",
}


def rel(path: Path, cwd: Path) -> str:
    """`path` as typed from `cwd`: relative, with .. where needed."""
    return os.path.relpath(path, cwd)


def frame_count(video: Path) -> int:
    import imageio.v2 as imageio
    import imageio.v3 as iio

    if video.suffix == ".gif":
        return iio.imread(video, index=None).shape[0]
    with imageio.get_reader(video) as reader:
        return reader.count_frames()


def assert_user_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny run: 2 seeds, 4 epochs, snapshots at epochs 0, 2, 4."""
    root = tmp_path_factory.mktemp("render")
    (root / "tiny.yaml").write_text(yaml.safe_dump(RENDER_TINY))
    proc = cli("run", "tiny.yaml", "--out", "run", "--quiet", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root / "run"


def test_every_default_panel_is_a_registered_plugin():
    names = default_registry().names("panel")
    assert set(DEFAULT_PANELS) <= set(names)
    assert len(DEFAULT_PANELS) == len(set(DEFAULT_PANELS)) == 20


def test_frame_in_png_pdf_and_svg(run_dir, tmp_path):
    heads = {".png": b"\x89PNG", ".pdf": b"%PDF", ".svg": b"<?xml"}
    for ext, head in heads.items():
        proc = cli("render", rel(run_dir, tmp_path), "--epoch", "2", "--seed", "1", "--out", f"frame{ext}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / f"frame{ext}").read_bytes().startswith(head)
        assert proc.stdout.strip() == f"frame{ext}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.pdf", "frame.png", "frame.svg"]  # no leftovers


def test_default_frame_path_nearest_epoch_and_a_subset_of_panels(run_dir):
    proc = cli("render", "run", "--epoch", "3", "--panels", "seq_emb,xi_field,loss", "--grid", "1x3", cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr
    assert "nearest" in proc.stderr and "epoch 2" in proc.stderr  # snapshots are at 0, 2, 4: 3 -> 2 (first of the ties)
    out = Path(proc.stdout.strip())
    assert out.parent == Path("run", "render") and (run_dir.parent / out).is_file()


def test_video_mp4_and_gif_have_one_frame_per_snapshot(run_dir, tmp_path):
    for out in ("video.mp4", "video.gif"):
        proc = cli("render", rel(run_dir, tmp_path), "--video", "--out", out, "--panels", "pos_emb,seq_emb,attention_graph,accuracy",
                   cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == out
        assert frame_count(tmp_path / out) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.gif", "video.mp4"]  # no leftovers


def test_video_at_its_default_path_from_worker_processes(tmp_path):
    """The README's `testbed render runs/NAME --seed S --video`, with two worker processes
    each encoding a segment of the 7 snapshots, joined in order."""
    data = copy.deepcopy(RENDER_TINY) | {"training": {"epochs": 6, "batch_size": 16}}
    data["probes"] = ["metrics", "step_loss", "spikes", {"name": "snapshots", "every": 1}]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(data))
    assert cli("run", "tiny.yaml", "--out", "runs/tiny-1", "--quiet", cwd=tmp_path).returncode == 0
    proc = cli("render", "runs/tiny-1", "--seed", "1", "--video", "--workers", "2", "--panels", "seq_emb,loss", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "runs/tiny-1/render/seed1.mp4"
    assert frame_count(tmp_path / proc.stdout.strip()) == 7
    assert [p.name for p in (tmp_path / "runs" / "tiny-1" / "render").iterdir()] == ["seed1.mp4"]  # no leftovers


def test_spikes_writes_one_side_by_side_figure_per_spike(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    # the tiny run has no real spike: declare one at a step the snapshots probe did not keep,
    # from a loss of exactly 0 (so its ratio is inf, as the detector writes it)
    (run / "spikes.csv").write_text("seed,start,peak,end,epoch,baseline,peak_loss,ratio\n1,4,5,6,2,-0.0,1.5,inf\n")
    proc = cli("render", "run", "--spikes", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nearest epoch snapshots" in proc.stderr
    assert proc.stdout.strip() == "run/render/spikes/spike-seed1-step5.png"
    assert (tmp_path / proc.stdout.strip()).read_bytes().startswith(b"\x89PNG")
    # with step-level weights for that spike, those are drawn instead
    data = rundata.load(run)
    kept = {"seed": np.array([1]), "step": np.array([4]), "before_step": np.array([3]), "loss": np.array([1.5])}
    for n, a in data.params.items():
        kept[f"before/{n}"], kept[f"after/{n}"] = a[1, 1][None], a[2, 1][None]
    np.savez(run / "spike_steps.npz", **kept)
    proc = cli("render", "run", "--spikes", "--panels", "seq_emb,mlp_input", "--out", "figures", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nearest" not in proc.stderr and (tmp_path / "figures" / "spike-seed1-step5.png").is_file()
    (run / "spikes.csv").write_text("seed,start,peak,end,epoch,baseline,peak_loss,ratio\n")
    proc = cli("render", "run", "--spikes", cwd=tmp_path)
    assert proc.returncode == 0 and "no spikes" in proc.stderr


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--panels", "seq_emd"], ["unknown panel 'seq_emd'", "did you mean 'seq_emb'"]),
        (["--grid", "3by4"], ["--grid", "ROWSxCOLUMNS"]),
        (["--grid", "2x2"], ["4 cells for 20 panels"]),
        (["--epoch", "40"], ["--epoch 40: out of range", "0-4"]),
        (["--seed", "7"], ["--seed 7: not in this run", "0-1"]),
        (["--out", "frame.jpg"], ["--out frame.jpg", ".png, .pdf, .svg"]),
        (["--video", "--epoch", "2"], ["--epoch"]),
        (["--top", "2"], ["--top", "--spikes"]),
        (["--attention", "--video"], ["--attention draws one figure", "--video"]),
        (["--attention", "--seed", "7"], ["--seed 7: not in this run"]),
    ],
)
def test_bad_input_is_one_line_and_status_2(run_dir, tmp_path, args, needles):
    assert_user_error(cli("render", rel(run_dir, tmp_path), *args, cwd=tmp_path), *needles)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_missing_run_and_run_without_snapshots(run_dir, tmp_path):
    assert_user_error(cli("render", "nope", cwd=tmp_path), "no such run directory")
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "snapshots.npz").unlink()
    assert_user_error(cli("render", "run", cwd=tmp_path), "no snapshots.npz")


THIRD_PARTY = '''
import numpy as np
from testbed.plugin_api.hookspecs import hookimpl
from testbed.plugin_api.base import Params
from testbed.plugin_api.base import plugin
from testbed.plugin_api.panel import Panel


class XiNorms(Panel):
    title = "norm of xi"
    geometric = False

    def setup(self, ax, q, extent):
        self.prepare(ax, extent)
        n = len(q.sentences.labels)
        self.line, = ax.plot(np.arange(n), np.zeros(n))
        self.keep(self.line)
        ax.set_ylim(0, 5)

    def update(self, q, i):
        self.line.set_ydata(np.linalg.norm(q.trace["xi"][i], axis=1))


@plugin("xi_norms")
def xi_norms(params: Params):
    """Norm of each probe sentence's xi."""
    return XiNorms(params)


@hookimpl
def testbed_panels():
    return [xi_norms]
'''


def test_third_party_panel_through_an_entry_point(run_dir, tmp_path):
    env = third_party_package(tmp_path, "acme_panels", THIRD_PARTY, "acme-panels", "0.1")
    listing = cli("plugins", "--kind", "panel", env=env)
    assert "xi_norms" in listing.stdout and "acme-panels 0.1" in listing.stdout
    proc = cli("render", rel(run_dir, tmp_path), "--panels", "xi_norms,seq_emb", "--out", "f.png", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f.png").is_file()


def test_quantities_match_the_model_forward(run_dir):
    run = rundata.load(run_dir)
    q = snapshot_quantities(run, 1, np.array([0, 2]))
    p = {n: torch.from_numpy(run.params[n][2, 1]).unsqueeze(0) for n in run.params}
    tokens = torch.from_numpy(q.sentences.tokens).unsqueeze(0)
    trace: dict = {}
    logits = forward(run.arch, p, pair_index(tokens, run.arch.n_tokens), trace)
    np.testing.assert_allclose(q.trace["xi"][1], trace["xi"][0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.trace["probs"][1], torch.softmax(logits, -1)[0].numpy(), rtol=1e-5, atol=1e-6)
    # the attention graph's 'previous frame' is the snapshot before
    assert not np.allclose(q.focus_attn[1], q.focus_prev[1]) or np.allclose(run.params["query"][1, 1], run.params["query"][2, 1])
    field = q.field("xi", (-1.0, 1.0, -1.0, 1.0), 8)
    assert field.shape == (2, 8, 8, 3) and np.isfinite(field).all() and (0 <= field).all() and (field <= 1).all()


def test_probe_sentences_follow_the_paper():
    s = sentences.build(L=6, k=3, p=2)
    assert len(s.tokens) == 2**3 * sentences.N_SUFFIXES
    assert (s.labels == s.tokens[:, :3].sum(1) % 2).all()
    counts = s.tokens[:, :3].sum(1)
    assert s.n_groups == 4 and all(len(set(counts[s.group == g])) == 1 for g in range(4))
    # colours: one per prefix, close within a group of permutations, far across groups
    by_prefix = {s.text(i): tuple(s.colors[i]) for i in range(len(s.tokens))}
    assert len(set(by_prefix.values())) == len(by_prefix) == 8
    s3 = sentences.build(L=12, k=5, p=3)
    assert len(np.unique(s3.tokens[:, :5], axis=0)) == sentences.MAX_PREFIXES
    assert s3.n_groups == math.comb(5 + 2, 5) == len(np.unique(s3.group))  # every count pattern kept


@given(st.integers(2, 9))
def test_colour_wheel_pure_classes_distinct_and_uniform_is_white(p):
    pure = style.class_colors(p)
    assert len({tuple(np.round(c, 3)) for c in pure}) == p
    np.testing.assert_allclose(style.wheel(np.full(p, 1 / p)), [0.95, 0.95, 0.95], atol=1e-6)


# ---- the step-level weights around spikes (snapshots probe, spike_steps) ----


def test_spike_steps_keeps_the_weights_before_and_after_a_jump(tmp_path):
    from testbed.plugin_api.probe import RunInfo
    from testbed_plugins.probes.snapshots import SnapshotParams, snapshots

    space = ParamSpace({"w": (3,)})
    info = RunInfo([5, 6], epochs=1, steps_per_epoch=100, space=space, scenario=None)
    probe = snapshots.build(SnapshotParams(spike_steps=True))
    probe.start(info)
    flat = torch.zeros(2, 3)
    probe.after_epoch(0, flat, None)
    rng = np.random.default_rng(0)
    for s in range(100):
        loss = torch.tensor([0.5, 0.5]) * torch.from_numpy(np.exp(rng.normal(0, 0.02, 2))).float()
        if s == 60:
            loss[1] = 3.0  # seed 6 jumps at step 60
        info.step_losses[s].copy_(loss)
        flat += 1.0  # after step s: every weight equals the number of updates
        probe.after_step(s + 1, 1, loss, torch.zeros(2, 3))
    probe.after_epoch(1, flat, None)
    probe.finish(tmp_path)
    z = np.load(tmp_path / "spike_steps.npz")
    assert z["seed"].tolist() == [6] and z["step"].tolist() == [60] and z["before_step"].tolist() == [59]
    assert (z["before/w"][0] == 59).all() and (z["after/w"][0] == 60).all()  # the weights entering steps 59 and 60
    assert z["loss"][0] == pytest.approx(3.0)


def test_spike_steps_finds_the_jumps_of_the_median_rule(tmp_path):
    """The probe tests only seeds whose loss beats the window's minimum for the median (a
    median is at least the minimum): it keeps exactly the jumps of the rule written plainly,
    a nanmedian of every seed's window every REFRESH steps, NaNs and divergence included."""
    from testbed.analysis.spike_detector import SpikeParams
    from testbed.plugin_api.probe import RunInfo
    from testbed_plugins.probes.snapshots import SnapshotParams, SpikeSnapshots, snapshots

    S, T = 40, 400
    rng = np.random.default_rng(3)
    losses = 0.6 * np.exp(rng.normal(0, 0.15, (T, S))) * np.linspace(1.0, 0.2, T)[:, None]
    for _ in range(60):  # jumps of every size, some below the ratio or the margin
        losses[rng.integers(15, T), rng.integers(S)] *= rng.uniform(1.2, 6.0)
    losses[rng.integers(0, T, 30), rng.integers(0, S, 30)] = np.nan
    losses[300:, 7] = np.inf  # a seed that diverges
    losses = losses.astype(np.float32)
    det, refresh = SpikeParams(), SpikeSnapshots.REFRESH
    expected, base, until, last, kept = [], None, 0, [-(10**9)] * S, [0] * S
    for s in range(max(det.min_history, 1), T):
        if s >= until:
            base = np.nanmedian(losses[max(0, s - det.window) : s], 0)
            until = s + refresh
        with np.errstate(invalid="ignore"):
            jump = (losses[s] > det.ratio * base) & (losses[s] - base > det.min_delta) | ~np.isfinite(losses[s])
        for j in np.flatnonzero(jump):
            new, last[j] = s - last[j] > det.merge_gap, s
            if new and kept[j] < SpikeSnapshots.MAX_EVENTS:
                kept[j] += 1
                expected.append((int(j), s))
    assert len(expected) > 20
    info = RunInfo(list(range(S)), epochs=1, steps_per_epoch=T, space=ParamSpace({"w": (1,)}), scenario=None)
    probe = snapshots.build(SnapshotParams(spike_steps=True))
    probe.start(info)
    flat = torch.zeros(S, 1)
    probe.after_epoch(0, flat, None)
    for s in range(T):
        info.step_losses[s].copy_(torch.from_numpy(losses[s]))
        probe.after_step(s + 1, 1, info.step_losses[s], torch.zeros(S, 1))
    found = sorted((e[0], e[1]) for e in probe.events)
    assert found == sorted(expected)


# ---- the idealized circuit ----


def _arch(L: int, p: int, hidden: int, norm: str, activation: str) -> Architecture:
    reg = default_registry()
    n, a = reg.get("norm", norm), reg.get("activation", activation)
    return Architecture(2, hidden, p, L, n.build(n.params()), n.build(n.params()), a.build(a.params()))


@settings(max_examples=30, deadline=None)
@given(
    p=st.sampled_from([2, 3]),
    k=st.integers(1, 4),
    extra=st.integers(0, 3),
    norm=st.sampled_from(["rms", "smooth", "l2", "identity"]),
    activation=st.sampled_from(["gelu", "relu", "silu", "tanh"]),
)
def test_ideal_circuit_classifies_every_sequence(p, k, extra, norm, activation):
    from testbed.engine.ideal_circuit import weights

    L = k + extra
    arch = _arch(L, p, 32, norm, activation)
    w = weights(arch, k, p)
    tokens = torch.tensor(list(itertools.product(range(p), repeat=L)))
    logits = forward(arch, {n: v.unsqueeze(0) for n, v in w.items()}, pair_index(tokens.unsqueeze(0), p))[0]
    assert (logits.argmax(-1) == tokens[:, :k].sum(1) % p).all()


def test_ideal_run_and_its_frame_show_collapsed_positions_and_clusters(tmp_path, write_scenario):
    data = copy.deepcopy(RENDER_TINY) | {"training": {"epochs": 1, "batch_size": 16}, "seeds": "0"}
    data["model"] = {"hidden": 8, "init": "ideal"}
    write_scenario(data, "ideal.yaml")
    proc = cli("run", "ideal.yaml", "--out", "run", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = rundata.load(tmp_path / "run")
    m = run.seed_metrics(0)
    assert m["train_acc"][m["epoch"] == 0][0] == 1.0 and m["test_acc"][m["epoch"] == 0][0] == 1.0
    q = snapshot_quantities(run, 0, np.array([0]))
    k, p = run.k, run.p
    assert len(np.unique(np.round(q.params["pos_emb"][0], 6), axis=0)) == 2  # summed positions / the rest
    clusters = np.unique(np.round(q.trace["xi"][0], 4), axis=0)
    assert len(clusters) == math.comb(k + p - 1, k)  # one per count pattern of the prefix
    proc = cli("render", "run", "--epoch", "0", "--out", "ideal.png", cwd=tmp_path)
    assert proc.returncode == 0 and (tmp_path / "ideal.png").is_file()


def test_ideal_circuit_that_cannot_fit_is_a_validation_error(write_scenario, tmp_path):
    data = copy.deepcopy(RENDER_TINY)
    data["model"] = {"hidden": 2, "init": "ideal"}
    write_scenario(data, "ideal.yaml")
    proc = cli("validate", "ideal.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "model.init: ideal needs model.hidden >= 3" in proc.stderr, proc.stderr


def test_grid_default_fits_the_panels():
    for n in range(1, 25):
        r, c = parse_grid(None, n)
        assert r * c >= n and r <= c + 1


def test_top_keeps_the_largest_loss_jumps_in_file_order():
    from testbed.render.spike_figures import largest

    rows = [
        {"seed": 0, "peak": 10, "baseline": 0.1, "peak_loss": 0.4},
        {"seed": 1, "peak": 20, "baseline": 0.0, "peak_loss": 2.0},
        {"seed": 0, "peak": 30, "baseline": 0.5, "peak_loss": 0.6},
        {"seed": 2, "peak": 40, "baseline": 0.2, "peak_loss": float("inf")},
    ]
    assert [r["peak"] for r in largest(rows, 2)] == [20, 40]
    assert [r["peak"] for r in largest(rows, 3)] == [10, 20, 40]
    assert largest(rows, None) == rows and largest(rows, 9) == rows


def test_attention_maps_at_the_start_and_end_side_by_side(run_dir, tmp_path):
    """Figure 8: the attention maps drawn are those of the model at the first snapshot and at
    the chosen one (checked against the forward pass of the snapshot weights)."""
    from testbed.render import rundata
    from testbed.render.quantities import snapshot_quantities

    proc = cli("render", rel(run_dir, tmp_path), "--attention", "--seed", "1", "--epoch", "2", "--out", "attn.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "attn.png").read_bytes().startswith(b"\x89PNG") and sorted(p.name for p in tmp_path.iterdir()) == ["attn.png"]
    written = testbed.figure(run_dir, "attention", seed=0)
    assert written == run_dir / "render" / "attention-seed0.png" and written.is_file()
    run = rundata.load(run_dir)
    q = snapshot_quantities(run, 1, np.array([0, 1]))
    assert q.epochs.tolist() == [0.0, 2.0] and not np.allclose(q.trace["attn"][0], q.trace["attn"][1])
