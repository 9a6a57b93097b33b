"""Keyboard and mouse attached to a real Linux kernel: what its drivers see.

Each test serves devices from this process on a free loopback port; the guest
(booted once per session) attaches them with the real ``usbip attach``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vusb.devices import Button, Keyboard, Led, Mouse

from vusb.harness import Guest
from vusb.harness.events import (
    BTN_LEFT,
    BTN_RIGHT,
    EV_KEY,
    EV_LED,
    EV_REL,
    EV_SYN,
    LED_CAPSL,
    REL_WHEEL,
    REL_X,
    REL_Y,
    encode_event,
    keys_to_text,
    read_input_events,
)
from vusb.profile import load_device
from vusb.server import Server

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server([], port=0) as srv:
        yield srv


async def attach(guest: Guest, server: Server, busid: str) -> int:
    return await guest.attach(guest.host_address, server.port, busid)


async def sysfs_attr(guest: Guest, devdir: str, name: str) -> str:
    return (await guest.run(f"cat {devdir}/{name}", check=True)).stdout.strip()


async def test_profiles_enumerate_with_their_ids_and_strings_and_bind_hid_generic(
    any_guest: Guest, server: Server
) -> None:
    keyboard = load_device(ROOT / "profiles" / "keyboard.yaml")
    mouse = load_device(ROOT / "profiles" / "mouse.yaml")
    server.add(keyboard)
    server.add(mouse)
    ports = [await attach(any_guest, server, "1-1"), await attach(any_guest, server, "1-2")]
    try:
        for dev, product, serial in [(keyboard, "Virtual Keyboard", "VKB0001"), (mouse, "Virtual Mouse", "VMS0001")]:
            d = dev.descriptor
            devdir = await any_guest.wait_for_usb_device(d.vendor_id, d.product_id, timeout=30)
            assert await sysfs_attr(any_guest, devdir, "product") == product
            assert await sysfs_attr(any_guest, devdir, "manufacturer") == "vusb"
            assert await sysfs_attr(any_guest, devdir, "serial") == serial
            assert await sysfs_attr(any_guest, devdir, "speed") == "12"
            await any_guest.wait_for(f"ls -d {devdir}:1.0/*:1209:{d.product_id:04X}.* >/dev/null 2>&1", timeout=30)
            driver = (await any_guest.run(
                f"basename $(readlink {devdir}:1.0/*:1209:{d.product_id:04X}.*/driver)", check=True)).stdout.strip()
            assert driver == "hid-generic"
            assert (await sysfs_attr(any_guest, f"{devdir}:1.0", "bInterfaceProtocol")) == ("01" if dev is keyboard else "02")
        dmesg = await any_guest.dmesg()
        assert "vusb Virtual Keyboard" in dmesg
    finally:
        for port in ports:
            await any_guest.detach(port)


async def test_typed_text_arrives_as_key_events_and_caps_lock_reaches_the_leds(clean_guest: Guest, server: Server) -> None:
    keyboard = Keyboard()
    server.add(keyboard)
    await attach(clean_guest, server, "1-1")
    node = await clean_guest.wait_for_input_device("vusb Virtual Keyboard", timeout=30)
    text = "Hello, World! 1+1=2 ~user/path_[ok]?\n"
    events = await read_input_events(clean_guest, node, keyboard.type(text, timeout=30))
    assert keys_to_text(events) == text  # type: ignore[arg-type]
    assert all(e.type in (EV_KEY, EV_SYN, 4) for e in events)  # type: ignore[attr-defined]
    # Caps Lock set from the guest: an EV_LED written to the event device becomes SET_REPORT(output).
    await clean_guest.write_file("/tmp/capslock.bin", encode_event(EV_LED, LED_CAPSL, 1) + encode_event(EV_SYN, 0, 0))
    await clean_guest.run(f"cat /tmp/capslock.bin > {node}", check=True)
    assert await keyboard.wait_leds(Led.CAPS_LOCK, timeout=10) == Led.CAPS_LOCK
    await clean_guest.write_file("/tmp/capsoff.bin", encode_event(EV_LED, LED_CAPSL, 0) + encode_event(EV_SYN, 0, 0))
    await clean_guest.run(f"cat /tmp/capsoff.bin > {node}", check=True)
    assert await keyboard.wait_leds(Led.NONE, timeout=10) == Led.NONE


async def test_mouse_motion_buttons_and_wheel(clean_guest: Guest, server: Server) -> None:
    mouse = Mouse()
    server.add(mouse)
    await attach(clean_guest, server, "1-1")
    node = await clean_guest.wait_for_input_device("vusb Virtual Mouse", timeout=30)

    async def act() -> None:
        await mouse.move(15, -7, timeout=10)
        await mouse.click(Button.LEFT, timeout=10)
        await mouse.press(Button.RIGHT, timeout=10)
        await mouse.release(Button.RIGHT, timeout=10)
        await mouse.scroll(-2, timeout=10)

    events = await read_input_events(clean_guest, node, act())
    rel = [(e.code, e.value) for e in events if e.type == EV_REL]  # type: ignore[attr-defined]
    keys = [(e.code, e.value) for e in events if e.type == EV_KEY]  # type: ignore[attr-defined]
    assert (REL_X, 15) in rel and (REL_Y, -7) in rel
    assert (REL_WHEEL, -2) in rel
    assert keys == [(BTN_LEFT, 1), (BTN_LEFT, 0), (BTN_RIGHT, 1), (BTN_RIGHT, 0)]


async def test_detach_reattach_and_two_devices_at_once(clean_guest: Guest, server: Server) -> None:
    keyboard, mouse = Keyboard(), Mouse()
    server.add(keyboard)
    server.add(mouse)
    kb_port = await attach(clean_guest, server, "1-1")
    await attach(clean_guest, server, "1-2")
    await clean_guest.wait_for_input_device("vusb Virtual Keyboard", timeout=30)
    await clean_guest.wait_for_input_device("vusb Virtual Mouse", timeout=30)
    assert len(await clean_guest.ports()) == 2
    await clean_guest.detach(kb_port)
    await clean_guest.wait_for("! grep -q 'vusb Virtual Keyboard' /proc/bus/input/devices", timeout=30)
    for _ in range(50):
        if not keyboard.attached:
            break
        await asyncio.sleep(0.1)
    assert not keyboard.attached and keyboard.configuration_value == 0
    await attach(clean_guest, server, "1-1")
    node = await clean_guest.wait_for_input_device("vusb Virtual Keyboard", timeout=30)
    events = await read_input_events(clean_guest, node, keyboard.type("again", timeout=30))
    assert keys_to_text(events) == "again"  # type: ignore[arg-type]


async def test_device_removed_on_the_server_disappears_without_kernel_errors(clean_guest: Guest, server: Server) -> None:
    mouse = Mouse()
    server.add(mouse)
    await attach(clean_guest, server, "1-1")
    await clean_guest.wait_for_input_device("vusb Virtual Mouse", timeout=30)
    before = await clean_guest.dmesg_mark()
    server.remove(mouse)
    await clean_guest.wait_for("! grep -q 'vusb Virtual Mouse' /proc/bus/input/devices", timeout=30)
    await clean_guest.wait_for("[ -z \"$(usbip port 2>/dev/null | grep '^Port')\" ]", timeout=30)
    new = (await clean_guest.dmesg_since(before)).splitlines()
    assert not [line for line in new if "BUG" in line or "Oops" in line or "WARNING" in line or "Call Trace" in line], new


async def test_usbip_list_from_the_guest_shows_exactly_the_served_devices(clean_guest: Guest, server: Server) -> None:
    server.add(load_device(ROOT / "profiles" / "keyboard.yaml"))
    server.add(load_device(ROOT / "profiles" / "mouse.yaml"))
    result = await clean_guest.run(f"usbip --tcp-port {server.port} list -r {clean_guest.host_address}", check=True)
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith(("1-1", "1-2", "1-3"))]
    assert len(lines) == 2, result.stdout
    assert lines[0].startswith("1-1:") and "1209:0001" in lines[0]
    assert lines[1].startswith("1-2:") and "1209:0002" in lines[1]
