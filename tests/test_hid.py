"""HID devices: the reports a host reads and the class requests it sends (HID 1.11 section 7.2)."""

from __future__ import annotations

import asyncio

import pytest
from vusb.devices import Button, HidDevice, Key, Keyboard, Led, Modifier, Mouse
from vusb.devices.keyboard import BOOT_KEYBOARD_REPORT_DESCRIPTOR, keys_for_text

from vusb.errors import Stall, UsageError
from vusb.testing import LocalHost
from vusb.urb import SetupPacket


async def read_reports(host: LocalHost, ep: int, size: int, n: int) -> list[bytes]:
    return [await host.transfer_in(ep, size) for _ in range(n)]


TYPING = [
    ("lowercase", "a", [(0, Key.A)]),
    ("uppercase uses left shift", "A", [(0x02, Key.A)]),
    ("shifted symbol", "!", [(0x02, Key.N1)]),
    ("newline is Enter", "\n", [(0, Key.ENTER)]),
    ("repeated letters are released in between", "ll", [(0, Key.L), (0, Key.L)]),
    ("punctuation", "Hi, you?", [(2, Key.H), (0, Key.I), (0, Key.COMMA), (0, Key.SPACE), (0, Key.Y), (0, Key.O),
                                 (0, Key.U), (2, Key.SLASH)]),
]


@pytest.mark.parametrize(("case", "text", "strokes"), TYPING, ids=[c[0] for c in TYPING])
async def test_typing_sends_press_and_release_reports(case: str, text: str, strokes: list[tuple[int, Key]]) -> None:
    kb = Keyboard()
    async with LocalHost(kb) as host:
        await host.enumerate()
        typing = asyncio.create_task(kb.type(text))
        reports = await read_reports(host, 0x81, 8, 2 * len(strokes))
        await typing
    expected = []
    for mods, key in strokes:
        expected += [bytes([mods, 0, key, 0, 0, 0, 0, 0]), bytes(8)]
    assert reports == expected


def test_text_with_untypable_characters_is_refused() -> None:
    with pytest.raises(UsageError, match="character 'é' at position 2"):
        keys_for_text("caé")


async def test_press_release_with_modifiers_and_rollover() -> None:
    kb = Keyboard()
    async with LocalHost(kb) as host:
        await host.enumerate()
        task = asyncio.create_task(kb.press(Key.C, modifiers=Modifier.LEFT_CTRL))
        assert await host.transfer_in(0x81, 8) == bytes([1, 0, Key.C, 0, 0, 0, 0, 0])
        await task
        task = asyncio.create_task(kb.press(*[Key.A, Key.B, Key.D, Key.E, Key.F, Key.G]))
        assert await host.transfer_in(0x81, 8) == bytes([1, 0, 1, 1, 1, 1, 1, 1])  # 7 keys: ErrorRollOver
        await task
        task = asyncio.create_task(kb.release_all())
        assert await host.transfer_in(0x81, 8) == bytes(8)
        await task


async def test_leds_set_by_the_host_are_visible() -> None:
    kb = Keyboard()
    async with LocalHost(kb) as host:
        await host.enumerate()
        waiting = asyncio.create_task(kb.wait_leds(Led.CAPS_LOCK | Led.NUM_LOCK, timeout=2))
        await host.control(SetupPacket(0x21, 0x09, 0x0200, 0, 1), bytes([0x03]))  # SET_REPORT(output)
        assert await waiting == Led.CAPS_LOCK | Led.NUM_LOCK
        assert kb.leds & Led.CAPS_LOCK


async def test_caps_lock_on_host_keeps_typed_text_exact() -> None:
    kb = Keyboard()
    async with LocalHost(kb) as host:
        await host.enumerate()
        await host.control(SetupPacket(0x21, 0x09, 0x0200, 0, 1), bytes([0x02]))
        typing = asyncio.create_task(kb.type("aB"))
        reports = await read_reports(host, 0x81, 8, 4)
        await typing
    assert reports[0][0] == 0x02 and reports[2][0] == 0  # shift inverted because Caps Lock is on


CLASS_REQUESTS = [
    ("GET_PROTOCOL defaults to report", SetupPacket(0xA1, 0x03, 0, 0, 1), b"\x01"),
    ("GET_IDLE defaults to 0", SetupPacket(0xA1, 0x02, 0, 0, 1), b"\x00"),
    ("GET_REPORT input before any key", SetupPacket(0xA1, 0x01, 0x0100, 0, 8), bytes(8)),
    ("GET_REPORT feature stalls (none)", SetupPacket(0xA1, 0x01, 0x0300, 0, 8), "stall"),
    ("report descriptor", SetupPacket(0x81, 0x06, 0x2200, 0, 255), BOOT_KEYBOARD_REPORT_DESCRIPTOR),
    ("HID descriptor", SetupPacket(0x81, 0x06, 0x2100, 0, 9), bytes.fromhex("09 21 11 01 00 01 22 3f 00")),
]


@pytest.mark.parametrize(("case", "request_", "expected"), CLASS_REQUESTS, ids=[c[0] for c in CLASS_REQUESTS])
async def test_keyboard_class_requests(case: str, request_: SetupPacket, expected: bytes | str) -> None:
    async with LocalHost(Keyboard()) as host:
        await host.enumerate()
        if expected == "stall":
            with pytest.raises(Stall):
                await host.control(request_)
        else:
            assert await host.control(request_) == expected


