"""Built-in curricula: which vocabulary size p the task uses at each epoch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from testbed.plugin_api import Curriculum, Params, hookimpl, plugin


class Constant(Curriculum):
    def __init__(self, p: int):
        self.p = p

    def p_at(self, epoch: int) -> int:
        return self.p

    def vocab_sizes(self) -> list[int]:
        return [self.p]


@plugin("constant")
def constant(params: Params, task):
    """task.p for the whole run."""
    return Constant(task.p)


class Switch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    epoch: int = Field(ge=1, description="first epoch trained with this p")
    p: int = Field(ge=2, le=64)
    reset_optimizer: bool = Field(False, description="a fresh optimizer from this epoch (new moments, step count from 1), as fine-tuning does")
    reinit_new_tokens: bool = Field(False, description="draw the embeddings of the tokens this p adds afresh, not keep those trained so far")

    def resets(self) -> frozenset[str]:
        return frozenset({"optimizer"} if self.reset_optimizer else set()) | frozenset({"new_tokens"} if self.reinit_new_tokens else set())


LOGITS_FIELD = Field(
    "all",
    description="all: score every token embedding the model has (the papers' code); active: only the tokens of the p in force, "
    "so that embeddings not yet in use get no gradient",
)


class VocabScheduleParams(Params):
    switches: list[Switch] = Field(min_length=1, description="[{epoch: 1001, p: 3}]: from that epoch on, train with p")
    logits: Literal["all", "active"] = LOGITS_FIELD

    @field_validator("switches")
    @classmethod
    def increasing(cls, v: list[Switch]) -> list[Switch]:
        epochs = [s.epoch for s in v]
        if epochs != sorted(set(epochs)):
            raise ValueError("switch epochs must be strictly increasing")
        return v


class VocabSchedule(Curriculum):
    def __init__(self, first_p: int, switches: list[Switch], logits: str = "all"):
        self.first_p = first_p
        self.switches = switches
        self.logits = logits

    def p_at(self, epoch: int) -> int:
        p = self.first_p
        for s in self.switches:
            if epoch >= s.epoch:
                p = s.p
        return p

    def vocab_sizes(self) -> list[int]:
        return [self.first_p] + [s.p for s in self.switches]

    def resets_at(self, epoch: int) -> frozenset[str]:
        return next((s.resets() for s in self.switches if s.epoch == epoch), frozenset())

    def restricts_logits(self) -> bool:
        return self.logits == "active"


@plugin("vocab_schedule", VocabScheduleParams)
def vocab_schedule(params: VocabScheduleParams, task):
    """Start with task.p, switch p at given epochs (e.g. p=2 then p=3, the papers' transfer)."""
    return VocabSchedule(task.p, list(params.switches), params.logits)


class PretrainParams(Params):
    p: int = Field(2, ge=2, le=64, description="the vocabulary size trained first")
    epochs: int = Field(1000, ge=1, description="epochs trained with `p` before switching to task.p")
    reset_optimizer: bool = Field(False, description="a fresh optimizer at the switch (new moments, step count from 1)")
    reinit_new_tokens: bool = Field(False, description="draw the embeddings of the tokens task.p adds afresh at the switch")
    logits: Literal["all", "active"] = LOGITS_FIELD


@plugin("pretrain", PretrainParams)
def pretrain(params: PretrainParams, task):
    """Train on p first for `epochs` epochs, then on task.p (the first paper's fine-tuning from
    p = 2): the task's own p stays the field a study varies."""
    switch = Switch(epoch=params.epochs + 1, p=task.p, reset_optimizer=params.reset_optimizer, reinit_new_tokens=params.reinit_new_tokens)
    return VocabSchedule(params.p, [switch], params.logits)


@hookimpl
def testbed_curricula():
    return [constant, vocab_schedule, pretrain]
