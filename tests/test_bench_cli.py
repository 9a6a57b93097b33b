"""`vusb bench` as a user meets it: its real options, a clear word when the benchmarks are not
installed, and a table that fits 100 columns, with verdicts only when the figures mean something."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import vusb.bench

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # benchmarks/ is not installed with the package: import it from the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.common import Row, Section, format_table  # noqa: E402


def run_vusb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_bench_help_shows_the_benchmarks_options() -> None:
    result = run_vusb("bench", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: vusb bench [-h] [--quick] [--profile] [--top TOP] [--no-storage]")
    for option in ("--quick", "--profile", "--top TOP", "--no-storage"):
        assert option in result.stdout


def test_bench_options_reach_the_benchmark_in_order() -> None:
    result = run_vusb("bench", "--top", "x")
    assert result.returncode == 2 and "vusb bench: error: argument --top: invalid int value: 'x'" in result.stderr


def test_without_the_benchmarks_bench_says_where_they_are(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(vusb.bench, "checkout_root", lambda: None)  # as installed from the wheel
    assert vusb.bench.main(["--quick"]) == 2
    err = capsys.readouterr().err
    assert "the benchmarks are not installed with vusb; they are in benchmarks/ of a source checkout" in err


def test_the_wheel_does_not_hold_the_benchmarks_and_the_docs_say_so() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert not any(p.split(".")[0] == "benchmarks" for p in packages)
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "not installed with the package" in page
    assert "not installed with the package" in (vusb.bench.__doc__ or "")


LONG = Section("control round trip, GET_DESCRIPTOR(DEVICE,18) to a Keyboard, queue depth 1", [
    Row("library client (asyncio loop), server on uvloop, pinned to CPU 1",
        "p50 69.9 µs  p99 171.7 µs  (p50 by round 68-84)", "p50 19.2 µs  p99 56.2 µs", "x3.6 p50", "p50 < 40 µs",
        "MISS"),
    Row("short", "1 MB/s")], ["a note long enough to need wrapping " * 5])


@pytest.mark.parametrize("verdicts", [True, False], ids=["full run", "--quick"])
def test_the_table_fits_100_columns(verdicts: bool) -> None:
    text = format_table([LONG], verdicts=verdicts)
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert ("MISS" in text) is verdicts and ("p50 < 40 µs" in text) is verdicts
    assert "p50 69.9 µs  p99 171.7 µs  (p50 by round 68-84)" in text  # figures are never cut


def test_a_narrow_table_stays_side_by_side() -> None:
    text = format_table([Section("s", [Row("a", "1 MB/s", "2 MB/s", "50%", "t", "PASS")])], verdicts=False)
    assert text.splitlines()[0].split() == ["benchmark", "result", "machine", "limit", "(same", "run)", "vs",
                                            "limit"]
