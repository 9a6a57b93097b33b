"""The local control channel (vusb/control.py): JSON lines on a Unix socket, and `vusb ctl`."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from serve_subprocess import ServeProcesses
from vusb.devices import Keyboard, KeyboardFunction, MassStorage, Mouse, MouseFunction, SerialPort

from vusb.client import RemoteDevice
from vusb.control import ControlError, ControlServer, build_request, fault_from_fields, parse_keys, unescape
from vusb.device import Device
from vusb.errors import ConnectionClosed, NoSuchDevice, UsageError
from vusb.server import Server

ROOT = Path(__file__).resolve().parent.parent
KBD, MOUSE, DISK, SERIAL, COMBO = "1-1", "1-2", "1-3", "1-4", "1-5"


class Ctl:
    """An async client of the control socket, one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.next_id = 0

    async def raw(self, line: bytes) -> dict[str, Any]:
        self.writer.write(line)
        await self.writer.drain()
        reply = json.loads(await asyncio.wait_for(self.reader.readline(), 10))
        assert isinstance(reply, dict)
        return reply

    async def __call__(self, cmd: str, **fields: Any) -> dict[str, Any]:
        self.next_id += 1
        reply = await self.raw(json.dumps({"id": self.next_id, "cmd": cmd, **fields}).encode() + b"\n")
        assert reply["id"] == self.next_id
        return reply

    async def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        reply = await self(cmd, **fields)
        assert reply["ok"] is True, reply
        return reply


@dataclass
class Rig:
    server: Server
    control: ControlServer
    ctl: Ctl
    keyboard: Keyboard
    mouse: Mouse
    disk: MassStorage
    serial: SerialPort

    async def remote(self, busid: str) -> RemoteDevice:
        dev = await RemoteDevice.open("127.0.0.1", busid, self.server.port)
        await dev.enumerate()
        return dev


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    keyboard, mouse, serial = Keyboard(), Mouse(), SerialPort(backend=None)
    disk = MassStorage(memory=True, size="1MiB")
    combo = Device(KeyboardFunction(), MouseFunction(), vendor_id=0x1209, product_id=0x0009, product="Combo")
    server = Server([keyboard, mouse, disk, serial, combo], port=0)
    await server.start()
    control = ControlServer(server, tmp_path / "ctl" / "vusb.sock")
    await control.start()
    reader, writer = await asyncio.open_unix_connection(str(control.path))
    try:
        yield Rig(server, control, Ctl(reader, writer), keyboard, mouse, disk, serial)
    finally:
        writer.close()
        await control.close()
        await server.close()
        for device in (keyboard, mouse, disk, serial, combo):
            await device.aclose()


# ---------------------------------------------------------------- listing and permissions
async def test_list_names_every_device_and_its_functions(rig: Rig) -> None:
    devices = {d["busid"]: d for d in (await rig.ctl.ok("list"))["devices"]}
    assert list(devices) == [KBD, MOUSE, DISK, SERIAL, COMBO]
    assert devices[KBD]["product"] == "Virtual Keyboard" and devices[KBD]["vendor_id"] == "1209"
    assert [f["kind"] for f in devices[COMBO]["functions"]] == ["keyboard", "mouse"]
    assert devices[DISK]["functions"][0]["luns"][0]["present"] is True
    assert devices[SERIAL]["functions"][0]["kind"] == "serial"
    assert not any(d["attached"] for d in devices.values())
    async with await rig.remote(MOUSE):
        devices = {d["busid"]: d for d in (await rig.ctl.ok("list"))["devices"]}
        assert devices[MOUSE]["attached"] is True and devices[MOUSE]["configured"] is True


async def test_socket_is_0600_in_a_0700_folder_and_removed_on_close(rig: Rig) -> None:
    assert stat.S_IMODE(os.stat(rig.control.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(rig.control.path.parent).st_mode) == 0o700
    await rig.control.close()
    assert not rig.control.path.exists()


@pytest.mark.parametrize(("mode", "error"), [(0o755, "mode 0755"), (0o770, "mode 0770"), (0o701, "mode 0701")])
async def test_folder_open_to_others_is_refused(tmp_path: Path, mode: int, error: str) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    async with Server([Keyboard()], port=0) as server:
        with pytest.raises(UsageError, match=error):
            await ControlServer(server, folder / "s.sock").start()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a folder to another user")
async def test_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 12345, 12345)
    async with Server([Keyboard()], port=0) as server:
        with pytest.raises(UsageError, match="belongs to uid 12345"):
            await ControlServer(server, folder / "s.sock").start()


