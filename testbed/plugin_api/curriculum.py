"""What a curriculum plugin builds: the vocabulary size p in force at each epoch."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Curriculum(ABC):
    """Base class of curricula: the vocabulary size p (the task's modulus) in force at each
    epoch. Required: `p_at` and `vocab_sizes`; optional: `resets_at` and `restricts_logits`.

    The trainer asks `p_at` at the start of every epoch and samples a new training and test
    set (from each seed's own data stream) whenever p changes; metrics.csv records p in its `p`
    column. A curriculum is built more than once per command (to validate the scenario, to
    train, to render, to analyse a run) and its methods are called any number of times, for any
    epoch, in any order, so each must be a pure function of the parameters and the task: no
    state that changes, no randomness. It acts through the loop both engines share, so any
    curriculum runs on the fused engine too.
    """

    @abstractmethod
    def p_at(self, epoch: int) -> int:
        """Required. p used to train epoch `epoch` (counted from 1; epoch 1's p is also that of
        the epoch-0 evaluation and of the `ideal` initialisation). One of `vocab_sizes()`."""

    @abstractmethod
    def vocab_sizes(self) -> list[int]:
        """Required. Every p the curriculum uses: the model gets max(vocab_sizes()) token
        embeddings (or the scenario's `model.n_tokens`, validated to be at least that), and
        `testbed render` draws classes up to that p."""

    def resets_at(self, epoch: int) -> frozenset[str]:
        """Optional. What starts afresh at the start of epoch `epoch` (before its first step;
        asked for every epoch from 2 on), a subset of RESETS: "optimizer" (a newly built update
        rule: moments and step count from zero, warmup again, as a fine-tuning run that builds a
        new optimizer), "new_tokens" (the token embeddings of the tokens this epoch's p adds
        over the previous epoch's drawn afresh, N(0, 1) from each seed's own stream). Anything
        else is an error. Default: nothing."""
        return frozenset()

    def restricts_logits(self) -> bool:
        """Optional; it changes training. True: the output layer scores only the tokens of the
        p in force (logits E[:p] zeta, the softmax and the loss over p classes), so the
        embeddings of tokens not yet in use get no gradient; False (default): every token
        embedding the model has is scored, as in the papers' code, where a p = 2 stage pushes
        the extra embeddings away as wrong answers. Asked whenever a data set for a p is
        prepared, for training and evaluation alike, and by the analyses that recompute a run's
        losses (spike forensics, the loss barrier, the sharpness probe), which score as
        training did."""
        return False


RESETS = frozenset({"optimizer", "new_tokens"})
