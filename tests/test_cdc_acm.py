"""CDC ACM serial port: descriptors, class requests, notifications, data paths and backends."""

from __future__ import annotations

import asyncio
import os
import termios
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from vusb.devices.cdc_acm import (
    AcmCapability,
    AcmDescriptor,
    CallManagementDescriptor,
    CdcAcmFunction,
    HeaderDescriptor,
    LineCoding,
    LineCodingError,
    Notification,
    Parity,
    PtyBackend,
    SerialPort,
    SerialState,
    StopBits,
    TcpBackend,
    UnionDescriptor,
    parse_functional,
    register_profile_kinds,
)
from vusb.devices.keyboard import KeyboardFunction

from vusb.client import RemoteDevice
from vusb.constants import Speed
from vusb.descriptors import RawDescriptor
from vusb.device import Device
from vusb.errors import DescriptorError, DeviceDefinitionError, ProfileError, Stall, UsageError
from vusb.harness import Guest, HarnessError
from vusb.profile import load_profile, parse_profile
from vusb.pytest_plugin import harness_unavailable
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

ROOT = Path(__file__).resolve().parent.parent
NOTIFY, BULK_IN, BULK_OUT = 0x81, 0x82, 0x02

# bmRequestType of class requests to an interface
OUT_REQ, IN_REQ = 0x21, 0xA1


def set_line_coding(data: bytes, interface: int = 0) -> tuple[SetupPacket, bytes]:
    return SetupPacket(OUT_REQ, 0x20, 0, interface, len(data)), data


def line_state(value: int, interface: int = 0) -> SetupPacket:
    return SetupPacket(OUT_REQ, 0x22, value, interface, 0)


def send_break(ms: int, interface: int = 0) -> SetupPacket:
    return SetupPacket(OUT_REQ, 0x23, ms, interface, 0)


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


# ====================================================================== descriptors

@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (HeaderDescriptor(), "05 24 00 10 01"),
        (HeaderDescriptor(0x0120), "05 24 00 20 01"),
        (CallManagementDescriptor(1), "05 24 01 00 01"),
        (CallManagementDescriptor(3, 0x03), "05 24 01 03 03"),
        (AcmDescriptor(), "04 24 02 06"),
        (AcmDescriptor(0x0F), "04 24 02 0f"),
        (UnionDescriptor(0, (1,)), "05 24 06 00 01"),
        (UnionDescriptor(2, (3, 4)), "06 24 06 02 03 04"),
    ],
)
def test_functional_descriptor_bytes(descriptor: HeaderDescriptor, expected: str) -> None:
    raw = descriptor.to_bytes()
    assert raw == bytes.fromhex(expected)
    assert parse_functional(raw) == descriptor


@pytest.mark.parametrize(
    "make",
    [
        lambda: HeaderDescriptor(0x011A),  # not BCD
        lambda: CallManagementDescriptor(256),
        lambda: CallManagementDescriptor(1, 0x04),  # reserved bit
        lambda: AcmDescriptor(0x10),  # reserved bit
        lambda: UnionDescriptor(0, ()),
        lambda: UnionDescriptor(0, (300,)),
        lambda: parse_functional(bytes.fromhex("05 24 07 00 01")),  # subtype ACM does not use
        lambda: parse_functional(bytes.fromhex("05 04 00 10 01")),  # not CS_INTERFACE
        lambda: HeaderDescriptor.parse(bytes.fromhex("04 24 00 10")),  # too short
    ],
)
def test_functional_descriptor_rejects(make: Callable[[], object]) -> None:
    with pytest.raises(DescriptorError):
        make()


FULL_SPEED_CONFIGURATION = (
    "09 02 43 00 02 01 00 80 32"  # configuration: 67 bytes, 2 interfaces
    "09 04 00 00 01 02 02 01 00"  # interface 0: CDC, ACM, AT commands, 1 endpoint
    "05 24 00 10 01"  # header, bcdCDC 1.10
    "05 24 01 00 01"  # call management: data interface 1
    "04 24 02 06"  # ACM: line coding/state + send break
    "05 24 06 00 01"  # union: control 0, subordinate 1
    "07 05 81 03 10 00 0a"  # interrupt IN 0x81, 16 bytes, 10 ms
    "09 04 01 00 02 0a 00 00 00"  # interface 1: CDC data, 2 endpoints
    "07 05 02 02 40 00 00"  # bulk OUT 0x02, 64 bytes
    "07 05 82 02 40 00 00"  # bulk IN 0x82, 64 bytes
)


async def test_configuration_descriptor_exact() -> None:
    async with LocalHost(SerialPort()) as host:
        info = await host.enumerate()
    assert info.configuration_bytes[0] == bytes.fromhex(FULL_SPEED_CONFIGURATION)


