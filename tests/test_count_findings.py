"""studies/count_findings.py: what the shipped seed counts can decide on success counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "studies" / "count_findings.py"


def _script():
    spec = importlib.util.spec_from_file_location("count_findings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_pairing_has_the_counts():
    fig7 = _script()
    for a, b in [(0, 5), (3, 5), (5, 3), (2, 2)]:
        sequences = fig7.paired_sequences(a, b, 10)
        assert sequences, (a, b)
        for d in sequences:
            assert int((d == 1).sum() - (d == -1).sum()) == b - a
        # every order is there: as many sequences as distinct arrangements
        assert len({tuple(d) for d in sequences}) == len(sequences)


def test_ten_seeds_decide_only_the_extreme_contrast():
    fig7 = _script()
    assert fig7.decided_fraction(0, 10) == 1.0
    assert fig7.decided_fraction(0, 9) == 0.0
    assert fig7.decided_fraction(0, 5) == 0.0
    # twelve seeds decide 11 of 12 against none, in every order: the answer depends on n
    assert fig7.decided_fraction(0, 11, n=12) == 1.0


def test_mcnemar_most_favourable_pairing():
    fig7 = _script()
    assert fig7.smallest_mcnemar_p(0, 5) == 0.0625
    assert fig7.smallest_mcnemar_p(0, 6) == 0.03125
    assert fig7.smallest_mcnemar_p(3, 3) == 1.0
