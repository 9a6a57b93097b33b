"""The asyncio server over real loopback sockets: several clients, hostile input, unlink races."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import cast

import pytest
from file_sources import FdSource  # tests/file_sources.py
from vusb.devices import Keyboard, Mouse

import vusb.server
from vusb.client import RemoteDevice, _Link, list_devices
from vusb.constants import TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import BuildContext, Device, Function
from vusb.errors import ConnectionClosed, DeviceBusy, NoSuchDevice, Stall, UsageError
from vusb.protocol import ClientCodec, ExportedDevice, IsoPacket, Phase, SubmitReply, UnlinkReply
from vusb.server import Server, ServerLimits
from vusb.urb import Completion, FileData, Gather, SetupPacket, Urb

HOST = "127.0.0.1"


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, Keyboard, Mouse]]:
    kb, mouse = Keyboard(), Mouse()
    async with Server([kb, mouse], port=0) as server:
        yield server, kb, mouse


async def raw_connection(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, server.port)


async def imported_raw(server: Server, busid: str = "1-1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await raw_connection(server)
    writer.write(bytes.fromhex("0111 8003 00000000") + busid.encode().ljust(32, b"\0"))
    reply = await reader.readexactly(8 + 312)
    assert reply[:8] == bytes.fromhex("0111 0003 00000000")
    return reader, writer


def submit(seqnum: int, ep: int, direction: int, length: int, setup: bytes = bytes(8), data: bytes = b"") -> bytes:
    return struct.pack(">IIIIIIiiii8s", 1, seqnum, 0x10001, direction, ep, 0, length, 0, 0, 0, setup) + data


def unlink(seqnum: int, target: int) -> bytes:
    return struct.pack(">IIIIII24s", 2, seqnum, 0x10001, 0, 0, target, bytes(24))


async def read_reply(reader: asyncio.StreamReader, in_lengths: dict[int, bool] | None = None) -> tuple[int, int, int, bytes]:
    head = await reader.readexactly(48)
    command, seqnum, _, _, _, status, actual = struct.unpack(">IIIIIii", head[:28])
    data = b""
    if command == 3 and in_lengths and in_lengths.get(seqnum) and actual > 0:
        data = await reader.readexactly(actual)
    return command, seqnum, status, data


async def test_devlist_lists_devices_in_order(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, _, _ = served
    devices = await list_devices(HOST, server.port)
    assert [(d.busid, d.vendor_id, d.product_id) for d in devices] == [("1-1", 0x1209, 1), ("1-2", 0x1209, 2)]
    assert devices[0].interfaces[0].interface_protocol == 1 and devices[1].interfaces[0].interface_protocol == 2


async def test_import_unknown_busid_is_nodev(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, _, _ = served
    with pytest.raises(NoSuchDevice, match="exports no device 9-9"):
        await RemoteDevice.open(HOST, "9-9", server.port)


async def test_second_import_is_dev_busy_and_in_use_devices_leave_the_list(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, _, _ = served
    async with await RemoteDevice.open(HOST, "1-1", server.port):
        with pytest.raises(DeviceBusy):
            await RemoteDevice.open(HOST, "1-1", server.port)
        assert [d.busid for d in await list_devices(HOST, server.port)] == ["1-2"]
    await asyncio.sleep(0.05)
    async with await RemoteDevice.open(HOST, "1-1", server.port) as again:  # released at once on disconnect
        assert (await again.enumerate()).device.product_id == 1


async def test_two_clients_on_two_devices_at_once(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, kb, mouse = served
    async with await RemoteDevice.open(HOST, "1-1", server.port) as a, await RemoteDevice.open(HOST, "1-2", server.port) as b:
        await asyncio.gather(a.enumerate(), b.enumerate())
        typing = asyncio.create_task(kb.type("a"))
        moving = asyncio.create_task(mouse.move(5, -3))
        key, motion = await asyncio.gather(a.transfer_in(1, 8), b.transfer_in(1, 4))
        assert key == bytes([0, 0, 4, 0, 0, 0, 0, 0]) and motion == bytes([0, 5, 0xFD, 0])
        await a.transfer_in(1, 8)
        await asyncio.gather(typing, moving)


async def test_unlink_pending_urb_gets_econnreset_and_no_ret_submit(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, kb, _ = served
    reader, writer = await imported_raw(server)
    writer.write(submit(1, 0, 0, 0, bytes.fromhex("0009010000000000")))  # SET_CONFIGURATION 1
    assert (await read_reply(reader))[:3] == (3, 1, 0)
    writer.write(submit(2, 1, 1, 8))  # interrupt IN: pending, the keyboard has nothing to say
    writer.write(unlink(3, 2))
    assert await read_reply(reader) == (4, 3, -104, b"")
    # The cancelled URB never completes even when data arrives later; the next URB gets it.
    kb.keyboard.send_report(bytes([0, 0, 5, 0, 0, 0, 0, 0]))
    writer.write(submit(4, 1, 1, 8))
    assert await read_reply(reader, {4: True}) == (3, 4, 0, bytes([0, 0, 5, 0, 0, 0, 0, 0]))
    writer.close()


async def test_unlink_completed_urb_answers_zero_after_its_ret_submit(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, _, _ = served
    reader, writer = await imported_raw(server)
    writer.write(submit(1, 0, 1, 18, bytes.fromhex("8006000100001200")) + unlink(2, 1))
    first = await read_reply(reader, {1: True})
    second = await read_reply(reader)
    assert first[:3] == (3, 1, 0) and len(first[3]) == 18
    assert second == (4, 2, 0, b"")
    writer.write(unlink(3, 1))  # a target answered long ago: status 0 at once
    assert await read_reply(reader) == (4, 3, 0, b"")
    writer.close()


DESCRIPTOR_18 = bytes.fromhex("8006000100001200")


@pytest.mark.parametrize(("case", "then", "expected"), [
    # Linux vhci can send CMD_UNLINK ahead of the CMD_SUBMIT it targets. The answer waits for
    # that SUBMIT, which is then not run: RET_UNLINK -ECONNRESET and no RET_SUBMIT for it.
    ("its SUBMIT follows", submit(5, 0, 1, 18, DESCRIPTOR_18) + submit(7, 0, 1, 18, DESCRIPTOR_18),
     [(4, 6, -104), (3, 7, 0)]),
    # A later SUBMIT passes the target, which will never come: answered 0, before that SUBMIT's reply.
    ("a later SUBMIT passes it", submit(7, 0, 1, 18, DESCRIPTOR_18), [(4, 6, 0), (3, 7, 0)]),
    # Nothing comes: answered 0 after UNLINK_AHEAD_GRACE, as an UNLINK of an unknown URB.
    ("nothing follows", b"", [(4, 6, 0)]),
])
async def test_unlink_that_arrives_before_its_submit(served: tuple[Server, Keyboard, Mouse],
                                                    monkeypatch: pytest.MonkeyPatch, case: str, then: bytes,
                                                    expected: list[tuple[int, int, int]]) -> None:
    monkeypatch.setattr(vusb.server, "UNLINK_AHEAD_GRACE", 0.05)
    server, _, _ = served
    reader, writer = await imported_raw(server)
    writer.write(submit(1, 0, 1, 18, DESCRIPTOR_18))
    assert (await read_reply(reader, {1: True}))[:3] == (3, 1, 0)
    writer.write(unlink(6, 5))  # seqnum 5 not submitted yet
    with pytest.raises(TimeoutError):  # not answered at once
        await asyncio.wait_for(reader.readexactly(1), 0.01)
    writer.write(then)
    got = [(await read_reply(reader, {5: True, 7: True}))[:3] for _ in expected]
    assert got == expected
    writer.write(unlink(8, 2))  # the connection goes on: an old unknown target is answered at once
    assert (await read_reply(reader))[:3] == (4, 8, 0)
    writer.close()



@pytest.mark.parametrize(("case", "then", "expected"), [
    # The same, when the UNLINK comes before the connection's first SUBMIT (no seqnum seen yet to compare with).
    ("its SUBMIT follows", submit(1, 0, 1, 18, DESCRIPTOR_18) + submit(3, 0, 1, 18, DESCRIPTOR_18),
     [(4, 2, -104), (3, 3, 0)]),
    ("a later SUBMIT passes it", submit(3, 0, 1, 18, DESCRIPTOR_18), [(4, 2, 0), (3, 3, 0)]),
    ("nothing follows", b"", [(4, 2, 0)]),
])
async def test_unlink_that_arrives_before_the_first_submit(served: tuple[Server, Keyboard, Mouse],
                                                          monkeypatch: pytest.MonkeyPatch, case: str, then: bytes,
                                                          expected: list[tuple[int, int, int]]) -> None:
    monkeypatch.setattr(vusb.server, "UNLINK_AHEAD_GRACE", 0.05)
    server, _, _ = served
    reader, writer = await imported_raw(server)
    writer.write(unlink(2, 1))  # seqnum 1 not submitted yet, and nothing else either
    with pytest.raises(TimeoutError):  # not answered at once
        await asyncio.wait_for(reader.readexactly(1), 0.01)
    writer.write(then)
    got = [(await read_reply(reader, {1: True, 3: True}))[:3] for _ in expected]
    assert got == expected
    writer.close()

async def test_stalled_out_request_data_is_consumed(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, _, _ = served
    reader, writer = await imported_raw(server)
    writer.write(submit(1, 0, 0, 4, bytes.fromhex("4042000000000400"), b"abcd"))  # vendor OUT, unhandled
    writer.write(submit(2, 0, 1, 18, bytes.fromhex("8006000100001200")))
    assert (await read_reply(reader))[:3] == (3, 1, -32)
    assert (await read_reply(reader, {2: True}))[:3] == (3, 2, 0)
    writer.close()


HOSTILE = [
    ("garbage bytes", b"\xde\xad\xbe\xef" * 16),
    ("unknown op code", bytes.fromhex("0111 4242 00000000")),
    ("SUBMIT before IMPORT", submit(1, 0, 1, 18, bytes.fromhex("8006000100001200"))),
    ("truncated header then close", bytes.fromhex("0111 80")),
]


@pytest.mark.parametrize(("case", "payload"), HOSTILE, ids=[c[0] for c in HOSTILE])
async def test_hostile_input_closes_only_that_connection(
    served: tuple[Server, Keyboard, Mouse], case: str, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server, _, _ = served
    async with await RemoteDevice.open(HOST, "1-2", server.port) as bystander:
        await bystander.enumerate()
        reader, writer = await raw_connection(server)
        writer.write(payload)
        if case.startswith("truncated"):
            writer.close()
        else:
            assert await asyncio.wait_for(reader.read(), 2) == b""  # the server closed it
            writer.close()
        assert (await bystander.get_configuration()) == 1  # the other connection is untouched
    assert [d.busid for d in await list_devices(HOST, server.port)] == ["1-1", "1-2"]
    if not case.startswith("truncated"):
        assert "closing the connection" in caplog.text


async def test_absurd_length_closes_the_connection_without_allocating(caplog: pytest.LogCaptureFixture) -> None:
    async with Server([Keyboard()], port=0, limits=ServerLimits(max_transfer_length=1 << 20)) as server:
        reader, writer = await imported_raw(server)
        writer.write(submit(1, 1, 0, 0x7FFF0000))
        assert await asyncio.wait_for(reader.read(), 2) == b""
        assert "exceeds the limit of 1048576 bytes" in caplog.text
        # The device was released and can be imported again.
        async with await RemoteDevice.open(HOST, "1-1", server.port) as dev:
            await dev.enumerate()


async def test_client_vanishing_mid_transfer_releases_the_device(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, kb, _ = served
    reader, writer = await imported_raw(server)
    writer.write(submit(1, 0, 0, 0, bytes.fromhex("0009010000000000")))
    await read_reply(reader)
    writer.write(submit(2, 1, 1, 8))  # pending IN
    writer.write(submit(3, 0, 0, 100, bytes.fromhex("2109000200006400"), b"x" * 10))  # OUT with data cut short
    await asyncio.sleep(0.05)
    writer.transport.abort()
    await asyncio.sleep(0.05)
    assert not kb.attached and kb.configuration_value == 0 and kb.endpoint(0x81).pending == 0
    async with await RemoteDevice.open(HOST, "1-1", server.port) as dev:
        assert (await dev.enumerate()).device.product_id == 1


async def test_devices_added_and_removed_while_serving(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, kb, _ = served
    extra = Keyboard(product_id=0x0042)
    assert server.add(extra) == "1-3"
    assert [d.busid for d in await list_devices(HOST, server.port)] == ["1-1", "1-2", "1-3"]
    dev = await RemoteDevice.open(HOST, "1-1", server.port)
    await dev.enumerate()
    server.remove(kb)  # attached: its client is disconnected cleanly
    with pytest.raises(ConnectionClosed):
        await dev.get_configuration()
    await dev.close()
    assert not kb.attached
    assert [d.busid for d in await list_devices(HOST, server.port)] == ["1-2", "1-3"]
    with pytest.raises(UsageError):
        server.remove(kb)


async def test_max_connections_limit(caplog: pytest.LogCaptureFixture) -> None:
    async with Server([Keyboard()], port=0, limits=ServerLimits(max_connections=1)) as server, \
            await RemoteDevice.open(HOST, "1-1", server.port):
        reader, writer = await raw_connection(server)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    assert "limit max_connections" in caplog.text


async def test_unlinks_ahead_of_their_submits_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """A client that sends many UNLINKs for seqnums it never submits is cut off, the others are not."""
    async with Server([Keyboard(), Mouse()], port=0, limits=ServerLimits(max_urbs_in_flight=4)) as server:
        other_reader, other_writer = await imported_raw(server, "1-2")
        reader, writer = await imported_raw(server)
        writer.write(submit(1, 0, 1, 18, DESCRIPTOR_18))
        assert (await read_reply(reader, {1: True}))[:3] == (3, 1, 0)
        writer.write(b"".join(unlink(10 + i, 100 + i) for i in range(5)))
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, nothing answered
        other_writer.write(submit(1, 0, 1, 18, DESCRIPTOR_18))
        assert (await read_reply(other_reader, {1: True}))[:3] == (3, 1, 0)
        writer.close()
        other_writer.close()
    assert "more than 4 CMD_UNLINKs for URBs not submitted yet" in caplog.text


def test_non_loopback_address_needs_explicit_permission(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UsageError, match="no authentication"):
        Server([Keyboard()], host="0.0.0.0")


async def test_remote_listening_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vusb")
    async with Server([Keyboard()], host="0.0.0.0", port=0, allow_remote=True):
        pass
    assert "no authentication" in caplog.text


async def test_slow_reader_does_not_stall_other_devices(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, _, _ = served
    # A client that floods descriptor requests and never reads its replies.
    _, writer = await imported_raw(server, "1-1")
    flood = b"".join(submit(i, 0, 1, 255, bytes.fromhex("800602000000ff00")) for i in range(1, 3000))
    writer.write(flood)
    async with await RemoteDevice.open(HOST, "1-2", server.port) as other:
        for _ in range(20):
            await asyncio.wait_for(other.control(SetupPacket(0x80, 6, 0x0100, 0, 18)), 2)
    writer.transport.abort()


class IsoSource(Function):
    """An isochronous IN endpoint that fills each packet with its index."""

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.ep = ctx.endpoint(True, TransferType.ISOCHRONOUS, max_packet_size=64, interval=1)
        n = ctx.interface_number()
        return [InterfaceDescriptor(n, 0, 0xFF), InterfaceDescriptor(n, 1, 0xFF, endpoints=(self.ep,))]

    def bind(self, device: Device) -> None:
        device.endpoint(self.ep.address).handler = self.fill

    def fill(self, urb: Urb) -> Completion:
        packets = urb.iso_packets or ()
        data = b"".join(bytes([i]) * min(p.length, 10) for i, p in enumerate(packets))
        out = []
        offset = 0
        for i, p in enumerate(packets):
            n = min(p.length, 10)
            out.append(IsoPacket(p.offset, p.length, n, 0 if i != 2 else -18))
            offset += n
        return Completion(0, data, iso_packets=tuple(out), error_count=1)


async def test_isochronous_urb_round_trip() -> None:
    dev = Device(IsoSource(), vendor_id=1, product_id=2, speed="full")
    async with Server([dev], port=0) as server, await RemoteDevice.open(HOST, "1-1", server.port) as client:
        await client.enumerate()
        await client.set_interface(0, 1)
        packets = [IsoPacket(i * 64, 64) for i in range(4)]
        _, fut = client.submit(1, 1, 256, iso_packets=packets)
        reply = await asyncio.wait_for(fut, 2)
        assert reply.status == 0 and reply.actual_length == 40 and reply.error_count == 1
        assert bytes(reply.data) == b"".join(bytes([i]) * 10 for i in range(4))  # packed without gaps
        assert reply.iso_packets is not None
        assert [(p.offset, p.actual_length, p.status) for p in reply.iso_packets] == [
            (0, 10, 0), (64, 10, 0), (128, 10, -18), (192, 10, 0)]


class Loopback(Function):
    """A bulk OUT endpoint that records what each URB's data was, and a bulk IN endpoint that sends the last OUT
    data back (as the device got it: a view, when the server received it in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[type, bool, bytes]] = []  # (type of urb.data, read-only, content)
        self.last: bytes | memoryview = b""

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.in_ep = ctx.endpoint(True, TransferType.BULK)
        self.out_ep = ctx.endpoint(False, TransferType.BULK)
        return [InterfaceDescriptor(ctx.interface_number(), 0, 0xFF, endpoints=(self.in_ep, self.out_ep))]

    def bind(self, device: Device) -> None:
        device.endpoint(self.out_ep.address).handler = self.take
        device.endpoint(self.in_ep.address).handler = self.give

    def take(self, urb: Urb) -> Completion:
        data = urb.data
        self.received.append((type(data), isinstance(data, memoryview) and data.readonly, bytes(data)))
        self.last = data  # kept past the completion: the server must not reuse its buffer under it
        return Completion(0, b"", len(data))

    def give(self, urb: Urb) -> Completion:
        return Completion(0, self.last[: urb.length])


