"""The benchmark scripts run end to end with tiny iteration counts.

These tests prove the scripts work (servers start, clients speak the protocol, the table
prints); they assert nothing about speed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is not installed with the package: import it from the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_codec, bench_server, bench_storage  # noqa: E402
from benchmarks.common import (  # noqa: E402
    BenchConfig,
    Latency,
    MachineLimits,
    Row,
    Section,
    ServerProcess,
    bench_device,
    format_table,
    keyboard_device,
    percentile,
)

QUICK = BenchConfig.quick_config()


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7], 99) == 7
    lat = Latency.from_ns([1000, 2000, 3000])
    assert lat.p50_us == 2.0 and lat.samples == 3


def test_table_aligns_columns() -> None:
    text = format_table([Section("s", [Row("a", "1 MB/s", "2 MB/s", "50%", "t", "PASS")], ["n"])])
    lines = text.splitlines()
    assert lines[2] == "[s]" and "note: n" in lines[-1]
    assert lines[3].index("1 MB/s") == lines[0].index("result")


def test_sections_fill_the_machine_limits() -> None:
    limits = MachineLimits()
    control = bench_server.control_section(QUICK, limits)
    urbs = bench_server.urb_section(QUICK, limits)
    limits.measure_copy(QUICK.copy_seconds)
    assert limits.copy_mbps > 0 and limits.pipelined_rate > 0
    assert limits.ping_pong.samples == limits.free_ping_pong.samples == QUICK.rtt_iterations
    assert len(control.rows) == 6 and all(r.result.startswith("p50") for r in control.rows)
    assert "busy-polling 50 µs, not pinned" in control.rows[-1].name
    assert len(urbs.rows) == 4 and all("URB/s" in r.result for r in urbs.rows)


@pytest.mark.parametrize("use_uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_control_round_trip(use_uvloop: bool) -> None:
    with ServerProcess(keyboard_device, use_uvloop=use_uvloop) as server:
        assert bench_server.control_rtt_raw(server.port, QUICK).samples == QUICK.rtt_iterations
        samples = bench_server.library_control_samples(server.port, "1-1", 5, 1, client_uvloop=use_uvloop)
        assert len(samples) == 5


def test_small_urb_rate() -> None:
    with ServerProcess(bench_device) as server:
        for direction in (1, 0):
            rate, _cpu = bench_server.urb_rate_raw(server.port, QUICK, direction, server.pid)
            assert rate > 0


def test_profile_reports_server_functions() -> None:
    lines = bench_server.profile_hot_paths(QUICK, top=5, storage=False)
    assert sum(line.startswith("--- server profile") for line in lines) == 3
    assert any("vusb/server.py" in line for line in lines)


def test_memory_section() -> None:
    section = bench_server.memory_section(QUICK)
    assert [r.name for r in section.rows] == [f"{n} device(s)" for n in QUICK.memory_counts]


def test_storage_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    if bench_storage.storage_unavailable() is not None:
        pytest.skip(f"no mass-storage device: {bench_storage.storage_unavailable()}")
    assert bench_storage.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "read 1 MiB/command, memory" in out and "write 120 KiB/command, image file" in out
    for row in ("memory, server on asyncio", "memory, raw client (reference)", "read 1 MiB/command, not pinned",
                "read 1 MiB/command, memory, server busy-polls 50 µs", "read 1 MiB/command, memory, a command's URBs queued",
                "write 1 MiB/command, memory, 2 commands queued", "read 120 KiB/command, image file, 2 commands queued"):
        assert row in out
    assert "PASS" not in out and "MISS" not in out  # --quick prints figures, not verdicts
    assert max(len(line) for line in out.splitlines()) <= 100, out
    section, _ = bench_storage.storage_section(QUICK, MachineLimits())  # the verdicts a full run prints
    verdicts = {row.name: row.verdict for row in section.rows}
    for name, judged in STORAGE_TARGETS_JUDGED:
        for size in ("120 KiB", "1 MiB"):
            for op in ("read", "write"):
                verdict = verdicts[f"{op} {size}/command, {name}"]
                assert (verdict in ("PASS", "MISS")) == (judged and op == "read"), (name, verdict)


# The storage table's targets, and whether their read rows get a verdict (the reference rows do not).
STORAGE_TARGETS_JUDGED = [
    ("memory", True),
    ("image file", True),
    ("memory, server on asyncio", False),
    ("memory, raw client (reference)", False),
    ("memory, server busy-polls 50 µs", True),
    ("memory, a command's URBs queued", True),
    ("memory, 2 commands queued", True),
    ("image file, 2 commands queued", True),
]


def test_codec_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_codec.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "CMD_SUBMIT parse, construct Struct" in out and "compiled struct" in out


def test_vusb_bench_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    from vusb.bench import main

    assert main(["--quick", "--no-storage"]) == 0
    out = capsys.readouterr().out
    for title in ("machine limit", "control round trip", "small bulk URBs", "server memory", "URB header codecs"):
        assert title in out
    assert "PASS" not in out and "MISS" not in out  # --quick: figures only, no verdicts
    assert max(len(line) for line in out.splitlines()) <= 100, out


def test_module_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench_server", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "control round trip" in result.stdout and "mass storage" in result.stdout


def test_hotpath_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The in-memory hot-path figures: every operation completes (nothing asserted about speed)."""
    from benchmarks import bench_hotpath

    assert bench_hotpath.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "control GET_DESCRIPTOR" in out and "READ(10) 120 KiB" in out
