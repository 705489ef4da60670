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

    def resets_at(self, epoch: int) -> frozenset[str]:
        """What starts afresh at the start of epoch `epoch` (before its first step), a subset of
        RESETS: "optimizer" (a new update rule: moments and step count from zero, warmup again,
        as a fine-tuning run that builds a new optimizer), "new_tokens" (the token embeddings
        of the tokens this epoch's p adds over the previous epoch's drawn afresh, N(0, 1) from
        each seed's own stream). Default: nothing."""
        return frozenset()

    def restricts_logits(self) -> bool:
        """True: the output layer scores only the tokens of the p in force (logits E[:p] zeta),
        so the embeddings of tokens not yet in use get no gradient from it; False (default):
        every token embedding the model has is scored, as in the papers' code, where a p = 2
        stage pushes the extra embeddings away as wrong answers."""
        return False


RESETS = frozenset({"optimizer", "new_tokens"})
