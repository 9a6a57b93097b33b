"""Fault injection against a real Linux 6.1 kernel: what its drivers do when a device misbehaves.

Each test serves a device with fault rules (vusb.faults), attaches it to the guest and
checks both sides: what the driver did (dmesg, the data dd got) and what the rules
counted.  docs/faults.md quotes what these tests see.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from vusb.devices import Keyboard, MassStorage
from vusb.devices.storage import Opcode, ScsiFailure

from vusb import faults
from vusb.harness import Guest
from vusb.harness.events import keys_to_text, parse_events
from vusb.server import Server

pytestmark = pytest.mark.kernel
MiB = 1 << 20
SCSI_TIMEOUT = 3  # seconds, instead of usb-storage's 30: set in /sys/block/sdX/device/timeout


@pytest.fixture
def server(vusb_server: Server) -> Server:
    """The plugin's server (started on a free port, stopped after the test)."""
    return vusb_server


class Dmesg:
    """The kernel messages logged since it was made."""

    def __init__(self, guest: Guest, mark: float) -> None:
        self.guest = guest
        self.mark = mark

    @classmethod
    async def mark(cls, guest: Guest) -> Dmesg:
        return cls(guest, await guest.dmesg_mark())

    async def new(self) -> str:
        return await self.guest.dmesg_since(self.mark)

    async def wait_for(self, text: str, timeout: float = 60) -> str:
        for _ in range(int(timeout * 4)):
            log = await self.new()
            if text in log:
                return log
            await asyncio.sleep(0.25)
        raise AssertionError(f"{text!r} not in the kernel log:\n{await self.new()}")


