"""The device model answers standard requests as hardware does (USB 2.0 chapter 9, USB 3.2 additions)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from vusb.devices import Keyboard, KeyboardFunction, MouseFunction

from vusb.constants import DescriptorType, RequestType, Speed, Status, TransferType
from vusb.descriptors import ConfigurationDescriptor, DeviceDescriptor, EndpointDescriptor, InterfaceDescriptor
from vusb.device import NOT_HANDLED, AttachedFunction, BuildContext, ControlResult, Device, Function
from vusb.errors import DeviceDefinitionError, Stall, UsageError
from vusb.testing import LocalHost
from vusb.urb import Completion, SetupPacket, Urb


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


# ------------------------------------------------------------ a user's own multi-configuration device

class TwoWayFunction(AttachedFunction):
    """Interface 0 of :class:`TwoWayDevice`: bulk OUT data comes back on bulk IN, as sent in
    configuration 1 and reversed in configuration 2, where interrupt IN 0x82 counts the OUT transfers."""

    def __init__(self) -> None:
        super().__init__()
        self.outs = 0
        self.configured_as: list[int] = []
        self.halts_cleared: list[int] = []

    def bind(self, device: Device) -> None:
        device.endpoint(0x01).on_out = self._out
        device.endpoint(0x82).handler = self._count

    def on_configured(self, configured: bool) -> None:
        if configured and self.device is not None:
            self.configured_as.append(self.device.configuration_value)

    def on_clear_halt(self, address: int) -> None:
        self.halts_cleared.append(address)

    def get_descriptor(self, setup: SetupPacket) -> bytes | None:
        return b"\x03\x21\x2a" if setup.descriptor_type == 0x21 else None  # a class descriptor of interface 0

    def _out(self, data: bytes | memoryview) -> None:
        assert self.device is not None
        self.outs += 1
        reply = bytes(data) if self.device.configuration_value == 1 else bytes(data)[::-1]
        self.endpoint(0x81).send_nowait(reply)

    def _count(self, urb: Urb) -> Completion:
        return Completion(0, bytes((self.outs,)))

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type == RequestType.VENDOR and setup.request == 0x01 and setup.is_in and self.device is not None:
            return bytes((self.device.configuration_value,))  # which configuration the function sees
        return NOT_HANDLED


class TwoWayDevice(Device):
    """What a user writes for a device with two configurations: the descriptors by hand, then
    Device.init_from_descriptors (no private construction)."""

    def __init__(self, speed: Speed = Speed.FULL) -> None:
        self.function = TwoWayFunction()

        def configurations(at: Speed) -> list[ConfigurationDescriptor]:
            bulk = 512 if at == Speed.HIGH else 64
            pair = (EndpointDescriptor(0x81, TransferType.BULK, bulk), EndpointDescriptor(0x01, TransferType.BULK, bulk))
            counter = EndpointDescriptor(0x82, TransferType.INTERRUPT, 8, interval=4)
            return [ConfigurationDescriptor(1, (InterfaceDescriptor(0, 0, 0xFF, name_index=3, endpoints=pair),),
                                            name_index=3),
                    ConfigurationDescriptor(2, (InterfaceDescriptor(0, 0, 0xFF, name_index=4,
                                                                    endpoints=(*pair, counter)),), name_index=4)]

        descriptor = DeviceDescriptor(vendor_id=0x1209, product_id=0x7778, manufacturer_index=1, product_index=2,
                                      num_configurations=2)
        self.init_from_descriptors(
            descriptor, configurations(speed), speed=speed,
            strings={1: "vusb", 2: "Two ways", 3: "forward", 4: "backward"},
            other_speed=configurations(Speed.FULL) if speed == Speed.HIGH else None,
            functions=[(self.function, (0,))],
        )


TWO_WAY_CONFIGURATIONS = [
    # (bConfigurationValue, its name, bulk IN after b"abc" went OUT, endpoints it has, endpoints it has not)
    (1, "forward", b"abc", (0x81, 0x01), (0x82,)),
    (2, "backward", b"cba", (0x81, 0x01, 0x82), ()),
]


@pytest.mark.parametrize("speed", [Speed.FULL, Speed.HIGH], ids=["full", "high"])
@pytest.mark.parametrize(("value", "name", "echoed", "present", "absent"), TWO_WAY_CONFIGURATIONS,
                         ids=[c[1] for c in TWO_WAY_CONFIGURATIONS])
async def test_user_subclass_with_two_configurations(
    speed: Speed, value: int, name: str, echoed: bytes, present: tuple[int, ...], absent: tuple[int, ...],
) -> None:
    dev = TwoWayDevice(speed)
    function = dev.function
    assert dev.functions == (function,) and function.device is dev and function.interface_numbers == (0,)
    async with LocalHost(dev) as host:
        info = await host.enumerate()  # reads both configurations, selects the first
        assert [(c.value, info.strings[c.name_index]) for c in info.configurations] == [(1, "forward"),
                                                                                        (2, "backward")]
        assert info.strings[info.device.product_index] == "Two ways"
        await host.set_configuration(value)
        assert await host.get_configuration() == value and dev.active_configuration is dev.configurations[value - 1]
        assert function.configured_as == [1, value]  # the function's hook saw each SET_CONFIGURATION
        # Requests to interface 0 and its endpoints reach the function that owns them.
        assert await host.control(SetupPacket(0xC1, 0x01, 0, 0, 1)) == bytes((value,))
        assert await host.control(SetupPacket(0x81, 6, 0x2100, 0, 3)) == b"\x03\x21\x2a"
        await host.set_halt(0x01)
        await host.clear_halt(0x01)
        assert function.halts_cleared == [0x01]
        # The handlers the function bound answer in the selected configuration's mode.
        assert await host.transfer_out(0x01, b"abc") == 3
        assert await host.transfer_in(0x81, 64) == echoed
        for address in present:
            assert await host.get_status(2, address) == 0
        for address in absent:  # an endpoint of the other configuration only
            with pytest.raises(Stall):
                await host.get_status(2, address)
        if 0x82 in present:
            assert await host.transfer_in(0x82, 8) == b"\x01"
        if speed == Speed.HIGH:  # an other-speed configuration for each configuration
            other = await host.get_descriptor(DescriptorType.OTHER_SPEED_CONFIGURATION, value - 1, 255)
            assert (other[1], other[5]) == (DescriptorType.OTHER_SPEED_CONFIGURATION, value)


async def test_user_subclass_switches_configurations_back_and_forth() -> None:
    dev = TwoWayDevice()
    async with LocalHost(dev) as host:
        await host.enumerate()
        for value, echoed in [(2, b"zyx"), (1, b"xyz"), (2, b"zyx")]:
            await host.set_configuration(value)
            await host.transfer_out(0x01, b"xyz")
            assert await host.transfer_in(0x81, 64) == echoed
        await host.set_configuration(0)
        assert not dev.configured and dev.function.configured_as == [1, 2, 1, 2]
        with pytest.raises(Stall):
            await host.transfer_out(0x01, b"x")


def test_init_from_descriptors_is_the_path_of_from_descriptors() -> None:
    made = TwoWayDevice()
    function = TwoWayFunction()
    same = Device.from_descriptors(made.descriptor, made.configurations, speed=Speed.FULL,
                                   strings={1: "vusb", 2: "Two ways", 3: "forward", 4: "backward"},
                                   functions=[(function, (0,))])
    assert type(same) is Device and same.functions == (function,) and function.device is same
    assert [c.to_bytes() for c in same.configurations] == [c.to_bytes() for c in made.configurations]
    assert same.endpoints.keys() == made.endpoints.keys() == {0, 0x81, 0x01, 0x82}
    assert same.endpoint(0x82).handler == function._count


def test_init_from_descriptors_twice_is_refused() -> None:
    dev = TwoWayDevice()
    with pytest.raises(UsageError, match="already initialised"):
        dev.init_from_descriptors(dev.descriptor, dev.configurations, speed=Speed.FULL)
    with pytest.raises(UsageError, match="already initialised"):
        Device.__init__(dev, KeyboardFunction(), vendor_id=1, product_id=2)


def test_init_from_descriptors_checks_the_values() -> None:
    class OneTooFew(Device):
        def __init__(self) -> None:
            config = TwoWayDevice().configurations[0]
            self.init_from_descriptors(DeviceDescriptor(vendor_id=1, product_id=2, num_configurations=2), [config],
                                       speed="full")

    with pytest.raises(DeviceDefinitionError, match="bNumConfigurations is 2 but 1 configuration"):
        OneTooFew()


async def test_the_quickstart_example_of_several_configurations_runs_as_written(
        vusb_host: Callable[[Device], LocalHost]) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "quickstart.md").read_text()
    section = page.split("## A device with several configurations", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "docs/quickstart.md: the section has no example"
    namespace: dict[str, object] = {}
    exec(compile(match.group(1), "docs/quickstart.md", "exec"), namespace)
    await namespace["test_echo_modes"](vusb_host)  # type: ignore[operator]


class ShapeShifter(Device):
    """Endpoint 0x81 differs between configurations: bulk 64 in 1, interrupt 32 in 2, isochronous 128 in 3."""

    def __init__(self) -> None:
        shapes = [EndpointDescriptor(0x81, TransferType.BULK, 64),
                  EndpointDescriptor(0x81, TransferType.INTERRUPT, 32, interval=1),
                  EndpointDescriptor(0x81, TransferType.ISOCHRONOUS, 128, interval=1)]
        configurations = [ConfigurationDescriptor(n, (InterfaceDescriptor(0, 0, 0xFF, endpoints=(ep,)),))
                          for n, ep in enumerate(shapes, 1)]
        self.init_from_descriptors(DeviceDescriptor(vendor_id=0x1209, product_id=0x7779, num_configurations=3),
                                   configurations, speed=Speed.FULL)


ENDPOINT_SHAPES = [
    # (bConfigurationValue, transfer type of 0x81, wMaxPacketSize, isochronous for the codec)
    (1, TransferType.BULK, 64, False),
    (2, TransferType.INTERRUPT, 32, False),
    (3, TransferType.ISOCHRONOUS, 128, True),
]


@pytest.mark.parametrize(("value", "kind", "size", "iso"), ENDPOINT_SHAPES, ids=[c[1].name for c in ENDPOINT_SHAPES])
async def test_an_endpoint_takes_the_shape_of_the_configuration_in_use(
    value: int, kind: TransferType, size: int, iso: bool,
) -> None:
    dev = ShapeShifter()
    assert dev.iso_addresses == {0x81}  # isochronous somewhere: the codec must ask which configuration is in use
    async with LocalHost(dev) as host:
        await host.enumerate()
        for selected in (3, value):  # from another shape to this one
            await host.set_configuration(selected)
        ep = dev.endpoint(0x81)
        assert (ep.transfer_type, ep.max_packet_size, dev.is_iso(0x81)) == (kind, size, iso)


class VendorAnswers(BulkLoop):
    """A function answering device-level vendor request 0x5b (as gadget zero does)."""

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type == RequestType.VENDOR and setup.request == 0x5B and setup.is_in:
            return b"function"
        return NOT_HANDLED


DEVICE_LEVEL_REQUESTS = [
    # (request, what answers) with a device-level handler that knows only 0x01
    (0x01, b"canned"),
    (0x5B, b"function"),  # the handler does not know it: the function still answers
    (0x7F, None),  # nobody knows it: stall
]


@pytest.mark.parametrize(("request_", "answer"), DEVICE_LEVEL_REQUESTS, ids=["handler", "function", "nobody"])
async def test_device_level_handler_leaves_what_it_does_not_know_to_the_functions(
    request_: int, answer: bytes | None,
) -> None:
    dev = Device(VendorAnswers(), vendor_id=0x1209, product_id=0x7780)

    def canned(setup: SetupPacket, data: bytes) -> ControlResult:
        return b"canned" if setup.request == 0x01 else NOT_HANDLED

    dev.vendor_handler = canned
    async with LocalHost(dev) as host:
        await host.enumerate()
        request = setup(0xC0, request_, 0, 0, 16)
        if answer is None:
            with pytest.raises(Stall):
                await host.control(request)
        else:
            assert await host.control(request) == answer