@pytest.mark.parametrize(("speed", "bulk_size"), [("full", 64), ("high", 512), ("super", 1024)])
async def test_bulk_size_follows_speed(speed: str, bulk_size: int) -> None:
    async with LocalHost(SerialPort(speed=speed, backend="loopback")) as host:
        info = await host.enumerate()
        config = info.configurations[0]
        comm, data = config.interfaces
        assert (comm.interface_class, comm.interface_subclass, comm.interface_protocol) == (2, 2, 1)
        assert (data.interface_class, len(data.endpoints)) == (0x0A, 2)
        assert {ep.max_packet_size for ep in data.endpoints} == {bulk_size}
        functional = [d.to_bytes() for d in comm.extra if isinstance(d, RawDescriptor)]
        assert functional == [bytes.fromhex(h) for h in ("05 24 00 10 01", "05 24 01 00 01", "04 24 02 06", "05 24 06 00 01")]
        await host.transfer_out(BULK_OUT, b"x" * bulk_size * 2)
        assert await host.transfer_in(BULK_IN, bulk_size * 4) == b"x" * bulk_size * 2


async def test_composite_gets_an_iad_and_own_numbers() -> None:
    acm = CdcAcmFunction("loopback")
    dev = Device(KeyboardFunction(), acm, vendor_id=0x1209, product_id=0x0010, speed=Speed.HIGH)
    async with LocalHost(dev) as host:
        info = await host.enumerate()
        config = info.configurations[0]
        (iad,) = config.associations
        assert (iad.first_interface, iad.interface_count, iad.function_class, iad.function_subclass,
                iad.function_protocol) == (1, 2, 2, 2, 1)
        comm = config.interface(1, 0)
        assert comm is not None
        union = [d.to_bytes() for d in comm.extra if isinstance(d, RawDescriptor)][-1]
        assert union == bytes.fromhex("05 24 06 01 02")
        assert (acm.comm_interface, acm.data_interface) == (1, 2)
        await host.control(SetupPacket(OUT_REQ, 0x22, 1, 1, 0))
        assert acm.dtr
        await host.transfer_out(acm.out_address, b"ping")
        assert await host.transfer_in(acm.in_address, 512) == b"ping"


def test_low_speed_is_refused() -> None:
    with pytest.raises(DeviceDefinitionError, match="bulk"):
        SerialPort(speed="low")


# ====================================================================== class requests

@pytest.mark.parametrize(
    ("coding", "raw"),
    [
        (LineCoding(), "80 25 00 00 00 00 08"),
        (LineCoding(115200), "00 c2 01 00 00 00 08"),
        (LineCoding(300, 7, Parity.EVEN, StopBits.TWO), "2c 01 00 00 02 02 07"),
        (LineCoding(921600, 5, Parity.SPACE, StopBits.ONE_AND_HALF), "00 10 0e 00 01 04 05"),
        (LineCoding(1, 16, Parity.MARK), "01 00 00 00 00 03 10"),
    ],
)
async def test_line_coding_set_and_get(coding: LineCoding, raw: str) -> None:
    assert coding.to_bytes() == bytes.fromhex(raw)
    port = SerialPort()
    seen: list[LineCoding] = []
    port.acm.on_line_coding = seen.append
    async with LocalHost(port) as host:
        await host.enumerate()
        await host.control(*set_line_coding(bytes.fromhex(raw)))
        assert port.line_coding == coding
        assert seen == [coding]
        assert await host.control(SetupPacket(IN_REQ, 0x21, 0, 0, 7)) == bytes.fromhex(raw)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("00 c2 01 00 00 00", "6 bytes"),
        ("00 c2 01 00 00 00 08 00", "8 bytes"),
        ("00 c2 01 00 03 00 08", "bCharFormat 3"),
        ("00 c2 01 00 00 05 08", "bParityType 5"),
        ("00 c2 01 00 00 00 09", "bDataBits 9"),
        ("00 c2 01 00 00 00 04", "bDataBits 4"),
        ("00 00 00 00 00 00 08", "rate 0"),
    ],
)
async def test_line_coding_validation_stalls(raw: str, why: str) -> None:
    port = SerialPort()
    async with LocalHost(port) as host:
        await host.enumerate()
        with pytest.raises(Stall):
            await host.control(*set_line_coding(bytes.fromhex(raw)))
        assert port.line_coding == LineCoding(), why
        assert await host.control(SetupPacket(IN_REQ, 0x21, 0, 0, 7)) == LineCoding().to_bytes()


