"""The webcam benchmark (benchmarks/bench_video.py) runs end to end against the session's 6.1 guest.

It proves the script works (every shipped format and size is captured and its counters
read back) and asserts nothing about speed.  It streams every shipped size, which the
webcam's kernel tests already prove work, so it runs only with ``VUSB_FULL_KERNEL=1``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vusb.harness import Guest

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is not installed with the package: import it from the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_video  # noqa: E402


@pytest.mark.skipif(os.environ.get("VUSB_FULL_KERNEL") != "1",
                    reason="an exhaustive variant: set VUSB_FULL_KERNEL=1 to run it")
async def test_video_benchmark_measures_every_shipped_size(guest: Guest) -> None:
    rows = await bench_video.measure("6.1", 0.2, 3)
    assert [r.label for r in rows] == [f"{fourcc} {size} at 30 fps" for fourcc in ("YUYV", "MJPG")
                                       for size in ("640x480", "320x240")]
    assert [r.frames for r in rows] == [9] * 4, rows
