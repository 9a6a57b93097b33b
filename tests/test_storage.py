"""Mass storage: Bulk-Only Transport, SCSI commands and backing stores, through an in-process host and USB/IP."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from file_sources import FdSource  # tests/file_sources.py
from vusb.devices.storage import (
    BackingStore,
    CommandBlockWrapper,
    CommandStatusWrapper,
    ImageFile,
    LogicalUnit,
    MassStorage,
    MassStorageFunction,
    MemoryStore,
    OverlayStore,
    open_store,
    parse_size,
    register_profile_kinds,
)
from vusb.devices.storage.backing import SENDFILE_MIN, Buffer, MediumError
from vusb.devices.storage.scsi import ReadBlocks, cdb_extent

from vusb.client import RemoteDevice
from vusb.constants import Request, Speed
from vusb.device import Device
from vusb.errors import ProfileError, Stall, UsageError
from vusb.host import UsbHost
from vusb.profile import parse_profile
from vusb.protocol import NEED_DATA, ClientCodec, ImportReply, ImportRequest, SubmitCommand, SubmitReply
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import FileData, Gather, SetupPacket

MiB = 1 << 20



@dataclass
class Result:
    data: bytes
    csw: CommandStatusWrapper
    stalled: bool  # bulk IN (or OUT) stalled between the CBW and the CSW

    @property
    def status(self) -> int:
        return self.csw.status

    @property
    def residue(self) -> int:
        return self.csw.residue


class BotHost:
    """Drives a mass storage function the way Linux usb-storage does."""

    def __init__(self, host: UsbHost, function: MassStorageFunction) -> None:
        self.host = host
        self.fn = function
        self.bulk_in = function.in_address
        self.bulk_out = function.out_address
        self._tags = itertools.count(0x1000)

    async def send_cbw(self, cdb: bytes, length: int = 0, data_in: bool = True, lun: int = 0) -> int:
        tag = next(self._tags)
        await self.host.transfer_out(self.bulk_out, CommandBlockWrapper(tag, length, data_in, lun, cdb).to_bytes())
        return tag

    async def read_data(self, length: int, urb_size: int | None = None) -> tuple[bytes, bool]:
        """The IN data stage in URBs of ``urb_size``; stops at a short URB or a stall (cleared)."""
        parts: list[bytes] = []
        got = 0
        size = urb_size or length
        while got < length:
            n = min(size, length - got)
            try:
                data = await self.host.transfer_in(self.bulk_in, n)
            except Stall:
                await self.host.clear_halt(self.bulk_in)
                return b"".join(parts), True
            parts.append(data)
            got += len(data)
            if len(data) < n:
                break
        return b"".join(parts), False

    async def write_data(self, data: bytes, urb_size: int | None = None) -> bool:
        """The OUT data stage; True if the pipe stalled."""
        size = urb_size or max(len(data), 1)
        for pos in range(0, len(data), size):
            try:
                await self.host.transfer_out(self.bulk_out, data[pos : pos + size])
            except Stall:
                await self.host.clear_halt(self.bulk_out)
                return True
        return False

    async def read_csw(self) -> tuple[CommandStatusWrapper, bool]:
        """Read the CSW; a stalled pipe is cleared and read once more (BOT figure 2).  True if it stalled."""
        try:
            raw = await self.host.transfer_in(self.bulk_in, 13)
            stalled = False
        except Stall:
            await self.host.clear_halt(self.bulk_in)
            raw = await self.host.transfer_in(self.bulk_in, 13)
            stalled = True
        return CommandStatusWrapper.parse(raw), stalled

    async def command(self, cdb: bytes, length: int = 0, *, data_in: bool = True, data: bytes = b"",
                      lun: int = 0, urb_size: int | None = None) -> Result:
        if not data_in and data and not length:
            length = len(data)
        tag = await self.send_cbw(cdb, length, data_in, lun)
        got, stalled = b"", False
        if length:
            if data_in:
                got, stalled = await self.read_data(length, urb_size)
            else:
                stalled = await self.write_data(data, urb_size)
        csw, csw_stalled = await self.read_csw()
        assert csw.tag == tag, f"CSW tag {csw.tag:#x} for CBW tag {tag:#x}"
        return Result(got, csw, stalled or csw_stalled)

    async def sense(self, lun: int = 0) -> tuple[int, int, int]:
        """REQUEST SENSE: (sense key, ASC, ASCQ)."""
        r = await self.command(bytes((0x03, 0, 0, 0, 18, 0)), 18, lun=lun)
        assert r.status == 0 and len(r.data) == 18 and r.data[0] == 0x70
        return r.data[2] & 0x0F, r.data[12], r.data[13]

    async def reset(self) -> None:
        """Bulk-Only Mass Storage Reset (class request only)."""
        await self.host.control(SetupPacket(0x21, 0xFF, 0, self.fn.interface_number, 0))

    async def reset_recovery(self) -> None:
        """Reset, then clear the halt of both bulk endpoints (BOT 5.3.4)."""
        await self.reset()
        await self.host.clear_halt(self.bulk_in)
        await self.host.clear_halt(self.bulk_out)

    async def max_lun(self) -> int:
        return (await self.host.control(SetupPacket(0xA1, 0xFE, 0, self.fn.interface_number, 1)))[0]

    async def halted(self, address: int) -> bool:
        status = await self.host.control(SetupPacket(0x82, Request.GET_STATUS, 0, address, 2))
        return bool(status[0] & 1)


def rw10(opcode: int, lba: int, blocks: int, flags: int = 0) -> bytes:
    return bytes((opcode, flags)) + lba.to_bytes(4, "big") + b"\x00" + blocks.to_bytes(2, "big") + b"\x00"


def rw12(opcode: int, lba: int, blocks: int) -> bytes:
    return bytes((opcode, 0)) + lba.to_bytes(4, "big") + blocks.to_bytes(4, "big") + b"\x00\x00"


def rw16(opcode: int, lba: int, blocks: int, flags: int = 0) -> bytes:
    return bytes((opcode, flags)) + lba.to_bytes(8, "big") + blocks.to_bytes(4, "big") + b"\x00\x00"


def rw6(opcode: int, lba: int, blocks: int) -> bytes:
    return bytes((opcode,)) + lba.to_bytes(3, "big") + bytes((blocks & 0xFF, 0))


# ------------------------------------------------------------------ fixtures and helpers

INQUIRY = bytes((0x12, 0, 0, 0, 36, 0))
TEST_UNIT_READY = bytes(6)
READ_CAPACITY_10 = bytes((0x25,)) + bytes(9)
SYNCHRONIZE_CACHE_10 = bytes((0x35,)) + bytes(9)

NOT_READY, MEDIUM_ERROR, ILLEGAL_REQUEST, UNIT_ATTENTION, DATA_PROTECT, MISCOMPARE = 2, 3, 5, 6, 7, 0xE


def read_capacity_16(allocation: int = 32) -> bytes:
    return bytes((0x9E, 0x10)) + bytes(8) + allocation.to_bytes(4, "big") + bytes(2)


class attached:
    """Attach a device to an in-process host, enumerate it, and drive its mass storage function."""

    def __init__(self, device: Device, function: MassStorageFunction | None = None) -> None:
        self.device = device
        self.function = function or next(f for f in device.functions if isinstance(f, MassStorageFunction))
        self.host = LocalHost(device)

    async def __aenter__(self) -> BotHost:
        await self.host.__aenter__()
        await self.host.enumerate()
        return BotHost(self.host, self.function)

    async def __aexit__(self, *exc: object) -> None:
        await self.host.__aexit__(*exc)


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB image filled with random bytes."""
    path = tmp_path / "disk.img"
    path.write_bytes(os.urandom(4 * MiB))
    yield path


