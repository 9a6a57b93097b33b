"""The documented vusb_attach example, run as written (docs/pytest-plugin.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vusb.devices import Keyboard, MassStorage

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


async def test_devices_with_the_same_ids_are_told_apart_by_serial_number(vusb_attach: Any, vusb_guest: Any) -> None:
    first = await vusb_attach(Keyboard(serial_number="PLUGIN-A"))
    second = await vusb_attach(Keyboard(serial_number="PLUGIN-B"))
    assert first.sysfs != second.sysfs and first.node != second.node
    for attached, serial in ((first, "PLUGIN-A"), (second, "PLUGIN-B")):
        assert (await vusb_guest.run(f"cat {attached.sysfs}/serial", check=True)).stdout.strip() == serial
        event = attached.node.rsplit("/", 1)[-1]
        found = await vusb_guest.run(f"ls -d {attached.sysfs}:*/*:*/input/input*/{event}", check=True)
        assert found.stdout.strip()