async def test_symlinked_folder_and_non_socket_file_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    (real / "file.sock").write_text("not a socket")
    async with Server([Keyboard()], port=0) as server:
        with pytest.raises(UsageError, match="not a plain directory"):
            await ControlServer(server, tmp_path / "link" / "s.sock").start()
        with pytest.raises(UsageError, match="not a socket"):
            await ControlServer(server, real / "file.sock").start()


async def test_stale_socket_is_replaced_but_a_live_one_is_not(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="in use by another running server"):
        await ControlServer(rig.server, rig.control.path).start()
    stale_path = tmp_path / "ctl" / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(stale_path))
    stale.close()  # the file stays, nobody listens
    second = ControlServer(rig.server, stale_path)
    await second.start()
    await second.close()


async def test_a_peer_with_another_uid_is_refused(rig: Rig) -> None:
    rig.control.uid = os.getuid() + 1  # as if the connecting process belonged to someone else
    reader, writer = await asyncio.open_unix_connection(str(rig.control.path))
    writer.write(b'{"cmd": "list"}\n')
    reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert reply["ok"] is False and "permission denied" in reply["error"]
    try:  # and the connection is closed (reset, as the request it sent was never read)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        pass
    writer.close()


# ---------------------------------------------------------------- keyboard and mouse
KEY_AND_MOUSE_ACTIONS: list[tuple[str, str, dict[str, Any], int, list[bytes]]] = [
    ("type", KBD, {"cmd": "type", "text": "hi"}, 8,
     [bytes([0, 0, 0x0B, 0, 0, 0, 0, 0]), bytes(8), bytes([0, 0, 0x0C, 0, 0, 0, 0, 0]), bytes(8)]),
    ("type shifted", KBD, {"cmd": "type", "text": "A\n"}, 8,
     [bytes([2, 0, 0x04, 0, 0, 0, 0, 0]), bytes(8), bytes([0, 0, 0x28, 0, 0, 0, 0, 0]), bytes(8)]),
    ("tap ctrl+c", KBD, {"cmd": "tap", "keys": ["LEFT_CTRL", "C"]}, 8,
     [bytes([1, 0, 0x06, 0, 0, 0, 0, 0]), bytes(8)]),
    ("press F5", KBD, {"cmd": "press", "keys": "F5"}, 8, [bytes([0, 0, 0x3E, 0, 0, 0, 0, 0])]),
    ("press enter with modifiers field", KBD, {"cmd": "press", "key": "ENTER", "modifiers": ["RIGHT_SHIFT"]}, 8,
     [bytes([0x20, 0, 0x28, 0, 0, 0, 0, 0])]),
    ("move", MOUSE, {"cmd": "move", "dx": 10, "dy": -5}, 4, [bytes([0, 10, 0xFB, 0])]),
    ("click right", MOUSE, {"cmd": "click", "buttons": ["RIGHT"]}, 4, [bytes([2, 0, 0, 0]), bytes(4)]),
    ("click defaults to left", MOUSE, {"cmd": "click"}, 4, [bytes([1, 0, 0, 0]), bytes(4)]),
    ("press-button middle", MOUSE, {"cmd": "press-button", "buttons": "MIDDLE"}, 4, [bytes([4, 0, 0, 0])]),
    ("scroll", MOUSE, {"cmd": "scroll", "amount": -1}, 4, [bytes([0, 0, 0, 0xFF])]),
    ("composite picks its mouse", COMBO, {"cmd": "move", "dx": 1, "dy": 2}, 4, [bytes([0, 1, 2, 0])]),
    ("composite by index", COMBO, {"cmd": "tap", "keys": "A", "function": 0}, 8,
     [bytes([0, 0, 4, 0, 0, 0, 0, 0]), bytes(8)]),
]


@pytest.mark.parametrize(("case", "busid", "request_", "size", "reports"), KEY_AND_MOUSE_ACTIONS,
                         ids=[c[0] for c in KEY_AND_MOUSE_ACTIONS])
