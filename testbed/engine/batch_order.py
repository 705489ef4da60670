"""Each seed's batch order, epoch after epoch, drawn from its own generator.

A seed's order is `torch.randperm(n)` from the generator (seed, "batches") and nothing else,
whoever draws it and whenever. Drawing costs about 15 us per seed (0.15-0.4 s an epoch at
10,000 seeds): next to a CPU step that is noise, but a GPU finishes a whole epoch of 10,000
seeds in less. So, for a run off the CPU, the next epoch's orders are drawn ahead, in a thread,
while the device trains on the current ones, and drawn on several cores at once. The draws
are the same numbers either way; a checkpoint keeps the order drawn ahead with the generators'
states, so a resumed run takes the very orders it would have taken.
"""

from __future__ import annotations

import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from testbed.engine.seeding import generator

PER_WORKER = 1024  # seeds per drawing thread, at the least (fewer are not worth a thread)


class BatchOrders:
    def __init__(self, seeds: list[int], n: int, ahead: bool = False, workers: int = 1):
        self.generators = [generator(seed, "batches") for seed in seeds]
        self.n = n
        self.ahead = ahead
        self.workers = max(1, min(workers, len(seeds) // PER_WORKER))
        self._drawers = ThreadPoolExecutor(self.workers, thread_name_prefix="batch-order") if self.workers > 1 else None
        self._next_drawer = ThreadPoolExecutor(1, thread_name_prefix="batch-order-ahead") if ahead else None
        self._next: Future | torch.Tensor | None = None
        pools = [pool for pool in (self._drawers, self._next_drawer) if pool is not None]
        self._finalizer = weakref.finalize(self, _shut_down, pools)  # a run that fails leaves no idle threads behind

    def take(self) -> torch.Tensor:
        """(S, n) int64: this epoch's order for every seed (and, ahead, start on the next)."""
        if self._next is None:
            order = self._draw()
        else:
            order = self._next.result() if isinstance(self._next, Future) else self._next
        self._next = self._next_drawer.submit(self._draw) if self._next_drawer is not None else None
        return order

    def _draw(self) -> torch.Tensor:
        order = torch.empty(len(self.generators), self.n, dtype=torch.int64)
        if self._drawers is None:
            self._draw_rows(order, 0, len(self.generators))
            return order
        size = -(-len(self.generators) // self.workers)
        for part in [self._drawers.submit(self._draw_rows, order, lo, lo + size) for lo in range(0, len(self.generators), size)]:
            part.result()
        return order

    def _draw_rows(self, order: torch.Tensor, lo: int, hi: int) -> None:
        for i in range(lo, min(hi, len(self.generators))):
            torch.randperm(self.n, generator=self.generators[i], out=order[i])

    def state_dict(self) -> dict[str, Any]:
        """The generators' states and the order already drawn for the next epoch (None if
        none was): what continues the sequence of orders exactly."""
        drawn = self._next.result() if isinstance(self._next, Future) else self._next
        self._next = drawn
        if drawn is not None and self.n <= torch.iinfo(torch.int16).max:
            drawn = drawn.to(torch.int16)  # a quarter of the bytes (82 MB at 10,000 seeds)
        return {"generators": [g.get_state() for g in self.generators], "next": drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if isinstance(self._next, Future):
            self._next.result()  # a draw in flight would move the generators after they are set
        for g, saved in zip(self.generators, state["generators"]):
            g.set_state(saved)
        drawn = state.get("next")
        self._next = drawn.long() if drawn is not None else None

    def close(self) -> None:
        self._finalizer()


def _shut_down(pools: list[ThreadPoolExecutor]) -> None:
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