def test_line_coding_values() -> None:
    assert str(LineCoding(115200, 7, Parity.EVEN, StopBits.TWO)) == "115200 7E2"
    assert str(LineCoding(9600, 5, Parity.NONE, StopBits.ONE_AND_HALF)) == "9600 5N1.5"
    assert LineCoding.parse(LineCoding(57600, 6, Parity.ODD).to_bytes()) == LineCoding(57600, 6, Parity.ODD)
    for bad in (dict(rate=0), dict(data_bits=9), dict(parity=7), dict(stop_bits=4), dict(rate=1 << 32)):
        with pytest.raises(LineCodingError):
            LineCoding(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "dtr", "rts"), [(0, False, False), (1, True, False), (2, False, True), (3, True, True),
                                                   (0xFF03, True, True)])
async def test_control_line_state(value: int, dtr: bool, rts: bool) -> None:
    port = SerialPort()
    async with LocalHost(port) as host:
        await host.enumerate()
        change = asyncio.ensure_future(port.wait_control_lines(timeout=1))
        await asyncio.sleep(0.01)
        await host.control(line_state(value))
        assert (port.dtr, port.rts) == (dtr, rts)
        assert int(await change) == value & 3


async def test_wait_dtr_and_detach_drops_it() -> None:
    port = SerialPort()
    async with LocalHost(port) as host:
        await host.enumerate()
        waiter = asyncio.ensure_future(port.wait_dtr(True, timeout=1))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await host.control(line_state(3))  # what Linux sends when a program opens the tty
        await waiter
        await port.wait_dtr(True, timeout=0)  # already true: returns at once
        dropped = asyncio.ensure_future(port.wait_dtr(False, timeout=1))
        await asyncio.sleep(0.01)
    await dropped  # detaching the device ends the session: DTR falls
    assert not port.dtr


async def test_send_break() -> None:
    port = SerialPort()
    seen: list[int] = []
    port.acm.on_break = seen.append
    async with LocalHost(port) as host:
        await host.enumerate()
        nxt = asyncio.ensure_future(port.wait_break(timeout=1))
        await asyncio.sleep(0.01)
        await host.control(send_break(0xFFFF))  # tcsendbreak: on until cleared
        assert await nxt == 0xFFFF
        assert port.break_active
        await host.control(send_break(0))
        assert not port.break_active
        await host.control(send_break(20))  # a timed break ends by itself
        assert port.break_active
        await asyncio.sleep(0.05)
        assert not port.break_active
        assert seen == [0xFFFF, 0, 20]
        assert port.acm.breaks == 2


@pytest.mark.parametrize(
    ("setup", "data"),
    [
        (SetupPacket(OUT_REQ, 0x7F, 0, 0, 0), b""),  # unknown request
        (SetupPacket(IN_REQ, 0x21, 0, 1, 7), b""),  # GET_LINE_CODING to the data interface
        (SetupPacket(OUT_REQ, 0x22, 3, 0, 2), b"\x00\x00"),  # SET_CONTROL_LINE_STATE with a data stage
        (SetupPacket(OUT_REQ, 0x02, 1, 0, 2), b"\x00\x00"),  # SET_COMM_FEATURE without the capability
        (SetupPacket(0x41, 0x20, 0, 0, 7), bytes(7)),  # vendor, not class
    ],
)
async def test_other_requests_stall(setup: SetupPacket, data: bytes) -> None:
    async with LocalHost(SerialPort()) as host:
        await host.enumerate()
        with pytest.raises(Stall):
            await host.control(setup, data)


async def test_capabilities_gate_requests() -> None:
    acm = CdcAcmFunction(capabilities=AcmCapability.COMM_FEATURE)
    dev = Device(acm, vendor_id=0x1209, product_id=0x0004)
    async with LocalHost(dev) as host:
        await host.enumerate()
        for setup in (line_state(1), send_break(10), SetupPacket(IN_REQ, 0x21, 0, 0, 7)):
            with pytest.raises(Stall):
                await host.control(setup)
        await host.control(SetupPacket(OUT_REQ, 0x02, 1, 0, 2), b"\x03\x00")  # SET_COMM_FEATURE ABSTRACT_STATE
        assert await host.control(SetupPacket(IN_REQ, 0x03, 1, 0, 2)) == b"\x03\x00"
        await host.control(SetupPacket(OUT_REQ, 0x04, 1, 0, 0))  # CLEAR_COMM_FEATURE
        assert await host.control(SetupPacket(IN_REQ, 0x03, 1, 0, 2)) == b"\x00\x00"
        # Encapsulated commands are required by CDC: accepted, no response.
        await host.control(SetupPacket(OUT_REQ, 0x00, 0, 0, 4), b"AT\r\n")
        assert await host.control(SetupPacket(IN_REQ, 0x01, 0, 0, 64)) == b""


# ====================================================================== notifications