async def test_input_actions_reach_the_host(rig: Rig, case: str, busid: str, request_: dict[str, Any], size: int,
                                            reports: list[bytes]) -> None:
    async with await rig.remote(busid) as host:
        cmd = request_.pop("cmd")
        reply = asyncio.create_task(rig.ctl(cmd, busid=busid, timeout=5, **request_))
        ep = 0x81 if busid != COMBO or cmd != "move" else 0x82
        got = [await host.transfer_in(ep, size, timeout=5) for _ in reports]
        assert (await reply)["ok"] is True
        assert got == reports


async def test_typing_times_out_when_the_host_does_not_read(rig: Rig) -> None:
    async with await rig.remote(KBD):
        reply = await rig.ctl("type", busid=KBD, text="x", timeout=0.2)
        assert reply["ok"] is False and "timed out after 0.2 s" in reply["error"]


# ---------------------------------------------------------------- storage
async def test_eject_and_insert_media(rig: Rig, tmp_path: Path) -> None:
    lun = rig.disk.luns[0]
    first = lun.medium
    ejected = await rig.ctl.ok("eject", busid=DISK)
    assert not lun.present and ejected["lun"] == 0
    assert "holds no medium" in (await rig.ctl("eject", busid=DISK))["error"]
    await rig.ctl.ok("insert", busid=DISK)  # no image: the ejected medium goes back
    assert lun.medium is first
    assert "eject it first" in (await rig.ctl("insert", busid=DISK, image="memory:1MiB"))["error"]
    await rig.ctl.ok("eject", busid=DISK, lun=0)
    await rig.ctl.ok("insert", busid=DISK, image="memory:2MiB")
    assert lun.present and lun.block_count == 2 * 1024 * 1024 // 512
    await rig.ctl.ok("eject", busid=DISK)
    image = tmp_path / "card.img"
    image.write_bytes(bytes(64 * 1024))
    await rig.ctl.ok("insert", busid=DISK, image=str(image), read_only=True)
    assert lun.present and lun.write_protected
    assert "no LUN 3" in (await rig.ctl("eject", busid=DISK, lun=3))["error"]
    assert "must be absolute" in (await rig.ctl("insert", busid=DISK, image="rel.img"))["error"]


# ---------------------------------------------------------------- serial
async def test_serial_write_arrives_on_bulk_in(rig: Rig) -> None:
    acm = rig.serial.acm
    async with await rig.remote(SERIAL) as host:
        assert (await rig.ctl.ok("serial-write", busid=SERIAL, data="AT\r"))["written"] == 3
        assert await host.transfer_in(acm.in_address, 64, timeout=5) == b"AT\r"
        await rig.ctl.ok("serial-write", busid=SERIAL, base64=base64.b64encode(b"\x00\xff").decode())
        assert await host.transfer_in(acm.in_address, 64, timeout=5) == b"\x00\xff"
    reply = await rig.ctl("serial-write", busid=SERIAL, base64="@@@")
    assert "not valid base64" in reply["error"]
    assert "exactly one" in (await rig.ctl("serial-write", busid=SERIAL))["error"]


async def test_serial_read_lines_and_bytes_without_losing_any(rig: Rig) -> None:
    acm = rig.serial.acm
    async with await rig.remote(SERIAL) as host:
        await host.transfer_out(acm.out_address, b"hello\nwor", timeout=5)
        line = await rig.ctl.ok("serial-read", busid=SERIAL, line=True, timeout=2)
        assert line["data"] == "hello\n" and base64.b64decode(line["base64"]) == b"hello\n"
        timed_out = await rig.ctl("serial-read", busid=SERIAL, line=True, timeout=0.2)
        assert timed_out["ok"] is False and "no complete line" in timed_out["error"]
        assert (await rig.ctl.ok("serial-read", busid=SERIAL, n=2, timeout=2))["data"] == "wo"
        assert (await rig.ctl.ok("serial-read", busid=SERIAL, timeout=2))["data"] == "r"
        assert "no data" in (await rig.ctl("serial-read", busid=SERIAL, timeout=0.1))["error"]


