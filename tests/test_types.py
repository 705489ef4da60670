"""The type checker (pyright, basic mode, configured in pyproject.toml) finds no error in testbed/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]


def test_pyright_finds_no_error_in_testbed():
    pytest.importorskip("pyright", reason="pip install 'testbed[test]'")
    if shutil.which("node") is None and not (Path.home() / ".cache" / "pyright-python").exists():
        pytest.skip("pyright needs node (it fetches its own on first use, from the npm registry)")
    proc = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable, "testbed"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    report = json.loads(proc.stdout)
    errors = [f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']}" for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert report["summary"]["errorCount"] == 0, "\n".join(errors[:50])
