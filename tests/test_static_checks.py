"""mypy (strict) and ruff are part of the test suite, so CI fails when either does.

mypy checks the tree as a wheel installs it (``vusb``, ``vusb.devices``, ``vusb.profiles``;
see tests/installed_layout.py), plus the benchmarks that import it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from installed_layout import ROOT, stage_installed_tree


def test_ruff() -> None:
    if shutil.which("ruff") is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "vusb", "devices", "profiles", "benchmarks", "tests"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_on_the_installed_layout(tmp_path: Path) -> None:
    stage = stage_installed_tree(tmp_path / "stage")
    (stage / "benchmarks").symlink_to(ROOT / "benchmarks")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(ROOT / ".mypy_cache"), "-p", "vusb", "-p", "benchmarks"],
        cwd=stage, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
