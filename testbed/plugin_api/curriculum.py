"""What a curriculum plugin builds: the vocabulary size p in force at each epoch."""

from __future__ import annotations

from typing import Protocol


class Curriculum(Protocol):
    def p_at(self, epoch: int) -> int:
        """p used to train epoch `epoch` (counted from 1)."""

    def vocab_sizes(self) -> list[int]:
        """Every p the curriculum uses, so that the model gets enough token embeddings."""