# ---------------------------------------------------------------- unplug / plug
async def test_unplug_disconnects_the_client_and_plug_exports_again(rig: Rig) -> None:
    host = await rig.remote(MOUSE)
    try:
        reply = await rig.ctl.ok("unplug", busid=MOUSE)
        assert reply["disconnected"] is True
        with pytest.raises(ConnectionClosed):
            await host.transfer_in(0x81, 4, timeout=5)
    finally:
        await host.close()
    listed = {d["busid"]: d for d in (await rig.ctl.ok("list"))["devices"]}
    assert listed[MOUSE]["plugged"] is False
    with pytest.raises(NoSuchDevice):
        await RemoteDevice.open("127.0.0.1", MOUSE, rig.server.port)
    assert "unplugged; plug it back" in (await rig.ctl("move", busid=MOUSE, dx=1))["error"]
    await rig.ctl.ok("plug", busid=MOUSE)
    assert "already plugged" in (await rig.ctl("plug", busid=MOUSE))["error"]
    async with await rig.remote(MOUSE) as again:
        task = asyncio.create_task(rig.ctl("move", busid=MOUSE, dx=3, dy=0, timeout=5))
        assert await again.transfer_in(0x81, 4, timeout=5) == bytes([0, 3, 0, 0])
        assert (await task)["ok"] is True


# ---------------------------------------------------------------- bad requests
BAD_REQUESTS: list[tuple[str, bytes, str]] = [
    ("malformed json", b"{nope\n", "malformed JSON"),
    ("not an object", b"[1, 2]\n", "a request is a JSON object, not list"),
    ("missing cmd", b'{"id": 1}\n', "missing field 'cmd'"),
    ("unknown command", b'{"cmd": "dance"}\n', "unknown command 'dance'"),
    ("unknown busid", b'{"cmd": "type", "busid": "9-9", "text": "x"}\n', "no device '9-9'"),
    ("missing busid", b'{"cmd": "move", "dx": 1}\n', "missing field 'busid'"),
    ("wrong kind", b'{"cmd": "type", "busid": "1-2", "text": "x"}\n', "has no keyboard function"),
    ("wrong kind by index", b'{"cmd": "move", "busid": "1-5", "function": 0}\n', "is a keyboard, not a mouse"),
    ("index out of range", b'{"cmd": "move", "busid": "1-5", "function": 7}\n', "no function 7"),
    ("no host", b'{"cmd": "type", "busid": "1-1", "text": "x"}\n', "no host attached"),
    ("missing text", b'{"cmd": "type", "busid": "1-1"}\n', "missing field 'text'"),
    ("bad key", b'{"cmd": "tap", "busid": "1-1", "keys": "HYPER"}\n', "unknown key 'HYPER'"),
    ("bad button", b'{"cmd": "click", "busid": "1-2", "buttons": "THUMB"}\n', "unknown mouse button 'THUMB'"),
    ("wrong type", b'{"cmd": "move", "busid": "1-2", "dx": "ten"}\n', "field 'dx' must be an integer"),
    ("bad timeout", b'{"cmd": "move", "busid": "1-2", "timeout": -1}\n', "positive number of seconds"),
    ("bad size", b'{"cmd": "insert", "busid": "1-3", "image": "memory:lots"}\n', "lots"),
]


async def test_bad_requests_get_clear_errors_and_the_connection_stays_usable(rig: Rig) -> None:
    for case, line, error in BAD_REQUESTS:
        if case == "bad size":
            await rig.ctl.ok("eject", busid=DISK)
        reply = await rig.ctl.raw(line)
        assert reply["ok"] is False, case
        assert error in reply["error"], (case, reply["error"])
    assert (await rig.ctl.ok("list"))["devices"]


# ---------------------------------------------------------------- names and the command line
@pytest.mark.parametrize(("keys", "expected_keys", "expected_mods"), [
    ("A", ["A"], 0), (["ctrl", "c"], ["C"], 0x01), ("LEFT_CTRL+ALT+DEL", ["DELETE"], 0x05), ("1", ["N1"], 0),
    ("f5 esc", ["F5", "ESCAPE"], 0), (["RIGHT_GUI"], [], 0x80),
])
def test_key_names(keys: Any, expected_keys: list[str], expected_mods: int) -> None:
    got, mods = parse_keys(keys)
    assert [k.name for k in got] == expected_keys and int(mods) == expected_mods


