"""USB-serial chips against Linux's own drivers: ftdi_sio, cp210x, ch341 and pl2303.

On 6.1, for each chip: the driver binds, ``/dev/ttyUSBn`` appears, ``stty`` settings reach
the chip (rate as the chip really makes it, data bits, parity, stop bits, RTS/CTS), DTR
and RTS set by the guest are seen on the device, CTS/DSR/RI/DCD set on the device are
seen by TIOCMGET in the guest, and random data passes intact each way (256 KiB; 64 KiB
for the CH340, whose 32-byte endpoints make it the slowest); the dual-port chips do the
same on each port; the shipped profiles bind and echo a line on 5.10, 6.1 and 6.12.

``VUSB_FULL_KERNEL=1`` adds the slow variant: 1 MiB each way per chip
(docs/devices/usb-serial.md gives the command).

Reading modem lines in the guest: busybox has no applet that calls TIOCMGET, and
/proc/tty/driver/usbserial lists ports without their lines.  The tests compile
``tools/tiocm.c`` statically (the guest image's own compiler step does the same for
testusb) into the test's temporary folder and copy it into the guest's /tmp for the
session: the shared guest image is not changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from vusb.devices.cdc_acm import ControlLine, Parity, StopBits
from vusb.devices.usb_serial import (
    Ch340,
    Cp2102,
    Cp2105,
    FlowControl,
    Ft232r,
    Ft2232h,
    LineSettings,
    Pl2303,
    UsbSerialDevice,
)

from vusb.harness import Guest
from vusb.harness.image import compile_guest_tool
from vusb.profile import load_profile
from vusb.server import Server

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
TIOCM_SOURCE = Path(__file__).resolve().parent / "tools" / "tiocm.c"
KIB = 1 << 10
MIB = 1 << 20
DATA_TIMEOUT = 600.0
"""Seconds for 1 MiB one way.  The CH340's 32-byte endpoints make ch341 move it in 32-byte URBs:
measured 150 s under TCG on a loaded 2-core machine (FT232R: 13 s, see the figures the test prints)."""

FULL = os.environ.get("VUSB_FULL_KERNEL", "") not in ("", "0")
"""``VUSB_FULL_KERNEL=1``: run the slow variants too (1 MiB per chip, the shipped profiles on every kernel)."""
full_only = pytest.mark.skipif(not FULL, reason="slow variant: set VUSB_FULL_KERNEL=1 to run it")


@dataclass(frozen=True)
class Chip:
    name: str
    make: Callable[[], UsbSerialDevice]
    vendor_id: int
    product_id: int
    driver: str
    profile: str
    rate_115200: int  # what the chip makes when Linux asks for 115200 bps
    rate_1000000: int  # ... and for 1000000 bps
    crtscts: bool = True  # the driver passes RTS/CTS handshake on to the chip
    quick_size: int = 256 * KIB  # bytes each way by default (1 MiB with VUSB_FULL_KERNEL=1)


CHIPS = [
    Chip("ft232r", Ft232r, 0x0403, 0x6001, "ftdi_sio", "ftdi-ft232r.yaml", 115385, 1_000_000),
    Chip("cp2102", Cp2102, 0x10C4, 0xEA60, "cp210x", "cp2102.yaml", 115200, 921_600),
    Chip("ch340", Ch340, 0x1A86, 0x7523, "ch341", "ch340.yaml", 115385, 1_000_000, crtscts=False,
         quick_size=64 * KIB),
    Chip("pl2303", Pl2303, 0x067B, 0x23A3, "pl2303", "pl2303.yaml", 115200, 1_000_000),
]


@pytest.fixture(scope="session")
def tiocm_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = os.environ.get("VUSB_CC") or shutil.which("gcc") or shutil.which("cc")
    assert cc is not None, "a C compiler (gcc) is needed to build the guest's tiocm tool"
    out = tmp_path_factory.mktemp("tiocm") / "tiocm"
    compile_guest_tool(cc, TIOCM_SOURCE, out)
    return out


async def install_tiocm(guest: Guest, binary: Path) -> str:
    path = "/tmp/vusb-tiocm"
    if not (await guest.run(f"[ -x {path} ]")).ok:
        await guest.write_file(path, binary.read_bytes(), mode=0o755)
    return path


async def attach_tty(guest: Guest, chip: Chip, srv: Server) -> tuple[int, str, str]:
    """Attach; wait for the driver and the tty; return (vhci port, sysfs device folder, /dev/ttyUSBn)."""
    vport = await guest.attach(guest.host_address, srv.port, "1-1")
    devdir = await guest.wait_for_usb_device(chip.vendor_id, chip.product_id, timeout=30)
    found = await guest.wait_for_path(f"{devdir}:1.0/ttyUSB*", timeout=30)
    tty = "/dev/" + found[0].rsplit("/", 1)[-1]
    await guest.wait_for(f"[ -c {tty} ]", timeout=10)
    return vport, devdir, tty


def lines_seen(output: str) -> dict[str, bool]:
    return {name: value == "1" for name, value in (part.split("=") for part in output.split())}


async def transfer_both_ways(guest: Guest, dev: UsbSerialDevice, tty: str, chip: Chip, size: int) -> None:
    """``size`` random bytes device -> guest, then guest -> device; both arrive intact (size and MD5)."""
    payload = os.urandom(size)
    await dev.wait_dtr(False, timeout=10)
    job = await guest.start_background(f"head -c {size} {tty} > /tmp/usbser-in; md5sum < /tmp/usbser-in; "
                                       "wc -c < /tmp/usbser-in")
    await dev.wait_dtr(True, timeout=10)  # the reader has the tty open
    started = time.monotonic()
    await dev.write(payload, timeout=60)
    result = await job.wait(timeout=DATA_TIMEOUT * size / MIB + 60)
    down = time.monotonic() - started
    digest, got_size = result.stdout.split()[0], result.stdout.split()[-1]
    assert (digest, got_size) == (hashlib.md5(payload).hexdigest(), str(size))

    await dev.wait_dtr(False, timeout=10)
    made = await guest.run(f"head -c {size} /dev/urandom > /tmp/usbser-out; md5sum < /tmp/usbser-out", check=True)
    started = time.monotonic()
    writer = await guest.start_background(f"dd if=/tmp/usbser-out of={tty} bs=4096 2>/dev/null")
    received = await dev.readexactly(size, timeout=DATA_TIMEOUT * size / MIB + 60)
    up = time.monotonic() - started
    await writer.wait(timeout=60)
    assert len(received) == size and hashlib.md5(received).hexdigest() == made.stdout.split()[0]
    # Figures, not assertions (pytest -s shows them): wall time includes the guest's shell commands.
    print(f"\n{chip.name} on 6.1: {size // KIB} KiB device->guest in {down:.1f} s ({size / down / 1e3:.0f} kB/s), "
          f"guest->device in {up:.1f} s ({size / up / 1e3:.0f} kB/s)")


@pytest.mark.parametrize("chip", CHIPS, ids=[c.name for c in CHIPS])
async def test_chip_on_linux_6_1(guest: Guest, tiocm_binary: Path, chip: Chip) -> None:
    tiocm = await install_tiocm(guest, tiocm_binary)
    dev = chip.make()
    async with Server([dev], port=0) as srv:
        vport, devdir, tty = await attach_tty(guest, chip, srv)
        try:
            # The chip's own driver has the interface.
            driver = (await guest.run(f"basename $(readlink {devdir}:1.0/driver)", check=True)).stdout.strip()
            assert driver == chip.driver

            # stty settings reach the chip; the rate is the one the chip really makes.
            settings = [
                ("115200 cs8 -parenb -cstopb -crtscts", LineSettings(chip.rate_115200, 8, Parity.NONE, StopBits.ONE)),
                ("1000000 cs7 parenb parodd cstopb crtscts",
                 LineSettings(chip.rate_1000000, 7, Parity.ODD, StopBits.TWO,
                              FlowControl.RTS_CTS if chip.crtscts else FlowControl.NONE)),
                ("115200 cs8 -parenb -cstopb -crtscts", LineSettings(chip.rate_115200, 8, Parity.NONE, StopBits.ONE)),
            ]
            for args, expected in settings:
                # The tty stays open while the settings are checked: ftdi_sio turns flow control off on close.
                job = await guest.start_background(f"exec 3<>{tty}; stty -F {tty} raw -echo {args} && echo set "
                                                   "&& exec sleep 30")
                try:
                    got = await dev.wait_line_settings(lambda s, e=expected: s == e, timeout=10)
                except TimeoutError:
                    got = dev.line
                held = await job.stop(grace=2)  # closes the tty once the chip has the settings
                assert got == expected, f"stty {args}: the chip has {got}, expected {expected}"
                assert held.stdout == "set\n", held

            # DTR and RTS set by the guest (TIOCMBIS/TIOCMBIC) are seen on the device.
            await dev.wait_dtr(False, timeout=10)
            for dtr, rts in ((0, 1), (1, 0), (1, 1)):
                job = await guest.start_background(f"{tiocm} {tty} dtr={dtr} rts={rts} hold=30000")
                want = (ControlLine.DTR if dtr else ControlLine.NONE) | (ControlLine.RTS if rts else ControlLine.NONE)
                await dev.wait_control_lines(lambda lines, w=want: lines == w, timeout=10)
                await job.stop(grace=2)  # closing the tty drops both lines
                await dev.wait_control_lines(lambda lines: lines == ControlLine.NONE, timeout=10)  # closed: HUPCL

            # CTS, DSR, RI and DCD set on the device are what TIOCMGET reports in the guest.
            for cts, dsr, ri, dcd in ((True, False, True, False), (False, True, False, True), (True, True, True, True)):
                dev.update_modem(cts=cts, dsr=dsr, ri=ri, dcd=dcd)
                out = (await guest.run(f"{tiocm} {tty} settle=300", check=True)).stdout
                seen = lines_seen(out)
                assert (seen["CTS"], seen["DSR"], seen["RI"], seen["CD"]) == (cts, dsr, ri, dcd), out

            # Random data, device -> guest and guest -> device, checked byte for byte (by digest).
            await transfer_both_ways(guest, dev, tty, chip, chip.quick_size)
        finally:
            await guest.detach(vport)
    await dev.close()


@full_only
@pytest.mark.parametrize("chip", CHIPS, ids=[c.name for c in CHIPS])
async def test_chip_carries_1_mib_each_way_on_linux_6_1(guest: Guest, chip: Chip) -> None:
    dev = chip.make()
    async with Server([dev], port=0) as srv:
        vport, _, tty = await attach_tty(guest, chip, srv)
        try:
            await guest.run(f"stty -F {tty} raw -echo 115200", check=True)
            await transfer_both_ways(guest, dev, tty, chip, MIB)
        finally:
            await guest.detach(vport)
    await dev.close()


KERNELS = ("5.10", "6.1", "6.12")  # those of the any_guest fixture (tests/kernel/conftest.py)
# Binding and a line of echo on every kernel, by default: the guests are booted for other classes anyway.
KERNEL_PARAMS = [pytest.param(k, id=f"linux-{k}") for k in KERNELS]


@pytest.mark.parametrize("any_guest", KERNEL_PARAMS, indirect=True)
@pytest.mark.parametrize("chip", CHIPS, ids=[c.name for c in CHIPS])
async def test_shipped_profile_binds_and_echoes(any_guest: Guest, chip: Chip) -> None:
    guest = any_guest
    device = load_profile(ROOT / "profiles" / chip.profile).build()
    async with Server([device], port=0) as srv:
        vport, devdir, tty = await attach_tty(guest, chip, srv)
        try:
            driver = (await guest.run(f"basename $(readlink {devdir}:1.0/driver)", check=True)).stdout.strip()
            assert driver == chip.driver
            script = f"""
