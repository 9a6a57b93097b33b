"""Boot mouse with wheel (HID 1.11 appendix B.2 plus a wheel axis).

Report protocol input report (4 bytes): buttons 1..5 as bits, X, Y, wheel, each a
signed relative byte.  In boot protocol the host reads the first three bytes only,
so the wheel is left out of boot reports.

    mouse = Mouse()
    await mouse.move(10, -5)
    await mouse.click(Button.LEFT)
    await mouse.scroll(-1)
"""

from __future__ import annotations

import enum
from typing import Any

from vusb.devices.hid import HidFunction, HidProtocolCode, HidSubclass, Protocol

from vusb.constants import Speed
from vusb.single import Forwarded, SingleFunctionDevice, forward

BOOT_MOUSE_REPORT_DESCRIPTOR = bytes.fromhex(
    "05 01 09 02 a1 01"  # Usage Page (Generic Desktop), Usage (Mouse), Collection (Application)
    "09 01 a1 00"  # Usage (Pointer), Collection (Physical)
    "05 09 19 01 29 05 15 00 25 01 95 05 75 01 81 02"  # buttons 1..5, Input (Data,Var,Abs)
    "95 01 75 03 81 01"  # padding, Input (Const)
    "05 01 09 30 09 31 09 38 15 81 25 7f 75 08 95 03 81 06"  # X, Y, Wheel: -127..127, Input (Data,Var,Rel)
    "c0 c0"
)


class Button(enum.IntFlag):
    NONE = 0
    LEFT = 0x01
    RIGHT = 0x02
    MIDDLE = 0x04
    BACK = 0x08
    FORWARD = 0x10


ALL_BUTTONS = Button.LEFT | Button.RIGHT | Button.MIDDLE | Button.BACK | Button.FORWARD


def _steps(value: int) -> list[int]:
    """Split a relative motion into steps that fit a signed byte."""
    steps = []
    while value > 127 or value < -127:
        step = 127 if value > 0 else -127
        steps.append(step)
        value -= step
    steps.append(value)
    return steps


class MouseFunction(HidFunction):
    """A boot-protocol mouse interface with a wheel."""

    name = "Mouse"

    def __init__(self, *, interface_name: str | None = None) -> None:
        super().__init__(BOOT_MOUSE_REPORT_DESCRIPTOR, input_size=4, subclass=HidSubclass.BOOT,
                         protocol=HidProtocolCode.MOUSE, max_packet_size=4, interface_name=interface_name)
        self.buttons = Button.NONE

    def on_reset(self) -> None:
        super().on_reset()
        self.buttons = Button.NONE

    def _report(self, dx: int = 0, dy: int = 0, wheel: int = 0) -> bytes:
        raw = bytes((int(self.buttons), dx & 0xFF, dy & 0xFF, wheel & 0xFF))
        return raw[:3] if self.protocol == Protocol.BOOT else raw

    def current_input(self, report_id: int) -> bytes:
        return self._report()

    async def move(self, dx: int, dy: int, timeout: float | None = None) -> None:
        """Relative motion; large moves are split into several reports."""
        xs, ys = _steps(dx), _steps(dy)
        n = max(len(xs), len(ys))
        xs += [0] * (n - len(xs))
        ys += [0] * (n - len(ys))
        for x, y in zip(xs, ys, strict=False):
            await self.send(self._report(x, y), timeout)

    async def scroll(self, amount: int, timeout: float | None = None) -> None:
        """Vertical wheel clicks (positive is away from the user)."""
        for step in _steps(amount):
            await self.send(self._report(wheel=step), timeout)

    async def press(self, buttons: Button, timeout: float | None = None) -> None:
        self.buttons |= buttons
        await self.send(self._report(), timeout)

    async def release(self, buttons: Button = ALL_BUTTONS, timeout: float | None = None) -> None:
        self.buttons &= ~buttons
        await self.send(self._report(), timeout)

    async def click(self, buttons: Button = Button.LEFT, timeout: float | None = None) -> None:
        await self.press(buttons, timeout)
        await self.release(buttons, timeout)


class Mouse(SingleFunctionDevice[MouseFunction]):
    """A USB boot mouse with a wheel: one :class:`MouseFunction`, whose API it offers."""

    def __init__(
        self,
        *,
        vendor_id: int = 0x1209,
        product_id: int = 0x0002,
        device_version: int = 0x0100,
        manufacturer: str | None = "vusb",
        product: str | None = "Virtual Mouse",
        serial_number: str | None = None,
        speed: str | int = "full",
        **kwargs: Any,
    ) -> None:
        self.mouse = MouseFunction()
        """The mouse function (also :attr:`function`)."""
        super().__init__(self.mouse, vendor_id=vendor_id, product_id=product_id, device_version=device_version,
                         manufacturer=manufacturer, product=product, serial_number=serial_number,
                         speed=Speed(speed) if isinstance(speed, int) else speed, **kwargs)

    move = forward(MouseFunction.move)
    scroll = forward(MouseFunction.scroll)
    press = forward(MouseFunction.press)
    release = forward(MouseFunction.release)
    click = forward(MouseFunction.click)
    buttons: Forwarded[Button] = Forwarded("The buttons held down.")