def serial_state(bits: int, interface: int = 0) -> bytes:
    return bytes((0xA1, 0x20, 0, 0, interface, 0, 2, 0, bits, 0))


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (["dcd"], [0x01]),
        (["dsr"], [0x02]),
        (["dcd", "dsr"], [0x03]),  # coalesced while the host was not polling
        (["ring"], [0x08, 0x00]),  # events are one-shot: a follow-up clears them
        (["dcd", "ring"], [0x09, 0x01]),
        (["break"], [0x04, 0x00]),
        (["errors"], [0x70, 0x00]),
        (["dcd", "no-dcd"], []),  # back to what the host knows: nothing to say
    ],
)
async def test_serial_state_notifications(actions: list[str], expected: list[int]) -> None:
    port = SerialPort()
    do: dict[str, Callable[[], None]] = {
        "dcd": lambda: port.set_dcd(True),
        "no-dcd": lambda: port.set_dcd(False),
        "dsr": lambda: port.set_dsr(True),
        "ring": port.ring,
        "break": port.signal_break,
        "errors": lambda: port.report_errors(framing=True, parity=True, overrun=True),
    }
    async with LocalHost(port) as host:
        await host.enumerate()
        for action in actions:
            do[action]()
        for bits in expected:
            packet = await host.transfer_in(NOTIFY, 16, timeout=1)
            assert packet == serial_state(bits)
            assert Notification.parse(packet).state == SerialState(bits)
        with pytest.raises(asyncio.TimeoutError):
            await host.transfer_in(NOTIFY, 16, timeout=0.05)
        await port.wait_notified(timeout=1)


async def test_notification_waits_for_a_change_and_splits_for_small_urbs() -> None:
    port = SerialPort()
    async with LocalHost(port) as host:
        await host.enumerate()
        pending = asyncio.ensure_future(host.transfer_in(NOTIFY, 16, timeout=1))
        await asyncio.sleep(0.01)
        assert not pending.done()  # nothing to report: the endpoint NAKs
        port.set_dsr(True)
        assert await pending == serial_state(0x02)
        port.set_dcd(True)
        first = await host.transfer_in(NOTIFY, 8)  # a host reading 8-byte packets gets it in two pieces
        assert first + await host.transfer_in(NOTIFY, 8) == serial_state(0x03)


async def test_carrier_set_before_attach_is_reported_at_configuration() -> None:
    port = SerialPort()
    port.set_dcd(True)
    async with LocalHost(port) as host:
        await host.enumerate()
        assert await host.transfer_in(NOTIFY, 16, timeout=1) == serial_state(0x01)


# ====================================================================== data: loopback and stream API

async def test_loopback_echo() -> None:
    async with LocalHost(SerialPort(backend="loopback")) as host:
        await host.enumerate()
        for chunk in (b"a", b"hello world\r\n", bytes(range(256)) * 3):
            assert await host.transfer_out(BULK_OUT, chunk) == len(chunk)
            got = b""
            while len(got) < len(chunk):
                got += await host.transfer_in(BULK_IN, 128)
            assert got == chunk
        assert await host.transfer_out(BULK_OUT, b"") == 0  # a zero-length packet is fine


async def test_stream_api_both_ways() -> None:
    port = SerialPort()
    async with LocalHost(port) as host:
        await host.enumerate()
        await host.transfer_out(BULK_OUT, b"first line\r\nsecond")
        assert await port.readline(timeout=1) == b"first line\r\n"
        await host.transfer_out(BULK_OUT, b" line\nabcdef")
        assert await port.readline(timeout=1) == b"second line\n"
        assert await port.readexactly(3, timeout=1) == b"abc"
        assert await port.read(timeout=1) == b"def"
        reading = asyncio.ensure_future(port.read(100, timeout=1))
        await asyncio.sleep(0.01)
        assert not reading.done()
        await host.transfer_out(BULK_OUT, b"late")
        assert await reading == b"late"

        # device -> host: an IN URB takes what is queued, up to its length
        await port.write(b"hello from the device")
        assert await host.transfer_in(BULK_IN, 5) == b"hello"
        assert await host.transfer_in(BULK_IN, 64) == b" from the device"
        waiting = asyncio.ensure_future(host.transfer_in(BULK_IN, 64, timeout=1))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing queued: the endpoint NAKs
        await port.write(b"x")
        assert await waiting == b"x"
        await port.flush(timeout=1)


async def test_read_is_refused_when_a_backend_consumes_the_data() -> None:
    port = SerialPort(backend="loopback")
    with pytest.raises(UsageError):
        await port.read()


