"""The side-by-side benchmark against PyPI usbip 0.7.0 and the soak benchmark run end to end (issue 17).

It installs the peer into a cached virtual environment (PyPI is reachable here and in
CI), serves the same keyboard and disk from both, and prints both columns. Nothing is
asserted about speed: the figures are for the table in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_prints_both_servers_side_by_side() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_peer", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("figure"))
    assert "vusb" in header and "usbip 0.7.0" in header
    for figure in ("control p50 µs", "control server CPU µs", "read 120 KiB MB/s", "read 1024 KiB MB/s",
                   "write 120 KiB server CPU ms/GiB"):
        row = next(line for line in lines if line.startswith(figure))
        vusb, peer = (float(cell.replace(",", "")) for cell in row[len(figure):].split()[:2])
        assert vusb > 0 and peer > 0, row
    assert "PASS" not in result.stdout and "MISS" not in result.stdout  # --quick prints figures only


def test_baseline_python_adds_vusb_before_as_a_third_server() -> None:
    """--baseline-python: the vusb installed for that interpreter (here this one's) is measured in the same
    rounds, its figures and its ratio to the peer printed beside."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_peer", "--quick", "--no-storage",
                             "--baseline-python", sys.executable], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("figure"))
    assert "vusb before" in header and "before/peer" in header
    row = next(line for line in lines if line.startswith("control server CPU µs"))
    cells = row[len("control server CPU µs"):].split()
    vusb, peer, before = (float(cells[i].replace(",", "")) for i in (0, 1, -2))
    assert vusb > 0 and peer > 0 and before > 0, row


def test_floor_adds_a_server_reduced_to_canned_replies_and_a_bare_disk() -> None:
    """--floor: a server with no device model (canned replies, a bare Bulk-Only disk) is measured in the same
    rounds, its figures and its ratio to the peer printed beside: the lowest ratio any server reaches."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_peer", "--quick", "--floor"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("figure"))
    assert header.split()[-2:] == ["floor", "floor/peer"], header
    for figure in ("control p50 µs", "control server CPU µs", "read 120 KiB MB/s", "write 1024 KiB MB/s"):
        row = next(line for line in lines if line.startswith(figure))
        floor, ratio = (float(cell.replace(",", "")) for cell in row.split()[-2:])
        assert floor > 0 and ratio > 0, row


def test_soak_benchmark_runs_and_reports_no_errors() -> None:
    """benchmarks/bench_soak.py (issue 17's load test), a few seconds with few devices."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_soak", "--seconds", "3", "--devices", "6",
                             "--clients", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "errors                          0" in out
    for label in ("imports (attach/detach cycles)", "transfers", "server memory (RSS)", "server file descriptors"):
        assert label in out


def test_vusb_bench_against_usbip_runs_the_side_by_side_benchmark() -> None:
    result = subprocess.run([sys.executable, "-m", "vusb", "bench", "--against", "usbip", "--quick", "--no-storage"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "control server CPU µs" in result.stdout and "usbip 0.7.0" in result.stdout
    wrong = subprocess.run([sys.executable, "-m", "vusb", "bench", "--against", "qemu"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "--against qemu: the peers measured side by side are: usbip" in wrong.stderr