BULK_SIZES = [("small", 512), ("just under in-place", 16 * 1024 - 1), ("in place", 16 * 1024), ("1 MiB", 1 << 20)]


@pytest.mark.parametrize(("case", "size"), BULK_SIZES, ids=[c[0] for c in BULK_SIZES])
async def test_bulk_data_crosses_the_server_intact(case: str, size: int) -> None:
    loop_fn = Loopback()
    dev = Device(loop_fn, vendor_id=1, product_id=2, speed="high")
    payloads = [bytes([i]) * size for i in (1, 2)]
    async with Server([dev], port=0) as server, await RemoteDevice.open(HOST, "1-1", server.port) as client:
        await client.enumerate()
        for payload in payloads:
            assert await client.transfer_out(loop_fn.out_ep.address, payload) == size
            into = bytearray(size + 10)
            assert await client.transfer_in_into(loop_fn.in_ep.address, into) == size  # what the device kept
            assert into[:size] == payload
            assert await client.transfer_in(loop_fn.in_ep.address, size) == payload
    in_place = size >= 16 * 1024
    assert [(t, ro) for t, ro, _ in loop_fn.received] == [(memoryview, True) if in_place else (bytes, False)] * 2
    assert [content for _, _, content in loop_fn.received] == payloads


async def test_transfer_in_into_raises_on_stall_and_times_out_with_unlink(served: tuple[Server, Keyboard, Mouse]) -> None:
    server, _, _ = served
    async with await RemoteDevice.open(HOST, "1-1", server.port) as client:
        await client.enumerate()
        with pytest.raises(TimeoutError):  # the keyboard has no report to send: the URB is unlinked
            await client.transfer_in_into(0x81, bytearray(8), timeout=0.05)
        assert await client.get_configuration() == 1  # the connection goes on
        with pytest.raises(Stall):
            await client.transfer_in_into(0x85, bytearray(8))  # no such endpoint: the server stalls it



