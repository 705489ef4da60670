"""Spike forensics and sharpness: Lanczos against known spectra and a dense Hessian, the cause
attribution on constructed states whose cause is known, and the forensics of a real run, from
kept weights and from a replay, checked against the step losses the run recorded."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import TINY, cli

from testbed.engine.model import Architecture, ParamSpace, forward, head, pair_index
from testbed.forensics import attribution, hessian
from testbed.plugin_api.registry import default_registry


def _norm(name: str = "rms"):
    reg = default_registry()
    plugin = reg.get("norm", name)
    return plugin.build(plugin.params())


def tiny_arch(norm: str = "rms", hidden: int = 4, seq_len: int = 5) -> Architecture:
    return Architecture(d=2, hidden=hidden, n_tokens=2, seq_len=seq_len, embedding_norm=_norm(norm), mlp_norm=_norm(norm), activation=F.gelu)


def tiny_batch(S: int, N: int, L: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 2, (S, N, L), generator=g)
    return pair_index(tokens, 2), tokens[..., :3].sum(-1) % 2


def random_symmetric(P: int, eigenvalues: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=torch.float64))
    return Q @ torch.diag(eigenvalues) @ Q.T


# ---- sharpness ----


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lanczos_finds_the_top_eigenvalue_of_a_quadratic(seed):
    """f(x) = x^T A x / 2 per seed: the Hessian is A, whose spectrum is chosen (with negative
    eigenvalues larger in magnitude than the top, which power iteration would return)."""
    P = 30
    g = torch.Generator().manual_seed(100 + seed)
    spectra = [torch.sort(torch.randn(P, generator=g, dtype=torch.float64) * 3).values for _ in range(3)]
    spectra[1][0] = -50.0  # the largest magnitude is negative
    A = torch.stack([random_symmetric(P, ev, seed * 10 + i) for i, ev in enumerate(spectra)])
    loss = lambda x: 0.5 * torch.einsum("sp,spq,sq->s", x, A.to(x.dtype), x)  # noqa: E731
    hvp = hessian.hessian_operator(loss, torch.randn(3, P, generator=g, dtype=torch.float64), torch.float64)
    top = hessian.lanczos_top(hvp, hessian.start_vectors([0, 1, 2], P), iterations=P)
    assert torch.allclose(top, torch.stack([ev.max() for ev in spectra]), rtol=1e-10, atol=1e-10)
    few = hessian.lanczos_top(hvp, hessian.start_vectors([0, 1, 2], P), iterations=20)
    assert torch.all(few <= top + 1e-9) and torch.allclose(few, top, rtol=1e-2, atol=1e-2)
    # Preconditioned: lambda_max(P^-1 A) from the symmetric form, against the dense eigenvalues.
    p = torch.rand(3, P, generator=g, dtype=torch.float64) + 0.1
    root = p.rsqrt()
    pre = hessian.lanczos_top(lambda v: root * hvp(root * v), hessian.start_vectors([0, 1, 2], P), iterations=P)
    dense = torch.stack([torch.linalg.eigvals(torch.diag(1 / p[s]) @ A[s]).real.max() for s in range(3)])
    assert torch.allclose(pre, dense, rtol=1e-8, atol=1e-8)


def test_lanczos_survives_an_exhausted_krylov_space():
    """A rank-2 operator: the Krylov space ends after two steps; the restart keeps it exact."""
    P = 12
    A = random_symmetric(P, torch.tensor([5.0, -7.0] + [0.0] * (P - 2), dtype=torch.float64), 3).unsqueeze(0)
    top = hessian.lanczos_top(lambda v: torch.einsum("spq,sq->sp", A, v), hessian.start_vectors([4], P), iterations=P)
    assert top.item() == pytest.approx(5.0, abs=1e-9)


@pytest.mark.parametrize("norm", ["rms", "smooth"])
def test_sharpness_matches_the_dense_hessian_of_the_tiny_model(norm):
    arch = tiny_arch(norm)
    space = ParamSpace(arch.shapes())
    seeds = [0, 1, 2]
    flat = space.init(seeds)
    index, labels = tiny_batch(3, 7)
    g = torch.Generator().manual_seed(5)
    precond = torch.rand(3, space.size, generator=g) + 0.05
    top, pre = hessian.sharpness(arch, space, flat, index, labels, seeds, preconditioner=precond, iterations=space.size, dtype=torch.float64)
    loss = hessian.loss_function(arch, space, index, labels)
    for s in range(3):
        def one(x, s=s):
            rows = [flat[i].double() for i in range(3)]
            rows[s] = x
            return loss(torch.stack(rows))[s]

        H = torch.autograd.functional.hessian(one, flat[s].double())
        assert top[s].item() == pytest.approx(torch.linalg.eigvalsh(H)[-1].item(), rel=1e-5)
        D = torch.diag(precond[s].double().rsqrt())
        assert pre[s].item() == pytest.approx(torch.linalg.eigvalsh(D @ H @ D)[-1].item(), rel=1e-5)
    # A seed's value does not depend on the seeds beside it.
    alone, _ = hessian.sharpness(arch, space, flat[1:2], index[1:2], labels[1:2], [1], iterations=space.size, dtype=torch.float64)
    assert alone[0].item() == pytest.approx(top[1].item(), rel=1e-6)


def test_sharpness_leaves_out_absent_parameters():
    arch = Architecture(d=2, hidden=4, n_tokens=2, seq_len=5, embedding_norm=_norm(), mlp_norm=_norm(), activation=F.gelu, mlp_bias=False)
    space = ParamSpace(arch.shapes())
    flat = space.init([0])
    for name in arch.absent():
        flat[:, space.slices[name]] = 0.0
    index, labels = tiny_batch(1, 6)
    top, _ = hessian.sharpness(arch, space, flat, index, labels, [0], iterations=space.size, dtype=torch.float64)
    keep = torch.ones(space.size, dtype=torch.bool)
    for name in arch.absent():
        keep[space.slices[name]] = False
    H = torch.autograd.functional.hessian(lambda x: hessian.loss_function(arch, space, index, labels)(x.unsqueeze(0))[0], flat[0].double())
    assert top[0].item() == pytest.approx(torch.linalg.eigvalsh(H[keep][:, keep])[-1].item(), rel=1e-5)


def test_adam_preconditioner_is_bias_corrected_root_of_v_plus_eps_over_multiplier():
    v = torch.tensor([[4.0, 0.0]])
    p = hessian.adam_preconditioner(v, step=1, beta2=0.999, eps=1e-8, multipliers=torch.tensor([[1.0, 2.0]]))
    assert p[0, 0].item() == pytest.approx(math.sqrt(4.0 / 0.001) + 1e-8)
    assert p[0, 1].item() == pytest.approx(1e-8 / 2)


# ---- attribution on constructed states ----


def test_the_head_the_forensics_differentiate_gives_the_forward_logits():
    arch = tiny_arch()
    space = ParamSpace(arch.shapes())
    flat = space.init([0, 1])
    index, _ = tiny_batch(2, 9)
    trace: dict = {}
    logits = forward(arch, space.views(flat), index, trace=trace)
    assert torch.allclose(head(arch, space.views(flat), trace["xi"]), logits, atol=1e-6)


def _put(space: ParamSpace, flat: torch.Tensor, name: str, value: torch.Tensor) -> None:
    flat[:, space.slices[name]] = value.reshape(flat.shape[0], -1)


def norm_origin_case():
    """Token 0 at position 1: E[0] + P[1] placed 0.01 from the origin; the step moves P[1] by
    0.02 through the origin, so the normalised input reverses. Every sequence holds token 0 at
    position 1."""
    arch = tiny_arch()
    space = ParamSpace(arch.shapes())
    before = space.init([0])
    E = space.views(before)["tok_emb"][0]
    P = space.views(before)["pos_emb"][0].clone()
    small = torch.tensor([0.01, 0.004])
    P[1] = -E[0] + small
    _put(space, before, "pos_emb", P.unsqueeze(0))
    after = before.clone()
    P2 = P.clone()
    P2[1] = P[1] - 2 * small
    _put(space, after, "pos_emb", P2.unsqueeze(0))
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 2, (1, 16, 5), generator=g)
    tokens[:, :, 1] = 0
    return arch, space, before, after, pair_index(tokens, 2), tokens[..., :3].sum(-1) % 2


def test_a_step_through_the_norm_origin_is_norm_curvature():
    arch, space, before, after, index, labels = norm_origin_case()
    cols = attribution.attribute(arch, space, before, after, index, labels)
    assert cols["cause"][0] == "norm_curvature"
    assert cols["norm1_min_radius"][0] == pytest.approx(float(torch.tensor([0.01, 0.004]).norm()), rel=1e-3)
    assert cols["norm1_max_turn"][0] > 179.0  # the normalised vector reversed
    assert cols["culprit_norm_site"][0] == "embedding"
    assert cols["jump_pos_emb"][0] == pytest.approx(cols["jump"][0], abs=1e-6)  # only P moved
    for other in ("tok_emb", "query", "value", "mlp"):
        assert cols[f"jump_{other}"][0] == 0.0


def test_the_smoothed_norm_turns_but_hardly_moves_near_the_origin():
    """The same step under the smoothed norm: the input still reverses, but the norm's output
    near the origin is small, so it moves little and the rule does not call it norm curvature."""
    arch, space, before, after, index, labels = norm_origin_case()
    smooth = Architecture(**{**arch.__dict__, "embedding_norm": _norm("smooth"), "mlp_norm": _norm("smooth")})
    cols = attribution.attribute(smooth, space, before, after, index, labels)
    assert cols["norm1_max_turn"][0] > 179.0
    assert cols["culprit_norm_move"][0] < 0.1
    assert cols["cause"][0] != "norm_curvature"


def boundary_case():
    """A sentence placed exactly on the MLP decision boundary (fc2's bias shifted so its two
    logits are equal), and a small step of fc2's bias that tips it to the wrong side."""
    arch = tiny_arch()
    space = ParamSpace(arch.shapes())
    before = space.init([2])
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 2, (1, 8, 5), generator=g)
    index, labels = pair_index(tokens, 2), tokens[..., :3].sum(-1) % 2
    logits = forward(arch, space.views(before), index)[0, 0]
    E = space.views(before)["tok_emb"][0]
    y = int(labels[0, 0])
    diff = E[y] - E[1 - y]
    mu = logits[y] - logits[1 - y]
    b2 = space.views(before)["mlp.fc2.bias"][0] - mu / diff.dot(diff) * diff
    _put(space, before, "mlp.fc2.bias", b2.unsqueeze(0))
    after = before.clone()
    _put(space, after, "mlp.fc2.bias", (b2 - 1e-3 * diff / diff.norm()).unsqueeze(0))
    return arch, space, before, after, index, labels


