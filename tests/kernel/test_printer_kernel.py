"""The printer attached to a real Linux kernel: usblp binds, reads the device ID, prints, and waits for paper.

What the guest shows of paper out: Linux's usblp has no way to tell a program that the
printer is out of paper other than LPGETSTATUS (an ioctl busybox cannot make) and, with
LPABORT set, -ENOSPC. What it does, like every host, is wait: a real printer out of paper
stops taking data, so the write() blocks, and usblp asks GET_PORT_STATUS every 1.5 s while
it waits ("prod the printer"). The test checks exactly that: the write does not finish
while paper_out is set, usblp reads the port status meanwhile, and once paper is back the
write completes and the job arrives whole.

By default a 64 KiB job is printed; ``VUSB_FULL_KERNEL=1`` adds the 1 MiB job.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vusb.devices import KeyboardFunction
from vusb.devices.printer import Printer, PrinterFunction

from vusb.device import Device
from vusb.harness import Guest
from vusb.server import Server

pytestmark = pytest.mark.kernel

DEVICE_ID = "MFG:vusb;MDL:Kernel Test Printer;CMD:PJL,PCL;CLS:PRINTER;"
FULL = os.environ.get("VUSB_FULL_KERNEL") == "1"
full_only = pytest.mark.skipif(not FULL, reason="big transfer: set VUSB_FULL_KERNEL=1 to run it")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Server, Printer]]:
    printer = Printer(device_id=DEVICE_ID, job_folder=tmp_path / "jobs", job_timeout=1.0)
    async with Server([printer], port=0) as server:
        yield server, printer
    await printer.aclose()


async def attach_printer(guest: Guest, server: Server, printer: Printer) -> tuple[int, str, str]:
    """Attach; return the vhci port, the device's sysfs folder and its /dev/usb/lpN."""
    port = await guest.attach(None, server.port, "1-1")
    d = printer.descriptor
    devdir = await guest.wait_for_usb_device(d.vendor_id, d.product_id, timeout=60)
    await guest.wait_for(f"[ -e {devdir}:1.0/driver ]", timeout=30, description="usblp to bind")
    lp = (await guest.wait_for_path(f"{devdir}:1.0/usbmisc/lp*", timeout=30))[0].rsplit("/", 1)[1]
    await guest.wait_for_path(f"/dev/usb/{lp}", timeout=30)
    return port, devdir, lp


async def test_usblp_binds_and_the_device_id_is_in_sysfs(any_guest: Guest,
                                                         served: tuple[Server, Printer]) -> None:
    server, printer = served
    port, devdir, lp = await attach_printer(any_guest, server, printer)
    try:
        driver = (await any_guest.run(f"basename $(readlink {devdir}:1.0/driver)", check=True)).stdout.strip()
        assert driver == "usblp"
        ieee1284 = (await any_guest.run(f"cat /sys/class/usbmisc/{lp}/device/ieee1284_id", check=True)).stdout
        assert ieee1284.strip() == DEVICE_ID
        dmesg = await any_guest.dmesg()
        assert f"{lp}: USB Bidirectional printer" in dmesg
    finally:
        await any_guest.detach(port)


@pytest.mark.parametrize("size", [pytest.param(64 << 10, id="64KiB"), pytest.param(1 << 20, id="1MiB", marks=full_only)])
async def test_a_job_written_to_dev_usb_lp_arrives_intact(guest: Guest, served: tuple[Server, Printer],
                                                          size: int) -> None:
    server, printer = served
    port, _, lp = await attach_printer(guest, server, printer)
    try:
        r = await guest.run(f"head -c {size} /dev/urandom > /tmp/job.bin && sha256sum /tmp/job.bin "
                            f"&& cat /tmp/job.bin > /dev/usb/{lp} && echo written", timeout=120, check=True)
        digest = r.stdout.split()[0]
        assert r.stdout.strip().endswith("written")
        job = await printer.next_job(timeout=30)
        assert job.size == size and job.ended_by == "idle"
        assert hashlib.sha256(job.read_bytes()).hexdigest() == digest
        assert job.path.parent == printer.printer.folder.path and job.path.name == "job-0001.prn"
    finally:
        await guest.detach(port)


async def test_paper_out_set_from_python_makes_the_guest_wait(guest: Guest, served: tuple[Server, Printer]) -> None:
    server, printer = served
    port, _, lp = await attach_printer(guest, server, printer)
    try:
        await guest.run("printf 'page one\\fpage two\\f' > /tmp/page.txt", check=True)
        printer.set_status(paper_out=True)
        reads_before = printer.printer.status_reads
        writer = await guest.start_background(f"cat /tmp/page.txt > /dev/usb/{lp} && echo printed")
        await asyncio.sleep(5)  # usblp polls the status every 1.5 s while its write waits
        assert await writer.is_running(), "the write finished although the printer was out of paper"
        assert printer.printer.status_reads > reads_before, "usblp did not read the port status while waiting"
        assert printer.jobs == []
        printer.set_status(paper_out=False)
        result = await writer.wait(timeout=30)
        assert result.returncode == 0 and result.stdout.strip() == "printed"
        job = await printer.next_job(timeout=30)
        assert job.read_bytes() == b"page one\fpage two\f"
    finally:
        await guest.detach(port)


async def test_a_printer_at_interface_1_gets_its_device_id_read(guest: Guest, tmp_path: Path) -> None:
    """usblp names interface 1 in GET_DEVICE_ID's high byte; the device routes it there (not to the keyboard)."""
    printer = PrinterFunction(device_id=DEVICE_ID, job_folder=tmp_path / "jobs", job_timeout=0.5)
    device = Device(KeyboardFunction(), printer, vendor_id=0x1209, product_id=0x0014, speed="high",
                    serial_number="PRN-ITF1")
    async with Server([device], port=0) as server:
        port = await guest.attach(None, server.port, "1-1")
        try:
            devdir = await guest.wait_for_usb_device(0x1209, 0x0014, timeout=60, serial="PRN-ITF1")
            await guest.wait_for(f"[ -e {devdir}:1.1/driver ]", timeout=30, description="usblp to bind")
            lp = (await guest.wait_for_path(f"{devdir}:1.1/usbmisc/lp*", timeout=30))[0].rsplit("/", 1)[1]
            ieee1284 = (await guest.run(f"cat /sys/class/usbmisc/{lp}/device/ieee1284_id", check=True)).stdout
            assert ieee1284.strip() == DEVICE_ID
            await guest.wait_for_path(f"/dev/usb/{lp}", timeout=30)
            await guest.run(f"printf 'interface one\\f' > /dev/usb/{lp}", check=True)
            job = await printer.next_job(timeout=30)
            assert job.read_bytes() == b"interface one\f"
        finally:
            await guest.detach(port)
    await device.aclose()
