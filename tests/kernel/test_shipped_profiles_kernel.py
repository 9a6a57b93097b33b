"""Every profile shipped in profiles/ attaches in a real kernel, and a driver binds every interface."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vusb.harness import Guest
from vusb.profile import load_device
from vusb.server import Server

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "profiles").glob("*.yaml"))
NO_KERNEL_DRIVER = {(0xFE, 0x01)}  # DFU: user space (dfu-util, through usbfs) drives it
EXPECTED_DRIVERS = {3: {"usbhid"}, 8: {"usb-storage"}, 2: {"cdc_acm", "cdc_ether", "cdc_ncm"},
                    0x0A: {"cdc_acm", "cdc_ether", "cdc_ncm", "rndis_host"}, 0xE0: {"rndis_host"}, 7: {"usblp"},
                    0x0E: {"uvcvideo"}, 1: {"snd-usb-audio"}}


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
async def test_shipped_profile_attaches_and_binds_drivers(clean_guest: Guest, path: Path, tmp_path: Path) -> None:
    copy = tmp_path / path.name  # profiles with disk images create them beside the profile: keep the repo clean
    shutil.copy(path, copy)
    device = load_device(copy)
    async with Server([device], port=0) as server:
        port = await clean_guest.attach(None, server.port, "1-1")
        d = device.descriptor
        devdir = await clean_guest.wait_for_usb_device(d.vendor_id, d.product_id, timeout=60)
        interfaces = [i for i in device.configurations[0].interfaces if i.alternate == 0]
        for itf in interfaces:
            if (itf.interface_class, itf.interface_subclass) in NO_KERNEL_DRIVER:
                continue
            link = f"{devdir}:1.{itf.number}/driver"
            await clean_guest.wait_for(f"[ -e {link} ]", timeout=60,
                                       description=f"a driver bound to interface {itf.number} of {path.name}")
            driver = (await clean_guest.run(f"basename $(readlink {link})", check=True)).stdout.strip()
            if itf.interface_class in EXPECTED_DRIVERS:
                assert driver in EXPECTED_DRIVERS[itf.interface_class], (path.name, itf.number, driver)
        await clean_guest.detach(port)
    await device.aclose()
