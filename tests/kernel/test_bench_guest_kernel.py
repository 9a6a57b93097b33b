"""The guest benchmark (benchmarks/bench_guest.py) runs end to end against the session's 6.1 guest.

It proves the script works — the disk attaches, dd runs at both command sizes, with the
server sleeping and busy-polling — and asserts nothing about speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from vusb.harness import Guest

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is not installed with the package: import it from the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_guest  # noqa: E402


async def test_guest_benchmark_measures_every_row(guest: Guest) -> None:
    rows = await bench_guest._measure_each("6.1", 4, (0.0, 50e-6))
    labels = [label for label, _, _ in rows]
    assert labels == [
        f"guest {op}, {size}/command (dd O_DIRECT, 4 MiB), {server}"
        for server in ("server sleeps between requests", "server busy-polls 50 µs")
        for size in ("120 KiB", "1 MiB")
        for op in ("write", "read")
    ]
    assert all(mbps > 0 and cpu >= 0 for _, mbps, cpu in rows)