async def test_timed_out_transfer_in_into_gives_the_buffer_back(served: tuple[Server, Keyboard, Mouse]) -> None:
    """Regression: the unlinked URB stayed pending in the codec, keeping the caller's buffer exported."""
    server, _, _ = served
    async with await RemoteDevice.open(HOST, "1-1", server.port) as client:
        await client.enumerate()
        buffer = bytearray(8)
        with pytest.raises(TimeoutError):
            await client.transfer_in_into(0x81, buffer, timeout=0.05)
        buffer.extend(b"more")  # BufferError while the codec held a view of it
        assert client._codec._pending == {}


class _Wire:
    """A transport that only records what the client writes (no socket, no server)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def writelines(self, parts: Iterable[bytes | memoryview]) -> None:
        self.sent.append(b"".join(bytes(p) for p in parts))

    def close(self) -> None:
        pass


async def test_reply_delivered_between_timeout_and_waiter_is_not_lost() -> None:
    """Regression: _expire set the fresh future aside in _waiting, where _reply looked it up only once its task
    ran again; a RET_SUBMIT delivered in between took it out first, and the IN data was lost as a timeout."""
    link = _Link(ClientCodec(phase=Phase.URB))
    link.transport = _Wire()  # type: ignore[assignment]
    device = RemoteDevice(link, ExportedDevice(busid="1-1"))
    seqnum, fut = device.submit(1, 1, 8)
    waiting = asyncio.create_task(device._reply(seqnum, fut, timeout=60))
    await asyncio.sleep(0)  # the task waits for its reply
    device._expire(seqnum, fut)  # the timer fires...
    device._deliver(SubmitReply(seqnum, 0, 3, b"abc"))  # ...and the reply arrives before the task resumes
    wire = cast(_Wire, link.transport)
    for _ in range(10):  # the task resumes and unlinks the URB
        await asyncio.sleep(0)
        if wire.sent[-1][:4] == struct.pack(">I", 2):
            break
    command, unlink_seqnum = struct.unpack(">II", wire.sent[-1][:8])
    assert command == 2, "the timed-out URB was not unlinked"
    device._deliver(UnlinkReply(unlink_seqnum, 0))  # completed before the unlink
    reply = await asyncio.wait_for(waiting, 1)
    assert (reply.seqnum, reply.actual_length, reply.data) == (seqnum, 3, b"abc")
    assert device._waiting == {}

# ---------------------------------------------------------------- scatter-gather IN data (Gather)

PIECES = (b"abc", bytearray(b"defg"), memoryview(b"--hij--")[2:5], b"", memoryview(bytes(range(10))).cast("B"))
JOINED = b"abcdefghij" + bytes(range(10))

GATHER_READINGS = [
    # (case, reading, expected)
    ("length is the total of the pieces", lambda g: len(g), len(JOINED)),
    ("bytes() joins", lambda g: bytes(g), JOINED),
    ("equal to the bytes it stands for", lambda g: g == JOINED, True),
    ("a slice inside one piece", lambda g: bytes(g[4:6]), JOINED[4:6]),
    ("a slice across pieces", lambda g: bytes(g[2:12]), JOINED[2:12]),
    ("a slice past the end", lambda g: bytes(g[15:100]), JOINED[15:]),
    ("a slice with a step", lambda g: bytes(g[::3]), JOINED[::3]),
    ("a slice keeps views, not copies", lambda g: all(isinstance(p, memoryview) for p in g[1:12].pieces), True),
    ("an index gives a byte", lambda g: (g[0], g[7], g[-1]), (JOINED[0], JOINED[7], JOINED[-1])),
    ("empty pieces are dropped", lambda g: len(g.pieces), 4),
]


@pytest.mark.parametrize(("case", "reading", "expected"), GATHER_READINGS, ids=[c[0] for c in GATHER_READINGS])
def test_gather_reads_as_the_bytes_it_stands_for(case: str, reading: Callable[[Gather], object],
                                                 expected: object) -> None:
    assert reading(Gather(PIECES)) == expected


GATHER_MISUSE = [
    # (case, action, error, message)
    ("a piece that is not a buffer", lambda: Gather([b"ok", "text"]), TypeError, "not str"),  # type: ignore[list-item]
    ("an index past the end", lambda: Gather([b"abc"])[3], IndexError, "index 3 out of range for 3 bytes"),
]


@pytest.mark.parametrize(("case", "action", "error", "message"), GATHER_MISUSE, ids=[c[0] for c in GATHER_MISUSE])
def test_gather_misuse_is_named(case: str, action: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        action()


class GatherSource(Function):
    """A bulk IN endpoint whose data is a Gather of 64 KiB pieces, as a memory disk's READ."""

    def __init__(self, pieces: list[bytes]) -> None:
        super().__init__()
        self.pieces = pieces

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.in_ep = ctx.endpoint(True, TransferType.BULK)
        return [InterfaceDescriptor(ctx.interface_number(), 0, 0xFF, endpoints=(self.in_ep,))]

    def bind(self, device: Device) -> None:
        device.endpoint(self.in_ep.address).handler = lambda urb: Completion(0, Gather(self.pieces))


