"""Properties of the built-in norm plugins (built through the registry, as the trainer does)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from testbed.plugin_api.registry import default_registry

SHAPES = ("linear", "cubic", "quintic")
FAST = settings(max_examples=40, deadline=None)


def build_norm(name: str, **params):
    reg = default_registry()
    plugin = reg.get("norm", name)
    return plugin.build(plugin.params(**params))


def rms_of(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(-1).sqrt()


@st.composite
def vectors(draw, max_rows: int = 4, max_d: int = 8, bound: float = 10.0) -> torch.Tensor:
    """A (rows, d) float64 tensor (a batch of vectors; the norms act on the last axis)."""
    rows = draw(st.integers(1, max_rows))
    d = draw(st.integers(1, max_d))
    values = draw(
        st.lists(
            st.floats(-bound, bound, allow_nan=False, allow_infinity=False),
            min_size=rows * d,
            max_size=rows * d,
        )
    )
    return torch.tensor(values, dtype=torch.float64).view(rows, d)


scales = st.floats(-3.0, 3.0).map(lambda e: 10.0**e)  # c in [1e-3, 1e3], log-uniform
radii = st.sampled_from([0.05, 0.3, 1.0, 2.5])


# --------------------------------------------------------------------------- rms and l2


@pytest.mark.parametrize("name", ["rms", "l2"])
@FAST
@given(x=vectors(), c=scales)
def test_scale_invariance_without_eps_is_exact_up_to_rounding(name, x, c):
    f = build_norm(name, eps=0.0)
    assume(bool((rms_of(x) > 1e-6).all()))
    torch.testing.assert_close(f(c * x), f(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["rms", "l2"])
@FAST
@given(x=vectors(), c=scales)
def test_scale_invariance_with_default_eps(name, x, c):
    """With eps = 1e-5 after the square root, f(cx) and f(x) differ by about eps / |x| only."""
    f = build_norm(name)
    r = rms_of(x)
    assume(bool((r > 1e-2).all()) and bool((c * r > 1e-2).all()))
    # x / (a + eps) vs x / (b + eps) with a, b >= 1e-2 * (1 or sqrt(d)): relative gap <= eps / 1e-2 = 1e-3
    torch.testing.assert_close(f(c * x), f(x), rtol=2e-3, atol=1e-9)


@FAST
@given(x=vectors())
def test_rms_output_has_unit_rms_and_l2_output_unit_length(x):
    assume(bool((rms_of(x) > 1e-2).all()))
    out_rms = build_norm("rms")(x)
    out_l2 = build_norm("l2")(x)
    torch.testing.assert_close(rms_of(out_rms), torch.ones(x.shape[0], dtype=x.dtype), rtol=2e-3, atol=0)
    norms = torch.linalg.vector_norm(out_l2, dim=-1)
    torch.testing.assert_close(norms, torch.ones(x.shape[0], dtype=x.dtype), rtol=2e-3, atol=0)
    # both keep the direction: out = x * positive scalar
    for out in (out_rms, out_l2):
        ratio = (out * x).sum(-1) / (torch.linalg.vector_norm(out, dim=-1) * torch.linalg.vector_norm(x, dim=-1))
        torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["rms", "l2", "smooth", "identity"])
def test_norms_act_on_the_last_axis_only(name):
    """A batch of vectors is normalised row by row, whatever the leading shape."""
    f = build_norm(name)
    x = torch.randn(3, 4, 5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = f(x)
    assert out.shape == x.shape
    rows = torch.stack([f(row) for row in x.reshape(-1, 2)]).view_as(x)
    torch.testing.assert_close(out, rows, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- smooth


@pytest.mark.parametrize("shape", SHAPES)
@FAST
@given(x=vectors(), radius=radii, c=st.floats(1.0, 100.0))
def test_smooth_equals_rms_beyond_its_radius(shape, x, radius, c):
    r = rms_of(x)
    assume(bool((r > 1e-3).all()))
    # put every row at rms radius * c (c >= 1: on or beyond the radius)
    y = x * (radius * c / r).unsqueeze(-1)
    smooth = build_norm("smooth", radius=radius, shape=shape)
    rms = build_norm("rms")
    torch.testing.assert_close(smooth(y), rms(y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_smooth_equals_rms_exactly_at_the_radius(shape):
    x = torch.tensor([[3.0, -4.0], [1.0, 1.0], [-2.0, 0.5]], dtype=torch.float64)
    for radius in (0.05, 0.3, 1.0, 2.5):
        y = x * (radius / rms_of(x)).unsqueeze(-1)
        smooth = build_norm("smooth", radius=radius, shape=shape)
        torch.testing.assert_close(smooth(y), build_norm("rms")(y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@FAST
@given(x=vectors(bound=1e3), radius=radii)
def test_smooth_is_bounded(shape, x, radius):
    out = build_norm("smooth", radius=radius, shape=shape)(x)
    assert bool(torch.isfinite(out).all())
    assert float(rms_of(out).max()) <= 1.0 + 1e-9


@pytest.mark.parametrize("shape", SHAPES)
@FAST
@given(x=vectors(max_d=4, bound=3.0), radius=radii)
def test_smooth_shrinks_to_zero_at_the_origin_and_keeps_direction(shape, x, radius):
    smooth = build_norm("smooth", radius=radius, shape=shape)
    out = smooth(x)
    # out = x * (positive scalar per row): same direction, and rms(out) grows with rms(x) toward 1
    r = rms_of(x)
    assume(bool((r > 1e-9).all()))
    ratio = (out * x).sum(-1) / (torch.linalg.vector_norm(out, dim=-1) * torch.linalg.vector_norm(x, dim=-1))
    torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=1e-9, atol=1e-9)
    tiny = x * (1e-6 * radius / r).unsqueeze(-1)
    assert float(rms_of(smooth(tiny)).max()) < 1e-4
    assert bool((smooth(torch.zeros_like(x)) == 0).all())
    # monotone in the radial direction
    grid = torch.linspace(0.0, 2.0, 41, dtype=torch.float64) * radius
    row = x[0] / r[0]
    radial = rms_of(smooth(grid.unsqueeze(-1) * row))
    assert bool((radial[1:] >= radial[:-1] - 1e-12).all())


def lipschitz_bound(radius: float) -> float:
    """|f(x) - f(y)| <= K |x - y| (Euclidean) for the smooth norm: the Jacobian x g(s) is g I + 2 g'(s) x x^T / d;
    for every shape g <= 15 / (8 R) and |2 g' x x^T / d| <= 2.5 / R inside, and 1 / R outside the radius."""
    return 5.0 / radius


