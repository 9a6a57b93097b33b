"""``vusb host``: be the host a device waits for, without a kernel.

It imports a device over USB/IP, enumerates and configures it the way Linux does
(device descriptor, configurations, strings, SET_CONFIGURATION; for HID interfaces
SET_IDLE and the report descriptor, as usbhid asks), then reads every interrupt IN
endpoint and prints what the device sends, decoded where the report format is known
(boot keyboard: the keys and the text they type; boot mouse: buttons and motion)::

    $ vusb host 127.0.0.1 1-1 --seconds 5
    vusb host: configured 1-1 on 127.0.0.1:3240 (1209:0001 Virtual Keyboard, full speed)
    ...
      +0.104 s  ep 0x81  02 00 0b 00 00 00 00 00  keyboard: Shift+H -> 'H'

Reading ends after ``seconds`` or ``count`` reports, whichever comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vusb.client import RemoteDevice
from vusb.constants import TransferType
from vusb.descriptors import HidDescriptor, InterfaceDescriptor
from vusb.errors import TransferError
from vusb.hid_usages import US_LAYOUT
from vusb.lsusb import SPEED_WORDS, class_names
from vusb.urb import SetupPacket

HID_SET_IDLE = 0x0A
MODIFIER_NAMES = ("Ctrl", "Shift", "Alt", "GUI", "RightCtrl", "RightShift", "RightAlt", "RightGUI")
MOUSE_BUTTONS = ("left", "right", "middle", "back", "forward")


def _keyboard_table() -> dict[tuple[int, bool], str]:
    """(usage, shift) -> the character a US layout types (the inverse of the keyboard device's table)."""
    return {(int(key), shift): ch for ch, (key, shift) in US_LAYOUT.items()}


@dataclass
class KeyboardDecoder:
    """Boot keyboard reports (modifiers, reserved, 6 key codes) -> the keys newly pressed and their text."""

    table: dict[tuple[int, bool], str] = field(default_factory=_keyboard_table)
    held: set[int] = field(default_factory=set)
    text: str = ""

    def __call__(self, report: bytes) -> str:
        if len(report) < 3:
            return "keyboard: short report"
        modifiers = report[0]
        keys = [k for k in report[2:8] if k > 1]  # 1: too many keys down (phantom state)
        pressed = [k for k in keys if k not in self.held]
        self.held = set(keys)
        shift = bool(modifiers & 0x22)
        mods = "+".join(n for bit, n in enumerate(MODIFIER_NAMES) if modifiers & (1 << bit))
        if not keys:
            return f"keyboard: {mods + ' held, ' if mods else ''}all keys up"
        parts = []
        for key in pressed:
            ch = self.table.get((key, shift))
            if ch is not None and not modifiers & 0xDD:  # only shift: a character typed
                self.text += ch
                parts.append(f"{mods + '+' if mods else ''}{_key_label(key, ch)} -> {ch!r}")
            else:
                parts.append(f"{mods + '+' if mods else ''}key 0x{key:02x}")
        return "keyboard: " + (", ".join(parts) if parts else "keys held")


def _key_label(key: int, ch: str) -> str:
    return ch.upper() if ch.isalpha() else {" ": "Space", "\n": "Enter", "\t": "Tab", "\b": "Backspace",
                                            "\x1b": "Escape"}.get(ch, ch)


def decode_mouse(report: bytes) -> str:
    """A boot mouse report: buttons, signed x and y motion, and the wheel when present."""
    if len(report) < 3:
        return "mouse: short report"
    buttons = [n for bit, n in enumerate(MOUSE_BUTTONS) if report[0] & (1 << bit)]
    dx, dy = (int.from_bytes(report[i:i + 1], "little", signed=True) for i in (1, 2))
    wheel = int.from_bytes(report[3:4], "little", signed=True) if len(report) > 3 else 0
    return (f"mouse: buttons {'+'.join(buttons) or 'none'}, x {dx:+d}, y {dy:+d}"
            + (f", wheel {wheel:+d}" if wheel else ""))


@dataclass
class Reader:
    """One interrupt IN endpoint being read, with the decoder for what it sends."""

    address: int
    size: int
    decode: Callable[[bytes], str] | None


async def configure_like_linux(dev: RemoteDevice, out: Callable[[str], None]) -> list[Reader]:
    """Enumerate and configure as Linux does; returns the interrupt IN endpoints to read."""
    info = await dev.enumerate(configure=False)
    d = info.device
    product = info.strings.get(d.product_index, "")
    out(f"  device descriptor: {d.vendor_id:04x}:{d.product_id:04x} {product}, "
        f"{d.num_configurations} configuration(s), {len(info.strings)} string(s) read")
    if not info.configurations:
        out("  the device has no configuration: nothing to configure")
        return []
    config = info.configurations[0]
    await dev.set_configuration(config.value)
    out(f"  SET_CONFIGURATION {config.value}: {len(config.interfaces)} interface setting(s)")
    readers: list[Reader] = []
    for itf in config.interfaces:
        if itf.alternate != 0:
            continue
        out(f"  interface {itf.number}: {class_names(itf.interface_class, itf.interface_subclass, itf.interface_protocol)}"
            + await _hid_setup(dev, itf))
        decode: Callable[[bytes], str] | None = None
        if (itf.interface_class, itf.interface_subclass) == (3, 1):
            decode = KeyboardDecoder() if itf.interface_protocol == 1 else decode_mouse if itf.interface_protocol == 2 else None
        for ep in itf.endpoints:
            if ep.is_in and ep.transfer_type == TransferType.INTERRUPT:
                readers.append(Reader(ep.address, ep.max_packet_size & 0x7FF, decode))
    return readers


async def _hid_setup(dev: RemoteDevice, itf: InterfaceDescriptor) -> str:
    """What usbhid asks a HID interface when it binds: SET_IDLE 0, then the report descriptor."""
    if itf.interface_class != 3:
        return ""
    notes = []
    try:
        await dev.control(SetupPacket(0x21, HID_SET_IDLE, 0, itf.number, 0))
        notes.append("SET_IDLE 0")
    except TransferError:
        notes.append("SET_IDLE stalled (allowed)")
    hid = next((x for x in itf.extra if isinstance(x, HidDescriptor)), None)
    if hid is not None:
        setup = SetupPacket(0x81, 0x06, 0x2200, itf.number, hid.report_length)
        try:
            report = await dev.control(setup)
            notes.append(f"report descriptor {len(report)} bytes")
        except TransferError as exc:
            notes.append(f"report descriptor failed: {exc}")
    return f" ({', '.join(notes)})"


async def run_host(host: str, busid: str, port: int, *, seconds: float, count: int | None,
                   out: Callable[[str], None] = print) -> int:
    """Import, configure and read ``busid``; returns the number of reports received."""
    async with await RemoteDevice.open(host, busid, port) as dev:
        speed = SPEED_WORDS.get(dev.speed, str(dev.speed))
        out(f"vusb host: imported {busid} from {host}:{port} ({speed} speed); enumerating as Linux does")
        readers = await configure_like_linux(dev, out)
        if not readers:
            out("no interrupt IN endpoint to read; the device is configured")
            return 0
        bound = f"{seconds:g} s" + (f" or {count} report(s)" if count is not None else "")
        out(f"reading {', '.join(f'0x{r.address:02x}' for r in readers)} for {bound} (Ctrl-C stops)")
        received = 0
        start = time.monotonic()
        deadline = start + seconds
        done = asyncio.Event()

        async def read(reader: Reader) -> None:
            nonlocal received
            while not done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    data = await dev.transfer_in(reader.address, reader.size, timeout=left)
                except TimeoutError:
                    break
                received += 1
                text = reader.decode(data) if reader.decode is not None else ""
                out(f"  +{time.monotonic() - start:6.3f} s  ep 0x{reader.address:02x}  {data.hex(' ')}  {text}".rstrip())
                if count is not None and received >= count:
                    done.set()

        try:
            await asyncio.gather(*(read(r) for r in readers))
        finally:  # also on Ctrl-C: what was received so far
            out(f"{received} report(s) in {time.monotonic() - start:.1f} s")
            for reader in readers:
                if isinstance(reader.decode, KeyboardDecoder) and reader.decode.text:
                    out(f"typed: {reader.decode.text!r}")
        return received