GATHER_TRANSFERS = [
    # (case, transfer length asked by the host, status expected)
    ("the whole gather", 3 * 65536 + 100, 0),
    ("more than the gather: a short transfer", 4 * 65536, 0),
    ("less than the gather: cut at the host's length, overflow", 65536 + 10, -75),
]


@pytest.mark.parametrize(("case", "length", "status"), GATHER_TRANSFERS, ids=[c[0] for c in GATHER_TRANSFERS])
async def test_gathered_in_data_crosses_the_server_in_order(case: str, length: int, status: int) -> None:
    pieces = [bytes([i]) * 65536 for i in range(3)] + [b"\xff" * 100]
    source = GatherSource(pieces)
    dev = Device(source, vendor_id=1, product_id=2, speed="high")
    async with Server([dev], port=0) as server, await RemoteDevice.open(HOST, "1-1", server.port) as client:
        await client.enumerate()
        _, fut = client.submit(source.in_ep.address & 0x0F, 1, length)
        reply = await asyncio.wait_for(fut, 5)
    expected = b"".join(pieces)[:length]
    assert (reply.status, reply.actual_length, bytes(reply.data)) == (status, len(expected), expected)


class FileSource(Function):
    """A bulk IN endpoint whose data is FileData, as an image file's READ."""

    def __init__(self, source: FdSource, length: int) -> None:
        super().__init__()
        self.source, self.length = source, length

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.in_ep = ctx.endpoint(True, TransferType.BULK)
        return [InterfaceDescriptor(ctx.interface_number(), 0, 0xFF, endpoints=(self.in_ep,))]

    def bind(self, device: Device) -> None:
        device.endpoint(self.in_ep.address).handler = lambda urb: Completion(0, FileData(self.source, 0, self.length))


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    content = bytes(range(256)) * 1024 + b"tail"
    (tmp_path / "data").write_bytes(content)
    fd = os.open(tmp_path / "data", os.O_RDONLY)
    yield fd, content
    os.close(fd)


