"""Decode what a guest's input drivers report: Linux ``struct input_event`` records.

On x86-64 each record is 24 bytes: a ``struct timeval`` (two 64-bit longs), then
``__u16 type``, ``__u16 code``, ``__s32 value`` (include/uapi/linux/input.h).
:func:`keys_to_text` turns key events back into the text a US keyboard typed,
so a test can check ``keyboard.type("Hello")`` end to end.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .target import UsbTarget

EVENT = struct.Struct("<qqHHi")

EV_SYN = 0x00
EV_KEY = 0x01
EV_REL = 0x02
EV_MSC = 0x04
EV_LED = 0x11

REL_X = 0x00
REL_Y = 0x01
REL_WHEEL = 0x08
REL_WHEEL_HI_RES = 0x0B

BTN_LEFT = 0x110
BTN_RIGHT = 0x111
BTN_MIDDLE = 0x112

LED_NUML = 0x00
LED_CAPSL = 0x01
LED_SCROLLL = 0x02

KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_CAPSLOCK = 58


@dataclass(frozen=True)
class InputEvent:
    seconds: float
    type: int
    code: int
    value: int


def parse_events(data: bytes) -> list[InputEvent]:
    """Split a read of /dev/input/eventN into events (a trailing partial record is ignored)."""
    out = []
    for off in range(0, len(data) - len(data) % EVENT.size, EVENT.size):
        sec, usec, etype, code, value = EVENT.unpack_from(data, off)
        out.append(InputEvent(sec + usec / 1e6, etype, code, value))
    return out


async def read_input_events(target: UsbTarget, node: str, action: Awaitable[object],
                            settle: float = 1.0) -> list[InputEvent]:
    """The events `node` (a guest's /dev/input/eventN) reports while `action` runs.

    The node is opened first (half a second to let ``cat`` start), then `action` is
    awaited, and events keep being read for `settle` seconds after it.
    """
    job = await target.start_background(f"cat {node}")
    await asyncio.sleep(0.5)
    await action
    await asyncio.sleep(settle)
    data = await job.read_stdout()
    await job.stop()
    return parse_events(data)


def encode_event(etype: int, code: int, value: int) -> bytes:
    """One input_event record (time zero: the kernel stamps injected events itself)."""
    return EVENT.pack(0, 0, etype, code, value)


# Linux key codes (include/uapi/linux/input-event-codes.h) of a US layout.
_ROWS = {
    2: "1!", 3: "2@", 4: "3#", 5: "4$", 6: "5%", 7: "6^", 8: "7&", 9: "8*", 10: "9(", 11: "0)",
    12: "-_", 13: "=+", 15: "\t\t", 16: "qQ", 17: "wW", 18: "eE", 19: "rR", 20: "tT", 21: "yY", 22: "uU",
    23: "iI", 24: "oO", 25: "pP", 26: "[{", 27: "]}", 28: "\n\n", 30: "aA", 31: "sS", 32: "dD", 33: "fF",
    34: "gG", 35: "hH", 36: "jJ", 37: "kK", 38: "lL", 39: ";:", 40: "'\"", 41: "`~", 43: "\\|", 44: "zZ",
    45: "xX", 46: "cC", 47: "vV", 48: "bB", 49: "nN", 50: "mM", 51: ",<", 52: ".>", 53: "/?", 57: "  ",
}


def keys_to_text(events: list[InputEvent]) -> str:
    """The text that key presses spell on a US layout, honouring Shift (and Caps Lock LED events)."""
    shift = 0
    caps = False
    text = []
    for ev in events:
        if ev.type == EV_LED and ev.code == LED_CAPSL:
            caps = bool(ev.value)
        if ev.type != EV_KEY:
            continue
        if ev.code in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT):
            shift += 1 if ev.value == 1 else (-1 if ev.value == 0 else 0)
            continue
        if ev.value != 1 or ev.code not in _ROWS:
            continue
        plain, shifted = _ROWS[ev.code][0], _ROWS[ev.code][1]
        upper = shift > 0
        if plain.isalpha() and caps:
            upper = not upper
        text.append(shifted if upper else plain)
    return "".join(text)
