"""``python -m vusb.harness record-emulated`` still makes the recordings that are committed.

It boots its own guest with QEMU's six devices, records them with usbmon and exercises
them. A fresh recording differs in timestamps and URB ids, so what is compared with
tests/data/recordings/recordings.json is what the guest saw: ids, speed, strings, drivers
and what each exercise produced. Each fresh capture is also one `vusb record` accepts.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vusb.harness import EMULATED_DEVICES, HarnessError, record_emulated
from vusb.pytest_plugin import harness_unavailable

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
COMMITTED: dict[str, Any] = json.loads((ROOT / "tests" / "data" / "recordings" / "recordings.json").read_text())
IDENTITY = ("vendor_id", "product_id", "bcdDevice", "speed", "manufacturer", "product", "serial", "interfaces")
# What each exercise must reproduce exactly (the rest, such as ping times, varies).
SAME = {"usb-kbd": ("events",), "usb-tablet": ("events",), "usb-storage": ("blocks", "sha256", "block0_sha256"),
        "usb-serial": ("guest_read", "qemu_received"), "usb-net": ("ping_status",),
        "usb-audio": ("aplay_status", "sha256")}


@pytest.fixture(scope="module")
def fresh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("recordings")
    try:
        manifest = record_emulated_sync(out)
    except HarnessError as exc:
        harness_unavailable(request.config, str(exc))
        raise
    return out, manifest


def record_emulated_sync(out: Path) -> dict[str, Any]:
    return asyncio.run(record_emulated(out, "6.1"))


@pytest.mark.parametrize("name", [d.name for d in EMULATED_DEVICES])
def test_a_fresh_recording_sees_what_the_committed_one_saw(fresh: tuple[Path, dict[str, Any]], name: str) -> None:
    out, manifest = fresh
    now = {d["name"]: d for d in manifest["devices"]}[name]
    then = {d["name"]: d for d in COMMITTED["devices"]}[name]
    assert {k: now[k] for k in IDENTITY} == {k: then[k] for k in IDENTITY}
    assert {k: now["exercise"][k] for k in SAME[name]} == {k: then["exercise"][k] for k in SAME[name]}
    made = subprocess.run([sys.executable, "-m", "vusb", "record", str(out / now["file"]), "-o", str(out / f"{name}.yaml")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert made.returncode == 0, made.stdout + made.stderr
