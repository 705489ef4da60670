"""Seed specifications: '0-99', '0,3,7', '0-4,10', 7 or [0, 3, 7], parsed to a sorted list of
distinct seeds and written back compactly."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

MAX_SEEDS = 1_000_000
SEED_SPEC = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


def parse_seeds(spec: Any) -> list[int]:
    """'0-99', '0,3,7', '0-4,10', 7 or [0, 3, 7] -> sorted unique list of seeds."""
    if isinstance(spec, bool):
        raise ValueError("seeds must be like 0-99, 0,3,7 or a list of integers")
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, (list, tuple)):
        if not spec or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in spec):
            raise ValueError("seeds must be a non-empty list of integers >= 0")
        return sorted(set(spec))
    if not isinstance(spec, str) or not SEED_SPEC.match(spec):
        raise ValueError(f"seeds must be like 0-99, 0,3,7 or a list of integers, not {spec!r}")
    ranges = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        lo_i, hi_i = int(lo), int(hi) if hi.strip() else int(lo)
        if hi_i < lo_i:
            raise ValueError(f"seed range {' '.join(part.split())} is empty")
        ranges.append((lo_i, hi_i))
    count = _count_seeds(ranges)
    if count > MAX_SEEDS:  # counted before listing them: '0-99999999999' would fill the memory
        raise ValueError(f"{' '.join(spec.split())} is {count} seeds; at most {MAX_SEEDS} train in one run")
    seeds: set[int] = set()
    for lo_i, hi_i in ranges:
        seeds.update(range(lo_i, hi_i + 1))
    return sorted(seeds)


def _count_seeds(ranges: list[tuple[int, int]]) -> int:
    """The number of distinct seeds in inclusive ranges that may overlap."""
    count, covered = 0, -1
    for lo, hi in sorted(ranges):
        lo = max(lo, covered + 1)
        if hi >= lo:
            count += hi - lo + 1
            covered = hi
    return count


def format_seeds(seeds: list[int]) -> str:
    """The compact inverse of `parse_seeds`: [0, 1, 2, 5] -> '0-2,5'."""
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(str(start) if start == s else f"{start}-{s}")
            start = None
    return ",".join(parts)


Seeds = Annotated[list[int], BeforeValidator(parse_seeds)]