async def test_unlinked_urbs_lose_nothing() -> None:
    port = SerialPort(buffer_size=16)
    async with LocalHost(port) as host:
        await host.enumerate()
        urb, _ = host.submit(BULK_IN, 1, 64)
        await asyncio.sleep(0)
        assert host.unlink_urb(urb)
        await port.write(b"kept")
        assert await host.transfer_in(BULK_IN, 64) == b"kept"
        # A held OUT URB that the host unlinks was never accepted: its bytes must not appear.
        assert await host.transfer_out(BULK_OUT, b"A" * 16) == 16
        held, fut = host.submit(BULK_OUT, 0, 0, b"B" * 8)
        await asyncio.sleep(0.01)
        assert not fut.done()
        assert host.unlink_urb(held)
        assert await port.readexactly(16, timeout=1) == b"A" * 16
        assert await host.transfer_out(BULK_OUT, b"C" * 4) == 4
        assert await port.read(timeout=1) == b"C" * 4


# ====================================================================== bulk throughput and backpressure

Submit = Callable[[int, int, bytes], tuple[object, Awaitable[tuple[int, bytes]]]]


def local_submitter(host: LocalHost) -> Submit:
    def submit(ep: int, length: int, data: bytes) -> tuple[object, Awaitable[tuple[int, bytes]]]:
        urb, fut = host.submit(ep, 0 if data else 1, length, data)

        async def result() -> tuple[int, bytes]:
            c = await fut
            return c.status, bytes(c.data)

        return urb, asyncio.ensure_future(result())

    return submit


def remote_submitter(dev: RemoteDevice) -> Submit:
    def submit(ep: int, length: int, data: bytes) -> tuple[object, Awaitable[tuple[int, bytes]]]:
        seqnum, fut = dev.submit(ep & 0x0F, 0 if data else 1, length, data)

        async def result() -> tuple[int, bytes]:
            reply = await fut
            return reply.status, bytes(reply.data)

        return seqnum, asyncio.ensure_future(result())

    return submit


async def linux_style_echo(submit: Submit, payload: bytes, *, write_size: int, read_size: int,
                           depth: int = 16) -> bytes:
    """Write and read concurrently as Linux cdc-acm does: up to 16 write URBs and 16 read URBs in flight."""
    received = bytearray()
    reads: deque[Awaitable[tuple[int, bytes]]] = deque()

    async def writer() -> None:
        pending: deque[Awaitable[tuple[int, bytes]]] = deque()
        for off in range(0, len(payload), write_size):
            if len(pending) >= depth:
                status, _ = await pending.popleft()
                assert status == 0
            pending.append(submit(BULK_OUT, 0, payload[off : off + write_size])[1])
        for fut in pending:
            assert (await fut)[0] == 0

    async def reader() -> None:
        for _ in range(depth):
            reads.append(submit(BULK_IN, read_size, b"")[1])
        while len(received) < len(payload):
            status, data = await reads.popleft()
            assert status == 0
            received.extend(data)
            reads.append(submit(BULK_IN, read_size, b"")[1])

    await asyncio.wait_for(asyncio.gather(writer(), reader()), 30)
    for fut in reads:
        if isinstance(fut, asyncio.Future):
            fut.cancel()
    return bytes(received)


async def test_one_mebibyte_through_loopback() -> None:
    payload = os.urandom(1 << 20)
    port = SerialPort(backend="loopback", speed="high")
    async with LocalHost(port) as host:
        await host.enumerate()
        got = await linux_style_echo(local_submitter(host), payload, write_size=512 * 20, read_size=1024)
    assert got == payload


async def test_backpressure_from_host_holds_out_urbs() -> None:
    payload = os.urandom(64 * 1024)
    port = SerialPort(buffer_size=4096)
    async with LocalHost(port) as host:
        await host.enumerate()
        futs = [host.submit(BULK_OUT, 0, 0, payload[i : i + 1024])[1] for i in range(0, len(payload), 1024)]
        await asyncio.sleep(0.02)
        assert len(port.acm.from_host) <= 4096
        assert sum(f.done() for f in futs) <= 5  # the rest are held: the host waits, nothing is dropped
        got = bytearray()
        while len(got) < len(payload):
            got += await port.read(700, timeout=1)
            await asyncio.sleep(0)  # a slow consumer
        assert bytes(got) == payload
        assert all(f.done() and f.result().status == 0 and f.result().actual_length == 1024 for f in futs)


async def test_backpressure_to_host_holds_the_writer() -> None:
    payload = os.urandom(256 * 1024)
    port = SerialPort(buffer_size=8192)
    async with LocalHost(port) as host:
        await host.enumerate()
        writing = asyncio.ensure_future(port.write(payload, timeout=5))
        await asyncio.sleep(0.02)
        assert not writing.done()
        assert len(port.acm.to_host) <= 8192
        got = bytearray()
        while len(got) < len(payload):
            got += await host.transfer_in(BULK_IN, 1000)
        await writing
        assert bytes(got) == payload