def file_bytes(path: Path, offset: int, length: int) -> bytes:
    """Read the image with a separate open(), as another program would."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FaultyStore(MemoryStore):
    """A memory disk whose I/O fails with the given errno."""

    def __init__(self, size: int, *, read_error: int | None = None, write_error: int | None = None,
                 flush_error: int | None = None) -> None:
        super().__init__(size)
        self.read_error = read_error
        self.write_error = write_error
        self.flush_error = flush_error

    def read(self, offset: int, length: int) -> bytes:
        if self.read_error is not None:
            raise OSError(self.read_error, os.strerror(self.read_error))
        return super().read(offset, length)

    def write(self, offset: int, data: Buffer) -> None:
        if self.write_error is not None:
            raise OSError(self.write_error, os.strerror(self.write_error))
        super().write(offset, data)

    def flush(self) -> None:
        if self.flush_error is not None:
            raise OSError(self.flush_error, os.strerror(self.flush_error))


# ------------------------------------------------------------------ descriptors and class requests


@pytest.mark.parametrize(("speed", "packet", "companion"), [("full", 64, False), ("high", 512, False),
                                                            ("super", 1024, True)])
async def test_interface_and_endpoints(speed: str, packet: int, companion: bool) -> None:
    disk = MassStorage(memory=True, size="1MiB", speed=speed)
    async with LocalHost(disk) as host:
        info = await host.enumerate()
    (itf,) = info.configurations[0].interfaces
    assert (itf.interface_class, itf.interface_subclass, itf.interface_protocol) == (0x08, 0x06, 0x50)
    assert sorted(ep.address & 0x80 for ep in itf.endpoints) == [0x00, 0x80]
    for ep in itf.endpoints:
        assert ep.transfer_type == 2 and ep.max_packet_size == packet
        assert (ep.companion is not None) == companion
    assert (info.bos is not None) == (speed == "super")
    serial = info.strings[info.device.serial_number_index]
    assert len(serial) >= 12 and all(c in "0123456789ABCDEF" for c in serial)


@pytest.mark.parametrize("count", [1, 3])
async def test_get_max_lun_and_class_request_checks(count: int) -> None:
    disk = MassStorage(luns=[LogicalUnit(MemoryStore("1MiB")) for _ in range(count)])
    async with attached(disk) as bot:
        assert await bot.max_lun() == count - 1
        itf = bot.fn.interface_number
        bad = [
            SetupPacket(0xA1, 0xFE, 1, itf, 1),  # wValue must be 0
            SetupPacket(0xA1, 0xFE, 0, itf, 2),  # wLength must be 1
            SetupPacket(0x21, 0xFF, 0, itf, 1),  # the reset has no data stage
            SetupPacket(0xA1, 0xFE, 0, itf + 1, 1),  # not our interface
        ]
        for setup in bad:
            with pytest.raises(Stall):
                await bot.host.control(setup, b"" if setup.is_in else bytes(setup.length))


# ------------------------------------------------------------------ CBW validation


def _cbw(**changes: int) -> bytes:
    raw = bytearray(CommandBlockWrapper(0x55, 0, True, 0, TEST_UNIT_READY).to_bytes())
    if "signature" in changes:
        raw[0:4] = changes["signature"].to_bytes(4, "little")
    if "lun" in changes:
        raw[13] = changes["lun"]
    if "cb_length" in changes:
        raw[14] = changes["cb_length"]
    return bytes(raw)


@pytest.mark.parametrize("raw", [
    pytest.param(_cbw()[:30], id="30 bytes"),
    pytest.param(_cbw() + b"\x00", id="32 bytes"),
    pytest.param(b"", id="empty"),
    pytest.param(_cbw(signature=0x43425356), id="bad signature"),
    pytest.param(_cbw(signature=0x53425355), id="CSW signature"),
    pytest.param(_cbw(lun=1), id="LUN out of range"),
    pytest.param(_cbw(lun=0x10), id="LUN reserved bits"),
    pytest.param(_cbw(cb_length=0), id="CB length 0"),
    pytest.param(_cbw(cb_length=17), id="CB length 17"),
])
async def test_invalid_cbw_stalls_until_reset_recovery(raw: bytes) -> None:
    async with attached(MassStorage(memory=True, size="1MiB")) as bot:
        await bot.host.transfer_out(bot.bulk_out, raw)  # received, then both pipes stall
        assert await bot.halted(bot.bulk_in) and await bot.halted(bot.bulk_out)
        with pytest.raises(Stall):
            await bot.host.transfer_in(bot.bulk_in, 13)
        with pytest.raises(Stall):
            await bot.host.transfer_out(bot.bulk_out, _cbw())
        assert await bot.halted(bot.bulk_in) and await bot.halted(bot.bulk_out)
        # Clearing the halts alone is not enough (BOT 6.6.1).
        await bot.host.clear_halt(bot.bulk_in)
        await bot.host.clear_halt(bot.bulk_out)
        assert await bot.halted(bot.bulk_in) and await bot.halted(bot.bulk_out)
        with pytest.raises(Stall):
            await bot.host.transfer_in(bot.bulk_in, 13)
        await bot.reset_recovery()
        assert not await bot.halted(bot.bulk_in) and not await bot.halted(bot.bulk_out)
        result = await bot.command(TEST_UNIT_READY)
        assert (result.status, result.residue) == (0, 0)


async def test_cbw_parse_and_csw_layout() -> None:
    cbw = CommandBlockWrapper(0xDEADBEEF, 0x1234, True, 2, INQUIRY)
    raw = cbw.to_bytes()
    assert len(raw) == 31 and raw[:4] == b"USBC" and raw[12] == 0x80 and raw[13] == 2 and raw[14] == 6
    assert CommandBlockWrapper.parse(raw, 3) == cbw
    csw = CommandStatusWrapper(0xDEADBEEF, 7, 1).to_bytes()
    assert csw == b"USBS" + (0xDEADBEEF).to_bytes(4, "little") + (7).to_bytes(4, "little") + b"\x01"


async def test_reset_in_the_middle_of_a_data_stage() -> None:
    async with attached(MassStorage(memory=True, size="1MiB")) as bot:
        await bot.send_cbw(rw10(0x28, 0, 8), 4096)
        await bot.host.transfer_in(bot.bulk_in, 512)  # part of the data, then the host gives up
        await bot.reset_recovery()
        assert bot.fn.phase == "command"
        result = await bot.command(INQUIRY, 36)
        assert result.status == 0 and result.data[8:12] == b"vusb"


# ------------------------------------------------------------------ SCSI replies, byte for byte


def _unit() -> LogicalUnit:
    return LogicalUnit(MemoryStore("1MiB"), vendor="VENDOR", product="PRODUCT", revision="0001", serial="SER123")


STANDARD_INQUIRY = bytes.fromhex("00 80 06 02 1f 00 00 00") + b"VENDOR  PRODUCT         0001"
CACHING_PAGE = bytes.fromhex("08 12 04") + bytes(17)
ALL_PAGES = (bytes.fromhex("01 0a") + bytes(10) + CACHING_PAGE + bytes.fromhex("0a 0a") + bytes(10)
             + bytes.fromhex("1c 0a 08") + bytes(9))

REPLIES = [
    # id, CDB, dCBWDataTransferLength, expected data, data stage stalled, residue
    ("inquiry", INQUIRY, 36, STANDARD_INQUIRY, False, 0),
    ("inquiry 5 bytes", bytes((0x12, 0, 0, 0, 5, 0)), 5, STANDARD_INQUIRY[:5], False, 0),
    ("inquiry host wants more", INQUIRY, 96, STANDARD_INQUIRY, True, 60),
    ("vpd supported pages", bytes((0x12, 1, 0x00, 0, 255, 0)), 255, bytes.fromhex("00 00 00 03 00 80 83"), True, 248),
    ("vpd serial", bytes((0x12, 1, 0x80, 0, 10, 0)), 10, bytes.fromhex("00 80 00 06") + b"SER123", False, 0),
    ("vpd device identification", bytes((0x12, 1, 0x83, 0, 38, 0)), 38,
     bytes.fromhex("00 83 00 22 02 01 00 1e") + b"VENDOR  PRODUCT         SER123", False, 0),
    ("read capacity 10", READ_CAPACITY_10, 8, bytes.fromhex("00 00 07 ff 00 00 02 00"), False, 0),
    ("read capacity 16", read_capacity_16(), 32, bytes.fromhex("00 00 00 00 00 00 07 ff 00 00 02 00") + bytes(20),
     False, 0),
    ("read capacity 16 cut", read_capacity_16(12), 12, bytes.fromhex("00 00 00 00 00 00 07 ff 00 00 02 00"), False, 0),
    ("mode sense 6 all pages", bytes((0x1A, 0, 0x3F, 0, 192, 0)), 192, bytes((59, 0, 0, 0)) + ALL_PAGES, True, 132),
    ("mode sense 6 all pages and subpages", bytes((0x1A, 0, 0x3F, 0xFF, 60, 0)), 60,
     bytes((59, 0, 0, 0)) + ALL_PAGES, False, 0),
    ("mode sense 6 caching", bytes((0x1A, 0, 0x08, 0, 24, 0)), 24, bytes((23, 0, 0, 0)) + CACHING_PAGE, False, 0),
    ("mode sense 6 caching changeable", bytes((0x1A, 0, 0x48, 0, 24, 0)), 24, bytes((23, 0, 0, 0, 8, 0x12)) + bytes(18),
     False, 0),
    ("mode sense 6 header only", bytes((0x1A, 0, 0x3F, 0, 4, 0)), 4, bytes((59, 0, 0, 0)), False, 0),
    ("mode sense 10 informational exceptions", bytes((0x5A, 0, 0x1C, 0, 0, 0, 0, 0, 20, 0)), 20,
     bytes.fromhex("00 12 00 00 00 00 00 00 1c 0a 08") + bytes(9), False, 0),
    ("read format capacities", bytes((0x23,)) + bytes(6) + bytes((0, 12, 0)), 12,
     bytes.fromhex("00 00 00 08 00 00 08 00 02 00 02 00"), False, 0),
    ("request sense, nothing to report", bytes((0x03, 0, 0, 0, 18, 0)), 18,
     bytes.fromhex("70 00 00 00 00 00 00 0a 00 00 00 00 00 00 00 00 00 00"), False, 0),
    ("report luns", bytes((0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0)), 16, bytes.fromhex("00 00 00 08") + bytes(12),
     False, 0),
    ("test unit ready", TEST_UNIT_READY, 0, b"", False, 0),
    ("prevent medium removal", bytes((0x1E, 0, 0, 0, 1, 0)), 0, b"", False, 0),
    ("start stop unit: start", bytes((0x1B, 0, 0, 0, 1, 0)), 0, b"", False, 0),
    ("verify 10 without byte check", rw10(0x2F, 0, 8), 0, b"", False, 0),
    ("synchronize cache 10", SYNCHRONIZE_CACHE_10, 0, b"", False, 0),
    ("synchronize cache 16", bytes((0x91,)) + bytes(15), 0, b"", False, 0),
    ("read 10 of no blocks", rw10(0x28, 5, 0), 0, b"", False, 0),
]


@pytest.mark.parametrize(("cdb", "length", "expected", "stalled", "residue"),
                         [pytest.param(*r[1:], id=r[0]) for r in REPLIES])
async def test_scsi_reply(cdb: bytes, length: int, expected: bytes, stalled: bool, residue: int) -> None:
    async with attached(MassStorage(luns=[_unit()])) as bot:
        result = await bot.command(cdb, length)
        assert result.data == expected
        assert (result.status, result.residue, result.stalled) == (0, residue, stalled)


async def test_mode_sense_write_protect_bit() -> None:
    async with attached(MassStorage(memory=True, size="1MiB", read_only=True)) as bot:
        six = await bot.command(bytes((0x1A, 0, 0x3F, 0, 192, 0)), 192)
        ten = await bot.command(bytes((0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 192, 0)), 192)
    assert six.data[2] == 0x80 and ten.data[3] == 0x80
    async with attached(MassStorage(memory=True, size="1MiB")) as bot:
        assert (await bot.command(bytes((0x1A, 0, 0x3F, 0, 192, 0)), 192)).data[2] == 0x00


# ------------------------------------------------------------------ errors and sense data

ERRORS = [
    # id, CDB, data in, host length, (sense key, ASC, ASCQ)
    ("unknown opcode", bytes((0xFF,)) + bytes(5), True, 0, (ILLEGAL_REQUEST, 0x20, 0)),
    ("format unit", bytes((0x04,)) + bytes(5), True, 0, (ILLEGAL_REQUEST, 0x20, 0)),
    ("mode select", bytes((0x15, 0x10, 0, 0, 12, 0)), False, 12, (ILLEGAL_REQUEST, 0x20, 0)),
    ("cdb shorter than its group", bytes((0x28, 0, 0, 0, 0, 0)), True, 512, (ILLEGAL_REQUEST, 0x24, 0)),
    ("inquiry unknown vpd page", bytes((0x12, 1, 0x42, 0, 255, 0)), True, 255, (ILLEGAL_REQUEST, 0x24, 0)),
    ("inquiry page without evpd", bytes((0x12, 0, 0x80, 0, 255, 0)), True, 255, (ILLEGAL_REQUEST, 0x24, 0)),
    ("inquiry cmddt", bytes((0x12, 2, 0, 0, 36, 0)), True, 36, (ILLEGAL_REQUEST, 0x24, 0)),
    ("request sense descriptor format", bytes((0x03, 1, 0, 0, 18, 0)), True, 18, (ILLEGAL_REQUEST, 0x24, 0)),
    ("mode sense unknown page", bytes((0x1A, 0, 0x05, 0, 192, 0)), True, 192, (ILLEGAL_REQUEST, 0x24, 0)),
    ("mode sense subpage", bytes((0x1A, 0, 0x08, 1, 192, 0)), True, 192, (ILLEGAL_REQUEST, 0x24, 0)),
    ("mode sense saved values", bytes((0x1A, 0, 0xFF, 0, 192, 0)), True, 192, (ILLEGAL_REQUEST, 0x39, 0)),
    ("service action in, not read capacity", bytes((0x9E, 0x11)) + bytes(14), True, 32, (ILLEGAL_REQUEST, 0x24, 0)),
    ("prevent allow reserved value", bytes((0x1E, 0, 0, 0, 2, 0)), True, 0, (ILLEGAL_REQUEST, 0x24, 0)),
    ("report luns, small allocation", bytes((0xA0,)) + bytes(8) + bytes((8, 0, 0)), True, 8, (ILLEGAL_REQUEST, 0x24, 0)),
    ("read past the end", rw10(0x28, 2047, 2), True, 1024, (ILLEGAL_REQUEST, 0x21, 0)),
    ("read at the end", rw10(0x28, 2048, 1), True, 512, (ILLEGAL_REQUEST, 0x21, 0)),
    ("read 16 far out", rw16(0x88, 1 << 40, 1), True, 512, (ILLEGAL_REQUEST, 0x21, 0)),
    ("write past the end", rw10(0x2A, 2040, 9), False, 9 * 512, (ILLEGAL_REQUEST, 0x21, 0)),
    ("read with protection", rw10(0x28, 0, 1, flags=0x20), True, 512, (ILLEGAL_REQUEST, 0x24, 0)),
    ("verify past the end", rw10(0x2F, 2048, 1), True, 0, (ILLEGAL_REQUEST, 0x21, 0)),
    ("verify reserved bytchk", rw10(0x2F, 0, 1, flags=0x04), False, 512, (ILLEGAL_REQUEST, 0x24, 0)),
]


@pytest.mark.parametrize(("cdb", "data_in", "length", "sense"), [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
async def test_check_condition_and_sense(cdb: bytes, data_in: bool, length: int, sense: tuple[int, int, int]) -> None:
    async with attached(MassStorage(luns=[_unit()])) as bot:
        result = await bot.command(cdb, length, data_in=data_in, data=bytes(length))
        assert (result.status, result.residue, result.data) == (1, length, b"")
        assert result.stalled == (data_in and length > 0)  # case 4 stalls IN; case 9 takes the data
        assert await bot.sense() == sense
        assert await bot.sense() == (0, 0, 0)  # reported once
        assert (await bot.command(TEST_UNIT_READY)).status == 0


async def test_sense_is_cleared_by_the_next_command() -> None:
    async with attached(MassStorage(luns=[_unit()])) as bot:
        assert (await bot.command(rw10(0x28, 4096, 1), 512)).status == 1
        assert (await bot.command(TEST_UNIT_READY)).status == 0
        assert await bot.sense() == (0, 0, 0)
        assert (await bot.command(bytes((0xFF,)) + bytes(5))).status == 1
        short = await bot.command(bytes((0x03, 0, 0, 0, 8, 0)), 8)  # an 8-byte REQUEST SENSE still clears it
        assert short.data[:3] == bytes((0x70, 0, ILLEGAL_REQUEST))
        assert await bot.sense() == (0, 0, 0)


# ------------------------------------------------------------------ reading and writing the image

RW_CASES = [
    # id, read opcode/CDB maker, write CDB maker, LBA, blocks
    ("10 first block", lambda lba, n: rw10(0x28, lba, n), lambda lba, n: rw10(0x2A, lba, n), 0, 1),
    ("10 middle", lambda lba, n: rw10(0x28, lba, n), lambda lba, n: rw10(0x2A, lba, n), 1001, 17),
    ("10 last blocks", lambda lba, n: rw10(0x28, lba, n), lambda lba, n: rw10(0x2A, lba, n), 8192 - 240, 240),
    ("6", lambda lba, n: rw6(0x08, lba, n), lambda lba, n: rw6(0x0A, lba, n), 77, 3),
    ("6 with 256 blocks", lambda lba, n: rw6(0x08, lba, 0), lambda lba, n: rw6(0x0A, lba, 0), 4000, 256),
    ("12", lambda lba, n: rw12(0xA8, lba, n), lambda lba, n: rw12(0xAA, lba, n), 5000, 64),
    ("16", lambda lba, n: rw16(0x88, lba, n), lambda lba, n: rw16(0x8A, lba, n), 8191, 1),
]


@pytest.mark.parametrize(("read", "write", "lba", "blocks"), [pytest.param(*c[1:], id=c[0]) for c in RW_CASES])
async def test_read_and_write_against_the_image_file(image: Path, read: object, write: object, lba: int,
                                                     blocks: int) -> None:
    assert callable(read) and callable(write)
    length = blocks * 512
    async with attached(MassStorage(image)) as bot:
        result = await bot.command(read(lba, blocks), length)
        assert (result.status, result.residue) == (0, 0)
        assert result.data == file_bytes(image, lba * 512, length)
        payload = os.urandom(length)
        result = await bot.command(write(lba, blocks), data_in=False, data=payload)
        assert (result.status, result.residue) == (0, 0)
        assert file_bytes(image, lba * 512, length) == payload  # in the file as soon as the CSW is good
        assert (await bot.command(read(lba, blocks), length)).data == payload


async def test_block_size_4096(tmp_path: Path) -> None:
    path = tmp_path / "4k.img"
    disk = MassStorage(path, size="1MiB", block_size=4096)
    async with attached(disk) as bot:
        assert (await bot.command(READ_CAPACITY_10, 8)).data == bytes.fromhex("00 00 00 ff 00 00 10 00")
        payload = os.urandom(8192)
        assert (await bot.command(rw10(0x2A, 10, 2), data_in=False, data=payload)).status == 0
    assert file_bytes(path, 40960, 8192) == payload


async def test_read_only_refuses_writes(image: Path) -> None:
    before = digest(image)
    for disk in (MassStorage(image, read_only=True), MassStorage(ImageFile(image, read_only=True)),
                 MassStorage(luns=[LogicalUnit(ImageFile(image), read_only=True)])):
        async with attached(disk) as bot:
            result = await bot.command(rw10(0x2A, 0, 8), data_in=False, data=bytes(4096))
            assert (result.status, result.residue) == (1, 4096)
            assert await bot.sense() == (DATA_PROTECT, 0x27, 0)
            assert (await bot.command(rw10(0x28, 0, 8), 4096)).data == file_bytes(image, 0, 4096)
        disk.close()
    assert digest(image) == before


# ------------------------------------------------------------------ data stages in many URBs


@pytest.mark.parametrize("urb_size", [512, 4096, 3 * 512, 13 * 1024, 1000])
async def test_data_stage_in_many_urbs(image: Path, urb_size: int) -> None:
    length = 96 * 1024
    async with attached(MassStorage(image)) as bot:
        result = await bot.command(rw10(0x28, 10, length // 512), length, urb_size=urb_size)
        assert (result.status, result.residue) == (0, 0) and result.data == file_bytes(image, 5120, length)
        payload = os.urandom(length)
        result = await bot.command(rw10(0x2A, 300, length // 512), data_in=False, data=payload, urb_size=urb_size)
        assert (result.status, result.residue) == (0, 0)
    assert file_bytes(image, 300 * 512, length) == payload


async def test_urbs_queued_ahead_are_answered_in_order(image: Path) -> None:
    """The host queues the data and CSW URBs before the device has the CBW, as a real host may."""
    async with attached(MassStorage(image)) as bot:
        host = bot.host
        assert isinstance(host, LocalHost)
        pending = [host.submit(bot.bulk_in, 1, 4096)[1] for _ in range(4)] + [host.submit(bot.bulk_in, 1, 13)[1]]
        await asyncio.sleep(0)
        assert not any(f.done() for f in pending)  # the device NAKs: nothing to send yet
        tag = await bot.send_cbw(rw10(0x28, 0, 32), 16384)
        results = await asyncio.gather(*pending)
        assert b"".join(bytes(r.data) for r in results[:4]) == file_bytes(image, 0, 16384)
        csw = CommandStatusWrapper.parse(bytes(results[4].data))
        assert (csw.tag, csw.status, csw.residue) == (tag, 0, 0)


async def test_waiting_in_urb_fails_when_the_device_has_no_data() -> None:
    async with attached(MassStorage(memory=True, size="1MiB")) as bot:
        host = bot.host
        assert isinstance(host, LocalHost)
        _, waiting = host.submit(bot.bulk_in, 1, 512)
        await asyncio.sleep(0)
        tag = await bot.send_cbw(TEST_UNIT_READY, 512)  # case 4: bulk IN stalls at once
        assert (await waiting).status == -32 and await bot.halted(bot.bulk_in)
        await host.clear_halt(bot.bulk_in)
        csw, stalled = await bot.read_csw()
        assert (csw.tag, csw.status, csw.residue, stalled) == (tag, 0, 512, False)


async def test_next_cbw_waits_for_the_csw_to_be_read() -> None:
    async with attached(MassStorage(memory=True, size="1MiB")) as bot:
        first = await bot.send_cbw(TEST_UNIT_READY)
        second_cbw = asyncio.ensure_future(bot.send_cbw(INQUIRY, 36))
        await asyncio.sleep(0.01)
        assert not second_cbw.done()  # NAKed until the CSW has been read
        csw, _ = await bot.read_csw()
        assert csw.tag == first
        second = await second_cbw
        data, _ = await bot.read_data(36)
        csw, _ = await bot.read_csw()
        assert csw.tag == second and data[8:12] == b"vusb"


# ------------------------------------------------------------------ the thirteen cases (BOT 6.7)

THIRTEEN = [
    # id, CDB, host length, host direction IN, status, residue, stalled, bytes of the medium sent
    ("1 Hn=Dn", TEST_UNIT_READY, 0, True, 0, 0, False, 0),
    ("2 Hn<Di", INQUIRY, 0, True, 2, 0, False, 0),
    ("3 Hn<Do", rw10(0x2A, 0, 1), 0, False, 2, 0, False, 0),
    ("4 Hi>Dn", TEST_UNIT_READY, 512, True, 0, 512, True, 0),
    ("5 Hi>Di", rw10(0x28, 0, 1), 1024, True, 0, 512, True, 512),
    ("6 Hi=Di", rw10(0x28, 0, 2), 1024, True, 0, 0, False, 1024),
    ("7 Hi<Di", rw10(0x28, 0, 2), 512, True, 2, 0, False, 512),
    ("8 Hi<>Do", rw10(0x2A, 0, 1), 512, True, 2, 512, True, 0),
    ("9 Ho>Dn", TEST_UNIT_READY, 512, False, 0, 512, False, 0),
    ("10 Ho<>Di", INQUIRY, 36, False, 2, 36, False, 0),
    ("11 Ho>Do", rw10(0x2A, 0, 1), 1024, False, 0, 512, False, 0),
    ("12 Ho=Do", rw10(0x2A, 0, 2), 1024, False, 0, 0, False, 0),
    ("13 Ho<Do", rw10(0x2A, 0, 2), 512, False, 2, 0, False, 0),
]


@pytest.mark.parametrize(("cdb", "length", "data_in", "status", "residue", "stalled", "sent"),
                         [pytest.param(*c[1:], id=c[0]) for c in THIRTEEN])
async def test_thirteen_cases(cdb: bytes, length: int, data_in: bool, status: int, residue: int, stalled: bool,
                              sent: int) -> None:
    store = MemoryStore("1MiB", os.urandom(MiB))
    before = store.getvalue()
    payload = (bytes(range(256)) * (length // 256 + 1))[:length] if not data_in else b""
    async with attached(MassStorage(store)) as bot:
        result = await bot.command(cdb, length, data_in=data_in, data=payload)
        assert (result.status, result.stalled) == (status, stalled)
        if status != 2:  # the host ignores the residue of a phase error
            assert result.residue == residue
        assert result.data == before[:sent]
        if status == 2:
            await bot.reset_recovery()  # what the host does after a phase error
        assert (await bot.command(TEST_UNIT_READY)).status == 0
    written = store.getvalue()
    if cdb[0] == 0x2A and status == 0:
        assert written[:512 * cdb[8]] == payload[:512 * cdb[8]] and written[1024:] == before[1024:]
        if length > 512 * cdb[8]:
            assert written[512:1024] == before[512:1024]  # case 11: the extra data was discarded
    else:
        assert written == before  # commands that did not run wrote nothing


# ------------------------------------------------------------------ media: eject, insert, host eject


async def test_eject_and_insert_while_attached(tmp_path: Path) -> None:
    disk = MassStorage(tmp_path / "a.img", size="1MiB")
    async with attached(disk) as bot:
        assert (await bot.command(TEST_UNIT_READY)).status == 0
        old = disk.eject()
        assert isinstance(old, ImageFile) and disk.medium is None
        for cdb, length in ((TEST_UNIT_READY, 0), (READ_CAPACITY_10, 8), (rw10(0x28, 0, 1), 512),
                            (SYNCHRONIZE_CACHE_10, 0), (read_capacity_16(), 32)):
            result = await bot.command(cdb, length)
            assert (result.status, result.residue) == (1, length)
            assert await bot.sense() == (NOT_READY, 0x3A, 0)
        assert await bot.sense() == (NOT_READY, 0x3A, 0)  # polled without a failed command too
        assert (await bot.command(INQUIRY, 36)).status == 0  # INQUIRY works without a medium
        formats = await bot.command(bytes((0x23,)) + bytes(6) + bytes((0, 12, 0)), 12)
        assert formats.data[8] == 0x03  # no media present
        old.close()
        disk.insert(ImageFile(tmp_path / "b.img", "2MiB"))
        assert (await bot.command(INQUIRY, 36)).status == 0  # does not report the unit attention
        result = await bot.command(TEST_UNIT_READY)
        assert result.status == 1 and await bot.sense() == (UNIT_ATTENTION, 0x28, 0)
        assert (await bot.command(TEST_UNIT_READY)).status == 0
        assert (await bot.command(READ_CAPACITY_10, 8)).data == bytes.fromhex("00 00 0f ff 00 00 02 00")
        with pytest.raises(UsageError):
            disk.insert(MemoryStore("1MiB"))  # already has one
    disk.close()


async def test_unit_attention_is_reported_by_request_sense() -> None:
    disk = MassStorage(luns=[LogicalUnit()])
    async with attached(disk) as bot:
        assert await bot.sense() == (NOT_READY, 0x3A, 0)
        disk.insert(MemoryStore("1MiB"))
        assert await bot.sense() == (UNIT_ATTENTION, 0x28, 0)
        assert (await bot.command(TEST_UNIT_READY)).status == 0


async def test_host_eject_load_and_prevent_removal() -> None:
    disk = MassStorage(memory=True, size="1MiB")
    eject, load = bytes((0x1B, 0, 0, 0, 0x02, 0)), bytes((0x1B, 0, 0, 0, 0x03, 0))
    prevent, allow = bytes((0x1E, 0, 0, 0, 1, 0)), bytes((0x1E, 0, 0, 0, 0, 0))
    changes: list[bool] = []
    disk.luns[0].on_change = lambda lun: changes.append(lun.present)
    async with attached(disk) as bot:
        assert (await bot.command(prevent)).status == 0 and disk.luns[0].prevent_removal
        assert (await bot.command(eject)).status == 1
        assert await bot.sense() == (ILLEGAL_REQUEST, 0x53, 0x02)
        assert (await bot.command(allow)).status == 0
        assert (await bot.command(eject)).status == 0 and disk.medium is None
        assert (await bot.command(TEST_UNIT_READY)).status == 1 and await bot.sense() == (NOT_READY, 0x3A, 0)
        assert (await bot.command(load)).status == 0 and disk.medium is not None
        assert (await bot.command(TEST_UNIT_READY)).status == 0
    assert changes == [False, True]


# ------------------------------------------------------------------ more than 2 TiB


async def test_image_larger_than_2_tib(tmp_path: Path) -> None:
    path = tmp_path / "big.img"
    size = 3 << 40
    disk = MassStorage(path, size=size)
    blocks = size // 512
    async with attached(disk) as bot:
        assert (await bot.command(READ_CAPACITY_10, 8)).data == bytes.fromhex("ff ff ff ff 00 00 02 00")
        rc16 = await bot.command(read_capacity_16(), 32)
        assert rc16.data[:12] == (blocks - 1).to_bytes(8, "big") + (512).to_bytes(4, "big")
        lba = blocks - 8
        payload = os.urandom(4096)
        assert (await bot.command(rw16(0x8A, lba, 8), data_in=False, data=payload)).status == 0
        assert (await bot.command(rw16(0x88, lba, 8), 4096)).data == payload
        assert (await bot.command(rw16(0x88, 1 << 32, 1), 512)).data == bytes(512)  # past LBA 2^32
        assert (await bot.command(rw16(0x88, blocks - 1, 2), 1024)).status == 1
        assert await bot.sense() == (ILLEGAL_REQUEST, 0x21, 0)
    disk.close()
    assert file_bytes(path, lba * 512, 4096) == payload
    assert path.stat().st_size == size and path.stat().st_blocks * 512 < 16 * MiB  # still sparse


# ------------------------------------------------------------------ copy-on-write overlays


@pytest.mark.parametrize("side_file", [False, True], ids=["memory", "side file"])
async def test_overlay_leaves_the_base_untouched(image: Path, tmp_path: Path, side_file: bool) -> None:
    before = digest(image)
    original = image.read_bytes()
    overlay: bool | Path = tmp_path / "changes.img" if side_file else True
    disk = MassStorage(image, overlay=overlay)
    store = disk.medium
    assert isinstance(store, OverlayStore)
    writes = [(0, os.urandom(512)), (127, os.urandom(512 * 3)), (200, os.urandom(64 * 1024)),
              (8191, os.urandom(512))]
    async with attached(disk) as bot:
        for lba, payload in writes:
            assert (await bot.command(rw10(0x2A, lba, len(payload) // 512), data_in=False, data=payload)).status == 0
        expected = bytearray(original)
        for lba, payload in writes:
            expected[lba * 512 : lba * 512 + len(payload)] = payload
        assert (await bot.command(rw10(0x28, 0, 400), 400 * 512)).data == expected[: 400 * 512]
        assert (await bot.command(rw10(0x28, 8000, 192), 192 * 512)).data == expected[8000 * 512 :]
        assert (await bot.command(SYNCHRONIZE_CACHE_10)).status == 0
        assert 0 < store.allocated <= 5 * 64 * 1024
        store.discard()
        assert (await bot.command(rw10(0x28, 0, 400), 400 * 512)).data == original[: 400 * 512]
    disk.close()
    assert digest(image) == before


def test_memory_store_is_sparse_and_copy_on_write_chunks() -> None:
    store = MemoryStore(3 << 40)
    assert store.read(1 << 41, 16) == bytes(16) and store.allocated == 0
    store.write((1 << 41) - 3, b"abcdef")  # across a chunk boundary
    assert store.read((1 << 41) - 4, 8) == b"\x00abcdef\x00" and store.allocated == 2 * 64 * 1024
    base = MemoryStore(200 * 1024, bytes(range(256)) * 800)
    over = OverlayStore(base)
    over.write(65530, b"XYZXYZXYZXYZ")
    assert over.read(65528, 16) == bytes(range(256))[65528 % 256 :][:2] + b"XYZXYZXYZXYZ" + bytes((6, 7))
    assert base.read(65528, 16) == (bytes(range(256)) * 800)[65528 : 65528 + 16]
    with pytest.raises(OSError):
        over.write(200 * 1024 - 2, b"1234")  # past the end


CONTENT = bytes(range(251)) * 1200  # about 294 KiB: five 64 KiB chunks, the last one partial


def _stores(tmp_path: Path) -> dict[str, BackingStore]:
    """One store of each kind holding CONTENT at 0 and zeros (never written) after it, up to 512 KiB."""
    size = 512 * 1024
    image_path = tmp_path / "disk.img"
    image_path.write_bytes(CONTENT + bytes(size - len(CONTENT)))
    base = MemoryStore(size)
    base.write(0, CONTENT[:100_000])
    memory_over, side_over = OverlayStore(base, close_base=False), OverlayStore(base, tmp_path / "side", close_base=False)
    for over in (memory_over, side_over):
        over.write(100_000, CONTENT[100_000:])  # the rest lives in the overlay, partly over the base's chunks
    memory = MemoryStore(size)
    memory.write(0, CONTENT)
    return {"image file": ImageFile(image_path), "memory": memory, "overlay in memory": memory_over,
            "overlay in a side file": side_over}


READ_SPANS = [
    # (case, offset, length)
    ("inside one chunk", 1000, 3000),
    ("across chunk boundaries", 60_000, 200_000),
    ("written and never-written chunks", 250_000, 200_000),
    ("never written", 400_000, 100_000),
    ("whole disk", 0, 512 * 1024),
]


@pytest.mark.parametrize(("case", "offset", "length"), READ_SPANS, ids=[c[0] for c in READ_SPANS])
def test_read_and_read_pieces_agree_on_every_store(tmp_path: Path, case: str, offset: int, length: int) -> None:
    expected = (CONTENT + bytes(512 * 1024 - len(CONTENT)))[offset : offset + length]
    for name, store in _stores(tmp_path).items():
        data = store.read(offset, length)
        assert isinstance(data, bytes) and data == expected, name  # bytes: a later write cannot change it
        pieces = store.read_pieces(offset, length)  # views of memory chunks, for a vectored send
        assert b"".join(bytes(p) for p in pieces) == expected, name
        lazy = isinstance(store, ImageFile) and length >= SENDFILE_MIN
        assert all(isinstance(p, FileData) for p in pieces) == lazy, name  # sent from the file by sendfile(2)
        store.write(offset, b"\x01" * length)  # the bytes returned earlier stay what they were
        assert data == expected, name
        if not lazy:  # FileData is read when it is sent, so it is not a snapshot
            assert b"".join(bytes(p) for p in pieces) == expected, name  # a chunk still viewed was copied
        assert store.read(offset, length) == b"\x01" * length, name
        store.close()


CDB_EXTENTS = [
    # (case, CDB, (LBA, blocks) or None)
    ("READ(6)", bytes((0x08, 0x1F, 0xFF, 0xFE, 3, 0)), (0x1FFFFE, 3)),
    ("WRITE(6) of 0 blocks is 256, LBA 21 bits", bytes((0x0A, 0xE1, 0x00, 0x02, 0, 0)), (0x10002, 256)),
    ("READ(10)", bytes((0x28, 0, 0, 0, 1, 0, 0, 0, 8, 0)), (256, 8)),
    ("VERIFY(10)", bytes((0x2F, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0)), (0xFFFFFFFF, 0xFFFF)),
    ("WRITE(12)", bytes((0xAA, 0, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0)), (9, 1 << 16)),
    ("READ(16)", bytes((0x88, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0)), (1 << 32, 2)),
    ("VERIFY(16)", bytes((0x8F, 0)) + (1 << 40).to_bytes(8, "big") + (5).to_bytes(4, "big") + bytes(2), (1 << 40, 5)),
    ("READ(10) cut short", bytes((0x28, 0, 0, 0, 1, 0, 0, 0, 8)), None),
    ("not a block command", bytes((0x12, 0, 0, 0, 36, 0)), None),
    ("empty", b"", None),
]


@pytest.mark.parametrize(("case", "cdb", "extent"), CDB_EXTENTS, ids=[c[0] for c in CDB_EXTENTS])
def test_cdb_extent(case: str, cdb: bytes, extent: tuple[int, int] | None) -> None:
    assert cdb_extent(cdb) == extent


READ_PIECES = [
    # (case, store, offset, length, pieces)
    ("memory disk, inside one chunk", lambda: MemoryStore(256 * 1024, CONTENT[: 256 * 1024]), 1000, 3000, 1),
    ("memory disk, across three chunks", lambda: MemoryStore(256 * 1024, CONTENT[: 256 * 1024]), 1000, 150_000, 3),
    ("memory disk, never-written chunks are one piece of zeros",
     lambda: MemoryStore(1 << 20, CONTENT[:1000]), 0, 1 << 20, 2),
    ("overlay in memory over a memory disk", lambda: OverlayStore(MemoryStore(256 * 1024, CONTENT[: 256 * 1024])),
     70_000, 100_000, 1),
]


@pytest.mark.parametrize(("case", "make", "offset", "length", "count"), READ_PIECES, ids=[c[0] for c in READ_PIECES])
def test_reads_of_a_memory_disk_hand_out_chunks_unjoined(case: str, make: Callable[[], BackingStore], offset: int,
                                                         length: int, count: int) -> None:
    store = make()
    expected = store.read(offset, length)
    data = ReadBlocks(store, offset, length).read(0, length)
    assert len(data) == length and bytes(data) == expected
    if count == 1:
        assert not isinstance(data, Gather)
    else:  # sent after the RET_SUBMIT header with one vectored write, never joined
        assert isinstance(data, Gather) and len(data.pieces) == count


def test_a_memory_chunk_is_copied_on_write_only_while_a_send_still_views_it() -> None:
    store = MemoryStore(256 * 1024, CONTENT[: 256 * 1024])
    chunk = id(memoryview(store.read_pieces(0, 10)[0]).obj)  # an id: a reference would be a view
    store.write(0, b"in place")  # nobody views the chunk: written where it is
    assert id(memoryview(store.read_pieces(0, 10)[0]).obj) == chunk
    sending = ReadBlocks(store, 0, 128 * 1024).read(0, 128 * 1024)  # held as a transport holds it
    store.write(0, b"changed!")
    assert bytes(sending)[:8] == b"in place" and store.read(0, 8) == b"changed!"
    assert id(memoryview(store.read_pieces(0, 10)[0]).obj) != chunk  # the chunk was copied


def test_image_read_past_the_end_of_a_shrunk_file_reads_zeros(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    path.write_bytes(b"\xab" * 8192)
    store = ImageFile(path)
    os.truncate(path, 4096)
    assert store.read(0, 8192) == b"\xab" * 4096 + bytes(4096)
    assert b"".join(store.read_pieces(2048, 4096)) == b"\xab" * 2048 + bytes(2048)
    store.close()


# ------------------------------------------------------------------ I/O errors


@pytest.mark.parametrize(("store", "cdb", "data_in", "sense"), [
    pytest.param(FaultyStore(MiB, write_error=errno.ENOSPC), rw10(0x2A, 0, 8), False, (DATA_PROTECT, 0x27, 7),
                 id="full file system: space allocation failed"),
    pytest.param(FaultyStore(MiB, write_error=errno.EFBIG), rw10(0x2A, 0, 8), False, (DATA_PROTECT, 0x27, 7),
                 id="file size limit: space allocation failed"),
    pytest.param(FaultyStore(MiB, write_error=errno.EIO), rw10(0x2A, 8, 8), False, (MEDIUM_ERROR, 0x0C, 0),
                 id="EIO on write"),
    pytest.param(FaultyStore(MiB, write_error=errno.EROFS), rw16(0x8A, 8, 8), False, (DATA_PROTECT, 0x27, 0),
                 id="read-only file system: write protected"),
    pytest.param(FaultyStore(MiB, write_error=errno.EACCES), rw10(0x2A, 8, 8), False, (DATA_PROTECT, 0x27, 0),
                 id="permission lost: write protected"),
    pytest.param(FaultyStore(MiB, read_error=errno.EIO), rw10(0x28, 0, 8), True, (MEDIUM_ERROR, 0x11, 0),
                 id="EIO on read"),
    pytest.param(FaultyStore(MiB, read_error=errno.EIO), rw10(0x2F, 0, 8, flags=0x02), False,
                 (MEDIUM_ERROR, 0x11, 0), id="EIO on verify"),
    pytest.param(FaultyStore(MiB, flush_error=errno.EIO), SYNCHRONIZE_CACHE_10, True, (MEDIUM_ERROR, 0x0C, 0),
                 id="EIO on fsync"),
])
async def test_io_errors_become_scsi_errors(store: BackingStore, cdb: bytes, data_in: bool,
                                              sense: tuple[int, int, int]) -> None:
    length = 0 if cdb[0] == 0x35 else 4096
    async with attached(MassStorage(store)) as bot:
        result = await bot.command(cdb, length, data_in=data_in, data=bytes(length))
        assert result.status == 1 and result.residue == length
        assert result.stalled == (data_in and length > 0)
        assert await bot.sense() == sense
        assert (await bot.command(INQUIRY, 36)).status == 0  # the device goes on


async def test_io_error_in_the_middle_of_a_transfer() -> None:
    store = FaultyStore(MiB)
    async with attached(MassStorage(store)) as bot:
        # Reading: the first URB gets data, then the store fails: the pipe stalls, the CSW says what was sent.
        await bot.send_cbw(rw10(0x28, 0, 16), 8192)
        assert len(await bot.host.transfer_in(bot.bulk_in, 4096)) == 4096
        store.read_error = errno.EIO
        data, stalled = await bot.read_data(4096)
        csw, _ = await bot.read_csw()
        assert (data, stalled, csw.status, csw.residue) == (b"", True, 1, 4096)
        assert await bot.sense() == (MEDIUM_ERROR, 0x11, 0)
        # Writing: the rest of the data is taken and dropped.
        await bot.send_cbw(rw10(0x2A, 0, 16), 8192, data_in=False)
        await bot.host.transfer_out(bot.bulk_out, b"A" * 4096)
        store.write_error = errno.EIO
        await bot.host.transfer_out(bot.bulk_out, b"B" * 4096)
        csw, _ = await bot.read_csw()
        assert (csw.status, csw.residue) == (1, 4096)
        assert await bot.sense() == (MEDIUM_ERROR, 0x0C, 0)
    store.read_error = None
    assert store.getvalue()[:8192] == b"A" * 4096 + bytes(4096)


# ------------------------------------------------------------------ durability


async def test_writes_are_in_the_file_and_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "durable.img"
    disk = MassStorage(path, size="4MiB")
    async with attached(disk) as bot:
        payload = os.urandom(120 * 1024)
        assert (await bot.command(rw10(0x2A, 64, 240), data_in=False, data=payload)).status == 0
        assert file_bytes(path, 64 * 512, len(payload)) == payload  # before any fsync
        assert synced == []
        assert (await bot.command(SYNCHRONIZE_CACHE_10)).status == 0
        assert len(synced) == 1
        assert (await bot.command(SYNCHRONIZE_CACHE_10)).status == 0
        assert len(synced) == 1  # nothing new to sync
        assert (await bot.command(rw10(0x2A, 0, 1), data_in=False, data=bytes(512))).status == 0
    assert len(synced) == 2  # detaching flushes
    async with attached(disk) as bot:
        assert (await bot.command(rw10(0x2A, 0, 1), data_in=False, data=b"z" * 512)).status == 0
        await disk.flush()
        assert len(synced) == 3
    disk.close()
    assert file_bytes(path, 0, 512) == b"z" * 512


# ------------------------------------------------------------------ several logical units


async def test_several_logical_units(tmp_path: Path) -> None:
    a, b = MemoryStore("1MiB"), ImageFile(tmp_path / "b.img", "2MiB")
    disk = MassStorage(luns=[LogicalUnit(a), LogicalUnit(b, read_only=True), LogicalUnit()], serial_number="ABC123456789")
    async with attached(disk) as bot:
        assert await bot.max_lun() == 2
        assert (await bot.command(READ_CAPACITY_10, 8, lun=0)).data[:4] == bytes.fromhex("00 00 07 ff")
        assert (await bot.command(READ_CAPACITY_10, 8, lun=1)).data[:4] == bytes.fromhex("00 00 0f ff")
        assert (await bot.command(READ_CAPACITY_10, 8, lun=2)).status == 1
        assert await bot.sense(lun=2) == (NOT_READY, 0x3A, 0)
        assert (await bot.command(rw10(0x2A, 0, 1), data_in=False, data=b"0" * 512, lun=0)).status == 0
        assert (await bot.command(rw10(0x2A, 0, 1), data_in=False, data=b"1" * 512, lun=1)).status == 1
        assert await bot.sense(lun=0) == (0, 0, 0)  # sense data is per unit
        assert await bot.sense(lun=1) == (DATA_PROTECT, 0x27, 0)
        serial = await bot.command(bytes((0x12, 1, 0x80, 0, 255, 0)), 255, lun=1)
        assert serial.data[4:] == b"ABC123456789-1"
        luns = await bot.command(bytes((0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0)), 256)
        assert luns.data == bytes.fromhex("00 00 00 18 00 00 00 00") + b"".join(bytes((0, n)) + bytes(6) for n in range(3))
    assert a.read(0, 512) == b"0" * 512
    disk.close()


async def test_in_a_composite_device() -> None:
    from vusb.devices.keyboard import KeyboardFunction

    storage = MassStorageFunction(LogicalUnit(MemoryStore("1MiB")))
    device = Device(KeyboardFunction(), storage, vendor_id=0x1209, product_id=0x7777, speed="high")
    async with attached(device, storage) as bot:
        assert bot.fn.interface_number == 1
        assert (await bot.command(INQUIRY, 36)).status == 0
        assert (await bot.command(rw10(0x28, 0, 8), 4096)).data == bytes(4096)


# ------------------------------------------------------------------ over USB/IP, as Linux drives it


@pytest.mark.parametrize(("speed", "transfer"), [("high", 120 * 1024), ("super", MiB)])
async def test_linux_sequence_over_usbip(tmp_path: Path, speed: str, transfer: int) -> None:
    path = tmp_path / "stick.img"
    disk = MassStorage(path, size="8MiB", speed=speed)
    async with Server([disk], port=0) as server, await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
        info = await remote.enumerate()
        assert info.speed == Speed.SUPER if speed == "super" else Speed.HIGH
        bot = BotHost(remote, disk.storage)
        assert await bot.max_lun() == 0
        inquiry = await bot.command(INQUIRY, 36)
        assert inquiry.status == 0 and inquiry.data[1] == 0x80 and inquiry.data[8:16] == b"vusb    "
        assert (await bot.command(TEST_UNIT_READY)).status == 0
        capacity = await bot.command(READ_CAPACITY_10, 8)
        assert capacity.data == (16383).to_bytes(4, "big") + (512).to_bytes(4, "big")
        mode = await bot.command(bytes((0x1A, 0, 0x3F, 0, 192, 0)), 192)
        assert mode.status == 0 and mode.data[2] & 0x80 == 0 and mode.stalled
        assert (await bot.command(bytes((0x1E, 0, 0, 0, 1, 0)))).status == 0
        payload = os.urandom(transfer)
        blocks = transfer // 512
        assert (await bot.command(rw10(0x2A, 100, blocks), data_in=False, data=payload)).status == 0
        assert file_bytes(path, 100 * 512, transfer) == payload
        read = await bot.command(rw10(0x28, 100, blocks), transfer)
        assert (read.status, read.residue, read.data == payload) == (0, 0, True)
        assert (await bot.command(SYNCHRONIZE_CACHE_10)).status == 0
        # An invalid CBW and the reset recovery, through the real server.
        await remote.transfer_out(bot.bulk_out, b"garbage")
        with pytest.raises(Stall):
            await remote.transfer_in(bot.bulk_in, 13)
        await bot.reset_recovery()
        assert (await bot.command(TEST_UNIT_READY)).status == 0
    disk.close()


# ------------------------------------------------------------------ image reads by sendfile(2)


FILE_DATA_CASES = [
    # (case, operation on FileData(source over bytes(range(256)) * 4, offset 16, length 1000), expected)
    ("len", lambda d: len(d), 1000),
    ("bytes", lambda d: bytes(d), (bytes(range(256)) * 4)[16:1016]),
    ("slice is FileData of the part", lambda d: (type(d[10:20]).__name__, bytes(d[10:20])),
     ("FileData", bytes(range(26, 36)))),
    ("slice past the end is cut", lambda d: len(d[990:2000]), 10),
    ("index", lambda d: (d[0], d[-1]), (16, (1015 % 256))),
    ("equal to its bytes", lambda d: d == (bytes(range(256)) * 4)[16:1016], True),
    ("past the end of the file: zeros", lambda d: bytes(FileData(d.source, 1000, 48)), bytes(range(232, 256)) + bytes(24)),
]


@pytest.mark.parametrize(("case", "op", "expected"), FILE_DATA_CASES, ids=[c[0] for c in FILE_DATA_CASES])
def test_file_data_stands_for_the_bytes_of_the_file(tmp_path: Path, case: str, op: Callable[[FileData], object],
                                                    expected: object) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 4)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert op(FileData(FdSource(fd), 16, 1000)) == expected
    finally:
        os.close(fd)


def test_file_data_of_a_closed_image_fails_instead_of_reading_another_file(tmp_path: Path) -> None:
    store = ImageFile(tmp_path / "disk.img", size=MiB)
    data = store.read_pieces(0, MiB)[0]
    assert isinstance(data, FileData) and "disk.img" in repr(data)
    store.close()
    with pytest.raises(MediumError, match="closed"):
        bytes(data)
    with pytest.raises(MediumError, match="closed"):
        store.read_pieces(0, MiB)  # the command fails now (a SCSI error), not its reply


def test_an_image_without_zero_copy_reads_a_snapshot(tmp_path: Path) -> None:
    store = ImageFile(tmp_path / "disk.img", size=MiB, zero_copy=False)
    (pieces,) = store.read_pieces(0, MiB)
    assert isinstance(pieces, bytes)
    store.write(0, b"later")
    assert pieces[:5] == bytes(5)
    store.close()


class _SendfileCount:
    """os.sendfile, counting the bytes it moved."""

    def __init__(self) -> None:
        self.moved = 0
        self._real = os.sendfile

    def __call__(self, out: int, source: int, offset: int | None, count: int) -> int:
        moved = self._real(out, source, offset, count)
        self.moved += moved
        return moved


@dataclass
class SentImage:
    """A super-speed disk on a 16 MiB image of random bytes, with os.sendfile counted."""

    disk: MassStorage
    content: bytes
    sendfile: _SendfileCount


@pytest.fixture
def sent_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SentImage]:
    path = tmp_path / "disk.img"
    content = os.urandom(16 * MiB)
    path.write_bytes(content)
    counted = _SendfileCount()
    monkeypatch.setattr(os, "sendfile", counted)
    disk = MassStorage(path, speed="super")
    yield SentImage(disk, content, counted)
    disk.close()


@pytest.mark.parametrize("size", [SENDFILE_MIN, 120 * 1024, MiB, 4 * MiB])
async def test_image_reads_leave_by_sendfile_and_arrive_intact(sent_image: SentImage, size: int) -> None:
    disk, content = sent_image.disk, sent_image.content
    async with Server([disk], port=0) as server, \
            await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
        await remote.enumerate()
        bot = BotHost(remote, disk.storage)
        for lba in (0, 3, len(content) // 512 - size // 512):
            read = await bot.command(rw10(0x28, lba, size // 512), size)
            assert (read.status, read.residue) == (0, 0)
            assert read.data == content[lba * 512 : lba * 512 + size]
    assert sent_image.sendfile.moved > 0


async def _raw_connection(port: int, busid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ClientCodec]:
    """A client that reads only when told to: a small receive buffer, so the server's replies back up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * MiB)
    codec = ClientCodec()
    writer.write(codec.send(ImportRequest(busid)))
    while (event := codec.next_event()) is NEED_DATA:
        codec.receive_data(await reader.read(65536))
    assert isinstance(event, ImportReply) and event.status == 0
    return reader, writer, codec


