"""The documented vusb_attach example, run as written (docs/pytest-plugin.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devices import Keyboard, MassStorage

pytestmark = pytest.mark.kernel


async def test_disk_in_linux(vusb_attach: Any, vusb_guest: Any, tmp_path: Path) -> None:
    disk = MassStorage(str(tmp_path / "disk.img"), size=32 << 20)
    attached = await vusb_attach(disk)
    result = await vusb_guest.run(f"mkfs.vfat {attached.node} && echo ok", check=True)
    assert "ok" in result.stdout
    assert attached.node is not None and attached.node.startswith("/dev/sd")


async def test_keyboard_node_is_its_event_device(vusb_attach: Any, vusb_guest: Any) -> None:
    attached = await vusb_attach(Keyboard(product="Plugin Keyboard"))
    assert attached.node is not None and attached.node.startswith("/dev/input/event")
    devices = (await vusb_guest.run("cat /proc/bus/input/devices", check=True)).stdout
    block = next(b for b in devices.split("\n\n") if "Plugin Keyboard" in b)
    assert attached.node.rsplit("/", 1)[-1] in block