async def test_loopback_backpressure_when_host_does_not_read() -> None:
    payload = os.urandom(128 * 1024)
    port = SerialPort(backend="loopback", buffer_size=4096)
    async with LocalHost(port) as host:
        await host.enumerate()
        futs = [host.submit(BULK_OUT, 0, 0, payload[i : i + 2048])[1] for i in range(0, len(payload), 2048)]
        await asyncio.sleep(0.02)
        assert not all(f.done() for f in futs)
        got = bytearray()
        while len(got) < len(payload):
            got += await host.transfer_in(BULK_IN, 4096)
        assert bytes(got) == payload
        assert all(f.done() for f in futs)


# ====================================================================== pty backend

async def read_fd(fd: int, n: int, timeout: float = 2.0) -> bytes:
    got = bytearray()
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(got) < n:
        try:
            got += os.read(fd, n - len(got))
        except BlockingIOError:
            if loop.time() > end:
                raise AssertionError(f"read {len(got)} of {n} bytes from the pty") from None
            await asyncio.sleep(0.002)
    return bytes(got)


async def test_pty_backend(tmp_path: Path) -> None:
    link = tmp_path / "ttyV0"
    backend = PtyBackend(link)
    port = SerialPort(backend=backend)
    assert os.readlink(link) == backend.path
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        async with LocalHost(port) as host:
            await host.enumerate()
            # USB host -> pty
            await host.transfer_out(BULK_OUT, b"AT\r\n")
            assert await read_fd(fd, 4) == b"AT\r\n"
            # pty -> USB host
            os.write(fd, b"OK\r\n")
            got = b""
            while len(got) < 4:
                got += await host.transfer_in(BULK_IN, 64, timeout=2)
            assert got == b"OK\r\n"
            # the host's line settings show on the pty (what `stty -F` reports)
            await host.control(*set_line_coding(LineCoding(115200, 7, Parity.EVEN, StopBits.TWO).to_bytes()))
            attrs = termios.tcgetattr(fd)
            assert attrs[4] == attrs[5] == termios.B115200
            assert attrs[2] & termios.CSTOPB  # (a pty keeps CS8 without parity whatever it is told)

            # Much more than the kernel buffers, read slowly: the host's writes wait, nothing is lost.
            payload = os.urandom(200 * 1024)
            sending = asyncio.ensure_future(host.transfer_out(BULK_OUT, payload, timeout=10))
            assert await read_fd(fd, len(payload), timeout=10) == payload
            assert await sending == len(payload)
    finally:
        os.close(fd)
        await port.close()
    assert not link.exists()


