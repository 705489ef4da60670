"""Which shipped findings on success counts are decided at their seed count.

The shipped studies report success as k of n seeds per cell (Figure 7's ablations: 10 seeds, the
curriculum of the second paper's Figure 5: 5, the embedding dimension of Figure 20: 10). Cells share
seeds, so two cells are paired, but a count alone does not say how the seeds pair up or in which
order they came. This script asks the question for every pairing and every order the counts
allow: does the anytime-valid betting confidence sequence of `compare --until-decided`
(testbed.analysis.sequential.betting, alpha 0.05) exclude a zero difference after n seeds, and
what is the smallest exact McNemar p-value (one look, fixed n) any pairing could give? A contrast
that no pairing decides is undecided whatever the per-seed data were.

    .venv/bin/python studies/count_findings.py
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from testbed.analysis.sequential import betting

SEEDS = 10
ALPHA = 0.05

# (finding, cell A, successes in A, cell B, successes in B, paired seeds), counts as the README gives them
CONTRASTS = [
    ("Fig. 7 learning rate: peak against chance", "lr 2.1e-2 and up", 0, "lr 1.8e-3", 5, 10),
    ("Fig. 7 learning rate: peak against chance", "lr 7e-4 and below", 0, "lr 3.0e-3", 4, 10),
    ("Fig. 7 learning rate: peak against 7.8e-3 to 1.3e-2", "lr 7.8e-3", 2, "lr 1.8e-3", 5, 10),
    ("Fig. 7 MLP multiplier: peak against x100", "x100", 0, "x0.78", 5, 10),
    ("Fig. 7 MLP multiplier: peak against x0.016", "x0.016", 0, "x0.78", 5, 10),
    ("Fig. 7 batch size: 32 against 256 and up", "batch 256", 0, "batch 32", 5, 10),
    ("Fig. 7 batch size: 16 against 256 and up", "batch 256", 0, "batch 16", 4, 10),
    ("Fig. 7 MLP biases: with against without", "without", 3, "with", 5, 10),
    ("Fig. 5 curriculum against scratch at p = 4", "scratch", 1, "curriculum", 4, 5),
    ("Fig. 20 d = 8 against d = 2", "d = 2", 4, "d = 8", 10, 10),
    ("Fig. 20 d = 4 against d = 2", "d = 2", 4, "d = 4", 9, 10),
]


def paired_sequences(a: int, b: int, n: int) -> list[np.ndarray]:
    """Every sequence of paired differences B − A in {−1, 0, 1} (n seeds, in every order) whose
    marginal counts are a successes in A and b in B."""
    out = []
    for up in range(n + 1):  # seeds where B succeeds and A fails
        down = up - (b - a)  # seeds where A succeeds and B fails
        both = b - up  # seeds where both succeed
        if down < 0 or both < 0 or up + down + both > n:
            continue
        for positions in itertools.combinations(range(n), up + down):
            for negatives in itertools.combinations(positions, down):
                d = np.zeros(n)
                d[list(positions)] = 1.0
                d[list(negatives)] = -1.0
                out.append(d)
    return out


def smallest_mcnemar_p(a: int, b: int) -> float:
    """The exact two-sided McNemar p-value of the most favourable pairing: every discordant seed
    in the direction of the difference, |b − a| of them."""
    discordant = abs(b - a)
    return min(1.0, 2 * 0.5**discordant) if discordant else 1.0


def decided_fraction(a: int, b: int, n: int = SEEDS, alpha: float = ALPHA) -> float:
    """The fraction of pairings and orders consistent with the counts where the confidence
    sequence excludes 0 after n seeds."""
    d = np.array(paired_sequences(a, b, n))
    low, high = betting(d, 1.0, alpha, [n])
    return float(((low[:, 0] > 0) | (high[:, 0] < 0)).mean())


def main() -> None:
    print("| finding | A | B | anytime-valid sequence decides in | smallest exact McNemar p |")
    print("| --- | --- | --- | --- | --- |")
    for finding, name_a, a, name_b, b, n in CONTRASTS:
        share = decided_fraction(a, b, n)
        p = smallest_mcnemar_p(a, b)
        print(f"| {finding} | {name_a}: {a}/{n} | {name_b}: {b}/{n} | {share:.0%} of pairings | {p:.3g} |")
    need = next(k for k in range(1, SEEDS + 1) if smallest_mcnemar_p(0, k) < ALPHA)
    print(f"\nA fixed-n exact test at {SEEDS} seeds needs {need} discordant seeds in one direction (p = {2 * 0.5**need:.3g});")
    print(f"the sequence at {SEEDS} seeds decides only {SEEDS}/{SEEDS} against 0/{SEEDS}: {decided_fraction(0, SEEDS):.0%}; "
          f"9/{SEEDS} against 0/{SEEDS}: {decided_fraction(0, 9):.0%}.")
    assert math.isclose(decided_fraction(0, SEEDS), 1.0)


if __name__ == "__main__":
    main()