async def _replies(reader: asyncio.StreamReader, codec: ClientCodec, count: int) -> list[SubmitReply]:
    replies: list[SubmitReply] = []
    while len(replies) < count:
        event = codec.next_event()
        if event is NEED_DATA:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk, "the server closed the connection"
            codec.receive_data(chunk)
        else:
            assert isinstance(event, SubmitReply)
            replies.append(event)
    return replies


async def test_reads_queued_behind_a_backlog_are_read_and_stay_in_order(sent_image: SentImage) -> None:
    """Replies waiting in the transport: the next image read cannot go around them by sendfile, so it is
    read and queued behind them; the host gets every byte in order."""
    disk, content = sent_image.disk, sent_image.content
    commands = 12
    async with Server([disk], port=0) as server:
        reader, writer, codec = await _raw_connection(server.port, "1-1")
        writer.write(codec.send(SubmitCommand(1, 0, 0, 0, 0, 0, setup=bytes((0, 9, 1, 0, 0, 0, 0, 0)))))
        assert (await _replies(reader, codec, 1))[0].status == 0
        seq = itertools.count(2)
        cin, cout = disk.storage.in_address & 0x0F, disk.storage.out_address
        for n in range(commands):  # every URB of every command at once, none of the replies read yet
            cbw = CommandBlockWrapper(n, MiB, True, 0, rw10(0x28, n * 2048, 2048)).to_bytes()
            writer.write(codec.send(SubmitCommand(next(seq), 0, 0, cout, 0, len(cbw), data=cbw)))
            writer.write(codec.send(SubmitCommand(next(seq), 0, 1, cin, 0, MiB)))
            writer.write(codec.send(SubmitCommand(next(seq), 0, 1, cin, 0, 13)))
        await writer.drain()
        await asyncio.sleep(0.5)  # the server answers what it can; the rest backs up
        replies = await _replies(reader, codec, 3 * commands)
        writer.close()
    assert [r.seqnum for r in replies] == list(range(2, 2 + 3 * commands))
    for n in range(commands):
        cbw, data, csw = replies[3 * n : 3 * n + 3]
        assert (cbw.status, data.status, csw.status) == (0, 0, 0)
        assert bytes(data.data) == content[n * MiB : (n + 1) * MiB], f"command {n}"
        assert bytes(csw.data)[4:8] == n.to_bytes(4, "little") and bytes(csw.data)[12] == 0
    assert 0 < sent_image.sendfile.moved < commands * MiB  # some by sendfile, the rest read behind the backlog


