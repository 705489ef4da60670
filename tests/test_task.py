"""Sparse modular addition: labels, per-seed sampling, disjoint test sets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from testbed.engine import task as task_mod
from testbed.engine.task import labels, make_dataset

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def task_batch(draw):
    """(tokens (N, L), p, k, generator seed) with k <= L."""
    p = draw(st.integers(2, 7))
    L = draw(st.integers(1, 16))
    k = draw(st.integers(1, L))
    N = draw(st.integers(1, 20))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    return torch.randint(p, (N, L), generator=g), p, k, g


@SETTINGS
@given(batch=task_batch())
def test_labels_are_the_sum_of_the_first_k_tokens_mod_p(batch):
    tokens, p, k, _ = batch
    y = labels(tokens, k, p)
    assert y.shape == tokens.shape[:-1]
    for row, label in zip(tokens.tolist(), y.tolist()):
        assert label == sum(row[:k]) % p
        assert 0 <= label < p


@SETTINGS
@given(batch=task_batch())
def test_labels_ignore_the_suffix(batch):
    tokens, p, k, g = batch
    L = tokens.shape[-1]
    changed = tokens.clone()
    changed[:, k:] = torch.randint(p, (tokens.shape[0], L - k), generator=g)
    assert torch.equal(labels(changed, k, p), labels(tokens, k, p))
    # changing a single suffix token (when there is one) changes nothing either
    if k < L:
        one = tokens.clone()
        one[:, L - 1] = (one[:, L - 1] + 1) % p
        assert torch.equal(labels(one, k, p), labels(tokens, k, p))


@SETTINGS
@given(batch=task_batch())
def test_labels_are_invariant_to_permuting_the_first_k_tokens(batch):
    tokens, p, k, g = batch
    perm = torch.randperm(k, generator=g)
    permuted = tokens.clone()
    permuted[:, :k] = tokens[:, :k][:, perm]
    assert torch.equal(labels(permuted, k, p), labels(tokens, k, p))


@SETTINGS
@given(batch=task_batch())
def test_labels_depend_on_every_one_of_the_first_k_tokens(batch):
    """Non-vacuity of the invariances: incrementing one of the first k tokens shifts the label by 1 mod p."""
    tokens, p, k, g = batch
    j = int(torch.randint(k, (1,), generator=g))
    bumped = tokens.clone()
    bumped[:, j] = (bumped[:, j] + 1) % p
    assert torch.equal(labels(bumped, k, p), (labels(tokens, k, p) + 1) % p)


def test_labels_work_with_a_seed_axis():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, (3, 10, 7), generator=g)
    y = labels(tokens, 4, 5)
    assert y.shape == (3, 10)
    for s in range(3):
        assert torch.equal(y[s], labels(tokens[s], 4, 5))


# --------------------------------------------------------------------------- make_dataset


def assert_split_consistent(split, p: int, k: int, S: int, N: int, L: int) -> None:
    assert split.tokens.shape == (S, N, L)
    assert split.labels.shape == (S, N)
    assert split.tokens.dtype == torch.int64
    assert int(split.tokens.min()) >= 0 and int(split.tokens.max()) < p
    assert torch.equal(split.labels, labels(split.tokens, k, p))


@pytest.mark.parametrize("test_split", ["iid", "disjoint"])
@settings(max_examples=25, deadline=None)
@given(
    seeds=st.lists(st.integers(0, 1000), min_size=1, max_size=4, unique=True),
    p=st.integers(2, 5),
    data=st.data(),
)
def test_make_dataset_is_deterministic_and_each_seed_is_independent_of_the_others(test_split, seeds, p, data):
    L = data.draw(st.integers(6, 10))
    k = data.draw(st.integers(1, L))
    n_train = data.draw(st.integers(1, min(40, p**L - 1)))
    n_test = data.draw(st.integers(1, 30))
    args = (p, L, k, n_train, n_test, test_split)
    a = make_dataset(seeds, *args)
    b = make_dataset(seeds, *args)
    S = len(seeds)
    assert a.p == p
    for ds in (a, b):
        assert_split_consistent(ds.train, p, k, S, n_train, L)
        assert_split_consistent(ds.test, p, k, S, n_test, L)
    for x, y in ((a.train, b.train), (a.test, b.test)):
        assert torch.equal(x.tokens, y.tokens) and torch.equal(x.labels, y.labels)
    # each seed's sample, drawn alone or in another company and order, is the same
    others = data.draw(st.lists(st.integers(1001, 2000), max_size=3, unique=True))
    for i, seed in enumerate(seeds):
        alone = make_dataset([seed], *args)
        company = [*others, seed]
        mixed = make_dataset(company, *args)
        for split in ("train", "test"):
            mine = getattr(a, split)
            for other, j in ((getattr(alone, split), 0), (getattr(mixed, split), len(company) - 1)):
                assert torch.equal(other.tokens[j], mine.tokens[i])
                assert torch.equal(other.labels[j], mine.labels[i])


def test_different_seeds_draw_different_samples():
    ds = make_dataset([0, 1, 2], 3, 12, 5, 64, 64, "iid")
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(ds.train.tokens[i], ds.train.tokens[j])
            assert not torch.equal(ds.test.tokens[i], ds.test.tokens[j])
        # and a seed's test sample is not its training sample
        assert not torch.equal(ds.train.tokens[i], ds.test.tokens[i])


def rows(t: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(r) for r in t.tolist()}


def assert_disjoint(ds) -> None:
    for s in range(ds.train.tokens.shape[0]):
        train, test = rows(ds.train.tokens[s]), rows(ds.test.tokens[s])
        assert not (train & test), f"seed index {s}: {len(train & test)} test sequences are in the training set"


@pytest.mark.parametrize(
    "p, L, n_train, n_test",
    [
        (2, 8, 200, 300),  # 256 sequences: enumerated, few left (and drawn with replacement)
        (2, 8, 64, 64),
        (3, 12, 300, 200),  # 531441 sequences: still enumerated (below ENUMERATE_BELOW)
        (3, 13, 300, 200),  # 1594323 sequences: rejection sampling
        (2, 21, 300, 200),  # 2097152 sequences: rejection sampling
    ],
)
def test_disjoint_test_sets_avoid_the_training_set(p, L, n_train, n_test):
    seeds = [0, 7, 42]
    ds = make_dataset(seeds, p, L, 3, n_train, n_test, "disjoint")
    assert_split_consistent(ds.train, p, 3, 3, n_train, L)
    assert_split_consistent(ds.test, p, 3, 3, n_test, L)
    assert_disjoint(ds)


@pytest.mark.parametrize("path", ["enumerate", "reject"])
@pytest.mark.parametrize("p, L, n_train", [(2, 8, 230), (3, 5, 200), (2, 6, 40)])
def test_both_disjoint_code_paths_on_crowded_spaces(monkeypatch, path, p, L, n_train):
    """Force each code path of _disjoint_sample on a small space where most sequences are in the
    training set, so that a broken exclusion would certainly show."""
    monkeypatch.setattr(task_mod, "ENUMERATE_BELOW", (1 << 40) if path == "enumerate" else 0)
    seeds = [1, 2, 3, 4]
    ds = make_dataset(seeds, p, L, 2, n_train, 150, "disjoint")
    assert_split_consistent(ds.test, p, 2, 4, 150, L)
    assert_disjoint(ds)
    for s in range(4):
        absent = p**L - len(rows(ds.train.tokens[s]))
        # every drawn test sequence is one of the absent ones, and (150 draws) most absent ones show up
        assert len(rows(ds.test.tokens[s])) <= absent
        if absent <= 30:
            assert len(rows(ds.test.tokens[s])) >= absent // 2


def test_disjoint_sample_uses_every_absent_sequence_with_similar_frequency():
    """Drawn uniformly among the absent sequences: with 4000 draws from a handful, each shows up."""
    g = torch.Generator().manual_seed(0)
    p, L = 2, 4
    train = torch.tensor([[int(b) for b in f"{c:04b}"] for c in range(16) if c not in (3, 6, 9, 12)])
    for threshold in ((1 << 40), 0):
        task_mod_threshold = task_mod.ENUMERATE_BELOW
        try:
            task_mod.ENUMERATE_BELOW = threshold
            out = task_mod._disjoint_sample(train, 4000, p, g)
        finally:
            task_mod.ENUMERATE_BELOW = task_mod_threshold
        assert out.shape == (4000, L)
        counts: dict[tuple[int, ...], int] = {}
        for r in out.tolist():
            counts[tuple(r)] = counts.get(tuple(r), 0) + 1
        assert set(counts) == rows(torch.tensor([[int(b) for b in f"{c:04b}"] for c in (3, 6, 9, 12)]))
        assert min(counts.values()) > 800  # expected 1000 each; 800 is > 6 standard deviations below


def test_disjoint_with_no_room_left_is_an_error():
    """All 2**3 sequences in the training set (with high probability for 200 draws): nothing to test on."""
    with pytest.raises(ValueError):
        make_dataset([0], 2, 3, 2, 200, 10, "disjoint")


@pytest.mark.parametrize("p, L", [(2, 6), (3, 12)])
def test_iid_test_sets_have_the_right_shape_and_labels(p, L):
    seeds = [0, 1]
    ds = make_dataset(seeds, p, L, 4, 300, 200, "iid")
    assert_split_consistent(ds.train, p, 4, 2, 300, L)
    assert_split_consistent(ds.test, p, 4, 2, 200, L)
    if p**L <= 64:
        # a tiny space: an independent sample overlaps the training set (iid allows it)
        assert rows(ds.train.tokens[0]) & rows(ds.test.tokens[0])