@pytest.mark.parametrize(("case", "length", "status"), GATHER_TRANSFERS, ids=[c[0] for c in GATHER_TRANSFERS])
async def test_file_data_crosses_the_server_by_sendfile(data_file: tuple[int, bytes], case: str, length: int,
                                                        status: int) -> None:
    fd, content = data_file
    source = FileSource(FdSource(fd), 3 * 65536 + 100)
    dev = Device(source, vendor_id=1, product_id=2, speed="high")
    async with Server([dev], port=0) as server, await RemoteDevice.open(HOST, "1-1", server.port) as client:
        await client.enumerate()
        _, fut = client.submit(source.in_ep.address & 0x0F, 1, length)
        reply = await asyncio.wait_for(fut, 5)
    expected = content[: 3 * 65536 + 100][:length]
    assert (reply.status, reply.actual_length, bytes(reply.data)) == (status, len(expected), expected)


async def test_an_unreadable_file_closes_the_connection_instead_of_sending_other_bytes(
        data_file: tuple[int, bytes], caplog: pytest.LogCaptureFixture) -> None:
    """The RET_SUBMIT header promises the bytes: when the file fails at send time the connection closes,
    with a log line naming the file, and the server goes on serving."""
    source = FileSource(FdSource(data_file[0], errno.EIO), 65536)
    dev = Device(source, vendor_id=1, product_id=2, speed="high")
    async with Server([dev], port=0) as server:
        for _ in range(2):  # and again: the server still serves after the first connection closed
            async with await RemoteDevice.open(HOST, "1-1", server.port) as client:
                await client.enumerate()
                _, fut = client.submit(source.in_ep.address & 0x0F, 1, 65536)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(fut, 5)
    assert "reading the test's file for a 65536-byte reply failed" in caplog.text