async def wait_until(condition: object, timeout: float = 30) -> None:
    for _ in range(int(timeout * 20)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def attach_disk(guest: Guest, server: Server, disk: MassStorage) -> tuple[int, str]:
    busid = disk.busid or server.add(disk)
    port = await guest.attach(guest.host_address, server.port, busid)
    devdir = await guest.wait_for_usb_device(0x1209, disk.descriptor.product_id, timeout=60)
    sd = await guest.wait_for_disk(devdir, timeout=60)
    await guest.run(f"echo {SCSI_TIMEOUT} > /sys/block/{sd}/device/timeout", check=True)
    return port, sd


def pattern_disk(*, removable: bool = True) -> tuple[MassStorage, bytes]:
    """A 4 MiB memory disk holding random bytes (its content, to compare with what the guest reads)."""
    content = random.Random(5).randbytes(4 * MiB)
    disk = MassStorage(memory=True, size=4 * MiB, removable=removable)
    assert disk.medium is not None
    disk.medium.write(0, memoryview(content))
    return disk, content


async def read_blocks(guest: Guest, sd: str, lba: int, blocks: int, *, per_read: int = 1,
                      timeout: float = 120) -> tuple[int, bytes, str]:
    """dd of ``blocks`` sectors at ``lba`` with O_DIRECT, ``per_read`` sectors per read(): (exit status, data, stderr)."""
    bs = 512 * per_read
    r = await guest.run(f"dd if=/dev/{sd} bs={bs} skip={lba // per_read} count={blocks // per_read} iflag=direct "
                        "2>/tmp/dd.err; rc=$?; cat /tmp/dd.err >&2; exit $rc", timeout=timeout)
    return r.returncode, r.stdout_bytes, r.stderr


# ------------------------------------------------------------------ keyboard: usbhid


@dataclass
class KeyboardCase:
    name: str
    make: Callable[[], faults.Fault]
    typed: str  # what the guest reads when "ab" is typed
    logged: str | None  # a line usbhid logs


KEYBOARD_CASES = [
    # Typing "ab" sends four reports: press a, release, press b, release.  The URB the host
    # already holds takes the first; rules act on the next ones ("after=1": on press b).
    # usbhid clears the halt (CLEAR_FEATURE(ENDPOINT_HALT)) and resubmits: nothing lost, nothing logged.
    KeyboardCase("stall", lambda: faults.StallRule(endpoint=0x81, count=1), "ab", None),
    # -EOVERFLOW: usbhid logs it and drops that report (press b), then goes on.
    KeyboardCase("babble", lambda: faults.Babble(endpoint=0x81, after=1, count=1), "a", "input irq status -75 received"),
    # A 2-byte report: HID pads it with zeros, so press b reads as "no key"; nothing logged.
    KeyboardCase("short", lambda: faults.Short(endpoint=0x81, length=2, after=1, count=1), "a", None),
]


@pytest.mark.parametrize("case", KEYBOARD_CASES, ids=[c.name for c in KEYBOARD_CASES])
async def test_keyboard_interrupt_faults(clean_guest: Guest, server: Server, case: KeyboardCase) -> None:
    keyboard = Keyboard()
    server.add(keyboard)
    await clean_guest.attach(clean_guest.host_address, server.port, keyboard.busid or "")
    node = await clean_guest.wait_for_input_device("vusb Virtual Keyboard", timeout=60)
    log = await Dmesg.mark(clean_guest)
    rule = keyboard.faults.add(case.make())
    job = await clean_guest.start_background(f"cat {node}")
    await asyncio.sleep(0.5)
    await keyboard.type("ab", timeout=30)
    await asyncio.sleep(1.0)
    events = parse_events(await job.read_stdout())
    await job.stop()
    assert keys_to_text(events) == case.typed
    assert rule.fired == 1
    endpoint = keyboard.endpoint(0x81)
    assert not endpoint.halted
    if isinstance(rule, faults.StallRule):
        assert endpoint.halts_cleared >= 1
    if case.logged is not None:
        await log.wait_for(case.logged, timeout=10)


# ------------------------------------------------------------------ disk: usb-storage and the SCSI layer


TIMEOUT_CASES: list[tuple[str, Callable[[], faults.Fault]]] = [
    # min_length: the data stage of the READ, not the 13-byte status of the TEST UNIT READY that opening sends
    ("drop", lambda: faults.Drop(endpoint=0x81, min_length=512, count=1)),
    ("delay beyond the timeout", lambda: faults.Delay(endpoint=0x81, min_length=512, seconds=4 * SCSI_TIMEOUT,
                                                      count=1)),
]


@pytest.mark.parametrize(("name", "make"), TIMEOUT_CASES, ids=[c[0] for c in TIMEOUT_CASES])
async def test_unanswered_bulk_in_makes_usb_storage_reset_and_retry(clean_guest: Guest, server: Server, name: str,
                                                                     make: Callable[[], faults.Fault]) -> None:
    disk, content = pattern_disk()
    port, sd = await attach_disk(clean_guest, server, disk)
    log = await Dmesg.mark(clean_guest)
    rule = disk.faults.add(make())
    rc, data, err = await read_blocks(clean_guest, sd, 2048, 8)
    assert rc == 0, err
    assert data == content[2048 * 512:2056 * 512]  # the retried READ got the right blocks
    assert rule.fired == 1
    messages = await log.wait_for("reset high-speed USB device")
    assert "using vhci_hcd" in messages
    await clean_guest.detach(port)
    disk.close()


async def test_short_data_stage_is_completed_by_another_read(clean_guest: Guest, server: Server) -> None:
    disk, content = pattern_disk()
    port, sd = await attach_disk(clean_guest, server, disk)
    log = await Dmesg.mark(clean_guest)
    before = disk.storage.commands
    rc, data, err = await read_blocks(clean_guest, sd, 2048, 64, per_read=64)  # 32 KiB: one READ(10)
    assert rc == 0 and data == content[2048 * 512:2112 * 512], err
    plain = disk.storage.commands - before
    rule = disk.faults.add(faults.Short(endpoint=0x81, min_length=4096, length=512, count=1))
    before = disk.storage.commands
    rc, data, err = await read_blocks(clean_guest, sd, 4096, 64, per_read=64)
    assert rc == 0 and data == content[4096 * 512:4160 * 512], err
    # The CSW says "all sent", the host got 512 bytes: the SCSI layer completes those and
    # reads the rest with a new command.  Nothing is logged.
    assert rule.fired == 1 and disk.storage.commands - before == plain + 1
    assert "sda" not in await log.new()
    await clean_guest.detach(port)
    disk.close()


async def test_medium_error_on_an_lba_range_fails_those_reads_only(clean_guest: Guest, server: Server) -> None:
    disk, content = pattern_disk()
    rule = disk.faults.add(ScsiFailure(opcode=Opcode.READ_10, sense_key="MEDIUM_ERROR", asc=0x11, ascq=0x00,
                                              lba=1000, blocks=16))
    port, sd = await attach_disk(clean_guest, server, disk)
    log = await Dmesg.mark(clean_guest)
    rc, data, err = await read_blocks(clean_guest, sd, 1004, 1)
    assert rc != 0 and "No data available" in err, err  # BLK_STS_MEDIUM is ENODATA, not EIO
    messages = await log.wait_for("Unrecovered read error")
    assert "Medium Error" in messages and "sector 1004" in messages
    assert rule.fired == 1  # not retried
    fired = rule.fired
    rc, data, err = await read_blocks(clean_guest, sd, 1016, 8)  # just past the range
    assert rc == 0 and data == content[1016 * 512:1024 * 512], err
    assert rule.fired == fired
    await clean_guest.detach(port)
    disk.close()


@dataclass
class SenseCase:
    name: str
    sense: dict[str, Any]
    removable: bool
    read_ok: bool  # the SCSI layer retried the READ and it succeeded
    logged: str | None


SENSE_CASES = [
    # sd retries "becoming ready" after a short delay, silently.
    SenseCase("not ready, becoming ready", dict(sense_key="NOT_READY", asc=0x04, ascq=0x01, count=2), True, True,
              None),
    # On a fixed disk a unit attention is retried...
    SenseCase("unit attention, fixed disk", dict(sense_key="UNIT_ATTENTION", asc=0x29, ascq=0x00, count=1), False,
              True, None),
    # ...on a removable one it means "the medium may have changed": the read fails.
    SenseCase("unit attention, removable disk", dict(sense_key="UNIT_ATTENTION", asc=0x29, ascq=0x00, count=1), True,
              False, "Add. Sense: Power on, reset, or bus device reset occurred"),
]


@pytest.mark.parametrize("case", SENSE_CASES, ids=[c.name for c in SENSE_CASES])
async def test_transient_sense_data(clean_guest: Guest, server: Server, case: SenseCase) -> None:
    disk, content = pattern_disk(removable=case.removable)
    port, sd = await attach_disk(clean_guest, server, disk)
    log = await Dmesg.mark(clean_guest)
    rule = disk.faults.add(ScsiFailure(opcode=Opcode.READ_10, **case.sense))
    rc, data, err = await read_blocks(clean_guest, sd, 64, 8)
    if case.read_ok:
        assert rc == 0 and data == content[64 * 512:72 * 512], err
    else:
        assert rc != 0 and "Input/output error" in err, err
    assert rule.fired == rule.count
    if case.logged is not None:
        await log.wait_for(case.logged, timeout=10)
    await clean_guest.detach(port)
    disk.close()


CORRUPTIONS = [
    # usb_get_descriptor() checks the type byte of what it got: -ENODATA, three tries, then the port gives up.
    ("type byte", 1, b"\x05", "unable to read config index 0 descriptor/start: -61"),
    # A bLength below 9 passes that check and fails the parser.
    ("bLength", 0, b"\x05", "invalid descriptor for config index 0: type = 0x2, length = 5"),
]


@pytest.mark.parametrize(("name", "offset", "data", "logged"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
async def test_corrupt_configuration_descriptor_fails_enumeration(clean_guest: Guest, server: Server, name: str,
                                                                  offset: int, data: bytes, logged: str) -> None:
    keyboard = Keyboard()
    rule = keyboard.faults.add(faults.CorruptDescriptor(type="configuration", offset=offset, data=data))
    server.add(keyboard)
    log = await Dmesg.mark(clean_guest)
    await clean_guest.attach(clean_guest.host_address, server.port, keyboard.busid or "")
    messages = await log.wait_for("unable to enumerate USB device")
    assert logged in messages and "can't read configurations" in messages, messages
    assert rule.fired >= 1 and not keyboard.configured
    # 'usbip detach' cannot open vhci while a port holds a device that never enumerated
    # ("usbip: error: open vhci_driver"): pull the device from the server's side instead.
    keyboard.disconnect()
    await wait_until(lambda: not keyboard.attached)
    await clean_guest.wait_for("usbip port >/dev/null 2>&1", timeout=30)
    keyboard.faults.clear()  # the same device, descriptor fixed: it enumerates
    await clean_guest.attach(clean_guest.host_address, server.port, keyboard.busid or "")
    await clean_guest.wait_for_input_device("vusb Virtual Keyboard", timeout=60)


async def test_disconnect_mid_transfer_and_the_device_is_served_again(clean_guest: Guest, server: Server) -> None:
    disk, content = pattern_disk()
    port, sd = await attach_disk(clean_guest, server, disk)
    log = await Dmesg.mark(clean_guest)
    rule = disk.faults.add(faults.Disconnect(endpoint=0x81, after_bytes=256 * 1024, count=1))
    rc, data, err = await read_blocks(clean_guest, sd, 0, 2048, per_read=2048)  # 1 MiB in one read()
    assert rc != 0 and ("Input/output error" in err or "No such device" in err), err
    assert data == content[:len(data)]
    await log.wait_for("USB disconnect")
    await wait_until(lambda: not disk.attached)
    assert rule.fired == 1 and rule.bytes_passed >= 256 * 1024
    await clean_guest.wait_for(f"[ ! -e /dev/{sd} ]", timeout=30)
    port, sd = await attach_disk(clean_guest, server, disk)  # the server kept it: attach again
    rc, data, err = await read_blocks(clean_guest, sd, 0, 2048, per_read=2048)
    assert rc == 0 and data == content[:MiB], err
    await clean_guest.detach(port)
    disk.close()
