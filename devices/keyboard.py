"""Boot keyboard (HID 1.11 appendix B.1, usages from HID Usage Tables chapter 10).

The input report is the 8-byte boot report: modifier bits, a reserved byte, and
up to six pressed key usages.  The single output report carries the LEDs.  The
same layout serves boot and report protocol, as on most real keyboards.

    kb = Keyboard()
    await kb.type("Hello, World!\\n")
    await kb.press(Key.A, modifiers=Modifier.LEFT_CTRL); await kb.release_all()
    if kb.leds & Led.CAPS_LOCK: ...
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any

from vusb.devices.hid import HidFunction, HidProtocolCode, HidSubclass, Protocol

from vusb.constants import Speed
from vusb.errors import UsageError
from vusb.hid_usages import US_LAYOUT as US_LAYOUT  # re-exported: the table lives with the HID usages
from vusb.hid_usages import Key as Key
from vusb.single import Forwarded, SingleFunctionDevice, forward

BOOT_KEYBOARD_REPORT_DESCRIPTOR = bytes.fromhex(
    "05 01 09 06 a1 01"  # Usage Page (Generic Desktop), Usage (Keyboard), Collection (Application)
    "05 07 19 e0 29 e7 15 00 25 01 75 01 95 08 81 02"  # modifiers: 8 x 1 bit, Input (Data,Var,Abs)
    "95 01 75 08 81 01"  # reserved byte, Input (Const)
    "95 05 75 01 05 08 19 01 29 05 91 02"  # 5 LEDs, Output (Data,Var,Abs)
    "95 01 75 03 91 01"  # LED padding, Output (Const)
    "95 06 75 08 15 00 25 65 05 07 19 00 29 65 81 00"  # 6 keys, Input (Data,Array)
    "c0"
)


class Modifier(enum.IntFlag):
    NONE = 0
    LEFT_CTRL = 0x01
    LEFT_SHIFT = 0x02
    LEFT_ALT = 0x04
    LEFT_GUI = 0x08
    RIGHT_CTRL = 0x10
    RIGHT_SHIFT = 0x20
    RIGHT_ALT = 0x40
    RIGHT_GUI = 0x80


class Led(enum.IntFlag):
    NONE = 0
    NUM_LOCK = 0x01
    CAPS_LOCK = 0x02
    SCROLL_LOCK = 0x04
    COMPOSE = 0x08
    KANA = 0x10




def keys_for_text(text: str) -> list[tuple[Key, Modifier]]:
    """The key strokes that type ``text`` on a US layout; raises for characters it cannot type."""
    strokes = []
    for pos, ch in enumerate(text):
        try:
            key, shift = US_LAYOUT[ch]
        except KeyError:
            raise UsageError(f"character {ch!r} at position {pos} cannot be typed on a US keyboard") from None
        strokes.append((key, Modifier.LEFT_SHIFT if shift else Modifier.NONE))
    return strokes


class KeyboardFunction(HidFunction):
    """A boot-protocol keyboard interface."""

    name = "Keyboard"

    def __init__(self, *, interface_name: str | None = None, type_on_attach: str | None = None,
                 type_delay: float = 1.0) -> None:
        if type_on_attach:
            keys_for_text(type_on_attach)  # refuse untypable text when defined, not when attached
        self.type_on_attach = type_on_attach
        self.type_delay = type_delay
        self._typing: asyncio.Task[None] | None = None
        super().__init__(
            BOOT_KEYBOARD_REPORT_DESCRIPTOR,
            input_size=8,
            subclass=HidSubclass.BOOT,
            protocol=HidProtocolCode.KEYBOARD,
            max_packet_size=8,
            interface_name=interface_name,
        )
        self.leds = Led.NONE
        self.modifiers = Modifier.NONE
        self.pressed: list[int] = []
        self._led_waiters: list[tuple[Led, asyncio.Future[Led]]] = []

    def handle_output(self, report_id: int, data: bytes) -> None:
        if not data:
            return
        self.leds = Led(data[-1] & 0x1F)
        waiting = []
        for wanted, fut in self._led_waiters:
            if fut.done():
                continue
            if wanted == self.leds:
                fut.set_result(self.leds)
            else:
                waiting.append((wanted, fut))
        self._led_waiters = waiting

    def on_reset(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None
        super().on_reset()
        self.modifiers = Modifier.NONE
        self.pressed = []

    def on_configured(self, configured: bool) -> None:
        if configured and self.type_on_attach and self._typing is None:
            self._typing = asyncio.get_running_loop().create_task(self._type_after_attach(self.type_on_attach))

    async def _type_after_attach(self, text: str) -> None:
        await asyncio.sleep(self.type_delay)  # give the host's driver time to bind and start polling
        try:
            await self.type(text)
        except UsageError:
            pass  # the host detached while typing; the text is typed again on the next attach

    def report(self) -> bytes:
        keys = self.pressed[:6] if len(self.pressed) <= 6 else [1] * 6  # ErrorRollOver
        return bytes((int(self.modifiers), 0, *keys, *([0] * (6 - len(keys)))))

    async def _emit(self, timeout: float | None) -> None:
        await self.send(self.report(), timeout)

    async def press(self, *keys: Key | int, modifiers: Modifier = Modifier.NONE, timeout: float | None = None) -> None:
        """Press keys (and modifiers) and keep them down."""
        self.modifiers |= modifiers
        for key in keys:
            if int(key) not in self.pressed:
                self.pressed.append(int(key))
        await self._emit(timeout)

    async def release(self, *keys: Key | int, modifiers: Modifier = Modifier.NONE, timeout: float | None = None) -> None:
        """Release the given keys and modifiers."""
        self.modifiers &= ~modifiers
        for key in keys:
            if int(key) in self.pressed:
                self.pressed.remove(int(key))
        await self._emit(timeout)

    async def release_all(self, timeout: float | None = None) -> None:
        self.modifiers = Modifier.NONE
        self.pressed = []
        await self._emit(timeout)

    async def tap(self, *keys: Key | int, modifiers: Modifier = Modifier.NONE, timeout: float | None = None) -> None:
        """Press and release keys (a chord such as Ctrl+C)."""
        await self.press(*keys, modifiers=modifiers, timeout=timeout)
        await self.release(*keys, modifiers=modifiers, timeout=timeout)

    async def type(self, text: str, timeout: float | None = None) -> None:
        """Type text on a US layout; returns when the host has read every report."""
        strokes = keys_for_text(text)
        if self.leds & Led.CAPS_LOCK:
            # The host applies Caps Lock to letters: invert shift so the text comes out as written.
            strokes = [
                (k, m ^ Modifier.LEFT_SHIFT if Key.A <= k <= Key.Z else m) for k, m in strokes
            ]
        futures = []
        for key, mods in strokes:
            futures.append(self.send_report(bytes((int(mods), 0, int(key), 0, 0, 0, 0, 0))))
            futures.append(self.send_report(bytes(8)))
        self.modifiers = Modifier.NONE
        self.pressed = []
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), timeout)

    async def wait_leds(self, leds: Led, timeout: float | None = None) -> Led:
        """Wait until the host has set exactly these LEDs."""
        if self.leds == leds:
            return self.leds
        fut: asyncio.Future[Led] = asyncio.get_running_loop().create_future()
        self._led_waiters.append((leds, fut))
        return await asyncio.wait_for(fut, timeout)


class Keyboard(SingleFunctionDevice[KeyboardFunction]):
    """A USB boot keyboard: one :class:`KeyboardFunction`, whose typing API it offers."""

    def __init__(
        self,
        *,
        vendor_id: int = 0x1209,
        product_id: int = 0x0001,
        device_version: int = 0x0100,
        manufacturer: str | None = "vusb",
        product: str | None = "Virtual Keyboard",
        serial_number: str | None = None,
        speed: str | int = "full",
        **kwargs: Any,
    ) -> None:
        self.keyboard = KeyboardFunction()
        """The keyboard function (also :attr:`function`)."""
        super().__init__(self.keyboard, vendor_id=vendor_id, product_id=product_id, device_version=device_version,
                         manufacturer=manufacturer, product=product, serial_number=serial_number,
                         speed=Speed(speed) if isinstance(speed, int) else speed, **kwargs)

    type = forward(KeyboardFunction.type)
    press = forward(KeyboardFunction.press)
    release = forward(KeyboardFunction.release)
    release_all = forward(KeyboardFunction.release_all)
    tap = forward(KeyboardFunction.tap)
    wait_leds = forward(KeyboardFunction.wait_leds)
    read_output = forward(KeyboardFunction.read_output)
    leds: Forwarded[Led] = Forwarded("The LEDs the host set last.")
    protocol: Forwarded[Protocol] = Forwarded("Boot (0) or report (1) protocol, as the host set it.")
    idle: Forwarded[dict[int, int]] = Forwarded("Idle rate per report id, in 4 ms units, as the host set it.")