stty -F {tty} raw -echo 115200
exec 3<>{tty}
: > /tmp/usbser-echo  # exists before the loop below looks at it
head -c 17 <&3 > /tmp/usbser-echo & reader=$!
printf 'hello from guest\\n' >&3
i=0; while [ "$(wc -c < /tmp/usbser-echo)" -lt 17 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill $reader 2>/dev/null; cat /tmp/usbser-echo
"""
            result = await guest.run(script, timeout=60, check=True)
            assert result.stdout == "hello from guest\n"
        finally:
            await guest.detach(vport)
    await device.aclose()


@dataclass(frozen=True)
class DualChip:
    name: str
    make: Callable[[], UsbSerialDevice]
    vendor_id: int
    product_id: int
    driver: str
    rates: tuple[int, int]  # what each port makes when Linux asks for 115200 bps


DUAL_CHIPS = [
    DualChip("ft2232h", Ft2232h, 0x0403, 0x6010, "ftdi_sio", (115246, 115246)),
    DualChip("cp2105", Cp2105, 0x10C4, 0xEA70, "cp210x", (115384, 115200)),
]


@pytest.mark.parametrize("chip", DUAL_CHIPS, ids=[c.name for c in DUAL_CHIPS])
async def test_dual_port_chip_on_linux_6_1(guest: Guest, tiocm_binary: Path, chip: DualChip) -> None:
    """Both ports bind, each has its own tty, settings, modem lines and data (64 KiB each way per port)."""
    tiocm = await install_tiocm(guest, tiocm_binary)
    dev = chip.make()
    size = 64 * 1024
    async with Server([dev], port=0) as srv:
        vport = await guest.attach(guest.host_address, srv.port, "1-1")
        try:
            devdir = await guest.wait_for_usb_device(chip.vendor_id, chip.product_id, timeout=30)
            ttys = []
            for interface in (0, 1):
                found = await guest.wait_for_path(f"{devdir}:1.{interface}/ttyUSB*", timeout=30)
                ttys.append("/dev/" + found[0].rsplit("/", 1)[-1])
                driver = (await guest.run(f"basename $(readlink {devdir}:1.{interface}/driver)", check=True)).stdout
                assert driver.strip() == chip.driver
            for i, (tty, uart) in enumerate(zip(ttys, dev.ports, strict=True)):
                await guest.wait_for(f"[ -c {tty} ]", timeout=10)
                job = await guest.start_background(f"exec 3<>{tty}; stty -F {tty} raw -echo 115200 cs7 parenb "
                                                   "&& exec sleep 30")
                expected = LineSettings(chip.rates[i], 7, Parity.EVEN, StopBits.ONE)
                await uart.wait_line_settings(lambda s, e=expected: s == e, timeout=10)
                await job.stop(grace=2)
                await guest.run(f"stty -F {tty} cs8 -parenb", check=True)
                other = dev.ports[1 - i]
                uart.update_modem(cts=False, dsr=True, ri=True, dcd=True)
                seen = lines_seen((await guest.run(f"{tiocm} {tty} dtr=1 rts=0 settle=300", check=True)).stdout)
                assert (seen["CTS"], seen["DSR"], seen["RI"], seen["CD"]) == (False, True, True, True)
                assert not other.dtr
                # device -> guest, then guest -> device, on this port only
                payload = os.urandom(size)
                await uart.wait_dtr(False, timeout=10)
                reader = await guest.start_background(f"head -c {size} {tty} | md5sum")
                await uart.wait_dtr(True, timeout=10)
                await uart.write(payload, timeout=30)
                assert (await reader.wait(timeout=60)).stdout.split()[0] == hashlib.md5(payload).hexdigest()
                await uart.wait_dtr(False, timeout=10)
                made = await guest.run(f"head -c {size} /dev/urandom > /tmp/usbser-dual; md5sum < /tmp/usbser-dual",
                                       check=True)
                writer = await guest.start_background(f"dd if=/tmp/usbser-dual of={tty} bs=4096 2>/dev/null")
                received = await uart.readexactly(size, timeout=60)
                await writer.wait(timeout=60)
                assert hashlib.md5(received).hexdigest() == made.stdout.split()[0]
        finally:
            await guest.detach(vport)
    await dev.close()
