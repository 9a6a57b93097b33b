"""SingleFunctionDevice: the ready-made devices offer their function's API without hand-written forwarding."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from vusb.devices import HidDevice, Keyboard, MassStorage, Mouse, SerialPort
from vusb.devices.keyboard import BOOT_KEYBOARD_REPORT_DESCRIPTOR
from vusb.devices.net import NetworkAdapter

from vusb import BuildContext, Device, Function, InterfaceDescriptor, UsageError
from vusb.single import Forwarded, SingleFunctionDevice, forward, forward_property
from vusb.testing import LocalHost

# Every member the hand-written classes had: each is still there, and is the function's own.
API: list[tuple[type[SingleFunctionDevice[Any]], str, list[str]]] = [
    (Keyboard, "keyboard", ["type", "press", "release", "release_all", "tap", "wait_leds", "leds", "protocol",
                            "idle"]),
    (Mouse, "mouse", ["move", "scroll", "press", "release", "click", "buttons"]),
    (HidDevice, "hid", ["send", "read_output", "features"]),
    (SerialPort, "acm", ["start", "close", "backend", "read", "readexactly", "readline", "write", "flush",
                         "line_coding", "control_lines", "dtr", "rts", "break_active", "wait_control_lines",
                         "wait_dtr", "wait_rts", "wait_line_coding", "wait_break", "dcd", "dsr", "set_dcd",
                         "set_dsr", "ring", "signal_break", "report_errors", "wait_notified"]),
    (MassStorage, "storage", []),
    (NetworkAdapter, "nic", ["mac", "backend", "set_link", "set_speed", "send", "start", "close"]),
]


def make(cls: type[SingleFunctionDevice[Any]]) -> SingleFunctionDevice[Any]:
    if cls is HidDevice:
        return HidDevice(BOOT_KEYBOARD_REPORT_DESCRIPTOR)
    if cls is MassStorage:
        return MassStorage(memory=True, size="1MiB")
    return cls()


@pytest.mark.parametrize(("cls", "alias", "members"), API, ids=[a[0].__name__ for a in API])
def test_the_ready_made_devices_offer_their_functions_members(cls: type[SingleFunctionDevice[Any]], alias: str,
                                                              members: list[str]) -> None:
    device = make(cls)
    function = device.function
    assert getattr(device, alias) is function  # the old attribute name is the function too
    for name in members:
        mine, theirs = getattr(device, name), getattr(function, name)
        if inspect.ismethod(theirs):
            assert mine.__self__ is function and mine.__func__ is theirs.__func__, name
        else:
            assert mine == theirs, name


async def test_a_forwarded_method_drives_the_function() -> None:
    keyboard = Keyboard()
    async with LocalHost(keyboard) as host:
        await host.enumerate()
        typing = asyncio.create_task(keyboard.type("a"))
        assert await host.transfer_in(0x81, 8) == bytes([0, 0, 4, 0, 0, 0, 0, 0])
        assert await host.transfer_in(0x81, 8) == bytes(8)
        await typing


class Counter(Function):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        return [ctx.interface(0xFF)]

    def add(self, n: int = 1) -> int:
        """Count ``n`` more."""
        self.count += n
        return self.count

    @property
    def even(self) -> bool:
        """Whether the count is even."""
        return self.count % 2 == 0


class CounterDevice(SingleFunctionDevice[Counter]):
    def __init__(self) -> None:
        super().__init__(Counter(), vendor_id=0x1209, product_id=0x0C0C)

    add = forward(Counter.add)
    even = forward_property(Counter.even)
    count: Forwarded[int] = Forwarded()


def test_a_users_device_in_three_lines() -> None:
    device = CounterDevice()
    assert device.add(3) == 3 and not device.even
    device.count = 10  # an attribute is forwarded both ways
    assert device.function.count == 10 and device.even
    assert CounterDevice.add.__doc__ == "Count ``n`` more." and CounterDevice.even.__doc__ == "Whether the count is even."


def test_forwarding_needs_a_function() -> None:
    class Broken(Device):
        add = forward(Counter.add)

    broken = Broken(Counter(), vendor_id=1, product_id=2)
    with pytest.raises(UsageError, match=r"Broken.add forwards to .function, which it does not have"):
        broken.add(1)