def test_a_sentence_on_the_mlp_boundary_is_mlp_boundary():
    arch, space, before, after, index, labels = boundary_case()
    mu, rel = attribution.boundary_distance(arch, space.views(before), forward_xi(arch, space, before, index), labels)
    assert abs(mu[0, 0].item()) < 1e-5 and rel[0, 0].item() < 1e-4  # the constructed state is on the boundary
    cols = attribution.attribute(arch, space, before, after, index, labels)
    assert cols["cause"][0] == "mlp_boundary"
    assert cols["boundary_min_distance"][0] < 1e-4
    assert cols["culprit_norm_move"][0] < 1e-6  # nothing before the MLP moved
    assert cols["norm1_max_turn"][0] == 0.0 and cols["norm2_max_turn"][0] == 0.0
    assert cols["top_group"][0] == "mlp"


def forward_xi(arch, space, flat, index):
    trace: dict = {}
    forward(arch, space.views(flat), index, trace=trace)
    return trace["xi"]


def test_a_step_that_moves_nothing_much_far_from_both_is_other():
    arch, space, before, _, index, labels = boundary_case()
    _put(space, before, "mlp.fc2.bias", space.views(before)["mlp.fc2.bias"] + 5.0)  # far from the boundary
    after = before + 1e-4
    cols = attribution.attribute(arch, space, before, after, index, labels, attribution.Rule(mlp_share=2.0))
    assert cols["cause"][0] == "other"


