"""A study of many cells validates in seconds (repeats found in one pass, not pairwise) and asks
before it starts: thousands of cells are hours of training, better confirmed than discovered."""

from __future__ import annotations

import re

import yaml
from conftest import TINY, cli

from testbed.study import cells


def big_study(tmp_path, n: int):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    lrs = [round(1e-4 + i * 1e-7, 10) for i in range(n)]
    study = tmp_path / "big.yaml"
    study.write_text(yaml.safe_dump({"name": "big", "scenarios": ["tiny.yaml"], "axes": {"optimizer.lr": lrs}}))
    return study, lrs


def test_ten_thousand_values_validate_and_a_repeat_is_still_named(tmp_path):
    study, lrs = big_study(tmp_path, 10_000)
    assert len(cells.load(study).cells) == 10_000
    study.write_text(yaml.safe_dump({"name": "big", "scenarios": ["tiny.yaml"], "axes": {"optimizer.lr": [*lrs, lrs[5000]]}}))
    proc = cli("sweep", str(study), "-q")
    assert proc.returncode == 2 and f"axis optimizer.lr lists the value {lrs[5000]} twice" in proc.stderr


def test_a_large_study_asks_first_and_yes_is_needed_without_a_terminal(tmp_path):
    study, _ = big_study(tmp_path, 1001)
    proc = cli("sweep", str(study), "-q", "--out", str(tmp_path / "sw"))
    assert proc.returncode == 2
    estimate = r"about [\d.]+ (s|min|h) of training on one core \(less what the run store holds\)"
    said = rf"error: {re.escape(str(study))}: 1001 cells, {estimate}; add --yes to start it\n"
    assert re.fullmatch(said, proc.stderr), proc.stderr
    assert not (tmp_path / "sw").exists()