def test_pty_link_does_not_replace_a_file(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    with pytest.raises(UsageError, match="not a symbolic link"):
        PtyBackend(target)
    assert target.read_text() == "keep me"


# ====================================================================== TCP bridge

async def test_tcp_bridge_connects_and_reports_carrier() -> None:
    peers: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await peers.put((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    tcp_port = server.sockets[0].getsockname()[1]
    backend = TcpBackend("127.0.0.1", tcp_port, reconnect_delay=0.05)
    port = SerialPort(backend=backend)
    try:
        async with LocalHost(port) as host:
            await host.enumerate()
            reader, writer = await asyncio.wait_for(peers.get(), 2)
            await backend.wait_connected(timeout=2)
            assert await host.transfer_in(NOTIFY, 16, timeout=1) == serial_state(0x03)  # DCD + DSR: peer is there
            await host.transfer_out(BULK_OUT, b"to the network")
            assert await asyncio.wait_for(reader.readexactly(14), 2) == b"to the network"
            writer.write(b"from the network")
            await writer.drain()
            got = b""
            while len(got) < 16:
                got += await host.transfer_in(BULK_IN, 64, timeout=2)
            assert got == b"from the network"
            writer.close()
            assert await host.transfer_in(NOTIFY, 16, timeout=2) == serial_state(0x00)  # carrier lost
            reader, writer = await asyncio.wait_for(peers.get(), 2)  # and it reconnects
            await host.transfer_out(BULK_OUT, b"again")
            assert await asyncio.wait_for(reader.readexactly(5), 2) == b"again"
            writer.close()
    finally:
        await port.close()
        server.close()
        await server.wait_closed()


async def test_tcp_bridge_listens_for_one_client() -> None:
    backend = TcpBackend("127.0.0.1", 0, listen=True, carrier=False)
    port = SerialPort(backend=backend)
    try:
        async with LocalHost(port) as host:
            await host.enumerate()
            assert backend.bound_port
            reader, writer = await asyncio.open_connection("127.0.0.1", backend.bound_port)
            await backend.wait_connected(timeout=2)
            extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", backend.bound_port)
            assert await asyncio.wait_for(extra_reader.read(1), 2) == b""  # refused while one is connected
            extra_writer.close()
            payload = os.urandom(300 * 1024)
            writer.write(payload)
            got = bytearray()
            while len(got) < len(payload):
                got += await host.transfer_in(BULK_IN, 16384, timeout=2)
            assert bytes(got) == payload
            await host.transfer_out(BULK_OUT, b"reply")
            assert await asyncio.wait_for(reader.readexactly(5), 2) == b"reply"
            writer.close()
    finally:
        await port.close()


# ====================================================================== over real USB/IP

async def test_through_usbip_server() -> None:
    port = SerialPort(backend="loopback", speed="high")
    async with Server([port], port=0) as srv, await RemoteDevice.open("127.0.0.1", "1-1", srv.port) as dev:
        info = await dev.enumerate()
        assert info.configurations[0].interfaces[0].interface_class == 0x02
        await dev.control(*set_line_coding(LineCoding(115200).to_bytes()))
        assert port.line_coding == LineCoding(115200)
        await dev.control(line_state(3))
        assert port.dtr and port.rts
        with pytest.raises(Stall):
            await dev.control(*set_line_coding(bytes(5)))
        port.set_dcd(True)
        assert await dev.transfer_in(NOTIFY, 16) == serial_state(0x01)
        payload = os.urandom(256 * 1024)
        got = await linux_style_echo(remote_submitter(dev), payload, write_size=512 * 20, read_size=1024)
        assert got == payload
    assert not port.dtr


# ====================================================================== a real Linux kernel

@pytest.mark.kernel
async def test_linux_cdc_acm_line_settings_dtr_and_one_mebibyte_echo(request: pytest.FixtureRequest) -> None:
    try:
        guest = await asyncio.to_thread(Guest.shared, "6.1")
    except HarnessError as exc:
        harness_unavailable(request.config, str(exc))
        raise
    port = SerialPort(backend="loopback", speed="high")
    async with Server([port], port=0) as srv:
        vport = await guest.attach(guest.host_address, srv.port, "1-1")
        try:
            devdir = await guest.wait_for_usb_device(0x1209, 0x0004, timeout=30)
            found = await guest.wait_for_path(f"{devdir}:*/tty/ttyACM*", timeout=30)
            tty = "/dev/" + found[0].rsplit("/", 1)[-1]
            await guest.run(f"stty -F {tty} raw -echo 115200 cs7 parenb cstopb", check=True)
            assert port.line_coding == LineCoding(115200, 7, Parity.EVEN, StopBits.TWO)
            holder = await guest.start_background(f"sleep 2 < {tty}")  # opening the tty raises DTR and RTS
            await port.wait_dtr(True, timeout=10)
            assert port.rts
            await holder.wait(timeout=20)
            await port.wait_dtr(False, timeout=10)  # and closing it drops them (HUPCL)
            await guest.run(f"stty -F {tty} cs8 -parenb -cstopb", check=True)
            # The guest writes 1 MiB to the tty and reads the echo back while it writes.
            script = f"""
head -c 1048576 /dev/urandom > /tmp/acm-in
exec 3<>{tty}
cat <&3 > /tmp/acm-out & reader=$!
dd if=/tmp/acm-in of={tty} bs=4096 2>/dev/null
i=0
while [ "$(wc -c < /tmp/acm-out)" -lt 1048576 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
kill $reader
md5sum < /tmp/acm-in; md5sum < /tmp/acm-out; wc -c < /tmp/acm-out
"""
            result = await guest.run(script, timeout=120, check=True)
            sent, echoed, size = result.stdout.split()[0], result.stdout.split()[2], result.stdout.split()[4]
            assert (echoed, size) == (sent, "1048576")
        finally:
            await guest.detach(vport)


# ====================================================================== profiles

def test_serial_profile_loads() -> None:
    register_profile_kinds()
    device = load_profile(ROOT / "profiles" / "serial.yaml").build()
    acm = device.functions[0]
    assert isinstance(acm, CdcAcmFunction)
    assert acm.backend.kind == "loopback"


PROFILE_HEAD = """identity:
  vendor_id: 0x1209
  product_id: 0x0004
functions:
  - kind: cdc-acm
"""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("    backend: tcp\n", "needs tcp_port"),
        ("    backend: loopback\n    tcp_port: 4000\n", "only applies to backend: tcp"),
        ("    backend: tcp\n    pty_link: /tmp/x\n    tcp_port: 1\n", "only applies to backend: pty"),
        ("    backend: tcp\n    tcp_port: 0\n", "tcp_listen"),
        ("    backend: serial\n", "not one of"),
    ],
)
def test_profile_errors(options: str, message: str) -> None:
    register_profile_kinds()
    with pytest.raises(ProfileError, match=message):
        parse_profile(PROFILE_HEAD + options)


async def test_profile_tcp_and_pty(tmp_path: Path) -> None:
    register_profile_kinds()
    profile = parse_profile(PROFILE_HEAD + "    backend: tcp\n    tcp_port: 0\n    tcp_listen: true\n"
                            + "  - kind: cdc-acm\n    backend: pty\n    pty_link: ttyP\n", base_dir=tmp_path)
    device = profile.build()
    tcp, pty = device.functions
    assert isinstance(tcp, CdcAcmFunction) and isinstance(tcp.backend, TcpBackend) and tcp.backend.listen
    assert isinstance(pty, CdcAcmFunction) and isinstance(pty.backend, PtyBackend)
    assert (tmp_path / "ttyP").is_symlink()
    for f in (tcp, pty):
        await f.close()


ANSWERING = PROFILE_HEAD + """    backend: answers
    echo: false
    unmatched: "ERROR\\r\\n"
    answers:
      - match: "AT"
        reply: "OK\\r\\n"
      - match: "AT\\\\+NAME=(\\\\w+)"
        reply: "HELLO \\\\1\\r\\nOK\\r\\n"
"""


async def test_answering_serial_port_replies_to_matching_lines() -> None:
    register_profile_kinds()
    device = parse_profile(ANSWERING, "p.yaml").build()
    acm = device.functions[0]
    assert isinstance(acm, CdcAcmFunction)
    async with LocalHost(device) as host:  # the backend starts when a host attaches
        await host.enumerate()
        await host.transfer_out(acm.out_address, b"AT\r\nAT+NAME=vusb\rATX\n")
        got = b""
        while got.count(b"\r\n") < 4:
            got += await host.transfer_in(acm.in_address, 64, timeout=2)
    await acm.close()
    assert got == b"OK\r\nHELLO vusb\r\nOK\r\nERROR\r\n"


@pytest.mark.parametrize(("extra", "message"), [
    ("    backend: answers\n", "backend: answers needs an answers list"),
    ("    backend: answers\n    answers:\n      - match: \"(\"\n        reply: x\n", "invalid regular expression"),
    ("    backend: answers\n    answers:\n      - match: \"a\"\n        reply: \"\\\\2\"\n", "invalid reply template"),
    ("    backend: loopback\n    echo: true\n", "echo only applies to backend: answers"),
])
def test_answering_serial_port_profile_errors(extra: str, message: str) -> None:
    register_profile_kinds()
    with pytest.raises(ProfileError, match=message):
        parse_profile(PROFILE_HEAD + extra, "p.yaml")


ANSWER_RULE_ERRORS = [
    ("reply beyond one byte", "    answers:\n      - match: \"AT\"\n        reply: \"5€\"\n",
     "p.yaml:9:16: field 'functions[0].answers[0].reply': character '€' (U+20AC) at position 1 is not one byte"),
    ("match beyond one byte", "    answers:\n      - match: \"€\"\n        reply: x\n",
     "p.yaml:8:16: field 'functions[0].answers[0].match': character '€' (U+20AC) at position 0 is not one byte"),
    ("unicode flag in a bytes pattern", "    answers:\n      - match: \"(?u)AT\"\n        reply: x\n",
     "p.yaml:8:16: field 'functions[0].answers[0].match': invalid regular expression: bad inline flags: "
     "cannot use 'u' flag with a bytes pattern"),
    ("unmatched beyond one byte", "    unmatched: \"NO ✗\"\n    answers:\n      - match: AT\n        reply: OK\n",
     "p.yaml:7:16: field 'functions[0].unmatched': character '✗' (U+2717) at position 3 is not one byte"),
    ("second rule's reply template", "    answers:\n      - match: A\n        reply: B\n"
     "      - match: \"(a)\"\n        reply: \"\\\\2\"\n",
     "p.yaml:11:16: field 'functions[0].answers[1].reply': invalid reply template"),
]


@pytest.mark.parametrize(("case", "options", "message"), ANSWER_RULE_ERRORS, ids=[c[0] for c in ANSWER_RULE_ERRORS])
def test_answer_rules_are_checked_as_the_backend_uses_them(case: str, options: str, message: str) -> None:
    register_profile_kinds()
    with pytest.raises(ProfileError) as info:
        parse_profile(PROFILE_HEAD + "    backend: answers\n" + options, "p.yaml")
    assert str(info.value).startswith(message), str(info.value)


def test_answer_rules_take_latin_1_text_and_refuse_the_rest() -> None:
    from vusb.devices.cdc_acm.backends import AnswerBackend

    backend = AnswerBackend([("caf\xe9 (.)", "\xb0\\1")], unmatched="\xff")
    assert backend.answer(b"caf\xe9 x") == b"\xb0x" and backend.answer(b"?") == b"\xff"
    with pytest.raises(UsageError, match=r"^reply: character '€' \(U\+20AC\) at position 1 is not one byte"):
        AnswerBackend([("AT", "5€")])
    with pytest.raises(UsageError, match=r"^match: invalid regular expression: .*'u' flag with a bytes pattern"):
        AnswerBackend([("(?u)AT", "OK")])