def test_the_rule_is_the_documented_order():
    rule = attribution.Rule()
    got = rule.label(np.array([0.6, 0.6, 0.1, 0.1, 0.1]), np.array([0.0, 1.0, 0.01, 1.0, 1.0]), np.array([0.0, 0.0, 0.0, 0.7, 0.1]))
    assert got.tolist() == ["norm_curvature", "norm_curvature", "mlp_boundary", "mlp_boundary", "other"]
    cause, reason = rule.explain(np.array([0.6, 0.6, 0.1]), np.array([1.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0]), np.array([0.9, 0.2, np.nan]))
    assert cause.tolist() == ["norm_curvature", "other", "other"]  # a step that did not make the elevated loss is no cause
    assert reason.tolist() == ["norm_move", "not_this_step", "not_this_step"]


def test_the_step_share_says_whether_the_step_made_the_elevated_loss():
    arch, space, before, after, index, labels = norm_origin_case()
    cols = attribution.attribute(arch, space, before, after, index, labels, baseline=np.array([0.0]))
    assert cols["step_share"][0] == pytest.approx(cols["jump"][0] / cols["loss_after"][0])
    same = attribution.attribute(arch, space, before, before.clone(), index, labels, baseline=np.array([0.0]))
    assert same["jump"][0] == 0.0 and same["cause"][0] == "other" and same["cause_reason"][0] == "not_this_step"


