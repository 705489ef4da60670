"""The probe sentences every frame shows, built as the first paper says (section 2.3): prefixes
over the first k tokens crossed with a few suffixes. Colour by prefix (similar colours for
prefixes equal up to permutation, i.e. with the same token counts), marker by class."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from testbed.render import style

MAX_PREFIXES = 64  # beyond this many (p^k), every count pattern once plus a random few
N_SUFFIXES = 3
N_CLOUD = 384  # random sentences for the attention-output cloud


@dataclass(frozen=True)
class Sentences:
    tokens: np.ndarray  # (N, L) int64
    labels: np.ndarray  # (N,) class y
    group: np.ndarray  # (N,) index of the prefix's token counts (equal up to permutation)
    n_groups: int
    colors: np.ndarray  # (N, 3)
    labelled: np.ndarray  # (N,) bool: the few sentences that carry a text label
    k: int
    p: int

    def text(self, i: int) -> str:
        return "".join(str(t) for t in self.tokens[i, : self.k])

    def by_class(self) -> list[tuple[int, np.ndarray]]:
        return [(y, np.flatnonzero(self.labels == y)) for y in range(self.p) if (self.labels == y).any()]


def build(L: int, k: int, p: int, seed: int = 0, max_labels: int = 8) -> Sentences:
    rng = np.random.default_rng(seed)
    prefixes = np.array(list(itertools.product(range(p), repeat=k)), dtype=np.int64).reshape(-1, k)
    counts = np.stack([(prefixes == x).sum(1) for x in range(p)], 1)
    patterns, group = np.unique(counts, axis=0, return_inverse=True)
    group = group.reshape(-1)
    # order count patterns by class, then by counts, so colours run around the classes
    cls = (patterns * np.arange(p)).sum(1) % p
    order = np.lexsort((np.arange(len(patterns)), cls))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    group = rank[group]
    if len(prefixes) > MAX_PREFIXES:
        first = [np.flatnonzero(group == g)[0] for g in range(len(patterns))]
        rest = np.setdiff1d(np.arange(len(prefixes)), first)
        extra = rng.choice(rest, size=max(0, MAX_PREFIXES - len(first)), replace=False) if len(rest) else []
        keep = np.sort(np.concatenate([first, extra]).astype(int))
        prefixes, group = prefixes[keep], group[keep]
    suffixes = rng.integers(0, p, size=(N_SUFFIXES, L - k)) if L > k else np.zeros((1, 0), np.int64)
    tokens = np.concatenate([np.repeat(prefixes, len(suffixes), 0), np.tile(suffixes, (len(prefixes), 1))], 1)
    group = np.repeat(group, len(suffixes))
    order = np.lexsort((np.arange(len(tokens)), group))
    tokens, group = tokens[order], group[order]
    labels = tokens[:, :k].sum(1) % p
    # shade: rank of the prefix within its group
    shade = np.zeros(len(tokens))
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        pre = [tuple(t) for t in tokens[idx, :k]]
        distinct = sorted(set(pre))
        shade[idx] = [distinct.index(t) / max(len(distinct) - 1, 1) for t in pre]
    n_groups = len(patterns)
    colors = style.group_colors(group, n_groups, shade)
    labelled = np.zeros(len(tokens), bool)
    shown = np.unique(group)
    if len(shown) > max_labels:
        shown = shown[np.linspace(0, len(shown) - 1, max_labels).round().astype(int)]
    for g in shown:
        labelled[np.flatnonzero(group == g)[0]] = True
    return Sentences(tokens, labels, group, n_groups, colors, labelled, k, p)


def cloud(L: int, p: int, n: int = N_CLOUD, seed: int = 1) -> np.ndarray:
    """(n, L) random sentences for the attention-output panel (coloured by prefix sum)."""
    return np.random.default_rng(seed).integers(0, p, size=(n, L))


def focus(sentences: Sentences) -> np.ndarray:
    """The one sentence drawn as a bipartite attention graph and followed over training: the
    first whose prefix mixes tokens and whose suffix repeats prefix tokens (like the papers')."""
    for row in sentences.tokens:
        if len(set(row[: sentences.k])) > 1:
            return row
    return sentences.tokens[0]