@st.composite
def point_and_direction(draw):
    """A (rows, d) batch of points and a unit direction in R^d."""
    x = draw(vectors(max_d=6, bound=3.0))
    d = x.shape[-1]
    u = torch.tensor(draw(st.lists(st.floats(-1.0, 1.0), min_size=d, max_size=d)), dtype=torch.float64)
    if float(torch.linalg.vector_norm(u)) < 1e-3:
        u = torch.ones(d, dtype=torch.float64)
    return x, u


@pytest.mark.parametrize("shape", SHAPES)
@FAST
@given(
    xu=point_and_direction(),
    radius=radii,
    where=st.sampled_from(["anywhere", "radius", "origin"]),
    step=st.floats(-6.0, -2.0).map(lambda e: 10.0**e),
)
def test_smooth_is_continuous(shape, xu, radius, where, step):
    """Close inputs give close outputs: anywhere, straddling the radius, and around the origin."""
    x, u = xu
    u = u / torch.linalg.vector_norm(u)
    r = rms_of(x)
    if where == "radius":
        assume(bool((r > 1e-3).all()))
        x = x * (radius / r).unsqueeze(-1)  # on the radius: x and x +- delta straddle it
    elif where == "origin":
        x = x * 1e-9
    smooth = build_norm("smooth", radius=radius, shape=shape)
    K = lipschitz_bound(radius)
    for sign in (1.0, -1.0):
        delta = sign * step * u
        gap = torch.linalg.vector_norm(smooth(x + delta) - smooth(x), dim=-1)
        assert bool((gap <= K * step + 1e-12).all()), (gap, K * step)
    # also along the radial direction itself (in and out across the radius)
    y = x / x.abs().amax(-1, keepdim=True).clamp_min(1e-300)  # rescaled first: |x| may underflow
    radial = y / torch.linalg.vector_norm(y, dim=-1, keepdim=True).clamp_min(1e-300)
    for sign in (1.0, -1.0):
        gap = torch.linalg.vector_norm(smooth(x + sign * step * radial) - smooth(x), dim=-1)
        assert bool((gap <= K * step + 1e-12).all()), (gap, K * step)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius", [0.05, 1.0, 2.5])
