"""The layout stays readable: no two modules of testbed or its built-in plugins share a file
name (three files were once named spikes.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_two_modules_share_a_file_name():
    names = Counter(p.name for folder in ("testbed", "plugins") for p in (ROOT / folder).rglob("*.py") if p.name != "__init__.py")
    assert [name for name, n in names.items() if n > 1] == []


def test_every_package_is_in_the_distribution():
    """pyproject lists its packages by hand (plugins/ installs as testbed_plugins): a new
    package folder left off the list is missing from a wheel, while an editable install,
    which the tests use, still finds it (testbed.forensics once was)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "testbed").rglob("__init__.py")}
    found |= {".".join(("testbed_plugins", *p.parent.relative_to(ROOT / "plugins").parts)) for p in (ROOT / "plugins").rglob("__init__.py")}
    assert found - listed == set()
