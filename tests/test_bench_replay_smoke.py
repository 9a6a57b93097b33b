"""benchmarks/bench_replay.py runs end to end on a tiny disk (it asserts nothing about speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_record_and_replay_benchmark_prints_its_figures() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_replay", "--mib", "1", "--rounds", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "vusb record: " in result.stdout
    assert "original mass-storage disk (reference):" in result.stdout
    assert "replayed recording (class storage):" in result.stdout
