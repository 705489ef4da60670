"""Batch orders are each seed's randperm sequence from its own generator, however they are
drawn: in threads, ahead of time, or continued from a saved state."""

from __future__ import annotations

import pytest
import torch

from testbed.engine import batch_order
from testbed.engine.batch_order import BatchOrders
from testbed.engine.seeding import generator

SEEDS = [0, 3, 7, 11, 12]


def plain(seeds: list[int], n: int, epochs: int) -> list[torch.Tensor]:
    gens = [generator(seed, "batches") for seed in seeds]
    return [torch.stack([torch.randperm(n, generator=g) for g in gens]) for _ in range(epochs)]


@pytest.mark.parametrize("ahead", [False, True])
@pytest.mark.parametrize("workers", [1, 3])
def test_orders_are_each_seeds_own_draws(ahead, workers, monkeypatch):
    monkeypatch.setattr(batch_order, "PER_WORKER", 1)
    orders = BatchOrders(SEEDS, 40, ahead=ahead, workers=workers)
    assert orders.workers == workers
    for epoch, expected in enumerate(plain(SEEDS, 40, 4)):
        assert torch.equal(orders.take(), expected), epoch
    orders.close()


@pytest.mark.parametrize("ahead", [False, True])
def test_a_saved_state_continues_the_sequence(ahead):
    expected = plain(SEEDS, 30, 5)
    first = BatchOrders(SEEDS, 30, ahead=ahead)
    for _ in range(2):
        first.take()
    state = first.state_dict()
    assert (state["next"] is not None) == ahead  # drawn ahead: kept, since the generators have moved past it
    first.close()
    again = BatchOrders(SEEDS, 30, ahead=not ahead)  # continued by a session that draws the other way
    again.load_state_dict(state)
    for epoch in range(2, 5):
        assert torch.equal(again.take(), expected[epoch]), epoch
    again.close()
