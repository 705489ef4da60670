"""Properties of the functional model: rotation invariance of the embedding space, probabilities."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.engine.model import Architecture, ParamSpace, forward, pair_index, per_seed_loss
from testbed.plugin_api.registry import default_registry

SETTINGS = settings(max_examples=25, deadline=None)


def component(kind: str, name: str, **params):
    reg = default_registry()
    plugin = reg.get(kind, name)
    return plugin.build(plugin.params(**params))


def architecture(d: int = 2, hidden: int = 8, n_tokens: int = 3, seq_len: int = 6, norm: str = "rms", **norm_params) -> Architecture:
    return Architecture(
        d=d,
        hidden=hidden,
        n_tokens=n_tokens,
        seq_len=seq_len,
        embedding_norm=component("norm", norm, **norm_params),
        mlp_norm=component("norm", norm, **norm_params),
        activation=component("activation", "gelu"),
    )


def random_orthogonal(d: int, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed; may be a rotation or a reflection
    return q.to(dtype)


def rotate(views: dict[str, torch.Tensor], R: torch.Tensor) -> dict[str, torch.Tensor]:
    """Map every vector of embedding space by R (one (d, d) R, or one per seed (S, d, d))."""
    if R.dim() == 2:
        R = R.expand(views["tok_emb"].shape[0], *R.shape)
    Rt = R.transpose(1, 2)
    return {
        "tok_emb": views["tok_emb"] @ Rt,  # rows e -> R e
        "pos_emb": views["pos_emb"] @ Rt,
        "query": (views["query"].unsqueeze(1) @ Rt).squeeze(1),
        "value": R @ views["value"] @ Rt,
        "mlp.fc1.weight": views["mlp.fc1.weight"] @ Rt,  # receptors w_i -> R w_i
        "mlp.fc1.bias": views["mlp.fc1.bias"],
        "mlp.fc2.weight": R @ views["mlp.fc2.weight"],  # assemblers (columns) -> R a_j
        "mlp.fc2.bias": (views["mlp.fc2.bias"].unsqueeze(1) @ Rt).squeeze(1),
    }


def random_index(arch: Architecture, S: int, N: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(arch.n_tokens, (S, N, arch.seq_len), generator=g)
    return tokens, pair_index(tokens, arch.n_tokens)


@pytest.mark.parametrize("norm", ["rms", "l2", "smooth", "identity"])
@SETTINGS
@given(
    d=st.sampled_from([2, 3]),
    seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True),
    draw_seed=st.integers(0, 2**31 - 1),
    per_seed=st.booleans(),
)
def test_logits_are_invariant_under_orthogonal_maps_of_embedding_space(norm, d, seeds, draw_seed, per_seed):
    arch = architecture(d=d, norm=norm)
    space = ParamSpace(arch.shapes())
    views = space.views(space.init(seeds))
    g = torch.Generator().manual_seed(draw_seed)
    S = len(seeds)
    R = torch.stack([random_orthogonal(d, g) for _ in range(S)]) if per_seed else random_orthogonal(d, g)
    _, index = random_index(arch, S, 40, g)
    trace, trace_rot = {}, {}
    logits = forward(arch, views, index, trace)
    rotated = forward(arch, rotate(views, R), index, trace_rot)
    torch.testing.assert_close(rotated, logits, rtol=1e-4, atol=1e-4)
    # intermediates in embedding space move with R, scalar ones do not change
    Rs = R if R.dim() == 3 else R.expand(S, d, d)
    torch.testing.assert_close(trace_rot["attn"], trace["attn"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(trace_rot["xi"], trace["xi"] @ Rs.transpose(1, 2), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(trace_rot["pre"], trace["pre"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("d", [2, 3])
def test_a_non_orthogonal_map_changes_the_logits(d):
    """The invariance above is not vacuous: a shear of embedding space changes the output."""
    arch = architecture(d=d)
    space = ParamSpace(arch.shapes())
    views = space.views(space.init([0, 1]))
    g = torch.Generator().manual_seed(0)
    _, index = random_index(arch, 2, 40, g)
    shear = torch.eye(d)
    shear[0, 1] = 1.5
    logits = forward(arch, views, index)
    sheared = forward(arch, rotate(views, shear), index)
    assert not torch.allclose(sheared, logits, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("norm", ["rms", "smooth"])
@pytest.mark.parametrize("d", [2, 3])
def test_rotation_invariance_in_float64(norm, d):
    """The same invariance, at double precision with a tight tolerance."""
    arch = architecture(d=d, norm=norm, hidden=16, n_tokens=4, seq_len=9)
    space = ParamSpace(arch.shapes())
    for seed in (0, 5, 17):
        views = space.views(space.init([seed, seed + 1]).double())
        g = torch.Generator().manual_seed(seed)
        R = random_orthogonal(d, g, torch.float64)
        _, index = random_index(arch, 2, 64, g)
        torch.testing.assert_close(forward(arch, rotate(views, R), index), forward(arch, views, index), rtol=1e-10, atol=1e-10)


@SETTINGS
@given(
    seeds=st.lists(st.integers(0, 10_000), min_size=1, max_size=4, unique=True),
    n_tokens=st.integers(2, 7),
    seq_len=st.integers(1, 12),
    N=st.integers(1, 30),
    d=st.sampled_from([1, 2, 3]),
    draw_seed=st.integers(0, 2**31 - 1),
)
def test_softmax_of_logits_and_attention_weights_are_probability_vectors(seeds, n_tokens, seq_len, N, d, draw_seed):
    arch = architecture(d=d, n_tokens=n_tokens, seq_len=seq_len)
    space = ParamSpace(arch.shapes())
    views = space.views(space.init(seeds))
    S = len(seeds)
    g = torch.Generator().manual_seed(draw_seed)
    tokens, index = random_index(arch, S, N, g)
    assert index.shape == (S, seq_len, N)
    trace: dict[str, torch.Tensor] = {}
    logits = forward(arch, views, index, trace)
    assert logits.shape == (S, N, n_tokens)
    assert bool(torch.isfinite(logits).all())
    probs = torch.softmax(logits, dim=-1)
    assert bool((probs >= 0).all())
    torch.testing.assert_close(probs.sum(-1), torch.ones(S, N), rtol=1e-5, atol=1e-5)
    attn = trace["attn"]
    assert attn.shape == (S, seq_len, N)
    assert bool((attn >= 0).all())
    torch.testing.assert_close(attn.sum(1), torch.ones(S, N), rtol=1e-5, atol=1e-5)
    # per-seed loss is the mean cross-entropy, i.e. -mean log p(label)
    labels = torch.randint(n_tokens, (S, N), generator=g)
    expected = -torch.log(probs.gather(2, labels.unsqueeze(-1)).squeeze(-1)).mean(1)
    torch.testing.assert_close(per_seed_loss(logits, labels), expected, rtol=1e-4, atol=1e-5)


def test_pair_index_reads_each_seeds_own_token_position_rows():
    """Row of (seed s, sequence n, position t) in seed s's own pair table is x_t * L + t, laid out (S, L, N)."""
    g = torch.Generator().manual_seed(3)
    S, N, L, V = 3, 5, 4, 6
    tokens = torch.randint(V, (S, N, L), generator=g)
    index = pair_index(tokens, V)
    assert index.shape == (S, L, N)
    for s in range(S):
        for n in range(N):
            for t in range(L):
                assert int(index[s, t, n]) == int(tokens[s, n, t]) * L + t