# ------------------------------------------------------------ busy polling

BAD_BUSY_POLLS = [("negative", -1e-6), ("longer than 10 ms", 0.011), ("not a number", float("nan"))]


@pytest.mark.parametrize(("case", "value"), BAD_BUSY_POLLS, ids=[c[0] for c in BAD_BUSY_POLLS])
def test_busy_poll_out_of_range_is_refused_by_name(case: str, value: float) -> None:
    with pytest.raises(UsageError, match=r"busy_poll=.* seconds: it must be between 0 \(off\) and 0.01"):
        Server([Keyboard()], port=0, busy_poll=value)


async def test_busy_polling_serves_and_then_lets_the_loop_sleep() -> None:
    """With busy_poll the loop keeps polling after each reply (replies stay the same), then stops by itself."""
    async with Server([Keyboard()], port=0, busy_poll=0.002) as server, \
            await RemoteDevice.open(HOST, "1-1", server.port) as client:
        for _ in range(3):
            info = await client.enumerate()
            assert info.device.vendor_id == Keyboard().descriptor.vendor_id
        assert server._polling  # a reply just went out: the loop is spinning
        await asyncio.sleep(0.05)
        assert not server._polling  # the deadline passed with nothing to answer: back to sleeping in epoll


async def test_busy_polling_stops_when_the_server_closes() -> None:
    server = Server([Keyboard()], port=0, busy_poll=0.01)
    await server.start()
    async with await RemoteDevice.open(HOST, "1-1", server.port) as client:
        await client.enumerate()
    await server.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not server._polling
