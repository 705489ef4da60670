"""Pieces of the seed axis: beyond a few hundred seeds evaluation cuts seed groups as well as the
sequence axis (`testbed.engine.stage._chunks`); every seed is still evaluated on all of its
distinct sequences, and the pieces put back together are the table they were cut from."""

from __future__ import annotations

import torch

from testbed.engine import stage as stage_mod
from testbed.engine.model import Architecture, ParamSpace
from testbed.engine.stage import Stage, eval_table, evaluate
from testbed.engine.task import make_dataset
from testbed.plugin_api.registry import default_registry


def component(kind: str, name: str):
    plugin = default_registry().get(kind, name)
    return plugin.build(plugin.params())


RMS, GELU = component("norm", "rms"), component("activation", "gelu")


def setup(seeds):
    arch = Architecture(d=2, hidden=8, n_tokens=2, seq_len=6, embedding_norm=RMS, mlp_norm=RMS, activation=GELU)
    space = ParamSpace(arch.shapes())
    data = make_dataset(seeds, 2, 6, 3, 40, 40, "iid")
    return arch, space, data


def test_seed_groups_cover_every_seed_and_sequence(monkeypatch):
    seeds = list(range(7))
    arch, space, data = setup(seeds)
    whole = Stage.prepare(data, arch)
    assert all(piece[0] == slice(None) for piece in whole.eval_chunks)
    # few elements per piece: groups of seeds, each cut along the sequences
    monkeypatch.setattr(stage_mod, "EVAL_CHUNK_ELEMENTS", 3 * stage_mod.eval_width(arch) * stage_mod.MIN_PIECE)
    grouped = Stage.prepare(data, arch)
    assert {(s.start, s.stop) for s, _, _ in grouped.eval_chunks} == {(0, 3), (3, 6), (6, 9)}
    for a, b in zip(eval_table(whole), eval_table(grouped)):
        assert torch.equal(a, b)
    flat = space.init(seeds)
    want, got = evaluate(arch, space.views(flat), whole, 1), evaluate(arch, space.views(flat), grouped, 1)
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert torch.allclose(getattr(want, name), getattr(got, name), rtol=1e-5, atol=1e-6), name


def test_tables_are_compact_and_batches_are_int64():
    arch, space, data = setup([0, 1])
    st = Stage.prepare(data, arch)
    assert st.train_rows.dtype == torch.uint8 and st.train_labels.dtype == torch.uint8
    perm = torch.stack([torch.randperm(40) for _ in range(2)])
    x, y = next(stage_mod.batches(st, perm, 8))
    assert x.dtype == torch.int64 and y.dtype == torch.int64 and x.shape == (2, 6, 8) and x.is_contiguous()
    assert stage_mod.compact(300) == torch.int16 and stage_mod.compact(256) == torch.uint8



def test_a_step_in_seed_blocks_is_the_whole_step(monkeypatch, one_and_two_threads):
    """Beyond STEP_BLOCK seeds a step runs block by block: bit for bit the whole step."""
    import copy

    from conftest import TINY

    from testbed.config.scenario import validate
    from testbed.engine import loop

    data = copy.deepcopy(TINY)
    data["seeds"] = "0-6"
    scenario = validate(data)
    whole = loop.train(scenario)
    monkeypatch.setattr(loop, "STEP_BLOCK", 3)
    blocked = loop.train(scenario)
    for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
        assert torch.equal(getattr(whole.final, name), getattr(blocked.final, name))


def test_distinct_sequences_of_every_seed_at_once_are_those_seed_by_seed():
    """`Stage.prepare` lists every seed's distinct sequences in one sort where the codes fit;
    the same tables, value for value, as seed by seed."""
    for seeds, p, L, n, split in ((list(range(6)), 2, 6, 40, "iid"), ([3, 9, 11], 3, 5, 30, "disjoint"), ([0], 5, 4, 20, "iid")):
        arch = Architecture(d=2, hidden=4, n_tokens=p + 1, seq_len=L, embedding_norm=RMS, mlp_norm=RMS, activation=GELU)
        data = make_dataset(seeds, p, L, 3, n, n, split)
        kind = stage_mod.compact(arch.n_tokens * L)
        for a, b in zip(stage_mod._distinct_seed_by_seed(data, arch, kind), stage_mod._distinct_at_once(data, kind)):
            assert a.dtype == b.dtype and torch.equal(a, b)
