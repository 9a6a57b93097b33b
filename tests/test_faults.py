"""Fault injection (vusb.faults): each kind of misbehaviour, when rules fire, profiles, misuse.

The device under test is a small bulk pipe (IN 0x81 fed with ``send``, OUT 0x02 read
with ``receive``) driven by the in-process host; mass storage checks go through a
Bulk-Only host like Linux usb-storage; one test goes through a real USB/IP server.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml
from vusb.devices import Keyboard
from vusb.devices.cdc_acm import SerialPort
from vusb.devices.storage import (
    CommandBlockWrapper,
    CommandStatusWrapper,
    LogicalUnit,
    MassStorage,
    MassStorageFunction,
    MemoryStore,
    Opcode,
    ScsiFailure,
)
from vusb.devices.storage.scsi import Failed

from vusb import faults
from vusb.client import RemoteDevice
from vusb.constants import DescriptorType, Speed, Status, TransferType
from vusb.control import ControlServer, build_request
from vusb.descriptors import InterfaceDescriptor
from vusb.device import BuildContext, Device, Function
from vusb.endpoint import Endpoint
from vusb.errors import ConnectionClosed, ProfileError, Stall, TransferError, UsageError
from vusb.faults import FaultSet
from vusb.profile import parse_profile
from vusb.schema import profile_schema
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket, Urb

IN, OUT = 0x81, 0x02


class Pipe(Function):
    """One interface with a bulk IN and a bulk OUT endpoint using the built-in data queues."""

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        eps = (ctx.endpoint(True, TransferType.BULK, preferred=IN), ctx.endpoint(False, TransferType.BULK, preferred=OUT))
        return [InterfaceDescriptor(ctx.interface_number(), 0, 0xFF, endpoints=eps)]


def pipe_device() -> Device:
    return Device(Pipe(), vendor_id=0x1209, product_id=0x7778, product="Pipe", speed=Speed.HIGH)


async def configured(device: Device) -> LocalHost:
    host = LocalHost(device)
    host.attach()
    await host.enumerate(strings=False)
    return host


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# ------------------------------------------------------------------ one table row per URB-level kind


@dataclass
class UrbCase:
    name: str
    rule: Callable[[], faults.Fault]
    out: bool  # an OUT transfer of b"abcdefgh" (else an IN of 64 bytes with b"abcdefgh" queued)
    status: int
    data: bytes | None  # IN data answered
    actual: int | None = None  # OUT bytes consumed


URB_CASES = [
    UrbCase("stall IN", lambda: faults.StallRule(endpoint=IN), False, Status.EPIPE, b""),
    UrbCase("stall OUT", lambda: faults.StallRule(endpoint=OUT), True, Status.EPIPE, None),
    UrbCase("short IN", lambda: faults.Short(endpoint=IN, length=3), False, 0, b"abc"),
    UrbCase("short OUT", lambda: faults.Short(endpoint=OUT, length=2), True, 0, None, 2),
    UrbCase("babble IN", lambda: faults.Babble(endpoint=IN), False, Status.EOVERFLOW, b"abcdefgh" + b"\xff" * 56),
    UrbCase("delay IN", lambda: faults.Delay(endpoint=IN, seconds=0.05), False, 0, b"abcdefgh"),
    UrbCase("delay OUT", lambda: faults.Delay(endpoint=OUT, seconds=0.05), True, 0, None, 8),
]


@pytest.mark.parametrize("case", URB_CASES, ids=[c.name for c in URB_CASES])
async def test_urb_faults_change_the_answer(case: UrbCase) -> None:
    device = pipe_device()
    host = await configured(device)
    rule = device.faults.add(case.rule())
    if case.out:
        _, fut = host.submit(OUT, 0, 8, b"abcdefgh")
    else:
        device.endpoint(IN).send_nowait(b"abcdefgh")
        _, fut = host.submit(IN, 1, 64)
    result = await asyncio.wait_for(fut, 2)
    assert result.status == case.status
    if case.data is not None:
        assert bytes(result.data) == case.data
    if case.actual is not None:
        assert result.actual_length == case.actual
    assert (rule.matched, rule.fired) == (1, 1)
    host.detach()


@pytest.mark.parametrize(("length", "taken"), [(0, b""), (2, b"ab"), (7, b"abcdefg"), (8, b"abcdefgh"),
                                               (20, b"abcdefgh")])
async def test_short_out_gives_the_device_what_the_host_is_told_was_taken(length: int, taken: bytes) -> None:
    device = pipe_device()
    host = await configured(device)
    device.faults.add(faults.Short(endpoint=OUT, length=length, count=1))
    assert await host.transfer_out(OUT, b"abcdefgh") == len(taken)
    assert await asyncio.wait_for(device.endpoint(OUT).receive(), 2) == taken
    assert await host.transfer_out(OUT, b"next") == 4  # the rule is spent: nothing more is cut
    assert await asyncio.wait_for(device.endpoint(OUT).receive(), 2) == b"next"
    host.detach()


async def test_stall_halts_the_endpoint_until_the_host_clears_it() -> None:
    device = pipe_device()
    host = await configured(device)
    device.faults.add(faults.StallRule(endpoint=IN, count=1))
    device.endpoint(IN).send_nowait(b"data")
    with pytest.raises(Stall):
        await host.transfer_in(IN, 64)
    assert device.endpoint(IN).halted
    with pytest.raises(Stall):  # the rule is spent; the halt remains, as on hardware
        await host.transfer_in(IN, 64)
    await host.clear_halt(IN)
    assert device.endpoint(IN).halts_cleared == 1
    assert await host.transfer_in(IN, 64) == b"data"  # nothing was lost


async def test_stall_without_halt_stalls_one_urb() -> None:
    device = pipe_device()
    host = await configured(device)
    device.faults.add(faults.StallRule(endpoint=IN, count=1, halt=False))
    device.endpoint(IN).send_nowait(b"data")
    with pytest.raises(Stall):
        await host.transfer_in(IN, 64)
    assert await host.transfer_in(IN, 64) == b"data"


async def test_drop_leaves_the_urb_pending_until_unlinked_and_the_queue_goes_on() -> None:
    device = pipe_device()
    host = await configured(device)
    rule = device.faults.add(faults.Drop(endpoint=IN, count=1))
    device.endpoint(IN).send_nowait(b"kept")
    dropped, fut = host.submit(IN, 1, 64)
    behind, fut2 = host.submit(IN, 1, 64)
    await asyncio.sleep(0.05)
    assert not fut.done() and not fut2.done()  # the next URB waits behind the NAKing one
    assert host.unlink_urb(dropped)
    assert bytes((await asyncio.wait_for(fut2, 1)).data) == b"kept"  # the data was never taken
    assert rule.fired == 1 and behind.state.value == "done"


async def test_delay_holds_the_answer_and_unlink_cancels_it() -> None:
    device = pipe_device()
    host = await configured(device)
    device.faults.add(faults.Delay(endpoint=IN, seconds=0.3))
    device.endpoint(IN).send_nowait(b"late")
    urb, fut = host.submit(IN, 1, 64)
    await asyncio.sleep(0.05)
    assert not fut.done()
    assert host.unlink_urb(urb)
    device.faults.clear()
    assert await host.transfer_in(IN, 64) == b"late"  # the cancelled URB took nothing


async def test_disconnect_detaches_a_device_without_a_server() -> None:
    device = pipe_device()
    host = await configured(device)
    rule = device.faults.add(faults.Disconnect(endpoint=OUT, after=1))
    assert await host.transfer_out(OUT, b"first") == 5
    urb, fut = host.submit(OUT, 0, 6, b"second")
    await settle()
    assert not device.attached and not device.configured
    assert not fut.done() and urb.state.value == "cancelled"  # never answered
    assert rule.fired == 1
    host.detach()


async def test_disconnect_through_the_server_drops_the_connection_and_the_device_comes_back() -> None:
    device = pipe_device()
    async with Server([device], port=0) as server:
        rule = device.faults.add(faults.Disconnect(endpoint=IN, after_bytes=8, count=1))
        async with await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
            await remote.enumerate(strings=False)
            device.endpoint(IN).send_nowait(b"12345678")
            device.endpoint(IN).send_nowait(b"never")
            assert await remote.transfer_in(IN, 64) == b"12345678"
            with pytest.raises((ConnectionClosed, TransferError, ConnectionError)):
                await remote.transfer_in(IN, 64)
        for _ in range(100):
            if not device.attached:
                break
            await asyncio.sleep(0.01)
        assert not device.attached and rule.fired == 1 and rule.bytes_passed == 8
        async with await RemoteDevice.open("127.0.0.1", "1-1", server.port) as again:  # served again at once
            await again.enumerate(strings=False)
            device.endpoint(IN).send_nowait(b"back")
            assert await again.transfer_in(IN, 64) == b"back"


# ------------------------------------------------------------------ nothing the device hands over is lost
#
# A rule that changes or delays an answer holds the URB while the endpoint hands it data.
# Whenever the host unlinks the URB, the bytes the device queued with send() reach the
# host exactly once and in order: a URB whose data came in the very loop turn of the
# unlink is answered with it first (RET_SUBMIT, then RET_UNLINK 0, as without rules);
# one unlinked earlier took nothing, and the data goes to the next URB.

FIRST, SECOND = b"first", b"second"
SHORT_DELAY, PAST_A_SHORT_DELAY = 0.02, 0.1  # the delay's timer fires before the test's: no race
LONG_DELAY = 5.0  # a URB unlinked (or failed) "in its delay" surely still is, however slow the machine
SETTLED = 0.01  # enough for the first URB to reach the rule (or the endpoint's waiter)
Answers = list[tuple[int, bytes]]


def answered(endpoint: Endpoint, host: LocalHost, urb: Urb) -> bool | None:
    """The data comes; the host waits for the answer."""
    endpoint.send_nowait(FIRST)
    return None


def unlinked_in_the_turn_its_data_came(endpoint: Endpoint, host: LocalHost, urb: Urb) -> bool | None:
    endpoint.send_nowait(FIRST)
    return host.unlink_urb(urb)


def unlinked_before_its_data_came(endpoint: Endpoint, host: LocalHost, urb: Urb) -> bool | None:
    cancelled = host.unlink_urb(urb)
    endpoint.send_nowait(FIRST)
    return cancelled


@dataclass
class HandoverCase:
    name: str
    rule: Callable[[], faults.Fault]  # acts on the first IN URB of the test only
    wait: float  # before the timing step: the first URB is then in a Delay's wait, or waiting for data
    timing: Callable[[Endpoint, LocalHost, Urb], bool | None]  # what unlink returned (None: no unlink)
    unlinked: bool | None  # True: the first URB was cancelled; False: it was answered before the unlink
    answers: Answers  # (status, data) of every IN URB the host gets, in order
    left: int = 0  # send() items still queued in the device at the end
    held: bool = True  # the rule holds the first URB (a Stall answers it at once)


BABBLED = (Status.EOVERFLOW, FIRST + b"\xff" * (64 - len(FIRST)))
PLAIN = [(0, FIRST), (0, SECOND)]
COUNTED_THEN_STALLED = [(0, FIRST), (Status.EPIPE, b""), (0, SECOND)]  # after_bytes=5 stalls the URB after FIRST

HANDOVER_CASES = [
    HandoverCase("delay, answered", lambda: faults.Delay(endpoint=IN, seconds=SHORT_DELAY, count=1),
                 PAST_A_SHORT_DELAY, answered, None, PLAIN),
    HandoverCase("delay, unlinked in the turn its data came",
                 lambda: faults.Delay(endpoint=IN, seconds=SHORT_DELAY, count=1), PAST_A_SHORT_DELAY,
                 unlinked_in_the_turn_its_data_came, False, PLAIN),
    HandoverCase("delay, unlinked before its data came", lambda: faults.Delay(endpoint=IN, seconds=SHORT_DELAY, count=1),
                 PAST_A_SHORT_DELAY, unlinked_before_its_data_came, True, PLAIN),
    HandoverCase("delay, data queued, unlinked in its delay",  # a delayed URB takes nothing before its time
                 lambda: faults.Delay(endpoint=IN, seconds=LONG_DELAY, count=1), SETTLED,
                 unlinked_in_the_turn_its_data_came, True, PLAIN),
    HandoverCase("short, answered", lambda: faults.Short(endpoint=IN, length=2, count=1), SETTLED,
                 answered, None, [(0, b"fi"), (0, SECOND)]),  # the rest of FIRST is what Short loses
    HandoverCase("short, unlinked in the turn its data came", lambda: faults.Short(endpoint=IN, length=2, count=1),
                 SETTLED, unlinked_in_the_turn_its_data_came, False, [(0, b"fi"), (0, SECOND)]),
    HandoverCase("short, unlinked before its data came", lambda: faults.Short(endpoint=IN, length=2, count=1),
                 SETTLED, unlinked_before_its_data_came, True, PLAIN),
    HandoverCase("babble, answered", lambda: faults.Babble(endpoint=IN, count=1), SETTLED,
                 answered, None, [BABBLED, (0, SECOND)]),
    HandoverCase("babble, unlinked in the turn its data came", lambda: faults.Babble(endpoint=IN, count=1),
                 SETTLED, unlinked_in_the_turn_its_data_came, False, [BABBLED, (0, SECOND)]),
    HandoverCase("babble, unlinked before its data came", lambda: faults.Babble(endpoint=IN, count=1),
                 SETTLED, unlinked_before_its_data_came, True, PLAIN),
    HandoverCase("after_bytes, answered", lambda: faults.StallRule(endpoint=IN, halt=False, after_bytes=5, count=1),
                 SETTLED, answered, None, COUNTED_THEN_STALLED),
    HandoverCase("after_bytes, unlinked in the turn its data came",
                 lambda: faults.StallRule(endpoint=IN, halt=False, after_bytes=5, count=1), SETTLED,
                 unlinked_in_the_turn_its_data_came, False, COUNTED_THEN_STALLED),
    HandoverCase("after_bytes, unlinked before its data came",
                 lambda: faults.StallRule(endpoint=IN, halt=False, after_bytes=5, count=1), SETTLED,
                 unlinked_before_its_data_came, True, COUNTED_THEN_STALLED),
    # Drop takes nothing from the device: what it queued waits behind the dropped URB.
    HandoverCase("drop, never unlinked", lambda: faults.Drop(endpoint=IN, count=1), SETTLED,
                 answered, None, [], left=2),
    HandoverCase("drop, unlinked in the turn its data came", lambda: faults.Drop(endpoint=IN, count=1), SETTLED,
                 unlinked_in_the_turn_its_data_came, True, PLAIN),
    HandoverCase("drop, unlinked before its data came", lambda: faults.Drop(endpoint=IN, count=1), SETTLED,
                 unlinked_before_its_data_came, True, PLAIN),
    # Stall answers at once, before any data comes, and leaves it queued.
    HandoverCase("stall, answered", lambda: faults.StallRule(endpoint=IN, halt=False, count=1), SETTLED,
                 answered, None, [(Status.EPIPE, b""), *PLAIN], held=False),
    HandoverCase("stall, unlink comes too late", lambda: faults.StallRule(endpoint=IN, halt=False, count=1), SETTLED,
                 unlinked_in_the_turn_its_data_came, False, [(Status.EPIPE, b""), *PLAIN], held=False),
]


def in_answers(host: LocalHost, address: int = IN) -> Answers:
    return [(c.status, bytes(c.data)) for urb, c in host.completions if urb.address == address]


async def answers_settle(host: LocalHost, count: int, address: int = IN) -> Answers:
    """The IN answers once ``count`` of them came (or 2 s passed) and nothing else follows."""
    for _ in range(200):
        if len(in_answers(host, address)) >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)
    return in_answers(host, address)


@pytest.mark.parametrize("case", HANDOVER_CASES, ids=[c.name for c in HANDOVER_CASES])
async def test_data_handed_to_a_urb_a_rule_holds_reaches_the_host_once_and_in_order(case: HandoverCase) -> None:
    device = pipe_device()
    host = await configured(device)
    endpoint = device.endpoint(IN)
    device.faults.add(case.rule())
    first, _ = host.submit(IN, 1, 64)
    await asyncio.sleep(case.wait)
    assert first.state.value == ("active" if case.held else "done")
    assert case.timing(endpoint, host, first) is case.unlinked
    endpoint.send_nowait(SECOND)
    for _ in range(3):  # more URBs than needed: the spare ones wait for data
        host.submit(IN, 1, 64)
    assert await answers_settle(host, len(case.answers)) == case.answers
    assert endpoint.queued_in == case.left
    host.detach()


@dataclass
class Feeder:
    """A device whose IN data waits in a queue of its own, and a way to add to it at once."""

    name: str
    make: Callable[[], Device]
    address: int
    feed: Callable[[Device, bytes], object]
    first: bytes
    second: bytes


def keyboard_report(device: Device, report: bytes) -> object:
    assert isinstance(device, Keyboard)
    return device.keyboard.send_report(report)


def serial_output(device: Device, data: bytes) -> object:
    assert isinstance(device, SerialPort)
    device.acm.to_host.put(data)  # what port.write() does, without waiting
    return None


FEEDERS = [
    Feeder("keyboard reports", Keyboard, 0x81, keyboard_report, bytes((0, 0, 4, 0, 0, 0, 0, 0)),
           bytes((0, 0, 5, 0, 0, 0, 0, 0))),
    Feeder("serial port output", SerialPort, 0x82, serial_output, b"ping\r\n", b"pong\r\n"),
]


@pytest.mark.parametrize("feeder", FEEDERS, ids=[f.name for f in FEEDERS])
async def test_other_device_queues_keep_data_handed_to_a_delayed_urb_in_the_turn_of_its_unlink(feeder: Feeder) -> None:
    device = feeder.make()
    host = await configured(device)
    device.faults.add(faults.Delay(endpoint=feeder.address, seconds=SHORT_DELAY, count=1))
    urb, _ = host.submit(feeder.address, 1, 8)
    await asyncio.sleep(PAST_A_SHORT_DELAY)  # past the delay: the URB waits for data
    feeder.feed(device, feeder.first)
    assert host.unlink_urb(urb) is False  # answered first, with the data
    feeder.feed(device, feeder.second)
    host.submit(feeder.address, 1, 8)
    assert await answers_settle(host, 2, feeder.address) == [(0, feeder.first), (0, feeder.second)]
    host.detach()


async def test_through_the_server_the_unlink_of_an_answered_urb_follows_its_ret_submit() -> None:
    """An OUT transfer feeds the IN endpoint in the same read as the CMD_UNLINK of the IN URB."""
    device = pipe_device()
    device.endpoint(OUT).on_out = lambda data: device.endpoint(IN).send_nowait(bytes(data))
    device.faults.add(faults.Short(endpoint=IN, length=3, count=1))
    async with Server([device], port=0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(bytes.fromhex("0111 8003 00000000") + b"1-1".ljust(32, b"\0"))
        assert (await reader.readexactly(8 + 312))[:8] == bytes.fromhex("0111 0003 00000000")

        def submit(seqnum: int, ep: int, direction: int, length: int, setup: bytes = bytes(8), data: bytes = b"") -> bytes:
            return struct.pack(">IIIIIIiiii8s", 1, seqnum, 0x10001, direction, ep, 0, length, 0, 0, 0, setup) + data

        def unlink(seqnum: int, target: int) -> bytes:
            return struct.pack(">IIIIII24s", 2, seqnum, 0x10001, 0, 0, target, bytes(24))

        async def read_one() -> tuple[int, int, int, bytes]:
            command, seqnum, _, _, _, status, actual = struct.unpack(">IIIIIii", (await reader.readexactly(48))[:28])
            data = await reader.readexactly(actual) if command == 3 and seqnum in (2, 5) and actual > 0 else b""
            return command, seqnum, status, data

        async def reply() -> tuple[int, int, int, bytes]:
            return await asyncio.wait_for(read_one(), 2)

        writer.write(submit(1, 0, 0, 0, bytes.fromhex("0009010000000000")))  # SET_CONFIGURATION 1
        assert (await reply())[:3] == (3, 1, 0)
        writer.write(submit(2, 1, 1, 64))  # bulk IN, nothing queued: waits inside the Short rule
        await asyncio.sleep(0.05)
        writer.write(submit(3, 2, 0, 9, data=b"firstlast") + unlink(4, 2))  # one read: data comes, then the unlink
        assert [await reply() for _ in range(3)] == [(3, 3, 0, b""), (3, 2, 0, b"fir"), (4, 4, 0, b"")]
        writer.write(submit(5, 1, 1, 64))  # the rule is spent; nothing is left queued
        await asyncio.sleep(0.05)
        assert device.endpoint(IN).queued_in == 0
        writer.write(submit(6, 2, 0, 6, data=b"second"))
        assert [await reply() for _ in range(2)] == [(3, 6, 0, b""), (3, 5, 0, b"second")]
        writer.close()


# What happens to data when the endpoint halts, is reset by the host (SET_CONFIGURATION,
# SET_INTERFACE) or the host goes away while a rule holds a URB.


def halt(host: LocalHost, endpoint: Endpoint) -> None:
    endpoint.halt()


def set_configuration_again(host: LocalHost, endpoint: Endpoint) -> None:
    endpoint.reset(answer_pending=True)  # what SET_CONFIGURATION and SET_INTERFACE do to the endpoint


def host_goes_away(host: LocalHost, endpoint: Endpoint) -> None:
    host.detach()


@dataclass
class EventCase:
    name: str
    event: Callable[[LocalHost, Endpoint], None]
    data_first: bool  # the data was handed over in the turn of the event (else it is queued, the URB in its delay)
    answer: tuple[int, bytes] | None  # the delayed URB's answer (None: never answered, the host is gone)
    sent: str  # the send() future: "done" (a URB took it) or "cancelled" (discarded, the sender is told)
    after_clear_halt: bytes | None = None  # what the next URB gets once the host cleared the halt


EVENT_CASES = [
    EventCase("halt, URB in its delay", halt, False, (Status.EPIPE, b""), "done", after_clear_halt=FIRST),
    EventCase("halt in the turn its data came", halt, True, (0, FIRST), "done", after_clear_halt=b""),
    EventCase("reset, URB in its delay", set_configuration_again, False, (Status.ESHUTDOWN, b""), "cancelled"),
    EventCase("reset in the turn its data came", set_configuration_again, True, (0, FIRST), "done"),
    EventCase("host gone, URB in its delay", host_goes_away, False, None, "cancelled"),
]


@pytest.mark.parametrize("case", EVENT_CASES, ids=[c.name for c in EVENT_CASES])
async def test_endpoint_events_while_a_rule_holds_a_urb(case: EventCase) -> None:
    device = pipe_device()
    host = await configured(device)
    endpoint = device.endpoint(IN)
    device.faults.add(faults.Delay(endpoint=IN, seconds=SHORT_DELAY if case.data_first else LONG_DELAY, count=1))
    if case.data_first:
        host.submit(IN, 1, 64)
        await asyncio.sleep(PAST_A_SHORT_DELAY)  # the URB waits for data
        sent = endpoint.send(FIRST)  # handed over to it at once
    else:
        sent = endpoint.send(FIRST)
        host.submit(IN, 1, 64)
        await asyncio.sleep(SETTLED)  # the URB is in its delay, the data queued
    case.event(host, endpoint)
    await settle()
    assert in_answers(host) == ([case.answer] if case.answer is not None else [])
    if case.after_clear_halt is not None:
        await host.clear_halt(IN)
        _, next_answer = host.submit(IN, 1, 64)
        await settle()
        if case.after_clear_halt:
            assert bytes((await asyncio.wait_for(next_answer, 1)).data) == case.after_clear_halt
        else:
            assert not next_answer.done() and endpoint.queued_in == 0  # nothing left: FIRST went to the halted URB
    assert ("cancelled" if sent.cancelled() else "done" if sent.done() else "pending") == case.sent
    host.detach()


async def test_a_disconnect_discards_what_the_device_queued_and_tells_its_senders() -> None:
    device = pipe_device()
    host = await configured(device)
    endpoint = device.endpoint(IN)
    device.faults.add(faults.Disconnect(endpoint=IN, after=1, count=1))
    endpoint.send_nowait(FIRST)
    delivered, queued = endpoint.send(SECOND), endpoint.send(b"third")
    assert await host.transfer_in(IN, 64) == FIRST
    host.submit(IN, 1, 64)  # the device leaves the bus on this one, which takes nothing
    await settle()
    assert not device.attached and in_answers(host) == [(0, FIRST)]
    assert delivered.cancelled() and queued.cancelled() and endpoint.queued_in == 0
    host.detach()


# ------------------------------------------------------------------ when rules fire


def seeded_pattern(seed: int, probability: float, n: int) -> str:
    """What a rule with this seed does: the same draws as random.Random(seed)."""
    draws = random.Random(seed)
    return "".join("x" if draws.random() < probability else "." for _ in range(n))


@dataclass
class FiringCase:
    name: str
    rule: Callable[[], faults.Fault]
    pattern: str  # per IN transfer of 4 bytes: "x" stalled (halt off), "." answered


FIRING_CASES = [
    FiringCase("every time by default", lambda: faults.StallRule(endpoint=IN, halt=False), "xxxxxx"),
    FiringCase("count", lambda: faults.StallRule(endpoint=IN, halt=False, count=2), "xx...."),
    FiringCase("after", lambda: faults.StallRule(endpoint=IN, halt=False, after=3, count=1), "...x.."),
    FiringCase("after_bytes", lambda: faults.StallRule(endpoint=IN, halt=False, after_bytes=8, count=2), "..xx.."),
    FiringCase("probability, seeded", lambda: faults.StallRule(endpoint=IN, halt=False, probability=0.5, seed=3),
               seeded_pattern(3, 0.5, 6)),
    FiringCase("another endpoint only", lambda: faults.StallRule(endpoint=OUT, halt=False), "......"),
]


@pytest.mark.parametrize("case", FIRING_CASES, ids=[c.name for c in FIRING_CASES])
async def test_when_a_rule_fires(case: FiringCase) -> None:
    device = pipe_device()
    host = await configured(device)
    rule = device.faults.add(case.rule())
    seen = ""
    for _ in range(len(case.pattern)):
        device.endpoint(IN).send_nowait(b"data")
        try:
            await host.transfer_in(IN, 4)
            seen += "."
        except Stall:
            seen += "x"
            device.endpoint(IN).reset()  # drop the data the stalled URB left queued
    assert seen == case.pattern
    assert rule.fired == case.pattern.count("x")
    assert rule.matched >= rule.fired  # a spent rule leaves the URB path and stops counting matches


async def test_control_requests_match_on_setup_fields() -> None:
    device = pipe_device()
    host = await configured(device)
    rule = device.faults.add(faults.StallRule(endpoint=0, request_type=0x80, request=6, value=0x0300))
    with pytest.raises(Stall):
        await host.get_descriptor(DescriptorType.STRING, 0)
    assert len(await host.get_descriptor(DescriptorType.DEVICE, 0, 18)) == 18
    assert (rule.matched, rule.fired) == (1, 1)


async def test_rules_come_and_go_at_runtime_and_spent_rules_leave_the_urb_path() -> None:
    device = pipe_device()
    endpoint = device.endpoint(IN)
    assert endpoint.faults is None and not device.faults
    once = device.faults.add(faults.Short(endpoint=IN, length=1, count=1))
    assert endpoint.faults is device.faults and device.endpoint(OUT).faults is None
    host = await configured(device)
    endpoint.send_nowait(b"abc")
    assert await host.transfer_in(IN, 64) == b"a"
    assert endpoint.faults is None and once.exhausted and list(device.faults) == [once]
    forever = device.faults.add(faults.Short(endpoint=IN, length=2))
    endpoint.send_nowait(b"abc")
    assert await host.transfer_in(IN, 64) == b"ab"
    device.faults.remove(forever)
    endpoint.send_nowait(b"abc")
    assert await host.transfer_in(IN, 64) == b"abc"
    assert forever.fired == 1 and endpoint.faults is None


async def test_wait_returns_once_the_rule_fired() -> None:
    device = pipe_device()
    host = await configured(device)
    rule = device.faults.add(faults.StallRule(endpoint=IN, halt=False, after=1))
    device.endpoint(IN).send_nowait(b"a")
    waiter = asyncio.ensure_future(rule.wait(timeout=2))
    assert await host.transfer_in(IN, 4) == b"a"
    assert not waiter.done()
    with pytest.raises(Stall):
        await host.transfer_in(IN, 4)
    await waiter


# ------------------------------------------------------------------ descriptors


async def test_corrupt_configuration_descriptor_bytes() -> None:
    device = pipe_device()
    good = device._config_bytes[0]
    rule = device.faults.add(faults.CorruptDescriptor(type="configuration", offset=1, data=b"\x05", count=1))
    async with LocalHost(device) as host:
        head = await host.get_descriptor(DescriptorType.CONFIGURATION, 0, 9)
        assert head == b"\x09\x05" + good[2:9]
        assert await host.get_descriptor(DescriptorType.CONFIGURATION, 0, len(good)) == good  # spent
    assert rule.fired == 1


async def test_a_patch_beyond_the_reply_is_not_a_match() -> None:
    device = pipe_device()
    good = device._config_bytes[0]
    rule = device.faults.add(faults.CorruptDescriptor(type=DescriptorType.CONFIGURATION, index=0, offset=20,
                                                      data=b"\x00", count=1))
    async with LocalHost(device) as host:
        assert await host.get_descriptor(DescriptorType.CONFIGURATION, 0, 9) == good[:9]
        assert rule.matched == 0
        full = await host.get_descriptor(DescriptorType.CONFIGURATION, 0, len(good))
    assert full[20] == 0 and full[:20] == good[:20] and rule.fired == 1


async def test_corrupt_descriptor_with_a_transform() -> None:
    device = pipe_device()
    rule = device.faults.add(faults.CorruptDescriptor(type="device", transform=lambda d: d[:8] + b"\xad\xde" + d[10:]))
    async with LocalHost(device) as host:
        raw = await host.get_descriptor(DescriptorType.DEVICE, 0, 18)
    assert raw[8:10] == b"\xad\xde" and rule.fired == 1


# ------------------------------------------------------------------ SCSI


class Bot:
    """Just enough of usb-storage: CBW, data stage, CSW, REQUEST SENSE."""

    def __init__(self, host: LocalHost, disk: MassStorage) -> None:
        self.host, self.disk = host, disk
        self.bulk_in, self.bulk_out = disk.storage.in_address, disk.storage.out_address
        self.tags = itertools.count(1)

    async def command(self, cdb: bytes, length: int) -> tuple[bytes, CommandStatusWrapper]:
        await self.host.transfer_out(self.bulk_out, CommandBlockWrapper(next(self.tags), length, True, 0, cdb).to_bytes())
        data = b""
        if length:
            try:
                data = await self.host.transfer_in(self.bulk_in, length)
            except Stall:
                await self.host.clear_halt(self.bulk_in)
        return data, CommandStatusWrapper.parse(await self.host.transfer_in(self.bulk_in, 13))

    async def sense(self) -> bytes:
        return (await self.command(bytes((Opcode.REQUEST_SENSE, 0, 0, 0, 18, 0)), 18))[0]


def read10(lba: int, blocks: int) -> bytes:
    return bytes((Opcode.READ_10, 0)) + lba.to_bytes(4, "big") + b"\x00" + blocks.to_bytes(2, "big") + b"\x00"


SCSI_CASES = [  # (name, rule, LBA read, fails?, sense INFORMATION)
    ("bad range, inside", dict(lba=100, blocks=8), 104, True, 104),
    ("bad range, overlapping start", dict(lba=100, blocks=8), 98, True, 100),
    ("bad range, outside", dict(lba=100, blocks=8), 108, False, None),
    ("any READ(10)", dict(), 0, True, None),
    ("another opcode", dict(opcode=Opcode.WRITE_10), 0, False, None),
    ("another LUN", dict(lun=0, opcode=Opcode.READ_10, lba=0), 0, True, 0),
]


@pytest.mark.parametrize(("name", "match", "lba", "fails", "information"), SCSI_CASES, ids=[c[0] for c in SCSI_CASES])
async def test_scsi_failure_with_chosen_sense(name: str, match: dict[str, int], lba: int, fails: bool,
                                              information: int | None) -> None:
    disk = MassStorage(memory=True, size=1 << 20)
    rule = disk.faults.add(ScsiFailure(**{"opcode": Opcode.READ_10, **match}, sense_key="MEDIUM_ERROR",
                                              asc=0x11, ascq=0x00))
    async with LocalHost(disk) as host:
        await host.enumerate(strings=False)
        bot = Bot(host, disk)
        data, csw = await bot.command(read10(lba, 4), 2048)
        assert csw.status == (1 if fails else 0)
        assert len(data) == (0 if fails else 2048)
        if fails:
            sense = await bot.sense()
            assert (sense[2] & 0x0F, sense[12], sense[13]) == (0x3, 0x11, 0x00)
            assert bool(sense[0] & 0x80) == (information is not None)
            if information is not None:
                assert int.from_bytes(sense[3:7], "big") == information
        assert rule.fired == (1 if fails else 0)
    disk.close()


async def test_not_ready_twice_then_the_command_succeeds() -> None:
    disk = MassStorage(memory=True, size=1 << 20)
    rule = disk.faults.add(ScsiFailure(opcode=Opcode.TEST_UNIT_READY, sense_key="NOT_READY", asc=0x04,
                                              ascq=0x01, count=2))
    async with LocalHost(disk) as host:
        await host.enumerate(strings=False)
        bot = Bot(host, disk)
        tur = bytes(6)
        statuses = [(await bot.command(tur, 0))[1].status for _ in range(3)]
    assert statuses == [1, 1, 0] and rule.fired == 2
    disk.close()


def two_disk_device() -> Device:
    """Two mass storage functions: one with LUN 0, one with LUNs 0 and 1."""
    def unit() -> LogicalUnit:
        return LogicalUnit(MemoryStore(1 << 20))

    return Device(MassStorageFunction(unit()), MassStorageFunction(unit(), unit()), vendor_id=0x1209,
                  product_id=0x7779, product="Two disks", speed=Speed.HIGH)


LUN_CASES = [  # (name, rule's lun, which (function, LUN) fail)
    ("LUN 0 of every function", 0, {(0, 0), (1, 0)}),
    ("LUN 1 only where a function has it", 1, {(1, 1)}),
    ("any LUN", None, {(0, 0), (1, 0), (1, 1)}),
]


@pytest.mark.parametrize(("name", "lun", "failing"), LUN_CASES, ids=[c[0] for c in LUN_CASES])
def test_scsi_failure_lun_is_numbered_within_each_function(name: str, lun: int | None,
                                                             failing: set[tuple[int, int]]) -> None:
    device = two_disk_device()
    device.faults.add(ScsiFailure(sense_key="MEDIUM_ERROR", asc=0x11, lun=lun, opcode=Opcode.READ_10))
    functions = [f for f in device.functions if isinstance(f, MassStorageFunction)]
    failed = {(f, n) for f, function in enumerate(functions) for n, unit in enumerate(function.luns)
              if isinstance(unit.command(read10(0, 1)), Failed)}
    assert failed == failing


def test_scsi_failure_lun_beyond_every_function_is_refused() -> None:
    device = two_disk_device()
    with pytest.raises(UsageError, match=r"at most 2 logical unit\(s\); there is no LUN 2"):
        device.faults.add(ScsiFailure(sense_key=3, lun=2))


# ------------------------------------------------------------------ misuse


MISUSE = [
    ("endpoint not an address", lambda: faults.StallRule(endpoint=0x31), "not an endpoint address"),
    ("count zero", lambda: faults.Drop(count=0), "count 0 is out of range"),
    ("probability above one", lambda: faults.Drop(probability=1.5), "probability must be a number in (0, 1]"),
    ("negative delay", lambda: faults.Delay(seconds=-1), "seconds must be a finite number >= 0"),
    ("setup fields on a bulk endpoint", lambda: faults.StallRule(endpoint=IN, request=6), "not the control endpoint"),
    ("babble on OUT", lambda: faults.Babble(endpoint=OUT), "only IN transfers babble"),
    ("descriptor without patch", lambda: faults.CorruptDescriptor(type="device"), "needs offset and data"),
    ("descriptor type unknown", lambda: faults.CorruptDescriptor(type="hub", offset=0, data=b"\x00"),
     "unknown descriptor type 'hub'"),
    ("sense key unknown", lambda: ScsiFailure(sense_key="OOPS"), "unknown sense key 'OOPS'"),
    ("sense key reserved", lambda: ScsiFailure(sense_key=0xC), "reserved"),
    ("scsi rule with an endpoint", lambda: ScsiFailure(sense_key=3, endpoint=IN), "endpoint is not used"),
]


@pytest.mark.parametrize(("name", "make", "message"), MISUSE, ids=[m[0] for m in MISUSE])
def test_bad_rules_are_usage_errors(name: str, make: Callable[[], object], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_rules_that_do_not_fit_the_device_are_refused() -> None:
    device = pipe_device()
    with pytest.raises(UsageError, match="no endpoint 0x83"):
        device.faults.add(faults.StallRule(endpoint=0x83))
    with pytest.raises(UsageError, match="no SCSI logical unit"):
        device.faults.add(ScsiFailure(sense_key="MEDIUM_ERROR"))
    with pytest.raises(UsageError, match="not SetupPacket"):
        device.faults.add(SetupPacket(0, 0))  # type: ignore[type-var]
    rule = device.faults.add(faults.Drop())
    with pytest.raises(UsageError, match="already in a device's fault set"):
        pipe_device().faults.add(rule)
    device.faults.remove(rule)
    with pytest.raises(UsageError, match="is not in this device's fault set"):
        device.faults.remove(rule)
    disk = MassStorage(memory=True, size=1 << 20)
    with pytest.raises(UsageError, match="there is no LUN 1"):
        disk.faults.add(ScsiFailure(sense_key=3, lun=1))
    disk.close()


def test_a_fault_set_describes_its_rules() -> None:
    keyboard = Keyboard()
    assert isinstance(keyboard.faults, FaultSet)
    keyboard.faults.add(faults.Delay(endpoint=0x81, seconds=0.5, count=3))
    assert repr(keyboard.faults) == "<FaultSet [Delay(seconds=0.5, endpoint=0x81, count=3)]>"


# ------------------------------------------------------------------ profiles


PROFILE_HEAD = """\
identity: {vendor_id: 0x1209, product_id: 0x0005, product: Disk, speed: high}
functions:
  - kind: mass-storage
    memory: true
    size: 1MiB
