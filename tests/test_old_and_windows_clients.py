"""Clients other than current Linux, replayed byte for byte against a real server socket.

usbip 0.1.x
    The userspace tools of usbip 0.1.x send op version 0x0106 and refuse a reply in any
    other version. ``usbip -l HOST`` sends OP_REQ_DEVLIST, ``usbip -a HOST BUSID``
    OP_REQ_IMPORT, each on its own connection.

usbip-win2 (Windows)
    Its UDE driver imports the device, plugs it into Windows' USB stack, and forwards what
    Windows' hub driver asks while enumerating. Its sources (drivers/ude/proto.cpp,
    context.h, libdrv usbd_helper) build each CMD_SUBMIT like this:

    - ``seqnum = (counter << 1) | dir_in``: bit 0 is the direction, the counter is the
      device's own; a CMD_UNLINK takes the next counter value with bit 0 clear;
    - ``direction`` comes from the setup packet on EP0 (from the endpoint otherwise);
    - ``transfer_flags`` never has URB_DIR_IN (0x200); an IN transfer without
      USBD_SHORT_TRANSFER_OK gets URB_SHORT_NOT_OK;
    - ``number_of_packets`` is -1 on non-isochronous URBs, ``interval`` the endpoint's bInterval;
    - ``devid = busnum << 16 | devnum`` from the import reply.

    Windows asks, besides what Linux asks, DEVICE_QUALIFIER (stalled by full-speed-only
    devices), BOS (when bcdUSB >= 0x0201: a stall here is Code 43), the MS OS string
    descriptor 0xEE and GET_STATUS, all before SET_CONFIGURATION.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from vusb.devices import Keyboard

from vusb.server import Server

HOST = "127.0.0.1"


# ------------------------------------------------------------------ usbip 0.1.x


async def _op(server: Server, request: bytes, reply_size: int) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        writer.write(request)
        return await reader.readexactly(reply_size)
    finally:
        writer.close()


@pytest.fixture
async def two_keyboards() -> AsyncIterator[Server]:
    async with Server([Keyboard(), Keyboard(product_id=2)], port=0) as server:
        yield server


async def test_usbip_0_1_list_gets_a_0106_reply(two_keyboards: Server) -> None:
    """``usbip -l`` of usbip 0.1.7: header, device count, then each record and its interfaces."""
    raw = await _op(two_keyboards, bytes.fromhex("0106 8005 00000000"), 12 + 2 * (312 + 4))
    assert raw[:12] == bytes.fromhex("0106 0005 00000000 00000002")
    assert raw[12 + 256:12 + 259] == b"1-1" and raw[12 + 316 + 256:12 + 316 + 259] == b"1-2"


async def test_usbip_0_1_attach_then_urbs(two_keyboards: Server) -> None:
    """``usbip -a HOST 1-1`` of usbip 0.1.7, then the kernel side's first URB on the same socket."""
    reader, writer = await asyncio.open_connection(HOST, two_keyboards.port)
    try:
        writer.write(bytes.fromhex("0106 8003 00000000") + b"1-1".ljust(32, b"\0"))
        reply = await reader.readexactly(8 + 312)
        assert reply[:8] == bytes.fromhex("0106 0003 00000000")
        assert reply[8 + 256:8 + 259] == b"1-1"
        writer.write(struct.pack(">IIIIIIiiii8s", 1, 1, 0x10001, 1, 0, 0x200, 18, 0, 0, 0,
                                 bytes.fromhex("8006000100001200")))
        head = await reader.readexactly(48)
        command, seqnum, status, actual = struct.unpack(">II12xii", head[:28])
        assert (command, seqnum, status, actual) == (3, 1, 0, 18)
        data = await reader.readexactly(18)
        assert data[:2] == b"\x12\x01"
    finally:
        writer.close()


@pytest.mark.parametrize(("case", "request_", "reply"), [
    ("unknown busid", bytes.fromhex("0106 8003 00000000") + b"7-7".ljust(32, b"\0"), "0106 0003 00000004"),
    ("current client, unknown busid", bytes.fromhex("0111 8003 00000000") + b"7-7".ljust(32, b"\0"),
     "0111 0003 00000004"),
])
async def test_refusals_come_in_the_request_version(two_keyboards: Server, case: str, request_: bytes,
                                                    reply: str) -> None:
    assert await _op(two_keyboards, request_, 8) == bytes.fromhex(reply)