async def test_set_idle_and_set_protocol() -> None:
    kb = Keyboard()
    async with LocalHost(kb) as host:
        await host.enumerate()
        await host.control(SetupPacket(0x21, 0x0A, 0x0500, 0, 0))  # SET_IDLE 20 ms
        assert await host.control(SetupPacket(0xA1, 0x02, 0, 0, 1)) == b"\x05"
        # With an idle rate the last report repeats although nothing changed.
        assert await host.transfer_in(0x81, 8, timeout=1) == bytes(8)
        await host.control(SetupPacket(0x21, 0x0B, 0, 0, 0))  # SET_PROTOCOL boot
        assert kb.protocol == 0
        await host.control(SetupPacket(0x21, 0x0A, 0, 0, 0))
        _, fut = host.submit(0x81, 1, 8)
        await asyncio.sleep(0.05)
        assert not fut.done()  # idle 0: the device NAKs until something changes


async def test_mouse_motion_buttons_wheel_and_boot_protocol() -> None:
    mouse = Mouse()
    async with LocalHost(mouse) as host:
        await host.enumerate()
        task = asyncio.create_task(mouse.move(300, -5))  # split into steps of at most 127
        reports = await read_reports(host, 0x81, 4, 3)
        await task
        assert reports == [bytes([0, 127, 0xFB, 0]), bytes([0, 127, 0, 0]), bytes([0, 46, 0, 0])]
        task = asyncio.create_task(mouse.click(Button.RIGHT))
        assert await read_reports(host, 0x81, 4, 2) == [bytes([2, 0, 0, 0]), bytes(4)]
        await task
        task = asyncio.create_task(mouse.scroll(-2))
        assert await host.transfer_in(0x81, 4) == bytes([0, 0, 0, 0xFE])
        await task
        await host.control(SetupPacket(0x21, 0x0B, 0, 0, 0))  # boot protocol: 3-byte reports
        task = asyncio.create_task(mouse.move(1, 1))
        assert await host.transfer_in(0x81, 4) == bytes([0, 1, 1])
        await task


VENDOR_HID = bytes.fromhex(
    "06 00 ff 09 01 a1 01"
    "85 01 09 02 15 00 26 ff 00 75 08 95 03 81 02"  # input report 1: 3 bytes
    "85 02 09 03 95 02 91 02"  # output report 2
    "85 03 09 04 95 04 b1 02"  # feature report 3
    "c0"
)


async def test_generic_hid_with_report_ids_features_and_output_endpoint() -> None:
    dev = HidDevice(VENDOR_HID, input_size=4, out_endpoint=True, features={3: bytes([3, 1, 2, 3, 4])})
    assert dev.hid.uses_report_ids
    async with LocalHost(dev) as host:
        await host.enumerate()
        sending = asyncio.create_task(dev.send(bytes([1, 9, 8, 7])))
        assert await host.transfer_in(0x81, 64) == bytes([1, 9, 8, 7])
        await sending
        assert await host.control(SetupPacket(0xA1, 0x01, 0x0101, 0, 4)) == bytes([1, 9, 8, 7])
        assert await host.control(SetupPacket(0xA1, 0x01, 0x0303, 0, 5)) == bytes([3, 1, 2, 3, 4])
        await host.control(SetupPacket(0x21, 0x09, 0x0303, 0, 5), bytes([3, 5, 5, 5, 5]))
        assert dev.features[3] == bytes([3, 5, 5, 5, 5])
        await host.transfer_out(0x01, bytes([2, 0xAA, 0xBB]))
        assert await dev.read_output(timeout=1) == (2, bytes([2, 0xAA, 0xBB]))
        await host.control(SetupPacket(0x21, 0x09, 0x0202, 0, 3), bytes([2, 1, 1]))
        assert await dev.read_output(timeout=1) == (2, bytes([2, 1, 1]))
        with pytest.raises(Stall):
            await host.control(SetupPacket(0x21, 0x0B, 0, 0, 0))  # SET_PROTOCOL needs a boot device


async def test_pending_send_fails_cleanly_when_host_detaches() -> None:
    kb = Keyboard()
    host = LocalHost(kb)
    host.attach()
    await host.enumerate()
    typing = asyncio.create_task(kb.type("x"))
    await asyncio.sleep(0)
    host.detach()
    with pytest.raises(UsageError, match="detached"):
        await typing


async def test_keyboard_types_given_text_after_each_attach() -> None:
    from vusb.devices import KeyboardFunction

    from vusb.device import Device

    kb = KeyboardFunction(type_on_attach="hi\n", type_delay=0.01)
    dev = Device(kb, vendor_id=0x1209, product_id=0x0001)
    for _ in range(2):
        async with LocalHost(dev) as host:
            await host.enumerate()
            reports = await read_reports(host, 0x81, 8, 6)
            assert [r[2] for r in reports[::2]] == [Key.H, Key.I, Key.ENTER]


def test_untypable_text_on_attach_is_refused_at_definition() -> None:
    from vusb.devices import KeyboardFunction

    with pytest.raises(UsageError, match="cannot be typed"):
        KeyboardFunction(type_on_attach="naïve")
