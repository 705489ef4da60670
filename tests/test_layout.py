"""The layout stays readable: no two modules of testbed or its built-in plugins share a file
name (three files were once named spikes.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_two_modules_share_a_file_name():
    names = Counter(p.name for folder in ("testbed", "plugins") for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py")
    assert [name for name, n in names.items() if n > 1] == []