def assert_forward_is_separable_by_seed(N: int) -> None:
    arch = architecture(d=2, n_tokens=3, seq_len=6)
    space = ParamSpace(arch.shapes())
    seeds = [4, 9, 2]
    views = space.views(space.init(seeds))
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, (3, N, 6), generator=g)
    together = forward(arch, views, pair_index(tokens, 3))
    for i, seed in enumerate(seeds):
        alone_views = space.views(space.init([seed]))
        alone = forward(arch, alone_views, pair_index(tokens[i : i + 1], 3))
        assert torch.equal(alone[0], together[i]), f"seed {seed}, N={N}: {(alone[0] - together[i]).abs().max().item()}"


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("N", [1, 7, 16, 20, 32, 48])
def test_forward_of_a_seed_does_not_depend_on_the_other_seeds(threads, n_threads, N):
    """Bit-identical logits for a seed computed alone or beside others, with one intra-op thread
    and with two (where torch.softmax over a non-last axis would not be)."""
    threads(n_threads)
    assert_forward_is_separable_by_seed(N)


def test_attention_is_uniform_when_the_query_is_zero():
    """Scores are z . q / sqrt(d): with q = 0 every position gets weight 1 / L."""
    arch = architecture(d=2, n_tokens=3, seq_len=5)
    space = ParamSpace(arch.shapes())
    flat = space.init([0])
    flat[:, space.slices["query"]] = 0.0
    trace: dict[str, torch.Tensor] = {}
    _, index = random_index(arch, 1, 7, torch.Generator().manual_seed(0))
    forward(arch, space.views(flat), index, trace)
    torch.testing.assert_close(trace["attn"], torch.full((1, 5, 7), 1.0 / 5))
    assert math.isclose(float(trace["attn"].sum(1).mean()), 1.0, rel_tol=1e-6)