"""

GOOD_FAULTS = """\
faults:
  - kind: scsi-failure
    opcode: 0x28
    sense_key: medium_error
    asc: 0x11
    lba: 100
    blocks: 8
  - kind: stall
    endpoint: 0x81
    count: 1
  - kind: delay
    endpoint: 0x01
    seconds: 0.25
    probability: 0.5
    seed: 7
  - kind: corrupt-descriptor
    type: configuration
    offset: 1
    data: "05"
"""


def test_profile_faults_become_fresh_rules_for_each_device(tmp_path: Path) -> None:
    profile = parse_profile(PROFILE_HEAD + GOOD_FAULTS, str(tmp_path / "p.yaml"), tmp_path)
    first, second = profile.build(), profile.build()
    kinds = [type(r).__name__ for r in first.faults]
    assert kinds == ["ScsiFailure", "StallRule", "Delay", "CorruptDescriptor"]  # the rule was renamed from Stall
    scsi = next(iter(first.faults))
    assert isinstance(scsi, ScsiFailure) and (scsi.sense_key, scsi.asc, scsi.lba, scsi.blocks) == (3, 0x11, 100, 8)
    assert all(a is not b for a, b in zip(first.faults, second.faults, strict=True))
    first.close_unstarted()
    second.close_unstarted()


BAD_PROFILES = [
    ("unknown kind", "faults:\n  - kind: explode\n", 7, 11, "faults[0].kind", "unknown fault kind 'explode'"),
    ("unknown field", "faults:\n  - kind: drop\n    endpont: 0x81\n", 8, 5, "faults[0].endpont",
     "unknown field 'endpont'"),
    ("missing seconds", "faults:\n  - kind: delay\n    endpoint: 0x81\n", 7, 5, "faults[0].seconds",
     "required field 'seconds' is missing"),
    ("probability", "faults:\n  - kind: drop\n    probability: 2\n", 8, 18, "faults[0].probability",
     "2 is out of range (0, 1]"),
    ("count zero", "faults:\n  - kind: drop\n    count: 0\n", 8, 12, "faults[0].count", "0 is out of range >= 1"),
    ("sense key", "faults:\n  - kind: scsi-failure\n    sense_key: BAD\n", 8, 16, "faults[0].sense_key",
     "unknown sense key 'BAD'"),
    ("endpoint missing on the device", "faults:\n  - kind: stall\n    endpoint: 0x85\n", 7, 5, "faults[0]",
     "no endpoint 0x85"),
    ("rule refuses a value", "faults:\n  - kind: babble\n    endpoint: 0x01\n", 7, 5, "faults[0]",
     "only IN transfers babble"),
    ("not a list", "faults: {kind: drop}\n", 6, 9, "faults", "expected a list"),
]


@pytest.mark.parametrize(("name", "text", "line", "column", "field", "message"), BAD_PROFILES,
                         ids=[b[0] for b in BAD_PROFILES])
def test_profile_fault_errors_name_file_line_column_and_field(tmp_path: Path, name: str, text: str, line: int,
                                                              column: int, field: str, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(PROFILE_HEAD + text, "disk.yaml", tmp_path)
    err = info.value
    assert (err.file, err.line, err.column, err.field) == ("disk.yaml", line, column, field), str(err)
    assert message in str(err)



# ------------------------------------------------------------------ vusb ctl


async def test_control_channel_adds_lists_and_clears_rules(tmp_path: Path) -> None:
    disk = MassStorage(memory=True, size=1 << 20)
    async with Server([disk], port=0) as server:
        control = ControlServer(server, tmp_path / "ctl.sock")
        added = await control.handle({"cmd": "fault-add", "busid": "1-1",
                                      "fault": {"kind": "scsi-failure", "sense_key": "MEDIUM_ERROR", "asc": 0x11,
                                                "opcode": 0x28, "lba": 8, "blocks": 2}})
        assert added["ok"] and added["index"] == 0, added
        assert (await control.handle({"cmd": "fault-add", "busid": "1-1",
                                      "fault": {"kind": "stall", "endpoint": 0x81, "count": 1}}))["ok"]
        listed = await control.handle({"cmd": "fault-list", "busid": "1-1"})
        assert [(f["kind"], f["fired"]) for f in listed["faults"]] == [("scsi-failure", 0), ("stall", 0)]
        assert (await control.handle({"cmd": "fault-clear", "busid": "1-1", "index": 0}))["removed"] == 1
        assert [type(r).__name__ for r in disk.faults] == ["StallRule"]  # the rule was renamed from Stall
        assert (await control.handle({"cmd": "fault-clear", "busid": "1-1"}))["removed"] == 1
        assert not disk.faults
    disk.close()


CONTROL_ERRORS = [
    ({"busid": "1-1"}, "missing field 'fault'"),
    ({"busid": "1-1", "fault": {"kind": "explode"}}, "field 'fault.kind': unknown fault kind 'explode'; expected one of"),
    ({"busid": "1-1", "fault": {"kind": "drop", "endpont": 1}}, "field 'fault.endpont': unknown field 'endpont'"),
    ({"busid": "1-1", "fault": {"kind": "delay", "seconds": "soon"}},
     "field 'fault.seconds': expected a number, got 'soon'"),
    ({"busid": "1-1", "fault": {"kind": "stall", "endpoint": 0x85}}, "no endpoint 0x85"),
    ({"busid": "1-1", "fault": {"kind": "corrupt-descriptor", "type": "device", "offset": 0, "data": "zz"}},
     "field 'fault.data': expected hexadecimal bytes"),
    ({"busid": "9-9", "fault": {"kind": "drop"}}, "no device '9-9'"),
]


@pytest.mark.parametrize(("fields", "message"), CONTROL_ERRORS, ids=[m for _, m in CONTROL_ERRORS])
async def test_control_channel_refuses_bad_rules(tmp_path: Path, fields: dict[str, object], message: str) -> None:
    async with Server([pipe_device()], port=0) as server:
        reply = await ControlServer(server, tmp_path / "ctl.sock").handle({"cmd": "fault-add", **fields})
    assert reply["ok"] is False and message in reply["error"], reply


CTL_ARGUMENTS = [
    (["fault-add", "1-1", "stall", "endpoint=0x81", "count=1", "halt=false"],
     {"cmd": "fault-add", "busid": "1-1", "fault": {"kind": "stall", "endpoint": 0x81, "count": 1, "halt": False}}),
    (["fault-add", "1-1", "delay", "seconds=2.5"],
     {"cmd": "fault-add", "busid": "1-1", "fault": {"kind": "delay", "seconds": 2.5}}),
    (["fault-add", "1-1", "corrupt-descriptor", "type=configuration", "offset=1", "data=05"],
     {"cmd": "fault-add", "busid": "1-1",
      "fault": {"kind": "corrupt-descriptor", "type": "configuration", "offset": 1, "data": "05"}}),
    (["fault-list", "1-1"], {"cmd": "fault-list", "busid": "1-1"}),
    (["fault-clear", "1-1", "2"], {"cmd": "fault-clear", "busid": "1-1", "index": 2}),
]


@pytest.mark.parametrize(("argv", "expected"), CTL_ARGUMENTS, ids=[" ".join(a[:3]) for a, _ in CTL_ARGUMENTS])
def test_vusb_ctl_fault_arguments(argv: list[str], expected: dict[str, object]) -> None:
    assert build_request(argv) == (expected, False)


def test_the_json_schema_covers_the_faults_section() -> None:
    validator = jsonschema.Draft202012Validator(profile_schema())
    good = yaml.safe_load(PROFILE_HEAD + GOOD_FAULTS)
    validator.validate(good)
    for bad in ({"kind": "explode"}, {"kind": "delay"}, {"kind": "drop", "probability": 0},
                {"kind": "stall", "endpoint": 0x81, "seconds": 1}):
        assert not validator.is_valid({**good, "faults": [bad]}), bad