@pytest.mark.parametrize(("text", "expected"), [
    ("hello\\n", "hello\n"), ("AT\\r", "AT\r"), ("a\\tb\\\\c", "a\tb\\c"), ("\\x41\\u00e9", "Aé"), ("plain", "plain"),
])
def test_unescape(text: str, expected: str) -> None:
    assert unescape(text) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["list"], {"cmd": "list"}),
    (["type", "1-1", "hello\\n"], {"cmd": "type", "busid": "1-1", "text": "hello\n"}),
    (["move", "1-2", "10", "-5"], {"cmd": "move", "busid": "1-2", "dx": 10, "dy": -5}),
    (["tap", "1-1", "LEFT_CTRL", "C", "--timeout", "3"], {"cmd": "tap", "busid": "1-1", "keys": ["LEFT_CTRL", "C"],
                                                         "timeout": 3.0}),
    (["eject", "1-3"], {"cmd": "eject", "busid": "1-3", "lun": 0}),
    (["insert", "1-3", "memory:8MiB", "1"], {"cmd": "insert", "busid": "1-3", "image": "memory:8MiB", "lun": 1}),
    (["serial-write", "1-4", "AT\\r"], {"cmd": "serial-write", "busid": "1-4", "data": "AT\r"}),
    (["serial-read", "1-4", "--line"], {"cmd": "serial-read", "busid": "1-4", "line": True}),
    (["move", "1-5", "1", "1", "--function", "1"], {"cmd": "move", "busid": "1-5", "dx": 1, "dy": 1, "function": 1}),
    (["unplug", "1-1"], {"cmd": "unplug", "busid": "1-1"}),
])
def test_ctl_arguments_to_requests(argv: list[str], expected: dict[str, Any]) -> None:
    assert build_request(argv) == (expected, False)


def _vusb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", *args], capture_output=True, text=True, timeout=30, cwd=ROOT)


def test_serve_and_ctl_end_to_end(tmp_path: Path, serve_processes: ServeProcesses) -> None:
    sock = tmp_path / "run" / "ctl.sock"
    server = serve_processes.start("profiles/keyboard.yaml", "profiles/serial.yaml", "--port", "0",
                                   "--control", str(sock))
    assert len(server.banner.lines) == 7 and f"control: {sock}" in server.banner.lines[-1], server.banner.lines
    listing = _vusb("ctl", "--socket", str(sock), "list")
    assert listing.returncode == 0, listing.stderr
    assert "1-1  1209:0001 Virtual Keyboard" in listing.stdout and "0:serial" in listing.stdout
    wrote = _vusb("ctl", "--socket", str(sock), "serial-write", "1-2", "AT\\r")
    assert wrote.returncode == 0 and "written=3" in wrote.stdout, wrote.stderr
    no_host = _vusb("ctl", "--socket", str(sock), "type", "1-1", "hello\\n")
    assert no_host.returncode == 1 and "no host attached" in no_host.stderr
    wrong = _vusb("ctl", "--socket", str(sock), "move", "1-1", "10", "-5")
    assert wrong.returncode == 1 and "has no mouse function" in wrong.stderr
    unplug = _vusb("ctl", "--socket", str(sock), "--json", "unplug", "1-1")
    assert unplug.returncode == 0 and json.loads(unplug.stdout)["ok"] is True
    listed = _vusb("list", "127.0.0.1", "--port", str(server.port))
    assert "1-1:" not in listed.stdout and "1-2:" in listed.stdout
    code = server.stop(signal.SIGINT, timeout=10)
    assert code == 0 and "Traceback" not in server.stderr, server.stderr
    assert "shutting down" in server.after_banner
    assert not sock.exists()
    gone = _vusb("ctl", "--socket", str(sock), "list")
    assert gone.returncode == 2 and "no control socket" in gone.stderr


def test_serve_no_control_opens_no_socket(tmp_path: Path, serve_processes: ServeProcesses) -> None:
    sock = tmp_path / "ctl.sock"
    server = serve_processes.start("profiles/keyboard.yaml", "--port", "0", "--no-control", "--control", str(sock))
    assert len(server.banner.lines) == 4 and "(a QEMU guest" in server.banner.lines[-1], server.banner.lines
    assert server.stop(signal.SIGINT, timeout=10) == 0, server.stderr
    assert "control:" not in server.stdout and not sock.exists()