# ------------------------------------------------------------------ usbip-win2


URB_SHORT_NOT_OK = 0x1


@dataclass
class Reply:
    command: int
    seqnum: int
    status: int
    data: bytes


class Usbip2Client:
    """Builds CMD_SUBMIT / CMD_UNLINK the way usbip-win2's UDE driver does (see the module docstring)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, devid: int) -> None:
        self.reader, self.writer, self.devid = reader, writer, devid
        self.counter = 0
        self.sent: dict[int, int] = {}  # seqnum -> wLength/transfer length of IN URBs

    @classmethod
    async def attach(cls, server: Server, busid: str) -> Usbip2Client:
        reader, writer = await asyncio.open_connection(HOST, server.port)
        writer.write(bytes.fromhex("0111 8003 00000000") + busid.encode().ljust(32, b"\0"))
        reply = await reader.readexactly(8 + 312)
        assert reply[:8] == bytes.fromhex("0111 0003 00000000")
        assert reply[8 + 256:8 + 256 + len(busid)] == busid.encode()  # usbip-win2 compares the busid echoed
        busnum, devnum = struct.unpack(">II", reply[8 + 288:8 + 296])
        return cls(reader, writer, busnum << 16 | devnum)

    def next_seqnum(self, dir_in: bool) -> int:
        self.counter = (self.counter + 1) % (1 << 31) or 1  # a 32-bit seqnum; counter 0 is never used
        return (self.counter << 1) | int(dir_in)

    def control(self, bm_request_type: int, request: int, value: int, index: int, length: int,
                data: bytes = b"", short_ok: bool = True) -> int:
        dir_in = bool(bm_request_type & 0x80)
        seqnum = self.next_seqnum(dir_in)
        flags = URB_SHORT_NOT_OK if dir_in and not short_ok else 0  # never URB_DIR_IN
        setup = struct.pack("<BBHHH", bm_request_type, request, value, index, length)
        self.writer.write(struct.pack(">IIIIIIiiii8s", 1, seqnum, self.devid, int(dir_in), 0, flags, length, 0, -1,
                                      0, setup) + (b"" if dir_in else data))
        if dir_in:
            self.sent[seqnum] = length
        return seqnum

    def bulk_or_interrupt_in(self, ep: int, length: int, interval: int) -> int:
        seqnum = self.next_seqnum(True)
        self.writer.write(struct.pack(">IIIIIIiiii8s", 1, seqnum, self.devid, 1, ep, 0, length, 0, -1, interval,
                                      bytes(8)))
        self.sent[seqnum] = length
        return seqnum

    def unlink(self, target: int) -> int:
        seqnum = self.next_seqnum(False)
        self.writer.write(struct.pack(">IIIIII24s", 2, seqnum, self.devid, 0, 0, target, bytes(24)))
        return seqnum

    async def reply(self) -> Reply:
        head = await asyncio.wait_for(self.reader.readexactly(48), 5)
        command, seqnum = struct.unpack(">II", head[:8])
        status, actual = struct.unpack(">ii", head[20:28])
        data = b""
        if command == 3 and seqnum in self.sent:
            assert 0 <= actual <= self.sent.pop(seqnum), "an IN reply longer than asked detaches the device"
            data = await self.reader.readexactly(actual)
        return Reply(command, seqnum, status, data)

    async def get(self, bm_request_type: int, request: int, value: int, index: int, length: int,
                  short_ok: bool = True) -> Reply:
        seqnum = self.control(bm_request_type, request, value, index, length, short_ok=short_ok)
        got = await self.reply()
        assert (got.command, got.seqnum) == (3, seqnum)
        return got

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def windows() -> AsyncIterator[tuple[Server, Keyboard, Keyboard]]:
    high = Keyboard(speed="high", usb_version=0x0210, serial_number="W1")  # asks BOS and DEVICE_QUALIFIER
    full = Keyboard(product_id=2)  # full-speed only, bcdUSB 0x0200
    async with Server([high, full], port=0) as server:
        yield server, high, full


async def test_windows_attach_sequence_of_a_high_speed_device(windows: tuple[Server, Keyboard, Keyboard]) -> None:
    """The whole enumeration Windows runs through usbip-win2, in its order, every reply checked."""
    server, high, _ = windows
    c = await Usbip2Client.attach(server, "1-1")
    try:
        device = (await c.get(0x80, 6, 0x0100, 0, 64)).data  # first DEVICE read, wLength 64
        assert len(device) == 18 and device[2:4] == b"\x10\x02"
        assert (await c.get(0x80, 6, 0x0100, 0, 18)).data == device
        config_head = (await c.get(0x80, 6, 0x0200, 0, 9)).data
        total = int.from_bytes(config_head[2:4], "little")
        assert len((await c.get(0x80, 6, 0x0200, 0, total)).data) == total
        bos_head = await c.get(0x80, 6, 0x0F00, 0, 5)  # BOS header first: exactly 5 bytes back
        assert bos_head.status == 0 and len(bos_head.data) == 5 and bos_head.data[1] == 0x0F
        bos = await c.get(0x80, 6, 0x0F00, 0, int.from_bytes(bos_head.data[2:4], "little"))
        assert bos.data[:5] == bos_head.data and bos.data[5:8] == bytes((7, 0x10, 0x02))  # USB 2.0 extension
        ms_os = await c.get(0x80, 6, 0x03EE, 0, 0x12)  # MS OS string: a device without one stalls it cleanly
        assert (ms_os.status, ms_os.data) == (-32, b"")
        qualifier = await c.get(0x80, 6, 0x0600, 0, 10)
        assert qualifier.status == 0 and qualifier.data[:2] == bytes((10, 6)) and qualifier.data[2:4] == b"\x10\x02"
        status = await c.get(0x80, 0, 0, 0, 2)  # GET_STATUS(device) before any configuration
        assert (status.status, status.data) == (0, b"\x00\x00")
        assert (await c.get(0x80, 6, 0x0300, 0, 255)).data == bytes((4, 3, 0x09, 0x04))
        serial = await c.get(0x80, 6, 0x0300 | device[16], 0x0409, 255)
        assert serial.data.decode("utf-16-le", errors="replace")[1:] == "W1"
        seq = c.control(0x00, 9, 1, 0, 0)  # SET_CONFIGURATION: direction 0, even seqnum
        assert (await c.reply()) == Reply(3, seq, 0, b"")
        assert high.configured
    finally:
        c.close()


async def test_windows_full_speed_device_stalls_device_qualifier_and_goes_on(
        windows: tuple[Server, Keyboard, Keyboard]) -> None:
    server, _, full = windows
    c = await Usbip2Client.attach(server, "1-2")
    try:
        assert (await c.get(0x80, 6, 0x0100, 0, 18)).data[2:4] == b"\x00\x02"
        qualifier = await c.get(0x80, 6, 0x0600, 0, 10)
        assert (qualifier.status, qualifier.data) == (-32, b"")
        assert (await c.get(0x80, 0, 0, 0, 2)).data == b"\x00\x00"  # the connection is still good
        c.control(0x00, 9, 1, 0, 0)
        assert (await c.reply()).status == 0 and full.configured
    finally:
        c.close()


# ---------------------------------------------------------------- each rule of the wire notes, one row


async def rule_direction(server: Server, high: Keyboard, full: Keyboard) -> None:
    """IN URBs come with transfer_flags 0 (no URB_DIR_IN): the direction field alone says IN."""
    c = await Usbip2Client.attach(server, "1-1")
    try:
        c.control(0x00, 9, 1, 0, 0)
        await c.reply()
        seq = c.bulk_or_interrupt_in(1, 8, interval=10)
        typing = asyncio.create_task(high.keyboard.type("a"))
        assert await c.reply() == Reply(3, seq, 0, bytes([0, 0, 4, 0, 0, 0, 0, 0]))
        release = c.bulk_or_interrupt_in(1, 8, interval=10)
        assert await c.reply() == Reply(3, release, 0, bytes(8))
        await typing
    finally:
        c.close()


async def rule_seqnum(server: Server, high: Keyboard, full: Keyboard) -> None:
    """Odd (IN) and even (OUT) seqnums, far apart, past 2**31: each reply and unlink echoes them."""
    c = await Usbip2Client.attach(server, "1-1")
    try:
        for counter in (5, 1 << 30, (1 << 31) - 3):
            c.counter = counter
            got = await c.get(0x80, 6, 0x0100, 0, 18)
            assert got.seqnum % 2 == 1 and got.data[:2] == b"\x12\x01"
            seq = c.control(0x00, 9, 1, 0, 0)
            assert seq % 2 == 0 and (await c.reply()).seqnum == seq
        pending = c.bulk_or_interrupt_in(1, 8, 10)  # nothing to report: stays pending
        unlink = c.unlink(pending)
        assert await c.reply() == Reply(4, unlink, -104, b"")
    finally:
        c.close()


async def rule_device_qualifier(server: Server, high: Keyboard, full: Keyboard) -> None:
    """High speed answers DEVICE_QUALIFIER; full speed only stalls it, and the connection goes on."""
    for busid, status, length in (("1-1", 0, 10), ("1-2", -32, 0)):
        c = await Usbip2Client.attach(server, busid)
        try:
            got = await c.get(0x80, 6, 0x0600, 0, 10)
            assert (got.status, len(got.data)) == (status, length)
            assert (await c.get(0x80, 6, 0x0100, 0, 18)).status == 0
        finally:
            c.close()


async def rule_bos(server: Server, high: Keyboard, full: Keyboard) -> None:
    """bcdUSB 0x0210: BOS answered (a stall is Code 43), the 5-byte header first, never more than asked."""
    c = await Usbip2Client.attach(server, "1-1")
    try:
        head = await c.get(0x80, 6, 0x0F00, 0, 5)
        assert (head.status, len(head.data), head.data[1]) == (0, 5, 0x0F)
        total = int.from_bytes(head.data[2:4], "little")
        assert len((await c.get(0x80, 6, 0x0F00, 0, total)).data) == total
        assert len((await c.get(0x80, 6, 0x0F00, 0, 3)).data) == 3  # Reply() asserts actual <= wLength
    finally:
        c.close()


async def rule_ms_os_string(server: Server, high: Keyboard, full: Keyboard) -> None:
    """String 0xEE (Microsoft OS descriptor query) on a device without one: a clean stall, nothing else."""
    c = await Usbip2Client.attach(server, "1-1")
    try:
        assert await c.get(0x80, 6, 0x03EE, 0, 0x12) == Reply(3, c.counter << 1 | 1, -32, b"")
        assert (await c.get(0x80, 6, 0x0300, 0, 255)).data == bytes((4, 3, 0x09, 0x04))
    finally:
        c.close()


async def rule_get_status(server: Server, high: Keyboard, full: Keyboard) -> None:
    """GET_STATUS (device, interface 0, endpoint 0) before and after SET_CONFIGURATION."""
    c = await Usbip2Client.attach(server, "1-1")
    try:
        assert (await c.get(0x80, 0, 0, 0, 2)).data == b"\x00\x00"  # not configured yet
        assert (await c.get(0x82, 0, 0, 0x80, 2)).data == b"\x00\x00"  # endpoint 0
        c.control(0x00, 9, 1, 0, 0)
        await c.reply()
        assert (await c.get(0x81, 0, 0, 0, 2)).data == b"\x00\x00"  # interface 0
        assert (await c.get(0x82, 0, 0, 0x81, 2)).data == b"\x00\x00"  # endpoint 0x81, not halted
    finally:
        c.close()


async def rule_short_not_ok(server: Server, high: Keyboard, full: Keyboard) -> None:
    """An IN without USBD_SHORT_TRANSFER_OK arrives with URB_SHORT_NOT_OK: a short answer is -EREMOTEIO,
    its data still sent, as a Linux host controller reports it."""
    c = await Usbip2Client.attach(server, "1-1")
    try:
        got = await c.get(0x80, 6, 0x0100, 0, 64, short_ok=False)
        assert (got.status, len(got.data)) == (-121, 18)
    finally:
        c.close()


WINDOWS_RULES = [
    ("direction from the direction field", rule_direction),
    ("seqnum used as an opaque key", rule_seqnum),
    ("DEVICE_QUALIFIER", rule_device_qualifier),
    ("BOS", rule_bos),
    ("string 0xEE", rule_ms_os_string),
    ("GET_STATUS at attach", rule_get_status),
    ("URB_SHORT_NOT_OK on IN", rule_short_not_ok),
]


@pytest.mark.parametrize(("rule", "check"), WINDOWS_RULES, ids=[r[0] for r in WINDOWS_RULES])
async def test_windows_rule(windows: tuple[Server, Keyboard, Keyboard], rule: str,
                            check: Callable[[Server, Keyboard, Keyboard], Awaitable[None]]) -> None:
    await check(*windows)
