"""vusb's USB/IP client against the real Linux usbipd.

A guest gets QEMU's emulated xHCI controller with QEMU's USB keyboard on it; the guest's
own ``usbipd`` exports that keyboard through ``usbip-host``, and the host reaches it via
a forwarded port. vusb's client lists, imports and enumerates it, and ``vusb probe``
prints its descriptors.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vusb.client import RemoteDevice, list_devices
from vusb.errors import DeviceBusy, NoSuchDevice
from vusb.harness import Guest, HarnessError
from vusb.pytest_plugin import harness_unavailable

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
QEMU_KEYBOARD = (0x0627, 0x0001)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def usbipd_guest(request: pytest.FixtureRequest) -> object:
    port = free_port()
    try:
        guest = Guest.start_sync("6.1", qemu_args=["-device", "qemu-xhci,id=xhci", "-device", "usb-kbd,bus=xhci.0"],
                                 host_forwards=[(port, 3240)])
    except HarnessError as exc:
        harness_unavailable(request.config, str(exc))
        raise
    yield guest, port
    guest.stop_sync()


@pytest.fixture
async def exported(usbipd_guest: tuple[Guest, int]) -> AsyncIterator[tuple[Guest, int, str]]:
    guest, port = usbipd_guest
    busid = (await guest.run(
        "for d in /sys/bus/usb/devices/*; do [ \"$(cat $d/idVendor 2>/dev/null)\" = 0627 ] && basename $d; done; true",
        check=True)).stdout.split()[0]
    await guest.run(f"pidof usbipd >/dev/null || usbipd -D; usbip bind -b {busid} >/dev/null 2>&1; true", check=True)
    yield guest, port, busid


async def test_list_and_import_from_linux_usbipd(exported: tuple[Guest, int, str]) -> None:
    _, port, busid = exported
    devices = await asyncio.wait_for(list_devices("127.0.0.1", port), 30)
    ours = [d for d in devices if d.busid == busid]
    assert ours and (ours[0].vendor_id, ours[0].product_id) == QEMU_KEYBOARD
    # usbip-host leaves an exported device unconfigured, so usbipd lists it with no interfaces.
    assert len(ours[0].interfaces) == ours[0].num_interfaces
    with pytest.raises(NoSuchDevice):
        await RemoteDevice.open("127.0.0.1", "9-9", port)
    async with await RemoteDevice.open("127.0.0.1", busid, port) as dev:
        info = await dev.enumerate()
        assert (info.device.vendor_id, info.device.product_id) == QEMU_KEYBOARD
        assert info.strings.get(info.device.product_index, "").startswith("QEMU")
        assert await dev.get_configuration() == info.configurations[0].value
        assert info.configurations[0].interfaces[0].interface_class == 3
        assert info.configurations[0].interfaces[0].endpoints[0].address == 0x81
        # The interrupt IN endpoint NAKs (no key pressed): unlink it, as the Linux client would.
        seqnum, fut = dev.submit(1, 1, 8)
        await asyncio.sleep(0.2)
        assert not fut.done()
        assert await dev.unlink(seqnum) in (-104, 0)
        # While we hold it, Linux usbipd leaves it out of the list (and refuses a second import).
        assert busid not in [d.busid for d in await list_devices("127.0.0.1", port)]
        with pytest.raises((DeviceBusy, NoSuchDevice)):
            await RemoteDevice.open("127.0.0.1", busid, port)


async def test_vusb_probe_prints_a_linux_exported_device(exported: tuple[Guest, int, str]) -> None:
    _, port, busid = exported
    for _ in range(50):  # usbipd takes the device back shortly after the previous client left
        if busid in [d.busid for d in await list_devices("127.0.0.1", port)]:
            break
        await asyncio.sleep(0.2)
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "vusb", "probe", "127.0.0.1", busid, "--port", str(port)],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "idVendor" in result.stdout and "0x0627" in result.stdout
    assert "Human Interface Device" in result.stdout
