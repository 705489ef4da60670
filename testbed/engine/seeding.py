"""Every random stream derives from (seed, purpose) alone, so a seed gets the same data,
initialisation and batch order in every scenario and whatever other seeds train beside it."""

from __future__ import annotations

import zlib

import numpy as np
import torch


def derive(seed: int, *purpose: str | int) -> int:
    """A 63-bit integer determined by the seed and the purpose (e.g. 'init', 'tok_emb')."""
    words = [int(seed)] + [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in purpose]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, *purpose: str | int) -> torch.Generator:
    return torch.Generator().manual_seed(derive(seed, *purpose))
