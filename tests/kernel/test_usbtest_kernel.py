"""Linux's usbtest driver against vusb's Gadget Zero (0525:a4a0), through the guest's testusb tool.

usbtest binds to the device as it does to a g_zero gadget and runs each test inside the
kernel when testusb asks (USBDEVFS_IOCTL / USBTEST_REQUEST).  Every case below passes.
usbtest takes the first alternate setting with a bulk pair (0) unless its ``alt`` module
parameter names another when it binds: the isochronous cases (15, 16, 22, 23) run on a
device bound with ``alt=1``, the interrupt cases (25, 26) on one bound with ``alt=2``.

One device is attached for the whole module (usbtest runs each test from a clean state:
it selects alternate setting 0 first, which resets the endpoints), so the 24 cases take
seconds, not minutes, on a TCG guest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from vusb.devices.gadget_zero import LOOPBACK_CONFIGURATION, SOURCESINK_CONFIGURATION, GadgetZero

from vusb.harness import Guest
from vusb.server import Server

pytestmark = [pytest.mark.kernel, pytest.mark.asyncio(loop_scope="module")]


@dataclass(frozen=True)
class Case:
    test: int
    what: str
    options: str
    """testusb options: -c iterations, -s length, -v vary, -g sglen (queue depth)."""


CASES = [
    Case(0, "no operation: the ioctl reaches usbtest", "-c 1"),
    # control
    Case(9, "chapter 9 requests: descriptors, other-speed configurations, status", "-c 20"),
    Case(10, "32 queued control requests, with expected stalls and short reads", "-c 20 -g 32"),
    Case(14, "vendor control write 0x5b and read-back 0x5c, 1..4096 bytes", "-c 100 -s 4096 -v 257"),
    Case(21, "the same from an odd buffer address", "-c 50 -s 4096 -v 511"),
    # bulk, one URB at a time
    Case(1, "bulk OUT, sink checks the pattern", "-c 200 -s 16384"),
    Case(2, "bulk IN, source fills every transfer", "-c 200 -s 16384"),
    Case(3, "bulk OUT of varying lengths", "-c 200 -s 8192 -v 333"),
    Case(4, "bulk IN of varying lengths", "-c 200 -s 8192 -v 333"),
    Case(17, "bulk OUT from an odd address, mapped by usbcore", "-c 100 -s 4095"),
    Case(18, "bulk IN to an odd address, mapped by usbcore", "-c 100 -s 4095"),
    Case(19, "bulk OUT from an odd address, premapped", "-c 100 -s 4095"),
    Case(20, "bulk IN to an odd address, premapped", "-c 100 -s 4095"),
    # bulk, scatter-gather (vhci-hcd sends an sg list as one USB/IP transfer)
    Case(5, "bulk OUT scatter-gather lists", "-c 20 -s 4096 -g 16"),
    Case(6, "bulk IN scatter-gather lists", "-c 20 -s 4096 -g 16"),
    Case(7, "bulk OUT scatter-gather lists of varying entry sizes", "-c 20 -s 4096 -g 16 -v 1023"),
    Case(8, "bulk IN scatter-gather lists of varying entry sizes", "-c 20 -s 4096 -g 16 -v 1023"),
    # bulk, queued (usbtest's throughput tests)
    Case(27, "queued bulk OUT", "-c 20 -s 16384 -g 8"),
    Case(28, "queued bulk IN", "-c 20 -s 16384 -g 8"),
    # unlink
    Case(11, "unlink bulk IN URBs (async and sync)", "-c 20 -s 4096"),
    Case(12, "unlink bulk OUT URBs (async and sync)", "-c 20 -s 4096"),
    Case(24, "unlink two URBs from a queue of bulk OUT", "-c 20 -s 4096 -g 8"),
    # halt and toggle
    Case(13, "set, verify and clear ENDPOINT_HALT on both bulk endpoints", "-c 20"),
    Case(29, "CLEAR_FEATURE(HALT) between bulk writes resets the toggle", "-c 20"),
]


@dataclass
class Attached:
    """A Gadget Zero served to the guest: its sysfs directory and usbfs node there."""

    device: GadgetZero
    port: int
    sysfs: str
    node: str

    @property
    def interface(self) -> str:
        return f"{self.sysfs}:{self.device.configuration_value}.0"


async def attach(guest: Guest, server: Server, device: GadgetZero) -> Attached:
    """Attach ``device`` (told apart by its serial number) and wait until usbtest has bound to it."""
    serial = device.strings.get(device.descriptor.serial_number_index, 0x0409)
    assert serial is not None
    port = await guest.attach(None, server.port, server.add(device))
    d = device.descriptor
    sysfs = await guest.wait_for_usb_device(d.vendor_id, d.product_id, serial=serial, timeout=60)
    node = (await guest.run(f"printf '/dev/bus/usb/%03d/%03d' $(cat {sysfs}/busnum) $(cat {sysfs}/devnum)",
                            check=True)).stdout
    attached = Attached(device, port, sysfs, node)
    await guest.wait_for(f"[ -e {attached.interface}/driver ]", timeout=60, description="usbtest bound")
    return attached


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gadget_zero(guest: Guest) -> AsyncIterator[Attached]:
    """One Gadget Zero (pattern 0, like usbtest's default) attached for the whole module."""
    async with Server([], port=0) as server:
        attached = await attach(guest, server, GadgetZero(serial_number="module"))
        yield attached
        await guest.detach(attached.port)


@pytest.fixture(autouse=True)
def _detach_leftovers() -> Iterator[None]:
    """The module's device stays attached between cases (tests/kernel/conftest.py detaches after each test)."""
    yield


async def run_testusb(guest: Guest, arguments: str, *, timeout: float = 60) -> tuple[int, str]:
    """Run testusb in the guest; the output, with usbtest's kernel messages when it failed."""
    r = await guest.run(f"testusb {arguments}", timeout=timeout)
    output = r.stdout + r.stderr
    if r.returncode != 0:
        log = await guest.run("dmesg | grep -E 'usbtest|usb [0-9]' | tail -25")
        output += "\n--- dmesg ---\n" + log.stdout
    return r.returncode, output


@pytest.mark.parametrize("case", CASES, ids=[f"test{c.test}" for c in CASES])
async def test_usbtest_case_passes(guest: Guest, gadget_zero: Attached, case: Case) -> None:
    code, output = await run_testusb(guest, f"-D {gadget_zero.node} -t {case.test} {case.options}")
    assert code == 0 and f"test {case.test}: ok" in output, f"usbtest test {case.test} ({case.what}):\n{output}"


async def test_usbtest_binds_to_the_source_sink_configuration(guest: Guest, gadget_zero: Attached) -> None:
    assert gadget_zero.device.configuration_value == SOURCESINK_CONFIGURATION
    driver = (await guest.run(f"basename $(readlink {gadget_zero.interface}/driver)", check=True)).stdout.strip()
    assert driver == "usbtest"
    assert f"{gadget_zero.node} interface 0" in (await guest.run("testusb -l", check=True)).stdout
    log = (await guest.run("dmesg | grep usbtest", check=True)).stdout
    assert "Linux gadget zero" in log and "high-speed {control in/out bulk-in bulk-out} tests" in log


async def test_a_bad_byte_halts_the_sink_like_g_zero(guest: Guest, gadget_zero: Attached) -> None:
    # usbtest writes mod63 data to a sink expecting zeros: the first write lands (and is
    # counted as a pattern error), the next one stalls: usbtest reports -EPIPE.
    stats = gadget_zero.device.stats
    before = stats.pattern_errors
    try:
        code, output = await run_testusb(guest, f"-D {gadget_zero.node} -P 1 -t 1 -c 3 -s 1024")
    finally:
        await guest.run("echo 0 > /sys/module/usbtest/parameters/pattern", check=True)
    assert code == 1 and "test 1: FAILED: Broken pipe" in output, output
    assert (stats.pattern_errors, stats.last_error) == (before + 1, "bad OUT byte, buf[1] = 1")
    # The next test selects alternate setting 0 again, which clears the halt.
    code, output = await run_testusb(guest, f"-D {gadget_zero.node} -t 1 -c 3 -s 1024")
    assert code == 0, output


async def test_mod63_pattern_both_ways(guest: Guest, gadget_zero: Attached) -> None:
    device = GadgetZero(pattern=1, serial_number="mod63")
    async with Server([], port=0) as server:
        attached = await attach(guest, server, device)
        try:
            code, output = await run_testusb(guest, f"-D {attached.node} -P 1 -t 1-8,17-20 -c 20 -s 8000 -v 999 -g 8")
        finally:
            await guest.run("echo 0 > /sys/module/usbtest/parameters/pattern", check=True)
            await guest.detach(attached.port)
        assert code == 0 and output.count(": ok") == 12, output
        assert device.stats.pattern_errors == 0 and device.stats.bytes_sunk > 0


async def test_loopback_configuration(guest: Guest, gadget_zero: Attached) -> None:
    # The host may select g_zero's second configuration; usbtest binds to it too. Its control
    # tests pass; the vendor requests stall there, as in g_zero, so test 14 fails with -EPIPE.
    device = GadgetZero(serial_number="loop")
    async with Server([], port=0) as server:
        attached = await attach(guest, server, device)
        try:
            await guest.run(f"echo {LOOPBACK_CONFIGURATION} > {attached.sysfs}/bConfigurationValue", check=True)
            await guest.wait_for(f"[ -e {attached.sysfs}:{LOOPBACK_CONFIGURATION}.0/driver ]", timeout=60,
                                 description="usbtest bound to the loopback configuration")
            assert device.function.active_mode == "loopback"
            control = await run_testusb(guest, f"-D {attached.node} -t 9,10 -c 5")
            vendor = await run_testusb(guest, f"-D {attached.node} -t 14 -c 1")
        finally:
            await guest.detach(attached.port)
        assert control[0] == 0, control[1]
        assert vendor[0] == 1 and "test 14: FAILED: Broken pipe" in vendor[1], vendor[1]


ALTERNATE_CASES = [
    # (alternate setting usbtest binds to, case)
    (1, Case(15, "isochronous OUT: 8 queued URBs of 8 packets, the sink takes every packet", "-c 10 -s 8192 -g 8")),
    (1, Case(16, "isochronous IN: every packet filled to its length", "-c 10 -s 8192 -g 8")),
    (1, Case(22, "isochronous OUT from an odd buffer address", "-c 10 -s 8192 -g 8")),
    (1, Case(23, "isochronous IN to an odd buffer address", "-c 10 -s 8192 -g 8")),
    (1, Case(1, "bulk still works beside the isochronous pair", "-c 20 -s 16384")),
    (2, Case(25, "interrupt OUT, the sink checks the pattern", "-c 100 -s 1024")),
    (2, Case(26, "interrupt IN, the source fills every transfer", "-c 100 -s 1024")),
    (2, Case(9, "chapter 9 requests with all three alternate settings", "-c 5")),
]


class Rebinder:
    """One Gadget Zero whose usbtest binding is redone with the ``alt`` parameter a test needs.

    usbtest keeps the alternate setting it bound to in data it shares between all gadget
    zeros (``gz_info``) and selects it before every test: only the device bound last may
    be tested.  So one device is rebound (unbind, set ``alt``, bind) when the setting changes.
    """

    def __init__(self, guest: Guest, attached: Attached) -> None:
        self.guest = guest
        self.attached = attached
        self.alt: int | None = None

    async def bind(self, alt: int) -> Attached:
        if alt != self.alt:
            itf = self.attached.interface.rsplit("/", 1)[-1]
            await self.guest.run(f"echo {itf} > /sys/bus/usb/drivers/usbtest/unbind; "
                                 f"echo {alt} > /sys/module/usbtest/parameters/alt; "
                                 f"echo {itf} > /sys/bus/usb/drivers/usbtest/bind", check=True)
            await self.guest.wait_for(f"[ -e {self.attached.interface}/driver ]", timeout=60,
                                      description=f"usbtest bound with alt={alt}")
            self.alt = alt
        return self.attached


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rebinder(guest: Guest, gadget_zero: Attached) -> AsyncIterator[Rebinder]:
    """A second Gadget Zero for the alternate settings; afterwards ``alt`` is reset and usbtest's shared
    setting is back to 0 (the device is bound once more without it, then detached)."""
    async with Server([], port=0) as server:
        r = Rebinder(guest, await attach(guest, server, GadgetZero(serial_number="alternates")))
        try:
            yield r
        finally:
            await r.bind(-1)
            await guest.detach(r.attached.port)


@pytest.mark.parametrize(("alt", "case"), ALTERNATE_CASES, ids=[f"alt{a}-test{c.test}" for a, c in ALTERNATE_CASES])
async def test_isochronous_and_interrupt_cases_pass(guest: Guest, rebinder: Rebinder, alt: int, case: Case) -> None:
    device = await rebinder.bind(alt)
    code, output = await run_testusb(guest, f"-D {device.node} -t {case.test} {case.options}")
    assert code == 0 and f"test {case.test}: ok" in output, f"usbtest test {case.test} ({case.what}):\n{output}"
    assert device.device.alternates.get(0) == alt  # usbtest selected the alternate setting it bound to
    stats = device.device.stats
    if case.test in (15, 16, 22, 23):
        assert stats.iso_packets > 0
    if case.test == 25:
        assert stats.int_bytes_out >= 100 * 1024 and stats.pattern_errors == 0
    if case.test == 26:
        assert stats.int_bytes_in >= 100 * 1024


QUICK = "-t 1,2,9,10,13,14 -c 10 -s 4096 -v 512 -g 8"


async def test_quick_subset_on_every_kernel(any_guest: Guest) -> None:
    async with Server([], port=0) as server:
        attached = await attach(any_guest, server, GadgetZero(serial_number="quick"))
        try:
            code, output = await run_testusb(any_guest, f"-D {attached.node} {QUICK}")
        finally:
            await any_guest.detach(attached.port)
        assert code == 0 and output.count(": ok") == 6, f"{any_guest.kernel_release}:\n{output}"
