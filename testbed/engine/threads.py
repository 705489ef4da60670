"""How many intra-op threads a run uses, and a scope that sets them and puts them back.

Results do not depend on the thread count (every operation computes a seed's values the same
way; tests/test_replicas.py), so the choice is only about speed. Two things made runs crawl on a
busy machine: OpenMP threads that spin while they wait, fighting another process for a core (the
command line asks for passive waiting, `testbed.cli`), and a second thread that cannot pay for
itself on the tiny tensors of a few seeds. Policy, first match wins:

1. an explicit request (`--threads N`, `threads=` in the API);
2. `OMP_NUM_THREADS` set by the user: torch already follows it, leave it;
3. fewer than `FEW_SEEDS` seeds: one thread (a step on a few seeds is too small to split);
4. otherwise the cores this process may run on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

FEW_SEEDS = 16


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose(n_seeds: int, requested: int | None = None) -> int:
    """The intra-op thread count for a run of `n_seeds` seeds (see the module's policy)."""
    if requested is not None:
        return requested
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    if n_seeds < FEW_SEEDS:
        return 1
    return available_cores()


@contextmanager
def intra_op_threads(n: int) -> Iterator[int]:
    """Run the block with `n` intra-op threads and restore the caller's setting afterwards, so a
    library call leaves torch as it found it."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