# ------------------------------------------------------------------ profiles


def test_profile_creates_the_image_beside_it(tmp_path: Path) -> None:
    register_profile_kinds()
    text = (Path(__file__).parent.parent / "profiles" / "flash-drive.yaml").read_text()
    profile = parse_profile(text, str(tmp_path / "flash-drive.yaml"), tmp_path)
    device = profile.build()
    (storage,) = device.functions
    assert isinstance(storage, MassStorageFunction)
    image = tmp_path / "flash-drive.img"
    assert image.stat().st_size == 64 * MiB and image.stat().st_blocks == 0
    assert device.speed == Speed.HIGH and storage.luns[0].block_count == 131072
    assert storage.luns[0].vendor == "vusb" and storage.luns[0].product == "Virtual Flash Dr"
    storage.close()


def test_profile_with_several_units(tmp_path: Path) -> None:
    register_profile_kinds()
    (tmp_path / "base.img").write_bytes(bytes(MiB))
    text = """
identity: {vendor_id: 0x1209, product_id: 0x0004, speed: super, serial_number: "001122334455"}
functions:
  - kind: mass-storage
    interface_name: Card Reader
    luns:
      - {image: disks/sd.img, size: 2MiB, vendor: ACME, product: SD Slot, revision: "2.0"}
      - {empty: true}
      - {memory: true, size: 1M, read_only: true}
      - {image: base.img, overlay: memory, block_size: 4096, removable: false, serial: X1}
"""
    device = parse_profile(text, str(tmp_path / "reader.yaml"), tmp_path).build()
    (storage,) = device.functions
    assert isinstance(storage, MassStorageFunction)
    sd, empty, mem, over = storage.luns
    assert (tmp_path / "disks" / "sd.img").stat().st_size == 2 * MiB
    assert (sd.vendor, sd.product, sd.revision, sd.serial) == ("ACME", "SD Slot", "2.0", "001122334455-0")
    assert not empty.present and mem.write_protected and isinstance(mem.medium, MemoryStore)
    assert isinstance(over.medium, OverlayStore) and over.block_size == 4096 and not over.removable
    assert over.serial == "X1"
    storage.close()


