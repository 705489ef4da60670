"""The vectorized optimizers against torch.optim, and the features every optimizer shares."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.engine.model import ParamSpace
from testbed.engine.optimizer import Optimizer, clip_per_seed
from testbed.plugin_api.registry import default_registry

SHAPES = {
    "tok_emb": (3, 2),
    "pos_emb": (4, 2),
    "query": (2,),
    "value": (2, 2),
    "mlp.fc1.weight": (5, 2),
    "mlp.fc1.bias": (5,),
    "mlp.fc2.weight": (2, 5),
    "mlp.fc2.bias": (2,),
}
SPACE = ParamSpace(SHAPES)
STEPS = 20


def make_optimizer(name: str, space: ParamSpace = SPACE, **params) -> Optimizer:
    plugin = default_registry().get("optimizer", name)
    p = plugin.params(**params)
    return Optimizer(plugin.build(p), p, space)


def gradient(x: torch.Tensor, t: int) -> torch.Tensor:
    """A gradient that depends on the parameters (a quadratic pull toward a target) plus a
    step-dependent perturbation, so trajectories feed back into later gradients."""
    g = torch.Generator().manual_seed(1000 + t)
    target = torch.linspace(-1.0, 1.0, x.shape[-1])
    noise = torch.randn(x.shape[-1], generator=g)  # the same for every seed row, whatever S
    return (x - target) * 0.7 + noise * 0.3


def initial(S: int = 1, P: int = SPACE.size, seed: int = 0) -> torch.Tensor:
    return torch.randn(S, P, generator=torch.Generator().manual_seed(seed))


def run_testbed(opt: Optimizer, x0: torch.Tensor, steps: int = STEPS) -> list[torch.Tensor]:
    flat = x0.clone()
    path = []
    for t in range(steps):
        opt.step(flat, gradient(flat, t))
        path.append(flat.clone())
    return path


def run_torch(make, x0: torch.Tensor, steps: int = STEPS) -> list[torch.Tensor]:
    param = torch.nn.Parameter(x0.clone())
    opt = make([param])
    path = []
    for t in range(steps):
        opt.zero_grad()
        param.grad = gradient(param.detach(), t)
        opt.step()
        path.append(param.detach().clone())
    return path


def assert_paths_close(ours: list[torch.Tensor], theirs: list[torch.Tensor], rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert len(ours) == len(theirs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, t=t: f"step {t + 1}: {m}")
    # non-vacuity: the parameters did move
    assert not torch.allclose(ours[-1], ours[0])


@pytest.mark.parametrize("lr", [1e-3, 3e-2])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_follows_torch_adam(lr, betas, weight_decay):
    x0 = initial()
    ours = run_testbed(make_optimizer("adam", lr=lr, betas=betas, weight_decay=weight_decay), x0)
    theirs = run_torch(lambda ps: torch.optim.Adam(ps, lr=lr, betas=betas, weight_decay=weight_decay), x0)
    assert_paths_close(ours, theirs)


@pytest.mark.parametrize("lr", [1e-3, 3e-2])
@pytest.mark.parametrize("weight_decay", [0.01, 0.3])
def test_adamw_follows_torch_adamw(lr, weight_decay):
    x0 = initial()
    ours = run_testbed(make_optimizer("adamw", lr=lr, weight_decay=weight_decay), x0)
    theirs = run_torch(lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=weight_decay), x0)
    assert_paths_close(ours, theirs)


def test_adamw_default_weight_decay_is_torchs():
    x0 = initial()
    ours = run_testbed(make_optimizer("adamw", lr=1e-2), x0)
    theirs = run_torch(lambda ps: torch.optim.AdamW(ps, lr=1e-2), x0)
    assert_paths_close(ours, theirs)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_follows_torch_sgd(momentum, nesterov, weight_decay):
    if nesterov and momentum == 0.0:  # as torch.optim.SGD, refused
        with pytest.raises(ValueError, match="nesterov needs momentum > 0"):
            make_optimizer("sgd", lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        return
    x0 = initial()
    lr = 0.05
    ours = run_testbed(make_optimizer("sgd", lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay), x0)
    theirs = run_torch(
        lambda ps: torch.optim.SGD(ps, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay), x0
    )
    assert_paths_close(ours, theirs)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_seeds_are_updated_independently(name):
    """Seed s in an (S, P) tensor follows exactly the path it follows alone (elementwise updates)."""
    x0 = initial(S=4, seed=3)
    together = run_testbed(make_optimizer(name, lr=1e-2, clip_grad_norm=1.0), x0)
    for s in range(4):
        alone = run_testbed(make_optimizer(name, lr=1e-2, clip_grad_norm=1.0), x0[s : s + 1])
        for a, b in zip(alone, together):
            assert torch.equal(a[0], b[s])


# --------------------------------------------------------------------------- lr multipliers


def coordinates(space: ParamSpace, prefix: str) -> torch.Tensor:
    """(P,) mask of the coordinates of parameters named `prefix` or under `prefix.`."""
    mask = torch.zeros(space.size, dtype=torch.bool)
    for name, sl in space.slices.items():
        if name == prefix or name.startswith(prefix + "."):
            mask[sl] = True
    return mask


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_zero_lr_multiplier_freezes_exactly_the_matching_parameters(name):
    x0 = initial(S=2)
    path = run_testbed(make_optimizer(name, lr=1e-2, lr_multipliers={"mlp": 0.0}), x0)
    final = path[-1]
    mlp = coordinates(SPACE, "mlp")
    assert int(mlp.sum()) == sum(SPACE.slices[n].stop - SPACE.slices[n].start for n in SPACE.slices if n.startswith("mlp."))
    assert torch.equal(final[:, mlp], x0[:, mlp])
    assert bool((final[:, ~mlp] != x0[:, ~mlp]).all())


@settings(max_examples=30, deadline=None)
@given(
    multipliers=st.dictionaries(
        st.sampled_from(["mlp", "mlp.fc1", "mlp.fc1.weight", "mlp.fc2.bias", "tok_emb", "value", "query"]),
        st.sampled_from([0.0, 0.1, 0.5, 2.0]),
        max_size=4,
    ),
    lr=st.sampled_from([1e-3, 0.1]),
)
def test_lr_multipliers_scale_plain_sgd_steps_by_the_most_specific_key(multipliers, lr):
    """With momentum-free SGD one step moves each coordinate by lr * multiplier * grad."""
    opt = make_optimizer("sgd", lr=lr, momentum=0.0, lr_multipliers=multipliers)
    flat = torch.zeros(2, SPACE.size)
    grad = torch.ones(2, SPACE.size)
    opt.step(flat, grad)
    for name, sl in SPACE.slices.items():
        matches = [k for k in multipliers if name == k or name.startswith(k + ".")]
        factor = multipliers[max(matches, key=len)] if matches else 1.0
        expected = torch.full((2, sl.stop - sl.start), -lr * factor)
        torch.testing.assert_close(flat[:, sl], expected, rtol=1e-6, atol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_a_key_must_match_whole_dotted_components():
    """'mlp.fc' is not a prefix of the module mlp.fc1 (only 'mlp.fc1' or 'mlp' are)."""
    per = SPACE.per_coordinate({"mlp.fc": 0.0, "tok": 0.0})
    assert bool((per == 1.0).all())


# --------------------------------------------------------------------------- warmup


@pytest.mark.parametrize("warmup", [1, 4, 10])
def test_linear_warmup_factor(warmup):
    opt = make_optimizer("adam", warmup_steps=warmup)
    for t in range(1, 3 * warmup + 2):
        assert opt.lr_factor(t) == pytest.approx(min(1.0, t / warmup), rel=1e-12)


def test_no_warmup_is_full_lr_from_the_first_step():
    opt = make_optimizer("adam")
    assert [opt.lr_factor(t) for t in (1, 2, 100)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("warmup", [3, 5])
def test_warmup_scales_the_applied_steps(warmup):
    """Momentum-free SGD with a constant gradient: step t moves by lr * t / warmup, then by lr."""
    lr = 0.1
    opt = make_optimizer("sgd", lr=lr, momentum=0.0, warmup_steps=warmup, lr_multipliers={"value": 0.5})
    flat = torch.zeros(1, SPACE.size, dtype=torch.float64)
    grad = torch.ones(1, SPACE.size, dtype=torch.float64)
    multiplier = SPACE.per_coordinate({"value": 0.5})
    for t in range(1, 2 * warmup + 1):
        before = flat.clone()
        opt.step(flat, grad.clone())
        moved = before - flat
        expected = (lr * min(1.0, t / warmup) * multiplier.double()).unsqueeze(0)
        torch.testing.assert_close(moved, expected, rtol=1e-5, atol=1e-7, msg=lambda m, t=t: f"step {t}: {m}")


@pytest.mark.parametrize("warmup", [4])
def test_adam_with_warmup_follows_torch_adam_with_a_linear_schedule(warmup):
    x0 = initial()
    lr = 1e-2
    ours = run_testbed(make_optimizer("adam", lr=lr, warmup_steps=warmup), x0)

    def make(ps):
        opt = torch.optim.Adam(ps, lr=lr)
        return _Scheduled(opt, lambda step: min(1.0, step / warmup) * lr)

    theirs = run_torch(make, x0)
    assert_paths_close(ours, theirs)


class _Scheduled:
    """torch optimizer whose lr is set before each step from the 1-based step number."""

    def __init__(self, opt, lr_at):
        self.opt, self.lr_at, self.t = opt, lr_at, 0

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        self.t += 1
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.t)
        self.opt.step()


# --------------------------------------------------------------------------- clipping


@settings(max_examples=40, deadline=None)
@given(
    S=st.integers(1, 6),
    P=st.integers(1, 50),
    scales=st.lists(st.floats(-4.0, 2.0), min_size=6, max_size=6),
    max_norm=st.floats(0.01, 10.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_clip_per_seed_clips_each_row_independently(S, P, scales, max_norm, seed):
    g = torch.Generator().manual_seed(seed)
    grad = torch.randn(S, P, generator=g, dtype=torch.float64) * torch.tensor([10.0**e for e in scales[:S]], dtype=torch.float64).unsqueeze(1)
    original = grad.clone()
    norms_before = torch.linalg.vector_norm(original, dim=1)
    returned = clip_per_seed(grad, max_norm)
    torch.testing.assert_close(returned, norms_before)
    norms_after = torch.linalg.vector_norm(grad, dim=1)
    for s in range(S):
        if norms_before[s] <= max_norm:
            # under the threshold the row is (up to the 1e-6 guard) untouched
            torch.testing.assert_close(grad[s], original[s], rtol=2e-4, atol=0)
        else:
            assert float(norms_after[s]) <= max_norm * (1 + 1e-9)
            assert float(norms_after[s]) >= max_norm * (1 - 2e-4)
        # the direction is kept: a non-negative multiple of the original row
        factor = grad[s] @ original[s] / (original[s] @ original[s]).clamp_min(1e-300)
        torch.testing.assert_close(grad[s], original[s] * factor, rtol=1e-9, atol=1e-300)
        # and row s is clipped exactly as if it were alone
        alone = original[s : s + 1].clone()
        clip_per_seed(alone, max_norm)
        assert torch.equal(alone[0], grad[s])


def test_clipping_one_seed_leaves_the_others_alone():
    grad = torch.tensor([[300.0, 400.0], [0.3, 0.4], [0.0, 0.0]])
    clip_per_seed(grad, 1.0)
    torch.testing.assert_close(grad[0], torch.tensor([0.6, 0.8]), rtol=1e-5, atol=0)
    torch.testing.assert_close(grad[1], torch.tensor([0.3, 0.4]), rtol=1e-5, atol=0)
    assert torch.equal(grad[2], torch.zeros(2))


def test_optimizer_clips_before_the_update_rule():
    """SGD without momentum and clip 1: each seed moves by lr times its clipped gradient."""
    opt = make_optimizer("sgd", lr=0.5, momentum=0.0, clip_grad_norm=1.0)
    flat = torch.zeros(2, SPACE.size)
    grad = torch.zeros(2, SPACE.size)
    grad[0, 0] = 10.0  # norm 10: clipped to 1
    grad[1, 1] = 0.25  # norm 0.25: untouched
    opt.step(flat, grad)
    torch.testing.assert_close(flat[0, 0], torch.tensor(-0.5), rtol=1e-5, atol=0)
    torch.testing.assert_close(flat[1, 1], torch.tensor(-0.125), rtol=1e-5, atol=0)
    assert int((flat != 0).sum()) == 2


def test_clipped_adam_follows_torch_adam_with_clip_grad_norm():
    x0 = initial()
    lr, clip = 1e-2, 0.5

    class Clipped(_Scheduled):
        def step(self):
            torch.nn.utils.clip_grad_norm_(self.opt.param_groups[0]["params"], clip)
            self.opt.step()

    ours = run_testbed(make_optimizer("adam", lr=lr, clip_grad_norm=clip), x0)
    theirs = run_torch(lambda ps: Clipped(torch.optim.Adam(ps, lr=lr), None), x0)
    assert_paths_close(ours, theirs)