def test_smooth_is_continuous_across_the_radius_on_a_fine_grid(shape, radius):
    """Output rms along a ray through the radius has no jump between neighbouring grid points."""
    smooth = build_norm("smooth", radius=radius, shape=shape)
    u = torch.tensor([0.6, -0.8], dtype=torch.float64) * math.sqrt(2.0)  # rms(u) = 1
    t = torch.linspace(0.9, 1.1, 2001, dtype=torch.float64) * radius
    out = smooth(t.unsqueeze(-1) * u)
    jumps = torch.linalg.vector_norm(out[1:] - out[:-1], dim=-1)
    assert float(jumps.max()) <= lipschitz_bound(radius) * float(
        torch.linalg.vector_norm((t[1] - t[0]) * u)
    ) + 1e-12


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius", [0.05, 1.0, 2.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smooth_has_finite_gradients_at_the_origin(shape, radius, dtype):
    smooth = build_norm("smooth", radius=radius, shape=shape)
    for d in (1, 2, 3):
        x = torch.zeros(d, dtype=dtype, requires_grad=True)
        out = smooth(x)
        assert bool(torch.isfinite(out).all())
        for i in range(d):
            (g,) = torch.autograd.grad(out[i], x, retain_graph=True)
            assert bool(torch.isfinite(g).all()), g
            # at the origin f(x) ~ x * sigma'(0) / R: the Jacobian is diagonal, sigma'(0) / (R + eps)
            expected = torch.zeros(d, dtype=dtype)
            expected[i] = {"linear": 1.0, "cubic": 1.5, "quintic": 15.0 / 8.0}[shape] / (radius + 1e-5)
            torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("shape", SHAPES)
@settings(max_examples=25, deadline=None)
@given(x=vectors(max_d=4, bound=3.0), radius=radii, shrink=st.sampled_from([0.0, 1e-12, 1e-3, 1.0]))
def test_smooth_has_finite_gradients_everywhere(shape, x, radius, shrink):
    smooth = build_norm("smooth", radius=radius, shape=shape)
    x = (x * shrink).requires_grad_(True)
    weights = torch.linspace(-1.0, 1.0, x.numel(), dtype=x.dtype).view_as(x)
    (g,) = torch.autograd.grad((smooth(x) * weights).sum(), x)
    assert bool(torch.isfinite(g).all()), g


@pytest.mark.parametrize("name", ["rms", "l2"])
def test_rms_and_l2_stay_finite_at_the_origin(name):
    """eps keeps the value finite at 0 (the zero vector maps to itself)."""
    f = build_norm(name)
    out = f(torch.zeros(3, 2))
    assert bool(torch.isfinite(out).all())
    assert bool((out == 0).all())


# --------------------------------------------------------------------------- identity


@FAST
@given(x=vectors(bound=1e6))
def test_identity_returns_its_input(x):
    f = build_norm("identity")
    out = f(x)
    assert torch.equal(out, x)
