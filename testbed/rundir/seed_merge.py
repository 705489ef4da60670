"""Runs of one scenario on other seed sets combine into the run of any seeds they hold together.

A seed's trajectory does not depend on the seeds that train beside it (the replica guarantee),
so every per-seed file of a run of seeds A ∪ B is made of the rows or slices of the runs of A and
of B, in the order a run of A ∪ B writes them. The run store uses this to serve a seed set from
the runs it holds; each probe says how its files combine (`Probe.combine`) with these helpers.

`parts` are always (run directory, the seeds taken from it): every seed wanted comes from
exactly one part, and a part may hold more seeds than it gives.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

Parts = Sequence[tuple[Path, Sequence[int]]]


def _positions(parts: Parts, seeds: Sequence[int]) -> dict[int, int]:
    pos = {int(s): i for i, s in enumerate(seeds)}
    given = [int(s) for _, taken in parts for s in taken]
    if sorted(given) != sorted(pos):
        raise ValueError(f"the parts give seeds {sorted(given)}, not the {len(pos)} seeds wanted")
    return pos


def seed_csv(parts: Parts, seeds: Sequence[int], name: str, out: Path, *, major: str | None = None) -> None:
    """Combine the CSV file `name` (with a `seed` column) of each part into `out / name`, each
    row's text kept as written. Rows come ordered by the numeric column `major` (e.g. epoch:
    one block per epoch, seeds in order within it) or, without one, seed by seed; rows of one
    seed keep their order."""
    pos = _positions(parts, seeds)
    header: str | None = None
    rows: list[tuple[float, int, int, str]] = []
    for folder, taken in parts:
        keep = {int(s) for s in taken}
        with open(folder / name, newline="") as f:  # the rows' own line endings (csv writes \r\n)
            lines = f.read().splitlines(keepends=True)
        if header is None:
            header = lines[0]
        elif lines[0] != header:
            raise ValueError(f"{folder / name}: its columns differ from those of {parts[0][0] / name}")
        columns = next(csv.reader(io.StringIO(lines[0])))
        s_col, m_col = columns.index("seed"), columns.index(major) if major else None
        for n, line in enumerate(lines[1:]):
            fields = next(csv.reader(io.StringIO(line)))
            seed = int(fields[s_col])
            if seed in keep:
                rows.append((float(fields[m_col]) if m_col is not None else 0.0, pos[seed], n, line))
    rows.sort(key=lambda r: r[:3])
    with open(out / name, "w", newline="") as f:
        f.write((header or "") + "".join(r[3] for r in rows))


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def seed_npz(parts: Parts, seeds: Sequence[int], name: str, out: Path, *, seed_axis: Callable[[str], int | None], seeds_key: str = "seeds") -> None:
    """Combine the .npz file `name` of each part: `seed_axis(array name)` is the axis of the
    array that runs over the part's seeds (listed in its array `seeds_key`), or None for an
    array every part shares (it must be equal in all)."""
    pos = _positions(parts, seeds)
    loaded = [(_load(folder / name), [int(s) for s in taken]) for folder, taken in parts]
    first = loaded[0][0]
    combined: dict[str, np.ndarray] = {}
    for key, value in first.items():
        if key == seeds_key:
            combined[key] = np.asarray(list(seeds), dtype=value.dtype)
            continue
        axis = seed_axis(key)
        if axis is None:
            for arrays, _ in loaded[1:]:
                if not np.array_equal(arrays[key], value):
                    raise ValueError(f"{name}: array {key} differs between the runs combined")
            combined[key] = value
            continue
        pieces, order = [], []
        for arrays, taken in loaded:
            columns = {int(s): j for j, s in enumerate(arrays[seeds_key])}
            pieces.append(np.take(arrays[key], [columns[s] for s in taken], axis=axis))
            order.extend(pos[s] for s in taken)
        joined = np.concatenate(pieces, axis=axis)
        combined[key] = np.take(joined, np.argsort(order, kind="stable"), axis=axis)
    np.savez(out / name, **combined)  # as the probes write them: per-seed float arrays barely compress  # type: ignore[arg-type]  # numpy's types take every keyword for savez's own allow_pickle


def seed_rows_npz(parts: Parts, seeds: Sequence[int], name: str, out: Path, *, seed_key: str = "seed", major: str | None = None) -> None:
    """Combine the .npz file `name` whose arrays all run over rows, each row belonging to the
    seed in array `seed_key`: rows ordered by the array `major` (e.g. step), then seed order,
    rows of one seed keeping their order."""
    pos = _positions(parts, seeds)
    loaded = [(_load(folder / name), {int(s) for s in taken}) for folder, taken in parts]
    keys = list(loaded[0][0])
    chosen = {k: [] for k in keys}
    sort_major, sort_seed, sort_n = [], [], []
    for arrays, keep in loaded:
        rows = np.flatnonzero(np.isin(arrays[seed_key], list(keep)))
        for k in keys:
            chosen[k].append(arrays[k][rows])
        sort_major.extend(arrays[major][rows].tolist() if major else [0] * rows.size)
        sort_seed.extend(pos[int(s)] for s in arrays[seed_key][rows])
        sort_n.extend(range(len(sort_n), len(sort_n) + rows.size))
    order = np.lexsort((np.asarray(sort_n), np.asarray(sort_seed), np.asarray(sort_major)))
    np.savez_compressed(out / name, **{k: np.concatenate(chosen[k])[order] for k in keys})  # type: ignore[arg-type]  # numpy's types take every keyword for savez's own allow_pickle