def test_assembler_coherence_is_one_for_collinear_and_half_for_orthogonal_assemblers():
    collinear = torch.tensor([[[1.0, 2.0, -3.0], [0.0, 0.0, 0.0]]])
    orthogonal = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert attribution.assembler_stats(collinear)["assembler_coherence"].item() == pytest.approx(1.0)
    assert attribution.assembler_stats(orthogonal)["assembler_coherence"].item() == pytest.approx(0.5)
    assert attribution.assembler_stats(collinear)["assembler_max_norm"].item() == pytest.approx(3.0)


# ---- a real run: kept weights, replay, the recorded step losses ----

# A small model at 10 times the papers' learning rate, which spikes within a few seconds of
# training (whether it does is checked by the fixture, not assumed).
SPIKY = copy.deepcopy(TINY) | {
    "name": "spiky",
    "task": {"seq_len": 8, "sparsity": 3, "p": 2, "n_train": 128, "n_test": 64},
    "model": {"hidden": 8},
    "optimizer": {"name": "adam", "lr": 0.03},
    "training": {"epochs": 150, "batch_size": 16},
    "probes": ["metrics", "step_loss", {"name": "spikes", "z": 3.0}, {"name": "snapshots", "every": 50, "spike_steps": True},
               {"name": "sharpness", "every": 200, "iterations": 8}],
    "seeds": "0-2",
}


@pytest.fixture(scope="module")
def spiky_run(tmp_path_factory):
    import testbed

    folder = tmp_path_factory.mktemp("spiky")
    (folder / "spiky.yaml").write_text(yaml.safe_dump(SPIKY))
    run = testbed.run(testbed.load_scenario(folder / "spiky.yaml"), out=folder / "run", store=False)
    if len(run.spikes) == 0:
        pytest.skip("the spiky scenario did not spike")
    return run


def test_forensics_from_kept_and_replayed_weights_agree_and_reproduce_the_step_losses(spiky_run, tmp_path):
    from testbed.forensics.spike_causes import spike_causes

    kept = spike_causes(spiky_run, out=tmp_path / "kept.csv", with_sharpness=False)
    replayed = spike_causes(spiky_run, out=tmp_path / "replayed.csv", use_kept=False, with_sharpness=False)
    assert replayed.replayed == len(spiky_run.spikes) and replayed.kept == 0
    assert set(replayed.table["weights"]) == {"replayed"}
    assert kept.kept >= 1  # the snapshots probe kept at least one spike's step
    for result in (kept, replayed):
        t = result.table
        assert len(t) == len(spiky_run.spikes)
        assert np.allclose(t["loss_after"], t["step_loss"], rtol=1e-4, atol=1e-6)  # weights and batch are the run's
        assert set(t["check"]) == {"ok"}
        assert set(t["cause"]) <= {"norm_curvature", "mlp_boundary", "other"}
        groups = t[[f"jump_{g}" for g in attribution.GROUPS]].sum(axis=1) + t["jump_interaction"]
        assert np.allclose(groups, t["jump"], atol=1e-9)
    numeric = [c for c in kept.table.columns if kept.table[c].dtype.kind == "f"]
    assert np.array_equal(kept.table[numeric].to_numpy(), replayed.table[numeric].to_numpy(), equal_nan=True)
    assert (kept.table["cause"] == replayed.table["cause"]).all()


