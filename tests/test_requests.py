"""Class and vendor requests declared with @request and dispatched by Function.control through the table."""

from __future__ import annotations

import pytest
from vusb.devices import CdcAcmFunction, GadgetZeroFunction, HidFunction, MassStorageFunction
from vusb.devices.keyboard import BOOT_KEYBOARD_REPORT_DESCRIPTOR
from vusb.devices.storage import LogicalUnit

from vusb import (
    BuildContext,
    Device,
    Direction,
    Function,
    InterfaceDescriptor,
    Recipient,
    RequestKey,
    RequestType,
    SetupPacket,
    Stall,
    UsageError,
    request,
)
from vusb.testing import LocalHost


class Thermometer(Function):
    """A vendor-specific interface: read the temperature, set an alarm threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.celsius = 21.5
        self.alarm: int | None = None

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        return [ctx.interface(0xFF)]

    @request(Direction.IN, RequestType.VENDOR, Recipient.INTERFACE, 0x01)
    def get_temperature(self, setup: SetupPacket, data: bytes) -> bytes:
        return round(self.celsius * 100).to_bytes(2, "little", signed=True)

    @request(Direction.OUT, RequestType.VENDOR, Recipient.INTERFACE, 0x02)
    async def set_alarm(self, setup: SetupPacket, data: bytes) -> None:  # a coroutine works too
        if setup.value > 100:
            raise Stall("an alarm above 100 °C")
        self.alarm = setup.value


class PreciseThermometer(Thermometer):
    """A subclass inherits the table, replaces a handler by name and adds requests."""

    def get_temperature(self, setup: SetupPacket, data: bytes) -> bytes:
        return round(self.celsius * 1000).to_bytes(4, "little", signed=True)

    @request(Direction.IN, RequestType.VENDOR, Recipient.INTERFACE, 0x03)
    def get_alarm(self, setup: SetupPacket, data: bytes) -> bytes:
        return bytes((self.alarm or 0,))


def vendor(direction: Direction, code: int, value: int = 0, length: int = 0) -> SetupPacket:
    return SetupPacket((0x80 if direction == Direction.IN else 0) | 0x41, code, value, 0, length)


async def test_requests_reach_their_handlers_through_the_device() -> None:
    thermometer = Thermometer()
    async with LocalHost(Device(thermometer, vendor_id=0x1209, product_id=0x7E57)) as host:
        await host.enumerate()
        assert await host.control(vendor(Direction.IN, 0x01, length=2)) == (2150).to_bytes(2, "little")
        await host.control(vendor(Direction.OUT, 0x02, value=30))
        assert thermometer.alarm == 30
        for refused in (vendor(Direction.OUT, 0x02, value=101),  # the handler raises Stall
                        vendor(Direction.OUT, 0x01),  # no handler for this direction
                        vendor(Direction.IN, 0x03, length=1)):  # not declared by this class
            with pytest.raises(Stall):
                await host.control(refused)


def test_subclasses_inherit_replace_and_extend_the_table() -> None:
    key = RequestKey(Direction.IN, RequestType.VENDOR, Recipient.INTERFACE, 0x01)
    assert Thermometer.request_table == {key: "get_temperature", key._replace(direction=Direction.OUT, request=2):
                                         "set_alarm"}
    assert set(PreciseThermometer.request_table) == set(Thermometer.request_table) | {key._replace(request=3)}
    precise = PreciseThermometer()
    assert precise.control(vendor(Direction.IN, 0x01, length=4), b"") == (21500).to_bytes(4, "little")


def test_two_handlers_for_one_request_are_refused() -> None:
    with pytest.raises(UsageError, match=r"request IN VENDOR .* 0x01 has two handlers, first and second"):
        class Confused(Thermometer):
            @request(Direction.IN, RequestType.VENDOR, Recipient.INTERFACE, 0x01)
            def first(self, setup: SetupPacket, data: bytes) -> bytes:
                return b""

            @request(Direction.IN, RequestType.VENDOR, Recipient.INTERFACE, 0x01)
            def second(self, setup: SetupPacket, data: bytes) -> bytes:
                return b""


def test_a_request_code_is_a_byte() -> None:
    with pytest.raises(UsageError, match="bRequest 256 is not a byte"):
        request(Direction.IN, RequestType.CLASS, Recipient.INTERFACE, 256)


# The built-in classes declare their requests in tables too; these are what they answer.
TABLES = [
    (HidFunction, {(1, 1, 1, 0x01), (0, 1, 1, 0x09), (1, 1, 1, 0x02), (0, 1, 1, 0x0A), (1, 1, 1, 0x03),
                   (0, 1, 1, 0x0B)}),
    (CdcAcmFunction, {(0, 1, 1, 0x20), (1, 1, 1, 0x21), (0, 1, 1, 0x22), (0, 1, 1, 0x23), (0, 1, 1, 0x02),
                      (1, 1, 1, 0x03), (0, 1, 1, 0x04), (0, 1, 1, 0x00), (1, 1, 1, 0x01)}),
    (MassStorageFunction, {(0, 1, 1, 0xFF), (1, 1, 1, 0xFE)}),
    (GadgetZeroFunction, {(0, 2, 0, 0x5B), (1, 2, 0, 0x5C)}),
]


@pytest.mark.parametrize(("cls", "keys"), TABLES, ids=[t[0].__name__ for t in TABLES])
def test_built_in_request_tables(cls: type[Function], keys: set[tuple[int, int, int, int]]) -> None:
    assert set(cls.request_table) == keys


def test_a_hid_function_answers_get_protocol_from_its_table() -> None:
    hid = HidFunction(BOOT_KEYBOARD_REPORT_DESCRIPTOR)
    assert hid.control(SetupPacket(0xA1, 0x03, 0, 0, 1), b"") == b"\x01"  # report protocol
    assert MassStorageFunction(LogicalUnit()).control(SetupPacket(0xA1, 0xFE, 0, 0, 1), b"") == b"\x00"
