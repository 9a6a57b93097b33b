"""Hostile clients and faults: nothing crashes, nothing is lost (docs/robustness.md).

Codec properties run under hypothesis; the server is driven over real loopback
sockets with seeded random traffic (hypothesis does not drive asyncio tests), and
the fuzz targets under fuzz/ run for a few seconds at the end.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vusb.devices import Keyboard, Mouse

from vusb.client import RemoteDevice
from vusb.errors import ProtocolError
from vusb.protocol import (
    NEED_DATA,
    ClientCodec,
    DevlistRequest,
    ExportedDevice,
    ImportReply,
    ImportRequest,
    IsoPacket,
    Limits,
    Phase,
    ServerCodec,
    SubmitCommand,
    SubmitReply,
    UnlinkCommand,
    UnlinkReply,
)
from vusb.server import Server, ServerLimits
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
RECORD = ExportedDevice(busid="1-1", devnum=1)
U32 = st.integers(0, 0xFFFFFFFF)
I32 = st.integers(-(1 << 31), (1 << 31) - 1)
MAX_LEN = Limits().max_transfer_length

GET_DEVICE = bytes.fromhex("8006000100001200")
GET_CONFIG = bytes.fromhex("800602000000ff00")
SET_CONFIG_1 = bytes.fromhex("0009010000000000")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def submit(seqnum: int, ep: int, direction: int, length: int, setup: bytes = bytes(8), data: bytes = b"",
           npackets: int = 0) -> bytes:
    return struct.pack(">IIIIIIiiii8s", 1, seqnum, 0x10001, direction, ep, 0, length, 0, npackets, 0, setup) + data


def unlink(seqnum: int, target: int) -> bytes:
    return struct.pack(">IIIIII24s", 2, seqnum, 0x10001, 0, 0, target, bytes(24))


def import_request(busid: str = "1-1") -> bytes:
    return bytes.fromhex("0111 8003 00000000") + busid.encode().ljust(32, b"\0")


# ====================================================================== codecs: any bytes in


def imported_server(**kw: object) -> ServerCodec:
    codec = ServerCodec(**kw)  # type: ignore[arg-type]
    codec.receive_data(import_request())
    assert isinstance(codec.next_event(), ImportRequest)
    codec.send(ImportReply(0, RECORD))
    return codec


def feed(codec: ServerCodec | ClientCodec, data: bytes, sizes: list[int],
         in_place: list[bool] | None = None) -> tuple[list[object], bool]:
    """Feed ``data`` in chunks of ``sizes`` (cycled); events and whether a ProtocolError ended it.

    ``in_place`` (cycled too) says how each chunk goes in: received in place (``get_buffer``/``buffer_updated``,
    as the event loop does) or copied in (``receive_data``, the default).  Any other exception escapes and fails
    the property.  After each chunk the codec holds no more than it was fed.
    """
    methods = in_place or [False]
    base, fed, pos, i = len(codec._buf), 0, 0, 0
    events: list[object] = []
    while pos < len(data):
        piece = data[pos : pos + sizes[i % len(sizes)]]
        if methods[i % len(methods)]:  # as the event loop does: into the buffers the codec offers
            done = 0
            while done < len(piece):
                view = codec.get_buffer(-1)
                n = min(len(view), len(piece) - done)
                assert n > 0, "get_buffer() offered an empty buffer"
                view[:n] = piece[done : done + n]
                del view
                codec.buffer_updated(n)
                done += n
        else:
            codec.receive_data(piece)
        pos, i = pos + len(piece), i + 1
        fed += len(piece)
        try:
            while (event := codec.next_event()) is not NEED_DATA:
                events.append(event)
        except ProtocolError:  # LimitExceeded included
            return events, True
        assert len(codec._buf) <= base + fed
    return events, False


CHUNKS = st.lists(st.integers(1, 97), min_size=1, max_size=8)
BIG_LENGTHS = (16 * 1024, 16 * 1024 + 1, 40_000, 64 * 1024 + 7)  # payloads received in place (from 16 KiB)
IN_PLACE = st.lists(st.booleans(), min_size=1, max_size=4)  # how the chunks go in: see feed()


@st.composite
def urb_headers(draw: st.DrawFn) -> bytes:
    """48-byte URB headers with hostile fields, sometimes followed by some payload."""
    command = draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4, 0, 0xFFFFFFFF]))
    fields = draw(st.lists(st.one_of(U32, st.integers(0, 20)), min_size=4, max_size=4))
    length = draw(st.one_of(st.integers(0, 300), I32))
    npackets = draw(st.one_of(st.integers(-2, 10), I32))
    head = struct.pack(">IIIIIIiiii8s", command, *fields, draw(U32), length, draw(I32), npackets, draw(I32),
                       draw(st.binary(min_size=8, max_size=8)))
    return head + draw(st.binary(max_size=320))


@st.composite
def op_headers(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([0x0111, 0x0106, 0x0100, 0x0000, 0x0200, 0xFFFF]))
    code = draw(st.sampled_from([0x8003, 0x8005, 0x0003, 0x0005, 1, 2, 0x1234]))
    return struct.pack(">HHI", version, code, draw(U32)) + draw(st.binary(max_size=40))


@st.composite
def large_urbs(draw: st.DrawFn) -> bytes:
    """A CMD_SUBMIT (OUT) or RET_SUBMIT announcing from 16 KiB, which the codecs receive in place, with all
    of that payload or only part of it."""
    command = draw(st.sampled_from([1, 3]))
    length = draw(st.sampled_from(BIG_LENGTHS))
    head = struct.pack(">IIIIIIiiii8s", command, draw(st.integers(0, 20)), 0x10001, 0 if command == 1 else 1,
                       draw(st.integers(0, 3)), 0, length, 0, 0, 0, bytes(8))
    if command == 3:  # RET_SUBMIT: status, actual_length, start_frame, number_of_packets, error_count
        head = struct.pack(">IIIIIiiiii8s", 3, draw(st.integers(0, 20)), 0, 0, 0, 0, length, 0, 0, 0, bytes(8))
    return head + bytes([draw(st.integers(0, 255))]) * draw(st.sampled_from([length, length, length // 2]))


STREAMS = st.one_of(
    st.binary(max_size=600),
    st.lists(st.one_of(urb_headers(), op_headers(), st.binary(max_size=50)), max_size=8).map(b"".join),
    st.lists(st.one_of(large_urbs(), urb_headers(), st.binary(max_size=50)), min_size=1, max_size=4).map(b"".join),
)


@FAST
@given(data=STREAMS, sizes=CHUNKS, in_place=IN_PLACE)
def test_server_codec_op_phase_raises_only_protocol_errors(data: bytes, sizes: list[int], in_place: list[bool]) -> None:
    feed(ServerCodec(), data, sizes, in_place)


@FAST
@given(data=STREAMS, sizes=CHUNKS, in_place=IN_PLACE, iso=st.sampled_from(["none", "ep3", "all"]), small=st.booleans())
def test_server_codec_urb_phase_raises_only_protocol_errors(data: bytes, sizes: list[int], in_place: list[bool],
                                                            iso: str, small: bool) -> None:
    is_iso = {"none": None, "ep3": lambda ep, d: ep == 3, "all": lambda ep, d: True}[iso]
    limits = Limits(max_transfer_length=256, max_iso_packets=4) if small else None
    feed(imported_server(is_iso=is_iso, limits=limits), data, sizes, in_place)


@FAST
@given(data=STREAMS, sizes=CHUNKS, in_place=IN_PLACE,
       state=st.sampled_from(["devlist", "import", "urb", "urb, large IN data"]))
def test_client_codec_raises_only_protocol_errors(data: bytes, sizes: list[int], in_place: list[bool], state: str) -> None:
    large = state == "urb, large IN data"  # limits that let IN data from 16 KiB through, received in place
    client = ClientCodec(limits=Limits(max_transfer_length=(1 << 17) if large else 4096, max_iso_packets=8,
                                       max_devices_listed=8))
    if state == "devlist":
        client.send(DevlistRequest())
        data = bytes.fromhex("0111 0005 00000000") + data  # a valid header: the body is what is hostile
    elif state == "import":
        client.send(ImportRequest("1-1"))
    else:
        client.phase = Phase.URB
        for seq in range(8):  # pending URBs the hostile replies may name: OUT, IN and iso
            client.send(SubmitCommand(seq, 1, seq & 1, 3, 0, 0, iso_packets=() if seq >= 4 else None))
        if large:  # IN URBs whose data goes straight into the caller's buffer
            for seq in range(8, 12):
                client.send_vectored(SubmitCommand(seq, 1, 1, 1, 0, 40_000), into=bytearray(40_000))
    feed(client, data, sizes, in_place)


ANNOUNCED = [
    ("OUT submit just under the limit", lambda: imported_server(), submit(1, 2, 0, MAX_LEN)),
    ("iso submit, most packets", lambda: imported_server(is_iso=lambda ep, d: True), submit(1, 3, 1, 0, npackets=1024)),
]


@pytest.mark.parametrize(("case", "make", "head"), ANNOUNCED, ids=[c[0] for c in ANNOUNCED])
def test_announced_lengths_are_not_preallocated(case: str, make: Callable[[], ServerCodec], head: bytes) -> None:
    codec = make()
    tracemalloc.start()
    try:
        codec.receive_data(head + b"x" * 100)
        assert codec.next_event() is NEED_DATA
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert codec.buffered == len(head) + 100
    assert peak < 64 * 1024  # nothing sized by the 64 MiB / 1024-packet announcement


def test_client_codec_does_not_preallocate_announced_lengths() -> None:
    client = ClientCodec(phase=Phase.URB)
    client.send(SubmitCommand(1, 1, 1, 1, 0, MAX_LEN))
    tracemalloc.start()
    try:
        client.receive_data(struct.pack(">IIIIIiiiii8s", 3, 1, 0, 0, 0, 0, MAX_LEN, 0, 0, 0, bytes(8)) + bytes(10))
        assert client.next_event() is NEED_DATA
        devlist = ClientCodec()
        devlist.send(DevlistRequest())
        devlist.receive_data(bytes.fromhex("0111 0005 00000000 00001000"))  # 4096 devices announced
        assert devlist.next_event() is NEED_DATA
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


# ====================================================================== codecs: round trips


@st.composite
def iso_packets(draw: st.DrawFn, length: int) -> tuple[IsoPacket, ...]:
    count = draw(st.integers(0, 6))
    out = []
    for _ in range(count):
        offset = draw(st.integers(0, length))
        out.append(IsoPacket(offset, draw(st.integers(0, length - offset)), draw(U32), draw(I32)))
    return tuple(out)


@st.composite
def submit_commands(draw: st.DrawFn) -> SubmitCommand:
    direction = draw(st.sampled_from([0, 1]))
    data = draw(st.binary(max_size=300)) if direction == 0 else b""
    length = len(data) if direction == 0 else draw(st.one_of(st.integers(0, 4096), st.integers(0, MAX_LEN)))
    iso = draw(st.booleans())
    packets = draw(iso_packets(length)) if iso else None
    return SubmitCommand(
        draw(U32), draw(U32), direction, draw(st.integers(0, 15)), draw(U32), length,
        draw(st.binary(min_size=8, max_size=8)), data, draw(I32),
        len(packets) if packets is not None else draw(I32),  # garbage number_of_packets on non-iso
        draw(I32), packets,
    )


@FAST
@given(cmd=submit_commands(), split=st.integers(1, 64))
def test_submit_command_round_trip(cmd: SubmitCommand, split: int) -> None:
    client = ClientCodec(phase=Phase.URB)
    server = imported_server(is_iso=lambda ep, d: cmd.iso_packets is not None)
    events, failed = feed(server, client.send(cmd), [split])
    expected = cmd if cmd.iso_packets is not None else replace(cmd, number_of_packets=0)  # ignored off iso
    assert not failed and events == [expected]


@st.composite
def submit_replies(draw: st.DrawFn) -> tuple[SubmitCommand, SubmitReply]:
    direction = draw(st.sampled_from([0, 1]))
    iso = draw(st.booleans())
    seqnum = draw(U32)
    cmd = SubmitCommand(seqnum, 1, direction, 1, 0, 0, iso_packets=() if iso else None)
    data = draw(st.binary(max_size=300)) if direction == 1 else b""
    actual = len(data) if direction == 1 else draw(st.integers(0, MAX_LEN))
    packets = draw(iso_packets(max(actual, 1))) if iso else None
    reply = SubmitReply(
        seqnum, draw(I32), actual, data, draw(I32), len(packets) if packets is not None else 0, draw(I32), packets,
        draw(U32), draw(U32), draw(U32),
    )
    return cmd, reply


@FAST
@given(pair=submit_replies(), split=st.integers(1, 64))
def test_submit_reply_round_trip(pair: tuple[SubmitCommand, SubmitReply], split: int) -> None:
    cmd, reply = pair
    client = ClientCodec(phase=Phase.URB)
    client.send(cmd)
    events, failed = feed(client, imported_server().send(reply), [split])
    assert not failed and events == [reply]


@FAST
@given(cmd=st.builds(UnlinkCommand, U32, U32, U32, U32, U32), reply=st.builds(UnlinkReply, U32, I32),
       split=st.integers(1, 64))
def test_unlink_round_trips(cmd: UnlinkCommand, reply: UnlinkReply, split: int) -> None:
    events, failed = feed(imported_server(), ClientCodec(phase=Phase.URB).send(cmd), [split])
    assert not failed and events == [cmd]
    events, failed = feed(ClientCodec(phase=Phase.URB), imported_server().send(reply), [split])
    assert not failed and events == [reply]


# ====================================================================== server over sockets: helpers


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, Keyboard, Mouse]]:
    kb, mouse = Keyboard(), Mouse()
    async with Server([kb, mouse], port=0) as server:
        yield server, kb, mouse


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def imported_raw(server: Server, busid: str = "1-1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    writer.write(import_request(busid))
    assert (await reader.readexactly(8 + 312))[:8] == bytes.fromhex("0111 0003 00000000")
    return reader, writer


async def configured_raw(server: Server, busid: str = "1-1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await imported_raw(server, busid)
    writer.write(submit(0x7FFF0000, 0, 0, 0, SET_CONFIG_1))
    head = await reader.readexactly(48)
    assert struct.unpack(">IIIIIi", head[:24])[::5] == (3, 0)
    return reader, writer


async def bystander_round_trips(dev: RemoteDevice, stop: asyncio.Event, timeout: float = 2.0) -> int:
    """Control round trips on another device until ``stop``; each must finish within ``timeout``."""
    count = 0
    while not stop.is_set():
        desc = await asyncio.wait_for(dev.control(SetupPacket(0x80, 6, 0x0100, 0, 18)), timeout)
        assert len(desc) == 18 and desc[1] == 1
        count += 1
        await asyncio.sleep(0.001)
    return count


def garbage(rng: random.Random) -> tuple[bytes, bool]:
    """A hostile stream; True if the server must close on it (it is complete and wrong)."""
    kind = rng.randrange(6)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 200)), False
    if kind == 1:  # a valid import, then junk in the URB phase
        return import_request("1-1") + struct.pack(">I", rng.randrange(5, 1 << 32)) + rng.randbytes(44), True
    if kind == 2:  # an absurd announced length
        return import_request("1-1") + submit(1, 2, 0, rng.choice([0x7FFFFFFF, -5, MAX_LEN + 1])), True
    if kind == 3:  # an unknown op code
        return struct.pack(">HHI", 0x0111, rng.randrange(0x8006, 0xFFFF), 0), True
    if kind == 4:  # a bad version
        return struct.pack(">HHI", rng.choice([0, 0x0200, 0xFFFF]), 0x8003, 0) + bytes(32), True
    # a huge OUT that never finishes: the server waits; the client goes away
    return import_request("1-1") + submit(1, 0, 0, MAX_LEN - 1, SET_CONFIG_1) + rng.randbytes(1000), False


# ====================================================================== garbage connections


async def test_garbage_connections_close_only_themselves(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, kb, _ = served
    rng = random.Random(1234)
    async with await RemoteDevice.open(HOST, "1-2", server.port) as bystander:
        await bystander.enumerate()
        stop = asyncio.Event()
        rounds = asyncio.create_task(bystander_round_trips(bystander, stop))

        async def one() -> None:
            payload, must_close = garbage(rng)
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(payload)
            if must_close:
                while await asyncio.wait_for(reader.read(65536), 2):
                    pass  # replies (REP_IMPORT) then EOF: the server closed it
            else:
                await asyncio.sleep(0.005)
            writer.transport.abort()

        for _ in range(10):
            await asyncio.gather(*(one() for _ in range(10)))  # 100 connections, 10 at a time
            await eventually(lambda: kb.attached is False and len(server.connections) == 1)
        stop.set()
        assert await rounds > 0
        assert await bystander.get_configuration() == 1
    await eventually(lambda: not server.connections)
    async with await RemoteDevice.open(HOST, "1-1", server.port) as dev:  # released, importable
        assert (await dev.enumerate()).device.product_id == kb.descriptor.product_id


async def test_memory_stays_bounded_under_huge_announced_lengths() -> None:
    async with Server([Keyboard()], port=0) as server:
        await asyncio.sleep(0)
        tracemalloc.start()
        try:
            for _ in range(10):
                _, writer = await imported_raw(server)
                writer.write(submit(1, 0, 0, MAX_LEN - 1, SET_CONFIG_1) + bytes(4096))  # 64 MiB announced
                await asyncio.sleep(0.01)
                assert sum(c.codec.buffered for c in server.connections) < 64 * 1024
                writer.transport.abort()
                await eventually(lambda: not server.connections)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


# ====================================================================== unlink races


@dataclass
class Wire:
    """What a raw client saw, in order."""

    replies: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # (command, seqnum, status, data)
    eof: bool = False


async def read_replies(reader: asyncio.StreamReader, wire: Wire) -> None:
    try:
        while True:
            head = await reader.readexactly(48)
            command, seqnum, _, _, _, status, actual = struct.unpack(">IIIIIii", head[:28])
            data = await reader.readexactly(actual) if command == 3 and actual > 0 else b""  # every URB here is IN
            wire.replies.append((command, seqnum, status, data))
    except asyncio.IncompleteReadError:
        wire.eof = True


def check_one_answer_per_urb(wire: Wire, submits: set[int], unlinks: dict[int, int]) -> list[bytes]:
    """The unlink rules of docs/protocol.md; returns the interrupt data delivered, in order."""
    ret_submit: dict[int, int] = {}
    ret_unlink: dict[int, int] = {}
    cancelled: set[int] = set()
    for pos, (command, seqnum, status, _) in enumerate(wire.replies):
        if command == 3:
            assert seqnum in submits, f"RET_SUBMIT for unknown seqnum {seqnum}"
            assert seqnum not in ret_submit, f"two RET_SUBMITs for {seqnum}"
            assert seqnum not in cancelled, f"RET_SUBMIT for {seqnum} after its unlink returned -104"
            ret_submit[seqnum] = pos
        else:
            assert command == 4 and seqnum in unlinks, f"unexpected reply {command} {seqnum}"
            assert seqnum not in ret_unlink, f"two RET_UNLINKs for {seqnum}"
            ret_unlink[seqnum] = pos
            target = unlinks[seqnum]
            if status == -104:
                assert target not in ret_submit and target not in cancelled, f"{target} cancelled after an answer"
                cancelled.add(target)
            else:
                assert status == 0
                assert target in ret_submit or target in cancelled or target not in submits, (
                    f"RET_UNLINK 0 for {target} before its RET_SUBMIT")
    assert set(ret_unlink) == set(unlinks), "every UNLINK gets exactly one RET_UNLINK"
    assert set(ret_submit) | cancelled == submits, "every URB gets exactly one answer"
    assert not set(ret_submit) & cancelled
    return [data for command, seqnum, status, data in wire.replies if command == 3 and status == 0 and len(data) == 8
            and data[0] == 0xA5]


def report(n: int) -> bytes:
    return bytes([0xA5, 0, n & 0xFF, (n >> 8) & 0xFF, 0, 0, 0, 0])  # byte 0 marks our reports


async def quiet_point(writer: asyncio.StreamWriter, wire: Wire, unlinks: dict[int, int], ep0: set[int]) -> None:
    """Wait until the server has read and answered everything written so far (every unlink and EP0 URB)."""
    await writer.drain()

    def caught_up() -> bool:
        answered = {s for c, s, _, _ in wire.replies}
        return sum(1 for c, *_ in wire.replies if c == 4) == len(unlinks) and ep0 <= answered | set(
            unlinks[s] for c, s, st_, _ in wire.replies if c == 4 and st_ == -104)

    await eventually(caught_up, 5)


@pytest.mark.parametrize("reconfigure", [False, True], ids=["steady", "with-set-configuration"])
async def test_submit_unlink_races_over_the_wire(served: tuple[Server, Keyboard, Mouse], reconfigure: bool) -> None:
    server, kb, _ = served
    rng = random.Random(4321 + reconfigure)
    reader, writer = await configured_raw(server)
    wire = Wire()
    reading = asyncio.create_task(read_replies(reader, wire))
    submits: set[int] = set()
    ep0: set[int] = set()
    unlinks: dict[int, int] = {}
    seq = iter(range(1, 1 << 30))
    sent_reports: list[bytes] = []
    for step in range(3000):
        r = rng.random()
        if r < 0.4:
            s = next(seq)
            submits.add(s)
            writer.write(submit(s, 1, 1, 8))  # interrupt IN: pending until the keyboard speaks
        elif r < 0.55:
            s = next(seq)
            submits.add(s)
            ep0.add(s)
            writer.write(submit(s, 0, 1, 18, GET_DEVICE))  # EP0: completes at once
        elif r < 0.88 and submits:
            s = next(seq)
            target = rng.choice(sorted(submits)[-8:]) if rng.random() < 0.95 else 1 << 29
            unlinks[s] = target
            writer.write(unlink(s, target))
        elif r < 0.98:
            sent_reports.append(report(step))
            kb.keyboard.send_report(sent_reports[-1])  # completes the active interrupt URB, if any
            await asyncio.sleep(0)
        elif reconfigure:
            s = next(seq)
            submits.add(s)
            ep0.add(s)
            writer.write(submit(s, 0, 0, 0, SET_CONFIG_1))  # pending interrupt URBs end with -ESHUTDOWN
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    # Sweep: unlink everything that may still be pending, then wait for every answer.
    for target in sorted(submits):
        s = next(seq)
        unlinks[s] = target
        writer.write(unlink(s, target))
    await quiet_point(writer, wire, unlinks, ep0)
    await asyncio.sleep(0.05)  # nothing may trail the answers
    if not reconfigure:  # nothing lost: every report was delivered or is still queued in the keyboard
        delivered_now = sum(1 for c, _, st_, d in wire.replies if c == 3 and st_ == 0 and d[:1] == b"\xa5")
        assert delivered_now + len(kb.keyboard._reports) == len(sent_reports)
    writer.close()
    await reading
    delivered = check_one_answer_per_urb(wire, submits, unlinks)
    assert len(set(delivered)) == len(delivered), "a report was delivered twice"
    positions = [sent_reports.index(d) for d in delivered]
    assert positions == sorted(positions), "reports delivered out of order"
    if not reconfigure:  # nothing lost: what was delivered is exactly the oldest reports
        assert delivered == sent_reports[: len(delivered)]
    await eventually(lambda: not kb.attached and not server.connections)


async def test_submit_unlink_races_in_process() -> None:
    kb = Keyboard()
    rng = random.Random(99)
    async with LocalHost(kb) as host:
        await host.set_configuration(1)
        urbs = []
        cancelled = set()
        sent = []
        for step in range(20000):
            r = rng.random()
            if r < 0.35:
                urbs.append(host.submit(0x81, 1, 8)[0])
            elif r < 0.45:
                urbs.append(host.submit(0, 1, 18, setup=SetupPacket.parse(GET_DEVICE))[0])
            elif r < 0.8 and urbs:
                urb = rng.choice(urbs[-8:])
                if host.unlink_urb(urb):
                    assert urb.seqnum not in cancelled
                    cancelled.add(urb.seqnum)
            else:
                sent.append(report(step))
                kb.keyboard.send_report(sent[-1])  # may race the next unlink in the same loop turn
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        for urb in urbs:
            if host.unlink_urb(urb):
                cancelled.add(urb.seqnum)
        await asyncio.sleep(0)
        seqnums = {u.seqnum for u in urbs}
        completed = [urb.seqnum for urb, _ in host.completions if urb.seqnum in seqnums]
        assert len(completed) == len(set(completed)), "a URB completed twice"
        assert not set(completed) & cancelled, "a cancelled URB completed"
        assert set(completed) | cancelled == seqnums, "a URB got no answer"
        delivered = [bytes(c.data) for urb, c in host.completions if urb.ep == 1 and c.status == 0]
        assert delivered == sent[: len(delivered)], "reports lost, duplicated or reordered"


# ====================================================================== vanishing, half-open and slow clients


async def test_clients_vanishing_mid_transfer_do_not_stall_others(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, kb, _ = served
    rng = random.Random(7)
    async with await RemoteDevice.open(HOST, "1-2", server.port) as bystander:
        await bystander.enumerate()
        stop = asyncio.Event()
        rounds = asyncio.create_task(bystander_round_trips(bystander, stop))
        for i in range(20):
            _, writer = await configured_raw(server)
            writer.write(submit(1, 1, 1, 8))  # pending interrupt IN
            writer.write(submit(2, 0, 1, 255, GET_CONFIG))
            writer.write(submit(3, 0, 0, 100, bytes.fromhex("2109000200006400"), b"x" * rng.randrange(100)))  # cut short
            writer.write(submit(4, 1, 0, MAX_LEN - 1)[: rng.randrange(1, 48)])  # a header cut in the middle
            await asyncio.sleep(rng.random() * 0.01)
            if i % 2:
                writer.transport.abort()  # RST
            else:
                writer.close()  # FIN
            await eventually(lambda: not kb.attached and kb.endpoint(0x81).pending == 0 and len(server.connections) == 1)
        stop.set()
        assert await rounds > 0
    await eventually(lambda: not server.connections)


async def test_half_open_client_gets_its_answers_and_releases_the_device(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, kb, _ = served
    reader, writer = await configured_raw(server)
    for s in range(1, 11):
        writer.write(submit(s, 0, 1, 18, GET_DEVICE))
    writer.write(submit(11, 1, 1, 8))  # pending when the client stops writing
    writer.write_eof()  # shut down our write side, keep reading
    wire = Wire()
    await asyncio.wait_for(read_replies(reader, wire), 2)
    assert wire.eof
    assert [(c, s, st_) for c, s, st_, _ in wire.replies] == [(3, s, 0) for s in range(1, 11)]
    assert all(len(d) == 18 for *_, d in wire.replies)
    writer.close()
    await eventually(lambda: not kb.attached and not server.connections)
    async with await RemoteDevice.open(HOST, "1-1", server.port) as dev:
        await dev.enumerate()


async def test_slow_reader_flooding_requests_does_not_stall_others() -> None:
    limits = ServerLimits(write_buffer_high=256 * 1024)
    kb, mouse = Keyboard(), Mouse()
    async with Server([kb, mouse], port=0, limits=limits) as server:
        _, writer = await configured_raw(server)
        (flooder,) = [c for c in server.connections if c.export is not None and c.export.device is kb]
        # A slow link: small kernel buffers on both ends, so the backlog reaches the server's own buffer quickly.
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        assert flooder.transport is not None
        flooder.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        flood = b"".join(submit(s, 0, 1, 255, GET_CONFIG) for s in range(1, 4001))
        async with await RemoteDevice.open(HOST, "1-2", server.port) as other:
            await other.enumerate()
            stop = asyncio.Event()
            rounds = asyncio.create_task(bystander_round_trips(other, stop))
            for _ in range(40):  # up to 160,000 requests, never reading a reply
                writer.write(flood)
                await asyncio.sleep(0.02)
                if flooder._paused:
                    break
            assert flooder._paused, "the server kept reading from a client that does not read"
            assert flooder.transport.get_write_buffer_size() < limits.write_buffer_high + 2 * 1024 * 1024
            await asyncio.sleep(0.2)  # paused: the bystander goes on
            stop.set()
            assert await rounds > 0
        writer.transport.abort()
        await eventually(lambda: not server.connections and not kb.attached)
        async with await RemoteDevice.open(HOST, "1-1", server.port) as dev:
            await dev.enumerate()


# ====================================================================== import races


async def test_two_clients_racing_for_one_busid() -> None:
    kb = Keyboard()
    async with Server([kb], port=0) as server:
        for _ in range(50):
            async def attempt() -> tuple[int, asyncio.StreamWriter]:
                reader, writer = await asyncio.open_connection(HOST, server.port)
                writer.write(import_request("1-1"))
                head = await reader.readexactly(8)
                status = struct.unpack(">HHI", head)[2]
                if status == 0:
                    await reader.readexactly(312)
                return status, writer

            results = await asyncio.gather(attempt(), attempt())
            assert sorted(status for status, _ in results) == [0, 2]  # one wins, the other is DEV_BUSY
            for _, writer in results:
                writer.transport.abort()
            await eventually(lambda: not kb.attached and not server.connections)


# ====================================================================== bounded fuzzing


def test_bounded_fuzz_run(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "fuzz.run_bounded", "--seconds", "6", "--artifacts", str(tmp_path / "findings")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert not (tmp_path / "findings").exists() or not any((tmp_path / "findings").iterdir())