FAULT_FIELD_ERRORS = [
    ("delay without seconds", {"kind": "delay"}, "fault: field 'fault.seconds': required field 'seconds' is missing"),
    ("scsi-failure without sense key", {"kind": "scsi-failure"},
     "fault: field 'fault.sense_key': required field 'sense_key' is missing"),
    ("corrupt-descriptor without type", {"kind": "corrupt-descriptor", "offset": 0, "data": "01"},
     "fault: field 'fault.type': required field 'type' is missing"),
    ("no kind", {"endpoint": 1}, "fault: field 'fault.kind': required field 'kind' is missing"),
    ("kind not text", {"kind": ["stall"]}, "fault: field 'fault.kind': expected the name of a fault kind; one of: stall,"),
    ("unknown kind", {"kind": "explode"}, "fault: field 'fault.kind': unknown fault kind 'explode'"),
    ("unknown field", {"kind": "drop", "endpont": 1}, "fault: field 'fault.endpont': unknown field 'endpont'"),
    ("seconds not a number", {"kind": "delay", "seconds": "soon"},
     "fault: field 'fault.seconds': expected a number, got 'soon'"),
    ("endpoint out of range", {"kind": "stall", "endpoint": 0x100}, "fault: field 'fault.endpoint': 256 is out of range"),
    ("count not an integer", {"kind": "drop", "count": "many"}, "fault: field 'fault.count': expected an integer"),
    ("halt not a boolean", {"kind": "stall", "halt": "yes please"}, "fault: field 'fault.halt': expected true or false"),
    ("data not hex", {"kind": "corrupt-descriptor", "type": "device", "offset": 0, "data": "zz"},
     "fault: field 'fault.data': expected hexadecimal bytes"),
    ("unknown descriptor type", {"kind": "corrupt-descriptor", "type": "gadget", "offset": 0, "data": "01"},
     "fault: field 'fault.type': unknown descriptor type 'gadget'"),
    ("unknown sense key", {"kind": "scsi-failure", "sense_key": "BROKEN"},
     "fault: field 'fault.sense_key': unknown sense key 'BROKEN'"),
    ("field is a list", {"kind": "drop", "endpoint": [1, 2]}, "fault: field 'fault.endpoint': expected a single value"),
]


@pytest.mark.parametrize(("case", "spec", "message"), FAULT_FIELD_ERRORS, ids=[c[0] for c in FAULT_FIELD_ERRORS])
def test_fault_fields_errors_name_the_field(case: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ControlError) as info:
        fault_from_fields(spec)
    assert str(info.value).startswith(message), str(info.value)


FAULT_FIELD_VALUES = [
    ("descriptor type in hex text", {"kind": "corrupt-descriptor", "type": "0x22", "offset": 0, "data": "01"},
     "type", 0x22),
    ("descriptor type by name", {"kind": "corrupt-descriptor", "type": "configuration", "offset": 0, "data": "01"},
     "type", 2),
    ("descriptor type as a number", {"kind": "corrupt-descriptor", "type": 34, "offset": 0, "data": "01"}, "type", 0x22),
    ("sense key in hex text", {"kind": "scsi-failure", "sense_key": "0x3"}, "sense_key", 3),
    ("sense key by lower-case name", {"kind": "scsi-failure", "sense_key": "medium_error"}, "sense_key", 3),
    ("endpoint in hex text", {"kind": "stall", "endpoint": "0x81"}, "endpoint", 0x81),
    ("small probability", {"kind": "drop", "probability": 1e-05}, "probability", 1e-05),
    ("seconds as an integer", {"kind": "delay", "seconds": 2}, "seconds", 2.0),
]


@pytest.mark.parametrize(("case", "spec", "attribute", "value"), FAULT_FIELD_VALUES,
                         ids=[c[0] for c in FAULT_FIELD_VALUES])
def test_fault_fields_read_as_in_a_profile(case: str, spec: dict[str, Any], attribute: str, value: object) -> None:
    assert getattr(fault_from_fields(spec), attribute) == value


async def test_fault_add_missing_field_is_a_plain_error_reply(tmp_path: Path) -> None:
    disk = MassStorage(memory=True, size=1 << 20)
    async with Server([disk], port=0) as server:
        reply = await ControlServer(server, tmp_path / "ctl.sock").handle(
            {"cmd": "fault-add", "busid": "1-1", "fault": {"kind": "scsi-failure"}})
    disk.close()
    assert reply == {"id": None, "ok": False,
                     "error": "fault: field 'fault.sense_key': required field 'sense_key' is missing"}
