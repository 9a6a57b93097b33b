"""DFU attached to a real Linux kernel and driven by the real dfu-util (libusb through usbfs).

dfu-util lists the device, downloads an image (it lands in the device's backing file on
the host) and uploads it back byte for byte; a device in runtime mode switches to DFU mode
on dfu-util's DFU_DETACH and bus reset, as far as USB/IP lets it (docs/devices/dfu.md).

By default the plain download is 20 000 bytes (20 blocks, the last one short);
``VUSB_FULL_KERNEL=1`` adds the 300 000-byte one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vusb.devices.dfu import DfuDevice, DfuseLayout, DfuState

from vusb.harness import Guest
from vusb.server import Server

pytestmark = pytest.mark.kernel

FULL = os.environ.get("VUSB_FULL_KERNEL") == "1"
full_only = pytest.mark.skipif(not FULL, reason="big transfer: set VUSB_FULL_KERNEL=1 to run it")


@pytest.fixture
async def bootloader(tmp_path: Path) -> AsyncIterator[tuple[Server, DfuDevice]]:
    device = DfuDevice(tmp_path / "flash.bin", capacity=512 * 1024, interface_name="Firmware")
    async with Server([device], port=0) as server:
        yield server, device
    await device.aclose()


@pytest.mark.parametrize("size", [pytest.param(20_000, id="20000B"), pytest.param(300_000, id="300000B",
                                                                                 marks=full_only)])
async def test_dfu_util_lists_downloads_and_uploads_byte_identical(
        guest: Guest, bootloader: tuple[Server, DfuDevice], size: int) -> None:
    server, device = bootloader
    port = await guest.attach(None, server.port, "1-1")
    try:
        await guest.wait_for_usb_device(0x1209, 0x0018, timeout=60)
        listing = await guest.run("dfu-util -l", timeout=60)
        assert 'Found DFU: [1209:0018]' in listing.stdout and 'name="Firmware"' in listing.stdout, listing.stdout
        assert size % 1024  # not a multiple of wTransferSize: the last block is short
        r = await guest.run(f"head -c {size} /dev/urandom > /tmp/fw.bin && sha256sum /tmp/fw.bin", check=True)
        digest = r.stdout.split()[0]
        down = await guest.run("dfu-util -D /tmp/fw.bin", timeout=180)
        assert down.returncode == 0, down.stdout + down.stderr
        assert device.dfu.image.path is not None
        assert hashlib.sha256(device.dfu.image.path.read_bytes()).hexdigest() == digest  # the file on the host
        assert device.dfu.state == DfuState.DFU_IDLE and device.dfu.downloads == 1
        up = await guest.run("rm -f /tmp/back.bin; dfu-util -U /tmp/back.bin && sha256sum /tmp/back.bin",
                             timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        assert up.stdout.strip().splitlines()[-1].split()[0] == digest
    finally:
        await guest.detach(port)


async def test_runtime_device_switches_to_dfu_mode_on_detach_and_reset(guest: Guest, tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "flash.bin", start_in="runtime", product_id=0x0012, dfu_product_id=0x0011,
                       interface_name="Firmware")
    async with Server([device], port=0) as server:
        port = await guest.attach(None, server.port, "1-1")
        try:
            await guest.wait_for_usb_device(0x1209, 0x0012, timeout=60)
            await guest.run("head -c 5000 /dev/urandom > /tmp/app.bin", check=True)
            # dfu-util -e: DFU_DETACH to the runtime interface, then a USB reset (the device does not detach
            # itself). One dfu-util run could go on and download, but it learns of the re-enumerated device
            # from udev, and this guest runs no udev daemon: a second run finds it (as on any udev-less system).
            r = await guest.run("dfu-util -d 1209:0012 -e", timeout=60)
            assert r.returncode == 0 and "Resetting USB" in r.stdout, r.stdout + r.stderr
            assert "device firmware changed" in await guest.dmesg()  # the kernel saw new descriptors after the reset
            await guest.wait_for_usb_device(0x1209, 0x0011, timeout=30)
            assert device.mode == "dfu"
            # -R: after the download, reset the bus again: the new firmware runs (runtime mode, 1209:0012).
            # dfu-util sends DFU_DETACH first, which DFU mode stalls ("can't detach", a warning), then resets. The
            # reset makes the device re-enumerate, so libusb answers LIBUSB_ERROR_NOT_FOUND (-5), which dfu-util
            # 0.11 accepts yet returns as its exit status (251).
            r = await guest.run("dfu-util -d 1209:0011 -R -D /tmp/app.bin", timeout=180)
            assert r.returncode in (0, 251) and "Done!" in r.stdout, r.stdout + r.stderr
            assert device.dfu.downloads == 1
            await guest.wait_for_usb_device(0x1209, 0x0012, timeout=30)
            assert device.mode == "runtime"
            assert device.dfu.image.path is not None
            assert device.dfu.image.path.read_bytes() == await guest.read_file("/tmp/app.bin")
        finally:
            await guest.detach(port)
    await device.aclose()


async def test_dfuse_download_and_upload_at_an_address(guest: Guest, tmp_path: Path) -> None:
    """ST's DfuSe: dfu-util erases pages, sets the address pointer and writes blocks from 2, then reads back."""
    device = DfuDevice(tmp_path / "flash.bin", capacity=64 * 1024, product_id=0x0013,
                       dfuse=DfuseLayout("Internal Flash", 0x08000000, 1024))
    async with Server([device], port=0) as server:
        port = await guest.attach(None, server.port, "1-1")
        try:
            await guest.wait_for_usb_device(0x1209, 0x0013, timeout=60)
            listing = await guest.run("dfu-util -l", timeout=60)
            assert 'name="@Internal Flash /0x08000000/064*001Kg"' in listing.stdout, listing.stdout
            r = await guest.run("head -c 20000 /dev/urandom > /tmp/st.bin && sha256sum /tmp/st.bin", check=True)
            digest = r.stdout.split()[0]
            down = await guest.run("dfu-util -d 1209:0013 -a 0 -s 0x08000000 -D /tmp/st.bin", timeout=180)
            assert down.returncode == 0, down.stdout + down.stderr
            memory = (tmp_path / "flash.bin").read_bytes()
            assert hashlib.sha256(memory[:20000]).hexdigest() == digest
            assert memory[20000:] == b"\xff" * (len(memory) - 20000)  # the rest of the flash stays erased
            up = await guest.run("rm -f /tmp/st-back.bin; dfu-util -d 1209:0013 -a 0 -s 0x08000000:20000 "
                                 "-U /tmp/st-back.bin && sha256sum /tmp/st-back.bin", timeout=180)
            assert up.returncode == 0, up.stdout + up.stderr
            assert up.stdout.strip().splitlines()[-1].split()[0] == digest
        finally:
            await guest.detach(port)
    await device.aclose()
