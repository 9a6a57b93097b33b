"""A device with Microsoft OS 2.0 and WebUSB platform capabilities, attached to a real Linux kernel.

Linux reads the BOS of every device with bcdUSB >= 0x0201 (usb_get_bos_descriptor) and walks its
capabilities; a malformed one is logged and can make enumeration fail. The test checks that the
kernel read the whole BOS, bound the device's driver, and logged nothing about descriptors.
"""

from __future__ import annotations

import re

import pytest
from vusb.devices import Keyboard

from vusb.constants import DescriptorType, Request
from vusb.endpoint import HandlerResult
from vusb.harness import Guest
from vusb.server import Server
from vusb.urb import Urb
from vusb.winusb import WebUsb, WinUsb, add_platform_descriptors

pytestmark = pytest.mark.kernel

SUSPECT = re.compile(r"BOS|descriptor|invalid|too short|error|fail", re.I)


class RecordingKeyboard(Keyboard):
    """Notes the wLength of every BOS request."""

    def __init__(self) -> None:
        super().__init__(product_id=0x0021, speed="high", usb_version=0x0210, serial_number="WINUSB1")
        self.bos_reads: list[int] = []

    def _handle_control(self, urb: Urb) -> HandlerResult:
        setup = urb.setup
        if setup is not None and setup.is_in and setup.request == Request.GET_DESCRIPTOR \
                and setup.descriptor_type == DescriptorType.BOS:
            self.bos_reads.append(setup.length)
        return super()._handle_control(urb)


async def test_platform_capabilities_enumerate_cleanly(any_guest: Guest) -> None:
    device = RecordingKeyboard()
    add_platform_descriptors(device, winusb=WinUsb(vendor_code=0x20, interface=0),
                             webusb=WebUsb("https://example.com/app", vendor_code=0x21))
    assert device.bos is not None
    total = len(device.bos.to_bytes())
    before = await any_guest.dmesg_mark()
    async with Server([device], port=0) as server:
        port = await any_guest.attach(None, server.port, "1-1")
        try:
            devdir = await any_guest.wait_for_usb_device(0x1209, 0x0021, timeout=60, serial="WINUSB1")
            await any_guest.wait_for(f"[ -e {devdir}:1.0/driver ]", timeout=30, description="usbhid to bind")
            assert (await any_guest.run(f"cat {devdir}/version", check=True)).stdout.strip() == "2.10"
            new = (await any_guest.dmesg_since(before)).splitlines()
        finally:
            await any_guest.detach(port)
    assert device.bos_reads[:2] == [5, total], device.bos_reads  # header, then the whole BOS
    suspicious = [line for line in new if SUSPECT.search(line)]
    assert suspicious == [], "\n".join(new)
