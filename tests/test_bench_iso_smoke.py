"""benchmarks/bench_iso.py runs end to end with tiny counts (it proves the script works; no speed is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_iso_quick_prints_packet_rates_and_drift() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_iso", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "iso IN packets per server core-second" in out and "bulk IN URBs per core-second" in out
    assert "microphone 48000 Hz drift" in out and "microphone 44100 Hz drift" in out and "ppm" in out
