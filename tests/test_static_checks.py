"""mypy (strict) and ruff are part of the test suite, so CI fails when either does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("tool", [
    [sys.executable, "-m", "ruff", "check", "vusb", "devices", "tests"],
    [sys.executable, "-m", "mypy"],
], ids=["ruff", "mypy-strict"])
def test_static_check(tool: list[str]) -> None:
    if shutil.which(tool[2]) is None and tool[2] == "ruff":
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    result = subprocess.run(tool, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
