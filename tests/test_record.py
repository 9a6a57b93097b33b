"""`vusb record`: every capture form gives the same replay profile, and bad captures get clear errors.

The captures are real bytes: vusb's server writes them (usbmon and USB/IP forms) while a
USB/IP client drives a keyboard, and the other forms are made from those exactly as the
tools would write them (usbmon's 48-byte legacy header, pcapng blocks, Ethernet frames
around the IP packets).  A real Linux kernel's attach (tests/data/linux-*-keyboard-attach)
is wrapped into the TCP stream Wireshark records.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vusb.capture_read import CaptureReadError, read_capture
from vusb.cli import main
from vusb.client import RemoteDevice
from vusb.profile import load_device, load_profile
from vusb.record import RecordError, record, record_to
from vusb.replay import ReplayFunction
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
GET_REPORT_DESCRIPTOR = SetupPacket(0x81, 0x06, 0x2200, 0, 255)
SET_IDLE = SetupPacket(0x21, 0x0A, 0, 0, 0)


async def keyboard_session(path: Path, form: str, text: str = "hi") -> list[bytes]:
    """Serve the keyboard profile with a capture while a client enumerates it and reads ``text`` typed."""
    device = load_device(ROOT / "profiles" / "keyboard.yaml")
    reports: list[bytes] = []
    async with Server([device], port=0, capture=str(path), capture_format=form) as server, \
            await RemoteDevice.open("127.0.0.1", "1-1", port=server.port) as host:
        await host.enumerate()
        await host.control(GET_REPORT_DESCRIPTOR)
        await host.control(SET_IDLE)
        typing = asyncio.ensure_future(device.functions[0].type(text, timeout=10))  # type: ignore[attr-defined]
        while not typing.done():
            reports.append(await host.transfer_in(0x81, 8, timeout=10))
            await asyncio.wait({typing}, timeout=0.2)  # the last report delivered: typing ends
        await typing
    return reports


# ------------------------------------------------------------------ the forms, made from vusb's captures

def _records(pcap: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 24
    while pos < len(pcap):
        incl = struct.unpack_from("<I", pcap, pos + 8)[0]
        out.append((pcap[pos:pos + 16], pcap[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    return out


def _pcap(linktype: int, packets: list[tuple[bytes, bytes]]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0x40000, linktype)
    for head, data in packets:
        out += head[:8] + struct.pack("<II", len(data), len(data)) + data
    return out


def to_usb_linux(pcap: bytes) -> bytes:
    """Link type 189: the 48-byte usbmon header (no interval, start frame, flags, descriptor count)."""
    return _pcap(189, [(h, d[:48] + d[64:]) for h, d in _records(pcap)])


def to_pcapng(pcap: bytes) -> bytes:
    linktype = struct.unpack_from("<I", pcap, 20)[0]

    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", linktype, 0, 0x40000))
    for head, data in _records(pcap):
        sec, usec = struct.unpack_from("<II", head, 0)
        ts = sec * 1_000_000 + usec
        out += block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)
    return out


def to_ethernet(pcap: bytes) -> bytes:
    frame = bytes.fromhex("020000000001 020000000002 0800")
    return _pcap(1, [(h, frame + d) for h, d in _records(pcap)])


def tcp_capture_of(client: bytes, server: bytes) -> bytes:
    """A loopback USB/IP connection as Wireshark records it on Ethernet: handshake, then data segments."""
    packets: list[tuple[bytes, bytes]] = []
    seq = {True: 1000, False: 9000}

    def segment(from_client: bool, flags: int, payload: bytes) -> None:
        sport, dport = (50000, 3240) if from_client else (3240, 50000)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq[from_client], seq[not from_client], 5 << 4, flags, 65535,
                          0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0, bytes([127, 0, 0, 1]),
                         bytes([127, 0, 0, 1]))
        packets.append((bytes(16), _eth() + ip + tcp + payload))
        seq[from_client] += len(payload) + (1 if flags & 0x02 else 0)

    segment(True, 0x02, b"")
    segment(False, 0x12, b"")
    # the client's import, then the rest cut in uneven pieces (as TCP delivers it), interleaved with the server's
    pieces_c = [client[:40]] + [client[k:k + 700] for k in range(40, len(client), 700)]
    pieces_s = [server[k:k + 1000] for k in range(0, len(server), 1000)]
    for k in range(max(len(pieces_c), len(pieces_s))):
        if k < len(pieces_c):
            segment(True, 0x18, pieces_c[k])
        if k < len(pieces_s):
            segment(False, 0x18, pieces_s[k])
    return _pcap(1, packets)


def _eth() -> bytes:
    return bytes.fromhex("020000000001020000000002") + b"\x08\x00"


FORMS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "usbmon-220-pcap": ("usbmon", lambda b: b),
    "usbmon-189-pcap": ("usbmon", to_usb_linux),
    "usbmon-220-pcapng": ("usbmon", to_pcapng),
    "usbip-raw-ip": ("usbip", lambda b: b),
    "usbip-ethernet-pcapng": ("usbip", lambda b: to_pcapng(to_ethernet(b))),
}


@pytest.mark.parametrize("form", FORMS)
async def test_every_capture_form_records_a_keyboard_that_replays_the_same(tmp_path: Path, form: str) -> None:
    capture_form, convert = FORMS[form]
    raw = tmp_path / "raw.pcap"
    typed = await keyboard_session(raw, capture_form)
    capture = tmp_path / f"kbd.{form}"
    capture.write_bytes(convert(raw.read_bytes()))
    rec, written = record_to(capture, tmp_path / "kbd.yaml")
    assert [p.name for p in written] == ["kbd.yaml"]  # every payload fits inline
    assert rec.device_class == "hid" and (rec.clone.descriptor.vendor_id, rec.clone.descriptor.product_id) == \
        (0x1209, 0x0001)
    replay = load_device(tmp_path / "kbd.yaml")
    function = replay.functions[0]
    assert isinstance(function, ReplayFunction)
    function.timing = "asap"
    original = load_device(ROOT / "profiles" / "keyboard.yaml")
    async with LocalHost(replay) as host, LocalHost(original) as reference:
        info = await host.enumerate()
        assert info.strings == (await reference.enumerate()).strings
        assert await host.control(GET_REPORT_DESCRIPTOR) == await reference.control(GET_REPORT_DESCRIPTOR)
        await host.control(SET_IDLE)
        got = [await host.transfer_in(0x81, 8, timeout=5) for _ in typed]
    assert got == typed
    assert function.divergences == []


def test_a_real_kernels_usbip_attach_recorded_by_wireshark_is_read(tmp_path: Path) -> None:
    client = (DATA / "linux-6.1-keyboard-attach.client.bin").read_bytes()
    server = (DATA / "linux-6.1-keyboard-attach.server.bin").read_bytes()
    capture = tmp_path / "attach.pcap"
    capture.write_bytes(tcp_capture_of(client, server))
    rec = record(capture)
    assert rec.source == "usbip"
    assert rec.clone.descriptor.vendor_id == 0x1209
    requests = [c.setup[:2] for c in rec.control]
    assert b"\x81\x06" in requests  # usbhid's GET_DESCRIPTOR(REPORT), recorded for the interface
    assert b"\x21\x0a" in requests  # and its SET_IDLE
    load_profile_text = rec.to_yaml()[0]
    (tmp_path / "attach.yaml").write_text(load_profile_text)
    assert load_profile(tmp_path / "attach.yaml").descriptors is not None


# ------------------------------------------------------------------ bad input

def _cut(data: bytes) -> bytes:
    return data[:-10]


def _linktype(value: int) -> Callable[[bytes], bytes]:
    return lambda data: data[:20] + struct.pack("<I", value) + data[24:]


BAD: list[tuple[str, Callable[[bytes], bytes], dict[str, str], str]] = [
    ("truncated", _cut, {}, "kbd.pcap: packet at byte"),
    ("truncated says so", _cut, {}, "a truncated capture"),
    ("another link type", _linktype(105), {}, "kbd.pcap: link type 105 is neither usbmon"),
    ("no such vid:pid", lambda d: d, {"vid_pid": "1234:5678"},
     "kbd.pcap: no device 1234:5678 in the capture; devices that returned a device descriptor (bus.address): "
     "1.1 (1209:0001 'Virtual Keyboard')"),
    ("no such bus.address", lambda d: d, {"device": "2.7"}, "kbd.pcap: no device at bus 2 address 7"),
    ("bad --vid-pid", lambda d: d, {"vid_pid": "keyboard"}, "--vid-pid 'keyboard': expected VVVV:PPPP"),
    ("bad --device", lambda d: d, {"device": "1-1"}, "--device '1-1': expected BUS.ADDR"),
    ("empty", lambda d: d[:24], {}, "kbd.pcap: the capture holds no packets"),
    ("not a capture", lambda d: b"hello world", {}, "kbd.pcap: not a pcap or pcapng file"),
]


@pytest.mark.parametrize(("mangle", "options", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
async def test_bad_captures_and_options_get_an_error_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mangle: Callable[[bytes], bytes], options: dict[str, str],
        expected: str) -> None:
    await keyboard_session(tmp_path / "good.pcap", "usbmon")
    monkeypatch.chdir(tmp_path)
    Path("kbd.pcap").write_bytes(mangle((tmp_path / "good.pcap").read_bytes()))
    with pytest.raises(CaptureReadError) as exc:
        record("kbd.pcap", **options)  # type: ignore[arg-type]
    assert expected in str(exc.value)


async def test_several_devices_are_listed_and_the_options_pick_one(tmp_path: Path) -> None:
    keyboard = load_device(ROOT / "profiles" / "keyboard.yaml")
    mouse = load_device(ROOT / "profiles" / "mouse.yaml")
    capture = tmp_path / "two.pcap"
    async with Server([keyboard, mouse], port=0, capture=str(capture), capture_format="usbmon") as server:
        for busid in ("1-1", "1-2"):
            async with await RemoteDevice.open("127.0.0.1", busid, port=server.port) as host:
                await host.enumerate()
    with pytest.raises(RecordError) as exc:
        record(capture)
    assert "the capture holds 2 devices; choose one with --vid-pid VVVV:PPPP or --device BUS.ADDR: " \
           "1.1 (1209:0001 'Virtual Keyboard'), 1.2 (1209:0002 'Virtual Mouse')" in str(exc.value)
    assert record(capture, vid_pid="1209:0002").clone.descriptor.product_id == 0x0002
    assert record(capture, device="1.1").clone.descriptor.product_id == 0x0001


async def test_urbs_that_never_completed_are_left_out_with_a_warning(tmp_path: Path) -> None:
    typed = await keyboard_session(tmp_path / "kbd.pcap", "usbmon")
    data = (tmp_path / "kbd.pcap").read_bytes()
    records = _records(data)
    last_completion = max(i for i, (_, d) in enumerate(records) if d[8] == ord("C") and d[10] == 0x81)
    (tmp_path / "cut.pcap").write_bytes(_pcap(220, records[:last_completion]))
    rec = record(tmp_path / "cut.pcap")
    assert any("1 URB(s) never completed in the capture (endpoint(s) 0x81); recorded up to them" in w
               for w in rec.warnings)
    assert [t.data for t in rec.transfers] == typed[:-1]


async def test_the_command_writes_the_profile_and_its_data_file_and_reports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await keyboard_session(tmp_path / "kbd.pcap", "usbmon")
    assert main(["record", str(tmp_path / "kbd.pcap"), "-o", str(tmp_path / "kbd.yaml")]) == 0
    err = capsys.readouterr().err
    assert f"vusb: wrote {tmp_path / 'kbd.yaml'} (1209:0001 at bus 1 address 1, class hid:" in err
    assert main(["check", str(tmp_path / "kbd.yaml")]) == 0
    assert main(["record", str(tmp_path / "kbd.pcap"), "-o", str(tmp_path / "x.yaml"), "--vid-pid", "1:2"]) == 2
    assert "no device 0001:0002 in the capture" in capsys.readouterr().err


def test_reading_a_capture_reports_the_transfers_per_device(tmp_path: Path) -> None:
    client = (DATA / "linux-6.1-keyboard-attach.client.bin").read_bytes()
    server = (DATA / "linux-6.1-keyboard-attach.server.bin").read_bytes()
    (tmp_path / "a.pcap").write_bytes(tcp_capture_of(client, server))
    reading = read_capture(tmp_path / "a.pcap")
    assert len(reading.transfers) == 1
    transfers = next(iter(reading.transfers.values()))
    assert transfers[0].setup is not None and transfers[0].setup[:2] == b"\x80\x06"


RECORDINGS = DATA / "recordings"
SPEEDS = {"1.5": "LOW", "12": "FULL", "480": "HIGH", "5000": "SUPER"}
MANIFEST = json.loads((RECORDINGS / "recordings.json").read_text())["devices"]


@pytest.mark.parametrize("recorded", MANIFEST, ids=[d["name"] for d in MANIFEST])
def test_qemus_devices_record_at_the_speed_the_guest_saw_without_being_told(recorded: dict[str, Any]) -> None:
    rec = record(RECORDINGS / f"{recorded['name']}.pcap")
    assert rec.clone.speed is not None and rec.clone.speed.name == SPEEDS[recorded["speed"]], rec.clone.speed_note
    desc = rec.clone.descriptor
    assert (f"{desc.vendor_id:04x}", f"{desc.product_id:04x}") == (recorded["vendor_id"], recorded["product_id"])
