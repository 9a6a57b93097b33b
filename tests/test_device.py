"""The device model answers standard requests as hardware does (USB 2.0 chapter 9, USB 3.2 additions)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from devices import Keyboard, KeyboardFunction, MouseFunction
from vusb.constants import Speed, Status, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import BuildContext, Device, Function
from vusb.errors import DeviceDefinitionError, Stall
from vusb.testing import LocalHost
from vusb.urb import SetupPacket


class BulkLoop(Function):
    """A tiny test function: one interface with two alternate settings and a bulk pair in alt 1."""

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        n = ctx.interface_number()
        eps = (ctx.endpoint(True, TransferType.BULK), ctx.endpoint(False, TransferType.BULK))
        self.addresses = [e.address for e in eps]
        return [InterfaceDescriptor(n, 0, 0xFF), InterfaceDescriptor(n, 1, 0xFF, endpoints=eps)]


def make_device(speed: Speed = Speed.HIGH, **kw: object) -> Device:
    return Device(KeyboardFunction(), BulkLoop(), vendor_id=0x1209, product_id=0x7777, manufacturer="vusb",
                  product="Test", serial_number="T1", speed=speed, **kw)  # type: ignore[arg-type]


def setup(rt: int, req: int, value: int = 0, index: int = 0, length: int = 0) -> SetupPacket:
    return SetupPacket(rt, req, value, index, length)


async def test_get_descriptor_device_is_truncated_to_wlength() -> None:
    async with LocalHost(make_device()) as host:
        full = await host.control(setup(0x80, 6, 0x0100, 0, 18))
        assert len(full) == 18 and full[0] == 18 and full[1] == 1
        assert await host.control(setup(0x80, 6, 0x0100, 0, 8)) == full[:8]
        assert await host.control(setup(0x80, 6, 0x0100, 0, 64)) == full  # never longer than the descriptor


async def test_configuration_header_then_full_tree() -> None:
    dev = make_device()
    async with LocalHost(dev) as host:
        head = await host.control(setup(0x80, 6, 0x0200, 0, 9))
        total = int.from_bytes(head[2:4], "little")
        full = await host.control(setup(0x80, 6, 0x0200, 0, total))
        assert full == dev.configurations[0].to_bytes() and len(full) == total


STANDARD_REQUESTS = [
    # (description, setup, expected IN data or None for OUT success, or "stall")
    ("string 0 language table", setup(0x80, 6, 0x0300, 0, 255), bytes.fromhex("04 03 09 04")),
    ("string 1 manufacturer", setup(0x80, 6, 0x0301, 0x0409, 255), bytes.fromhex("0a 03 76 00 75 00 73 00 62 00")),
    ("string in an unknown language falls back", setup(0x80, 6, 0x0301, 0x0407, 4), bytes.fromhex("0a 03 76 00")),
    ("missing string stalls", setup(0x80, 6, 0x0363, 0x0409, 255), "stall"),
    ("configuration index 1 stalls", setup(0x80, 6, 0x0201, 0, 9), "stall"),
    ("device qualifier at high speed", setup(0x80, 6, 0x0600, 0, 10), bytes.fromhex("0a 06 00 02 00 00 00 40 01 00")),
    ("BOS is absent for bcdUSB 2.00", setup(0x80, 6, 0x0f00, 0, 5), "stall"),
    ("GET_STATUS device", setup(0x80, 0, 0, 0, 2), b"\x00\x00"),
    ("GET_STATUS interface before configuration stalls", setup(0x81, 0, 0, 0, 2), "stall"),
    ("GET_CONFIGURATION unconfigured", setup(0x80, 8, 0, 0, 1), b"\x00"),
    ("SET_CONFIGURATION to an unknown value stalls", setup(0x00, 9, 5, 0, 0), "stall"),
    ("remote wakeup without support stalls", setup(0x00, 3, 1, 0, 0), "stall"),
    ("SET_ISOCH_DELAY below SuperSpeed stalls", setup(0x00, 0x31, 40, 0, 0), "stall"),
    ("SET_DESCRIPTOR is not supported", setup(0x00, 7, 0x0100, 0, 0), "stall"),
    ("unknown vendor request stalls", setup(0xC0, 0x42, 0, 0, 4), "stall"),
]


@pytest.mark.parametrize(("case", "request_", "expected"), STANDARD_REQUESTS, ids=[c[0] for c in STANDARD_REQUESTS])
async def test_standard_requests(case: str, request_: SetupPacket, expected: bytes | str | None) -> None:
    async with LocalHost(make_device()) as host:
        if expected == "stall":
            with pytest.raises(Stall):
                await host.control(request_)
        else:
            assert await host.control(request_) == (expected or b"")


async def test_configuration_interface_and_status_lifecycle() -> None:
    dev = make_device()
    loop = dev.functions[1]
    assert isinstance(loop, BulkLoop)
    in_ep, out_ep = loop.addresses
    async with LocalHost(dev) as host:
        await host.set_configuration(1)
        assert await host.get_configuration() == 1 and dev.configured
        assert await host.get_status(1, 0) == 0
        # The bulk endpoints exist only in alternate setting 1.
        with pytest.raises(Stall):
            await host.transfer_out(out_ep, b"x")
        await host.set_interface(1, 1)
        assert await host.get_interface(1) == 1
        assert await host.transfer_out(out_ep, b"abc") == 3
        assert await dev.endpoint(out_ep).receive() == b"abc"
        # ENDPOINT_HALT: set, seen in GET_STATUS, stalls transfers, cleared by CLEAR_FEATURE.
        await host.set_halt(in_ep)
        assert await host.get_status(2, in_ep) == 1
        with pytest.raises(Stall):
            await host.transfer_in(in_ep, 512)
        await host.clear_halt(in_ep)
        assert await host.get_status(2, in_ep) == 0
        dev.endpoint(in_ep).send_nowait(b"data")
        assert await host.transfer_in(in_ep, 512) == b"data"
        with pytest.raises(Stall):
            await host.set_interface(1, 2)  # no such alternate
        # SET_CONFIGURATION resets alternate settings and halts.
        await host.set_halt(in_ep)
        await host.set_configuration(1)
        assert await host.get_interface(1) == 0
        await host.set_configuration(0)
        assert not dev.configured


async def test_remote_wakeup_feature_when_supported() -> None:
    dev = make_device(remote_wakeup=True)
    async with LocalHost(dev) as host:
        await host.control(setup(0x00, 3, 1, 0, 0))
        assert await host.get_status() == 2
        await host.control(setup(0x00, 1, 1, 0, 0))
        assert await host.get_status() == 0


async def test_superspeed_device_answers_bos_and_usb3_requests() -> None:
    dev = Device(KeyboardFunction(), BulkLoop(), vendor_id=1, product_id=2, speed=Speed.SUPER)
    async with LocalHost(dev) as host:
        info = await host.enumerate()
        assert info.device.usb_version >= 0x0300 and info.device.max_packet_size0 == 9
        assert info.bos is not None and len(info.bos.capabilities) == 2
        assert all(ep.companion is not None for itf in info.configurations[0].interfaces for ep in itf.endpoints)
        await host.control(setup(0x00, 0x31, 40, 0, 0))  # SET_ISOCH_DELAY
        await host.control(setup(0x00, 0x30, 0, 0, 6), bytes(6))  # SET_SEL
        assert dev.isoch_delay == 40
        with pytest.raises(Stall):
            await host.control(setup(0x80, 6, 0x0600, 0, 10))  # no DEVICE_QUALIFIER at SuperSpeed
        await host.control(setup(0x00, 3, 48, 0, 0))  # U1_ENABLE
        assert await host.get_status() & 4


async def test_other_speed_configuration_at_high_speed() -> None:
    dev = make_device()
    async with LocalHost(dev) as host:
        raw = await host.control(setup(0x80, 6, 0x0700, 0, 255))
        assert raw[1] == 7
        # The same functions at full speed: 64-byte bulk endpoints instead of 512.
        assert bytes.fromhex("07 05 82 02 40 00 00") in raw
        assert bytes.fromhex("07 05 82 02 00 02 00") in dev.configurations[0].to_bytes()


async def test_full_speed_device_stalls_device_qualifier() -> None:
    async with LocalHost(Keyboard()) as host:
        with pytest.raises(Stall):
            await host.control(setup(0x80, 6, 0x0600, 0, 10))


async def test_unhandled_request_is_logged_decoded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vusb")
    async with LocalHost(make_device()) as host:
        with pytest.raises(Stall):
            await host.control(setup(0xC1, 0x42, 0x1234, 0, 4))
    assert "unhandled request IN vendor interface request 0x42 wValue 0x1234" in caplog.text


async def test_in_urb_waits_for_data_without_blocking_ep0_or_other_endpoints() -> None:
    dev = make_device()
    async with LocalHost(dev) as host:
        await host.set_configuration(1)
        urb, fut = host.submit(0x81, 1, 8)  # keyboard interrupt IN: nothing to say yet
        await asyncio.sleep(0.01)
        assert not fut.done()
        assert await host.get_configuration() == 1  # EP0 still answers
        assert host.unlink_urb(urb)  # UNLINK cancels exactly that URB
        assert not host.unlink_urb(urb)


async def test_detach_drops_pending_urbs_and_resets_state() -> None:
    dev = make_device()
    host = LocalHost(dev)
    host.attach()
    await host.set_configuration(1)
    await host.set_interface(1, 1)
    _, fut = host.submit(0x81, 1, 8)
    host.detach()
    assert dev.configuration_value == 0 and dev.alternates == {} and dev.endpoint(0x81).pending == 0
    assert fut.cancelled()


DEFINITION_ERRORS = [
    ("EP0 size for low speed", dict(speed=Speed.LOW, max_packet_size0=64), "max_packet_size0 = 64 is wrong for low"),
    ("bulk at low speed", dict(speed=Speed.LOW), "illegal for a bulk endpoint at low speed"),
    ("USB 3 version at full speed", dict(speed=Speed.FULL, usb_version=0x0300), "is USB 3 but the speed is full"),
    ("string too long", dict(product="p" * 200), "at most 126"),
]


@pytest.mark.parametrize(("case", "kwargs", "message"), DEFINITION_ERRORS, ids=[c[0] for c in DEFINITION_ERRORS])
def test_invalid_devices_fail_at_definition(case: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((DeviceDefinitionError, ValueError), match=message):
        Device(KeyboardFunction(), BulkLoop(), vendor_id=1, product_id=2, **kwargs)  # type: ignore[arg-type]


def test_composite_gets_interface_numbers_and_endpoint_addresses_automatically() -> None:
    kb, mouse, loop = KeyboardFunction(), MouseFunction(), BulkLoop()
    dev = Device(kb, mouse, loop, vendor_id=1, product_id=2, speed=Speed.HIGH)
    numbers = [i.number for i in dev.configurations[0].interfaces if i.alternate == 0]
    assert numbers == [0, 1, 2]
    assert (kb.in_address, mouse.in_address) == (0x81, 0x82)
    assert loop.addresses == [0x83, 0x01]


async def test_short_not_ok_and_overflow_statuses() -> None:
    dev = make_device()
    async with LocalHost(dev) as host:
        await host.set_configuration(1)
        await host.set_interface(1, 1)
        loop = dev.functions[1]
        assert isinstance(loop, BulkLoop)
        in_ep = loop.addresses[0]
        dev.endpoint(in_ep).send_nowait(b"abc")
        _, fut = host.submit(in_ep, 1, 512, flags=0x1)  # URB_SHORT_NOT_OK
        result = await fut
        assert result.status == Status.EREMOTEIO and bytes(result.data) == b"abc"


async def test_reconfiguration_answers_pending_urbs_with_eshutdown() -> None:
    dev = make_device()
    async with LocalHost(dev) as host:
        await host.set_configuration(1)
        _, fut = host.submit(0x81, 1, 8)  # pending keyboard IN
        await host.set_configuration(1)
        assert (await asyncio.wait_for(fut, 1)).status == Status.ESHUTDOWN  # one answer per URB, never silence


async def test_unlink_of_a_urb_completed_in_the_same_loop_turn_delivers_its_data() -> None:
    dev = make_device()
    async with LocalHost(dev) as host:
        await host.set_configuration(1)
        urb, fut = host.submit(0x81, 1, 8)
        await asyncio.sleep(0)
        kb = dev.functions[0]
        assert isinstance(kb, KeyboardFunction)
        kb.send_report(bytes([0, 0, 4, 0, 0, 0, 0, 0]))  # completes the waiting future...
        assert not host.unlink_urb(urb)  # ...so the unlink comes too late and must not lose it
        assert bytes((await fut).data) == bytes([0, 0, 4, 0, 0, 0, 0, 0])


async def test_a_detached_handler_future_never_completes_the_next_urb() -> None:
    # Found by tests/test_robustness.py: a done callback asyncio had already scheduled
    # finished whichever URB was active next, duplicating one report and losing another.
    dev = make_device()
    kb = dev.functions[0]
    assert isinstance(kb, KeyboardFunction)
    async with LocalHost(dev) as host:
        await host.set_configuration(1)
        a, fa = host.submit(0x81, 1, 8)
        _, fb = host.submit(0x81, 1, 8)
        await asyncio.sleep(0)
        kb.send_report(bytes([0, 0, 4, 0, 0, 0, 0, 0]))
        assert not host.unlink_urb(a)  # completed in this loop turn: delivered, not cancelled
        await asyncio.sleep(0)
        assert not fb.done()  # b still waits; it does not get report 4 a second time
        kb.send_report(bytes([0, 0, 5, 0, 0, 0, 0, 0]))
        assert bytes((await fa).data)[2] == 4 and bytes((await asyncio.wait_for(fb, 1)).data)[2] == 5


async def test_urb_after_unlink_and_reconfiguration_in_one_turn_is_answered() -> None:
    dev = make_device()
    kb = dev.functions[0]
    assert isinstance(kb, KeyboardFunction)
    async with LocalHost(dev) as host:
        await host.set_configuration(1)
        a, _ = host.submit(0x81, 1, 8)
        await asyncio.sleep(0)
        assert host.unlink_urb(a)
        host.submit(0, 0, 0, setup=SetupPacket(0x00, 9, 1, 0, 0))  # SET_CONFIGURATION in the same turn
        _, fb = host.submit(0x81, 1, 8)
        await asyncio.sleep(0)
        kb.send_report(bytes(8))
        assert (await asyncio.wait_for(fb, 1)).status == 0
