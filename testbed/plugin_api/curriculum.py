"""What a curriculum plugin builds: the vocabulary size p in force at each epoch."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Curriculum(ABC):
    """Base class of curricula. Required: `p_at` and `vocab_sizes`.

    The trainer asks `p_at` at the start of every epoch and samples a new training and test
    set (from each seed's own data stream) whenever p changes; the model gets a token
    embedding for every p in `vocab_sizes`. A curriculum is built more than once per command
    (to validate the scenario, to train, to render), so it must be a pure function of its
    parameters and the task.
    """

    @abstractmethod
    def p_at(self, epoch: int) -> int:
        """p used to train epoch `epoch` (counted from 1; epoch 1's p is also that of the
        epoch-0 evaluation and of the `ideal` initialisation). One of `vocab_sizes()`."""

    @abstractmethod
    def vocab_sizes(self) -> list[int]:
        """Every p the curriculum uses, so that the model gets enough token embeddings."""