@pytest.mark.parametrize(("functions", "message"), [
    ("- {kind: mass-storage}", "give an image"),
    ("- {kind: mass-storage, image: x.img}", "does not exist"),
    ("- {kind: mass-storage, image: x.img, size: lots}", "cannot read size"),
    ("- {kind: mass-storage, memory: true}", "needs a size"),
    ("- {kind: mass-storage, image: x.img, size: 1MiB, block_size: 1000}", "block_size"),
    ("- {kind: mass-storage, image: x.img, size: 1MiB, vendor: TOO-LONG-VENDOR}", "up to 8"),
    ("- {kind: mass-storage, image: x.img, luns: [{memory: true, size: 1M}]}", "inside each logical unit"),
    ("- {kind: mass-storage, luns: []}", "at least one"),
    ("- {kind: mass-storage, luns: [3]}", "expected a mapping"),
    ("- {kind: mass-storage, luns: [{memroy: true}]}", "unknown field"),
    ("- {kind: mass-storage, empty: true, image: x.img}", "empty unit"),
    ("- {kind: mass-storage, size: 100, memory: true}", "less than one"),
])
def test_profile_errors(tmp_path: Path, functions: str, message: str) -> None:
    register_profile_kinds()
    text = f"identity: {{vendor_id: 1, product_id: 2, speed: high}}\nfunctions:\n  {functions}\n"
    with pytest.raises(ProfileError, match=message) as info:
        parse_profile(text, str(tmp_path / "p.yaml"), tmp_path)
    assert info.value.file is not None and "p.yaml" in info.value.file