def test_without_replay_spikes_without_kept_weights_are_missing(spiky_run, tmp_path):
    import pandas as pd

    from testbed.forensics.spike_causes import spike_causes

    result = spike_causes(spiky_run, out=tmp_path / "x.csv", replay=False, use_kept=False, with_sharpness=False)
    assert result.missing == len(spiky_run.spikes)
    back = pd.read_csv(tmp_path / "x.csv")
    assert set(back["weights"]) == {"missing"} and set(back["cause"]) == {"unknown"}


def test_sharpness_probe_file_and_the_sharpness_before_each_spike(spiky_run, tmp_path):
    z = spiky_run.sharpness
    assert z["sharpness"].shape == (len(z["steps"]), len(spiky_run.seeds))
    assert z["preconditioned"].shape == z["sharpness"].shape  # Adam
    lr = SPIKY["optimizer"]["lr"]
    assert float(z["threshold"]) == pytest.approx(2 / lr)
    assert float(z["preconditioned_threshold"]) == pytest.approx(38 / lr)
    assert np.isfinite(z["sharpness"]).all()
    from testbed.forensics.spike_causes import spike_causes

    t = spike_causes(spiky_run, out=tmp_path / "s.csv").table
    assert np.isfinite(t["sharpness_before"]).all()
    measured = t["probe_step"] >= 0
    assert (t.loc[measured, "probe_step"] <= t.loc[measured, "start"] - 1).all()


