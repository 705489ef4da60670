"""Checks across a scenario's fields that no single field's validator can see, and that the
configuration alone can make; the engine and run directories add theirs (`Check`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from math import comb
from typing import Any

from testbed.config.scenario_curriculum import build_curriculum
from testbed.config.schema import Scenario
from testbed.plugin_api.registry import Registry

Problem = tuple[str, str]  # (path in the file, message)
Check = Callable[[Scenario, Registry], list[Problem]]  # what a layer above the configuration checks
INT64 = (-(2**63), 2**63 - 1)


def check(scenario: Scenario, registry: Registry, more: Sequence[Check] = ()) -> list[Problem]:
    """Every problem across fields, roughly in the file's order; `more` (checks only the
    engine or run directories can make) run before the probes' and the whole file's."""
    problems: list[Problem] = []
    task, model = scenario.task, scenario.model
    if task.sparsity > task.seq_len:
        problems.append(("task.sparsity", f"must be <= task.seq_len ({task.seq_len})"))
    curriculum = build_curriculum(scenario, registry)
    vocab = curriculum.vocab_sizes()
    for before, after in zip(vocab, vocab[1:]):
        if before == after:  # e.g. `--set task.p=4` on a p = 2 -> 4 curriculum: silently no curriculum at all
            problems.append(("curriculum", f"switches from p = {before} to p = {after}: a switch must change p (task.p is the first stage's p)"))
            break
    if model.n_tokens is not None and model.n_tokens < max(vocab):
        problems.append(("model.n_tokens", f"must be >= {max(vocab)}, the largest p the task and curriculum use"))
    bs = scenario.training.batch_size
    if bs != "full" and not 1 <= bs <= task.n_train:
        problems.append(("training.batch_size", f"must be between 1 and task.n_train ({task.n_train}), or 'full'"))
    if task.test_split == "disjoint":
        for p in vocab:
            if p**task.seq_len <= task.n_train:
                problems.append(
                    ("task.test_split", f"disjoint needs more than n_train={task.n_train} possible sequences; p={p}, L={task.seq_len} has {p ** task.seq_len}")
                )
                break
    if model.init == "ideal" and not model.mlp_bias:
        problems.append(("model.mlp_bias", "must be true with model.init: ideal, whose circuit sets the MLP biases"))
    if model.init == "ideal":
        patterns = comb(task.sparsity + curriculum.p_at(1) - 1, task.sparsity)
        if model.d != 2:
            problems.append(("model.init", "ideal is built for model.d = 2"))
        if model.hidden < patterns - 1:
            problems.append(("model.init", f"ideal needs model.hidden >= {patterns - 1} (one neuron per gap between the {patterns} prefix count patterns)"))
    for extra in more:
        problems.extend(extra(scenario, registry))
    names = [p.name for p in scenario.probes]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(("probes", f"probe '{dup}' is listed twice"))
    problems.extend(dict.fromkeys(_beyond_64_bits(scenario.model_dump())))
    return problems


def token_count(scenario: Scenario, registry: Registry | None = None) -> int:
    """The model's token embeddings: `model.n_tokens`, else the largest p the curriculum uses."""
    return scenario.model.n_tokens or max(build_curriculum(scenario, registry).vocab_sizes())


def _beyond_64_bits(node: Any, path: tuple = ()) -> Iterator[Problem]:
    """Every integer (a seed, a plugin's parameter) that numpy and torch cannot hold: beyond 64
    bits the run would stop deep inside with an OverflowError, whatever the field's own bounds."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _beyond_64_bits(value, (*path, key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _beyond_64_bits(value, (*path, i))
    elif isinstance(node, int) and not isinstance(node, bool) and not INT64[0] <= node <= INT64[1]:
        where = "seeds" if path[0] == "seeds" else ".".join(str(p) for p in path)
        yield where, f"must be <= {INT64[1]} (a 64-bit integer)" if node > 0 else f"must be >= {INT64[0]} (a 64-bit integer)"