# ------------------------------------------------------------------ stores and sizes


@pytest.mark.parametrize(("text", "size"), [
    (512, 512), ("4096", 4096), ("64MiB", 64 * MiB), ("64M", 64 * MiB), ("1.5GiB", 3 << 29), ("2TB", 2 * 10**12),
    ("3 TiB", 3 << 40), ("10kb", 10000), ("1k", 1024),
])
def test_parse_size(text: int | str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "12 parsecs", "-1", "0.3B", True])
def test_parse_size_rejects(text: int | str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_open_store_choices(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        ImageFile(tmp_path / "missing.img")
    with pytest.raises(UsageError, match="read-only"):
        ImageFile(tmp_path / "missing.img", "1MiB", read_only=True)
    with pytest.raises(UsageError):
        open_store()
    with pytest.raises(UsageError, match="overlay needs a base"):
        open_store(overlay=True)
    with pytest.raises(UsageError):
        MassStorage()
    with pytest.raises(UsageError, match="not both"):
        MassStorage(tmp_path / "x.img", luns=[LogicalUnit()])
    with pytest.raises(UsageError, match="block size"):
        LogicalUnit(block_size=520)
    image = ImageFile(tmp_path / "new.img", "1MiB")
    assert image.created and image.size == MiB
    image.close()
    again = ImageFile(tmp_path / "new.img", "5MiB")  # an existing image keeps its size
    assert not again.created and again.size == MiB
    again.close()
    with pytest.raises(OSError):
        again.read(0, 1)
    initial = tmp_path / "initial.img"
    initial.write_bytes(b"hello" + bytes(1019))
    mem = open_store(initial, memory=True)
    assert isinstance(mem, MemoryStore) and mem.read(0, 5) == b"hello"
    mem.write(0, b"HELLO")
    assert initial.read_bytes()[:5] == b"hello"