def test_cli_spikes_writes_spike_causes_and_bad_input_is_one_line(spiky_run, tmp_path):
    out = tmp_path / "causes.csv"
    proc = cli("spikes", str(spiky_run.path), "--out", str(out), "--no-sharpness")
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "weights kept" in proc.stdout
    bad = cli("spikes", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such run directory" in bad.stderr


# ---- per cause in compare, figures ----


def test_per_seed_counts_and_sizes_per_cause():
    import pandas as pd

    from testbed.forensics import by_cause

    table = pd.DataFrame({
        "seed": [0, 0, 2, 2, 2, 5], "cause": ["norm_curvature", "mlp_boundary", "norm_curvature", "norm_curvature", "other", "other"],
        "baseline": [0.1, 0.1, 0.2, 0.2, 0.2, 0.3], "peak_loss": [1.1, 0.6, 0.7, 1.2, 0.4, 0.5],
    })  # fmt: skip
    got = by_cause.per_seed(table, [0, 1, 2])  # seed 5 is not compared
    assert got[("norm_curvature", "count")].tolist() == [1, 0, 2]
    assert np.allclose(got[("norm_curvature", "size")], [1.0, 0.0, 1.5])
    assert got[("other", "count")].tolist() == [0, 0, 1]
    assert got[("mlp_boundary", "size")].tolist() == [0.5, 0.0, 0.0]


def test_compare_reports_spikes_per_cause_and_the_sharpness_figure(spiky_run, tmp_path):
    import testbed

    smooth = copy.deepcopy(SPIKY) | {"name": "spiky_smooth"}
    smooth["model"] = {**smooth["model"], "norm": {"name": "smooth"}}
    (tmp_path / "smooth.yaml").write_text(yaml.safe_dump(smooth))
    plain = testbed.compare([spiky_run.path, tmp_path / "smooth.yaml"], out=tmp_path / "plain")
    said = (plain.path / "report.md").read_text()
    assert "Not computed: spiky has no spike_causes.csv" in said and "--spike-causes" in said  # costly: only when asked
    assert not (plain.path / "spike_causes").exists()
    result = testbed.compare([spiky_run.path, tmp_path / "smooth.yaml"], out=tmp_path / "cmp", spike_causes=True)
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "## Spikes by cause" in report and "Paired differences per cause, spiky_smooth − spiky" in report
    for cause in attribution.CAUSES:
        assert f"| spiky | {cause} |" in report and f"| spiky_smooth | {cause} |" in report
    assert (result.path / "figures" / "sharpness.png").is_file()
    written = list((result.path / "spike_causes").glob("*.csv"))
    assert len(written) == 2  # neither run had spike_causes.csv: computed into the report


def test_render_spikes_adds_the_cause_overview(spiky_run, tmp_path):
    import shutil

    from testbed.forensics.spike_causes import spike_causes

    run = shutil.copytree(spiky_run.path, tmp_path / "run")  # the fixture's run stays without spike_causes.csv
    spike_causes(run, with_sharpness=False)  # into the run: render reads it
    out = tmp_path / "frames"
    proc = cli("render", str(run), "--spikes", "--top", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "overview.png").is_file()
    assert len(list(out.glob("spike-seed*.png"))) == 1


def test_sweep_report_gives_spikes_per_cause_for_cells_with_spike_causes(spiky_run, tmp_path):
    import shutil

    import testbed
    from testbed.forensics.spike_causes import spike_causes
    from testbed.study.sweep_report import analyse
    from testbed.study.sweep_table import Cell

    (tmp_path / "plain").mkdir()
    plain = analyse([Cell(0, "optimizer.lr=0.03", {"optimizer.lr": 0.03}, spiky_run)], ["optimizer.lr"], list(spiky_run.seeds),
                    tmp_path / "plain", title="Study: spiky")
    assert "Spikes by cause" not in (plain.path / "report.md").read_text()  # a sweep does not replay its cells' spikes
    run = testbed.load_run(shutil.copytree(spiky_run.path, tmp_path / "run"))
    spike_causes(run, with_sharpness=False)
    cells = [Cell(0, "optimizer.lr=0.03", {"optimizer.lr": 0.03}, run)]
    (tmp_path / "study").mkdir()
    result = analyse(cells, ["optimizer.lr"], list(spiky_run.seeds), tmp_path / "study", title="Study: spiky")
    report = (result.path / "report.md").read_text()
    assert "## Spikes by cause" in report and report.index("## Spikes by cause") < report.index("## Method")
    assert "| optimizer.lr=0.03 | norm_curvature |" in report


def test_diverged_weights_give_nan_not_an_error():
    arch, space, before, after, index, labels = norm_origin_case()
    after = after.clone()
    after[0, space.slices["value"]] = float("nan")
    cols = attribution.attribute(arch, space, before, after, index, labels, baseline=np.array([0.1]))
    assert np.isnan(cols["loss_after"][0]) and cols["cause"][0] == "other"
    broken = before.clone()
    broken[0, 0] = float("inf")
    top, _ = hessian.sharpness(arch, space, torch.cat([broken, before]), index.repeat(2, 1, 1), labels.repeat(2, 1), [0, 1])
    assert math.isnan(top[0].item()) and math.isfinite(top[1].item())


def test_the_probe_measures_the_sharpness_of_the_weights_at_its_steps(spiky_run):
    """At a step that ends an epoch of a snapshot, the probe's value is the sharpness of the
    snapshot's weights on the seed's training set."""
    from testbed.forensics.recovery import StepData

    z, snaps = spiky_run.sharpness, spiky_run.snapshots
    data = StepData(spiky_run.scenario)
    spe = data.steps_per_epoch
    steps = z["steps"].tolist()
    common = [int(e) for e in snaps.epochs if e > 0 and e * spe in steps]
    assert common, "no snapshot epoch at a measured step"
    epoch = common[0]
    i, j = steps.index(epoch * spe), list(snaps.epochs).index(epoch)
    flat = torch.cat([torch.as_tensor(snaps.params[name][j]).reshape(len(snaps.seeds), -1) for name in data.space.slices], 1)
    sets = [data.training_set(seed, data.p_at_step(epoch * spe - 1)) for seed in snaps.seeds]
    top, _ = hessian.sharpness(data.arch, data.space, flat, torch.stack([s[0] for s in sets]), torch.stack([s[1] for s in sets]),
                               snaps.seeds, iterations=8)
    assert np.allclose(top.numpy(), z["sharpness"][i], rtol=1e-4)


def test_a_run_whose_steps_are_not_reproduced_is_flagged(spiky_run, tmp_path):
    """A run whose recorded step losses differ from what this engine recomputes (as a run
    trained by another version would): every row says MISMATCH and the command warns."""
    import shutil

    run = shutil.copytree(spiky_run.path, tmp_path / "run")
    with np.load(run / "step_loss.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["loss"] = arrays["loss"] * 1.01
    np.savez(run / "step_loss.npz", **arrays)
    proc = cli("spikes", str(run), "--no-sharpness", "--threads", "1")
    assert proc.returncode == 0 and "warning:" in proc.stderr
    import pandas as pd

    assert set(pd.read_csv(run / "spike_causes.csv")["check"]) == {"MISMATCH"}


def test_any_step_is_recovered_short_last_batches_and_the_first_step_included(tmp_path):
    """Forensics of steps chosen by hand (spikes.csv written here): full batches and an epoch's
    short last batch together, recovered by replay and checked against the recorded losses; a
    spike at step 0 has no step before it and is missing."""
    import pandas as pd

    import testbed
    from testbed.forensics.spike_causes import spike_causes

    scenario = copy.deepcopy(TINY) | {"seeds": "0-1"}
    scenario["task"] = {**scenario["task"], "n_train": 50}  # batches of 16: 16, 16, 16 and 2
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    run = testbed.run(testbed.load_scenario(tmp_path / "s.yaml"), out=tmp_path / "run", store=False)
    steps = [(0, 0), (0, 3), (1, 5), (1, 7), (1, 14)]  # steps 3, 7 and 15 end an epoch (2 sequences)
    losses = run.step_loss
    pd.DataFrame([{"seed": s, "start": t, "peak": t, "end": t, "epoch": t // 4 + 1, "baseline": 0.5, "peak_loss": float(losses.at[t, s]),
                   "ratio": 1.0, "diverged": 0} for s, t in steps]).to_csv(run.path / "spikes.csv", index=False)
    t = spike_causes(testbed.load_run(run.path), with_sharpness=False).table
    assert t["weights"].tolist() == ["missing", "replayed", "replayed", "replayed", "replayed"]
    assert t["check"].tolist() == ["none", "ok", "ok", "ok", "ok"]
    assert t["cause"].iloc[0] == "unknown"


def test_steps_of_both_stages_of_a_curriculum_that_restricts_the_logits(tmp_path):
    """p = 2 then p = 3 with `logits: active` (the first stage scores 2 tokens, the second 3):
    the forensics of steps in both stages reproduce the recorded losses, sharpness included,
    and the sharpness probe measures in both stages."""
    import pandas as pd

    import testbed
    from testbed.forensics.spike_causes import spike_causes

    scenario = {
        "name": "switch", "task": {"seq_len": 6, "sparsity": 3, "p": 2, "n_train": 64, "n_test": 32},
        "model": {"hidden": 8, "n_tokens": 3},
        "curriculum": {"name": "vocab_schedule", "switches": [{"epoch": 3, "p": 3}], "logits": "active"},
        "training": {"epochs": 5, "batch_size": 16},
        "probes": ["metrics", "step_loss", {"name": "sharpness", "every": 4, "iterations": 6}], "seeds": "0-1",
    }  # fmt: skip
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    run = testbed.run(testbed.load_scenario(tmp_path / "s.yaml"), out=tmp_path / "run", store=False)
    steps = [(0, 5), (1, 6), (0, 13), (1, 17)]  # 4 steps per epoch: epochs 2, 2, 4 and 5
    losses = run.step_loss
    pd.DataFrame([{"seed": s, "start": t, "peak": t, "end": t, "epoch": t // 4 + 1, "baseline": 0.5, "peak_loss": float(losses.at[t, s]),
                   "ratio": 1.0, "diverged": 0} for s, t in steps]).to_csv(run.path / "spikes.csv", index=False)
    t = spike_causes(testbed.load_run(run.path), iterations=6).table
    assert t["check"].tolist() == ["ok"] * 4
    assert np.isfinite(t["sharpness_before"]).all()
    assert np.isfinite(testbed.load_run(run.path).sharpness["sharpness"]).all()
