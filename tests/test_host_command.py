"""`vusb host`: configure a device as Linux does and show what it sends, without a kernel."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from serve_subprocess import ServeProcesses
from vusb.devices import Button, Keyboard, Mouse

from vusb import Server
from vusb.hostcmd import KeyboardDecoder, decode_mouse, run_host

ROOT = Path(__file__).resolve().parent.parent


async def test_host_configures_a_keyboard_and_decodes_what_it_types() -> None:
    keyboard = Keyboard()
    lines: list[str] = []
    async with Server([keyboard], port=0) as server:
        async def user() -> None:
            await keyboard.wait_configured()  # what the quickstart example waits for
            await keyboard.type("Hello, World!\n")

        typing = asyncio.create_task(user())
        received = await run_host("127.0.0.1", "1-1", server.port, seconds=10, count=28, out=lines.append)
        await asyncio.wait_for(typing, 5)
    text = "\n".join(lines)
    assert "SET_CONFIGURATION 1" in text
    assert "interface 0: Human Interface Device / Boot Interface Subclass / Keyboard (SET_IDLE 0, " \
           "report descriptor 63 bytes)" in text
    assert "keyboard: Shift+H -> 'H'" in text and "keyboard: Enter -> '\\n'" in text
    assert received == 28 and lines[-1] == "typed: 'Hello, World!\\n'"


async def test_host_decodes_mouse_reports() -> None:
    mouse = Mouse()
    lines: list[str] = []
    async with Server([mouse], port=0) as server:
        async def user() -> None:
            await mouse.wait_configured()
            await mouse.move(40, -10)
            await mouse.click(Button.LEFT)

        moving = asyncio.create_task(user())
        await run_host("127.0.0.1", "1-1", server.port, seconds=10, count=3, out=lines.append)
        await asyncio.wait_for(moving, 5)
    reports = [line.split("  ")[-1] for line in lines if "mouse:" in line]
    assert reports == ["mouse: buttons none, x +40, y -10", "mouse: buttons left, x +0, y +0",
                       "mouse: buttons none, x +0, y +0"]


async def test_host_stops_after_the_seconds_given_when_nothing_comes() -> None:
    lines: list[str] = []
    async with Server([Keyboard()], port=0) as server:
        received = await run_host("127.0.0.1", "1-1", server.port, seconds=0.5, count=None, out=lines.append)
    assert received == 0 and lines[-1].startswith("0 report(s) in 0.")


KEYBOARD_REPORTS = [
    ("a key", "00 00 04 00 00 00 00 00", "keyboard: A -> 'a'"),
    ("shifted", "02 00 1e 00 00 00 00 00", "keyboard: Shift+! -> '!'"),
    ("held, nothing new", "02 00 1e 00 00 00 00 00", "keyboard: keys held"),
    ("release", "00 00 00 00 00 00 00 00", "keyboard: all keys up"),
    ("a shortcut is not text", "01 00 06 00 00 00 00 00", "keyboard: Ctrl+key 0x06"),
]


def test_keyboard_reports_are_decoded_in_sequence() -> None:
    decode = KeyboardDecoder()
    assert [decode(bytes.fromhex(r)) for _, r, _ in KEYBOARD_REPORTS] == [e for _, _, e in KEYBOARD_REPORTS]
    assert decode.text == "a!"


@pytest.mark.parametrize(("report", "text"), [("01 05 fb", "mouse: buttons left, x +5, y -5"),
                                              ("06 00 00 ff", "mouse: buttons right+middle, x +0, y +0, wheel -1")])
def test_mouse_reports(report: str, text: str) -> None:
    assert decode_mouse(bytes.fromhex(report)) == text


def test_host_command_line_against_nothing_says_so() -> None:
    result = subprocess.run([sys.executable, "-m", "vusb", "host", "127.0.0.1", "1-1", "--port", "1"],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 2
    assert "nothing answers on 127.0.0.1:1 — is `vusb serve` running there?" in result.stderr


async def test_host_configures_a_device_without_interrupt_endpoints_and_says_so() -> None:
    from vusb.devices.gadget_zero import GadgetZero

    device = GadgetZero()
    lines: list[str] = []
    async with Server([device], port=0) as server:
        received = await run_host("127.0.0.1", "1-1", server.port, seconds=1, count=None, out=lines.append)
    assert received == 0 and any(line.startswith("  SET_CONFIGURATION ") for line in lines)
    assert lines[-1] == "no interrupt IN endpoint to read; the device is configured"


def test_ctrl_c_stops_vusb_host_with_a_summary_and_no_traceback(serve_processes: ServeProcesses) -> None:
    server = serve_processes.start("profiles/keyboard.yaml", "--port", "0", "--no-control")
    host = subprocess.Popen([sys.executable, "-m", "vusb", "host", "127.0.0.1", "1-1", "--port", str(server.port),
                             "--seconds", "60"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert host.stdout is not None
    while "reading 0x81" not in host.stdout.readline():  # configured, now waiting for reports
        pass
    host.send_signal(signal.SIGINT)
    out, err = host.communicate(timeout=15)
    assert host.returncode == 130 and "Traceback" not in err, err
    assert out.splitlines()[-1].startswith("0 report(s) in ")
