"""Cloning real devices (vusb clone) and raw-descriptor profiles.

Every source kind (lsusb text, sysfs folder or file, usbmon pcap and pcapng) is
cloned from a known device, the profile is loaded and served, and what a host reads
back must be byte-identical to the source descriptors.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vusb.devices.mouse import BOOT_MOUSE_REPORT_DESCRIPTOR

from vusb.clone import CloneError, clone, from_lsusb, from_pcap, from_sysfs
from vusb.constants import DescriptorType
from vusb.device import Device
from vusb.errors import ProfileError
from vusb.host import DeviceInfo
from vusb.lsusb import format_device
from vusb.profile import load_device, parse_profile
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "clone"
SPEED_FILE = {1: "1.5", 2: "12", 3: "480", 5: "5000"}

# Bytes of the MX310 listing in tests/data/clone/logitech-mx310.lsusb.txt (its source URL is there).
MX310_DEVICE = bytes.fromhex("12 01 00 02 00 00 00 08 6d 04 1b c0 00 18 01 02 00 01")
MX310_CONFIG = bytes.fromhex("09 02 22 00 01 01 00 a0 31 09 04 00 00 01 03 01 02 00"
                             "09 21 10 01 00 01 22 34 00 07 05 81 03 05 00 0a")


async def enumerate_device(device: Device) -> DeviceInfo:
    async with LocalHost(device) as host:
        return await host.enumerate()


# ------------------------------------------------------------------ writers for the sources


def usbmon_packet(urb_id: int, kind: str, devnum: int, setup: bytes, data: bytes, mmapped: bool,
                  order: str = "<") -> bytes:
    """One usbmon record: the 48-byte header (64 for the mmapped variant), then the data."""
    head = struct.pack(order + "QBBBBHbbqiiII8s", urb_id, ord(kind), 2, 0x80 if kind == "C" else 0, devnum, 1,
                       0 if kind == "S" else ord("-"), 0 if data else ord("<"), 1700000000, 0, 0,
                       len(data) if kind == "C" else setup[6] | setup[7] << 8, len(data), setup)
    if mmapped:
        head += struct.pack(order + "iiII", 0, 0, 0, 0)
    return head + data


def usbmon_exchanges(info: DeviceInfo, devnum: int) -> list[tuple[bytes, bytes, int]]:
    """(setup, reply, device number) as Linux reads descriptors, with the short first reads."""
    def get(dtype: int, index: int, length: int, lang: int = 0) -> bytes:
        return struct.pack("<BBBBHH", 0x80, 6, index, dtype, lang, length)

    out = [(get(1, 0, 64), info.device_bytes[:8], 0), (get(1, 0, 18), info.device_bytes, devnum)]
    if info.bos_bytes is not None:
        out += [(get(15, 0, 5), info.bos_bytes[:5], devnum), (get(15, 0, len(info.bos_bytes)), info.bos_bytes, devnum)]
    for i, raw in enumerate(info.configuration_bytes):
        out += [(get(2, i, 9), raw[:9], devnum), (get(2, i, len(raw)), raw, devnum)]
    langs = b"".join(lang.to_bytes(2, "little") for lang in info.languages)
    out.append((get(3, 0, 255), bytes((2 + len(langs), 3)) + langs, devnum))
    for index, text in info.strings.items():
        body = text.encode("utf-16-le")
        out.append((get(3, index, 255, info.languages[0]), bytes((2 + len(body), 3)) + body, devnum))
    return out


def write_pcap(path: Path, info: DeviceInfo, mmapped: bool, devnum: int = 5, order: str = "<") -> Path:
    """A pcap file (written in byte order ``order``, the usbmon headers too, as libpcap does)."""
    linktype = 220 if mmapped else 189
    out = bytearray(struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
    for n, (setup, reply, dev) in enumerate(usbmon_exchanges(info, devnum)):
        for pkt in (usbmon_packet(0x1000 + n, "S", dev, setup, b"", mmapped, order),
                    usbmon_packet(0x1000 + n, "C", dev, setup, reply, mmapped, order)):
            out += struct.pack(order + "IIII", 1700000000, n, len(pkt), len(pkt)) + pkt
    path.write_bytes(bytes(out))
    return path


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def write_pcapng(path: Path, info: DeviceInfo, mmapped: bool, devnum: int = 7) -> Path:
    out = bytearray(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
    out += _block(1, struct.pack("<HHI", 220 if mmapped else 189, 0, 65535))
    for n, (setup, reply, dev) in enumerate(usbmon_exchanges(info, devnum)):
        for pkt in (usbmon_packet(0x2000 + n, "S", dev, setup, b"", mmapped),
                    usbmon_packet(0x2000 + n, "C", dev, setup, reply, mmapped)):
            out += _block(6, struct.pack("<IIIII", 0, 0, n, len(pkt), len(pkt)) + pkt)
    path.write_bytes(bytes(out))
    return path


def write_sysfs(folder: Path, info: DeviceInfo) -> Path:
    folder.mkdir()
    (folder / "descriptors").write_bytes(info.device_bytes + b"".join(info.configuration_bytes))
    (folder / "speed").write_text(SPEED_FILE[info.speed] + "\n")
    d = info.device
    for name, index in (("manufacturer", d.manufacturer_index), ("product", d.product_index),
                        ("serial", d.serial_number_index)):
        if index:
            (folder / name).write_text(info.strings[index] + "\n")
    return folder


SOURCES: dict[str, tuple[str, Callable[[Path, DeviceInfo], Path]]] = {
    "lsusb": ("lsusb", lambda tmp, info: _write_text(tmp / "lsusb.txt", format_device(info, "1-1"))),
    "sysfs-folder": ("sysfs", lambda tmp, info: write_sysfs(tmp / "1-1", info)),
    "sysfs-file": ("sysfs", lambda tmp, info: write_sysfs(tmp / "1-1", info) / "descriptors"),
    "pcap-189": ("pcap", lambda tmp, info: write_pcap(tmp / "c.pcap", info, False)),
    "pcap-220": ("pcap", lambda tmp, info: write_pcap(tmp / "c.pcap", info, True)),
    "pcap-220-big-endian": ("pcap", lambda tmp, info: write_pcap(tmp / "c.pcap", info, True, order=">")),
    "pcapng-189": ("pcap", lambda tmp, info: write_pcapng(tmp / "c.pcapng", info, False)),
    "pcapng-220": ("pcap", lambda tmp, info: write_pcapng(tmp / "c.pcapng", info, True)),
}


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    return path


PROFILES = ["keyboard.yaml", "mouse.yaml", "serial.yaml", "flash-drive.yaml", "serial.yaml@high",
            "flash-drive.yaml@super"]


def source_device(name: str) -> Device:
    """A shipped profile, optionally at another speed (``name@speed``): high speed, SuperSpeed with a BOS."""
    file, _, speed = name.partition("@")
    path = ROOT / "profiles" / file
    if not speed:
        return load_device(path)
    text = path.read_text()
    text = text.replace("speed: full", f"speed: {speed}").replace("speed: high", f"speed: {speed}")
    return parse_profile(text, file, path.parent).build()


# ------------------------------------------------------------------ clone -> serve -> identical bytes


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("source", list(SOURCES))
async def test_clone_serves_identical_descriptors(tmp_path: Path, source: str, profile: str) -> None:
    original = await enumerate_device(source_device(profile))
    kind, write = SOURCES[source]
    cloned = clone(kind, write(tmp_path, original))
    profile_text = cloned.to_yaml()
    device = parse_profile(profile_text, "clone.yaml").build()
    served = await enumerate_device(device)
    assert served.device_bytes == original.device_bytes
    assert served.configuration_bytes == original.configuration_bytes
    if kind == "sysfs" and original.bos_bytes is not None:  # sysfs has no BOS: a minimal one is made up
        assert served.bos is not None and any("BOS" in note for note in cloned.notes)
    else:
        assert served.bos_bytes == original.bos_bytes
    assert served.speed == original.speed
    d = original.device
    if source == "sysfs-file":  # the descriptors file alone has no strings
        assert served.strings == {}
    elif source == "sysfs-folder":  # the folder has only the device's three strings
        for index in (d.manufacturer_index, d.product_index, d.serial_number_index):
            assert served.strings.get(index) == original.strings.get(index)
    else:
        assert served.strings == original.strings


async def test_lsusb_round_trip_prints_the_same_fields(tmp_path: Path) -> None:
    original = await enumerate_device(load_device(ROOT / "profiles" / "keyboard.yaml"))
    text = format_device(original, "1-1")
    source = _write_text(tmp_path / "kb.txt", text)
    device = parse_profile(from_lsusb(source).to_yaml(), "kb.yaml").build()
    assert format_device(await enumerate_device(device), "1-1") == text


# ------------------------------------------------------------------ a real device, transcribed


async def test_real_mouse_from_lsusb_text() -> None:
    cloned = from_lsusb(DATA / "logitech-mx310.lsusb.txt")
    assert cloned.device == MX310_DEVICE and cloned.configurations == [MX310_CONFIG]
    assert cloned.string(1) == "Logitech" and cloned.string(2) == "USB-PS/2 Optical Mouse"
    assert cloned.speed is not None and cloned.speed.name == "LOW"
    device = parse_profile(cloned.to_yaml(), "mx310.yaml").build()
    async with LocalHost(device) as host:
        info = await host.enumerate()
        assert info.device_bytes == MX310_DEVICE and info.configuration_bytes == [MX310_CONFIG]
        # the boot-mouse default fits wDescriptorLength 52, so usbhid gets a report descriptor
        report = await host.control(SetupPacket(0x81, 6, DescriptorType.HID_REPORT << 8, 0, 255))
        assert report == BOOT_MOUSE_REPORT_DESCRIPTOR


def test_shipped_cloned_example_matches_the_fixture() -> None:
    device = load_device(ROOT / "profiles" / "cloned-example.yaml")
    assert device.descriptor.to_bytes() == MX310_DEVICE
    assert device.configurations[0].to_bytes() == MX310_CONFIG


def test_lsusb_report_descriptor_items_are_rebuilt(tmp_path: Path) -> None:
    names = {(1, 0): "Usage Page", (2, 0): "Usage", (0, 0xA): "Collection", (2, 1): "Usage Minimum",
             (2, 2): "Usage Maximum", (1, 1): "Logical Minimum", (1, 2): "Logical Maximum", (1, 9): "Report Count",
             (1, 7): "Report Size", (0, 8): "Input", (0, 0xC): "End Collection"}
    kinds = {0: "Main  ", 1: "Global", 2: "Local "}
    lines, i, data = [], 0, BOOT_MOUSE_REPORT_DESCRIPTOR
    while i < len(data):
        size = (0, 1, 2, 4)[data[i] & 3]
        item_type, tag = (data[i] >> 2) & 3, data[i] >> 4
        payload = data[i + 1:i + 1 + size]
        shown = "[ " + " ".join(f"0x{b:02x}" for b in payload) + " ]" if payload else "none"
        lines.append(f"          Item({kinds[item_type]}): {names[(item_type, tag)]}, data= {shown} 0")
        lines.append("                            (description)")
        i += 1 + size
    text = (DATA / "logitech-mx310.lsusb.txt").read_text().replace(
        "         Report Descriptors:\n           ** UNAVAILABLE **\n",
        f"         Report Descriptor: (length is {len(data)})\n" + "\n".join(lines) + "\n")
    cloned = from_lsusb(_write_text(tmp_path / "mouse.txt", text))
    assert cloned.reports == {0: BOOT_MOUSE_REPORT_DESCRIPTOR}
    assert "report_descriptors:" in cloned.to_yaml()


# ------------------------------------------------------------------ malformed inputs


MX310 = (DATA / "logitech-mx310.lsusb.txt").read_text()

LSUSB_ERRORS = [
    ("not lsusb", "hello world\n", "x.txt:1: expected lsusb -v output"),
    ("bad number", MX310.replace("bNumInterfaces          1", "bNumInterfaces          one"),
     "x.txt:27: bNumInterfaces: expected a number, found 'one'"),
    ("missing field", MX310.replace("  idProduct          0xc01b MX310 Optical Mouse\n", ""),
     "x.txt:8: Device Descriptor: field 'idProduct' is missing"),
    # the public listing itself: lsusb left the HID descriptor out, so the bytes do not add up
    ("descriptor left out", MX310.split("        HID Device Descriptor:")[0] + MX310.split("** UNAVAILABLE **\n")[1],
     "x.txt:26: the descriptors listed add up to 25 bytes but wTotalLength is 34"),
    ("undecodable class descriptor", MX310.replace("HID Device Descriptor:", "AudioControl Interface Descriptor:"),
     "x.txt:44: cannot rebuild the bytes of 'AudioControl Interface Descriptor'"),
    ("two devices", MX310 + MX310.replace("Device 002", "Device 003"), "x.txt: the text describes 2 devices"),
    ("bad bLength", MX310.replace("bLength                 7", "bLength                 8"),
     "x.txt:55: Endpoint Descriptor: bLength is 8 but lsusb shows the fields of 7 bytes only"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in LSUSB_ERRORS], ids=[c[0] for c in LSUSB_ERRORS])
def test_lsusb_errors_name_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                         expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("x.txt").write_text(text)
    with pytest.raises(CloneError) as exc:
        from_lsusb("x.txt")
    assert expected in str(exc.value)


def _pcap_header(linktype: int) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


BINARY_ERRORS: list[tuple[str, str, bytes, str]] = [
    ("sysfs empty", "sysfs", b"", "x.bin: expected an 18-byte device descriptor (12 01 ...) first, found nothing"),
    ("sysfs truncated configuration", "sysfs", MX310_DEVICE + MX310_CONFIG[:20],
     "x.bin: configuration 0 at byte 0: wTotalLength 34 but 20 bytes are left"),
    ("sysfs not a configuration", "sysfs", MX310_DEVICE + b"\x07\x05\x81\x03\x05\x00\x0a" + bytes(2),
     "x.bin: byte 0 of the configurations: expected a configuration descriptor"),
    ("sysfs configuration count", "sysfs", MX310_DEVICE + MX310_CONFIG * 2,
     "x.bin: bNumConfigurations is 1 but 2 configuration(s) follow"),
    ("pcap wrong magic", "pcap", b"GIF89a......", "x.bin: not a pcap or pcapng file"),
    ("pcap wrong link type", "pcap", _pcap_header(1), "x.bin: the capture holds no packets"),
    ("pcap ethernet", "pcap", _pcap_header(1) + struct.pack("<IIII", 0, 0, 4, 4) + b"abcd",
     "x.bin: link type 1 is not usbmon"),
    ("pcap cut short", "pcap", _pcap_header(220) + struct.pack("<IIII", 0, 0, 100, 100) + b"abcd",
     "x.bin: packet at byte 24 claims 100 bytes but the file ends first"),
    ("pcap no descriptors", "pcap", _pcap_header(220) + struct.pack("<IIII", 0, 0, 64, 64) + bytes(64),
     "x.bin: no device returned a full device descriptor"),
]


@pytest.mark.parametrize(("source", "data", "expected"), [c[1:] for c in BINARY_ERRORS],
                         ids=[c[0] for c in BINARY_ERRORS])
def test_binary_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, data: bytes,
                                     expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("x.bin").write_bytes(data)
    with pytest.raises(CloneError) as exc:
        from_sysfs("x.bin") if source == "sysfs" else from_pcap("x.bin")
    assert expected in str(exc.value)


async def test_pcap_with_two_devices_needs_an_address(tmp_path: Path) -> None:
    kb = await enumerate_device(load_device(ROOT / "profiles" / "keyboard.yaml"))
    mouse = await enumerate_device(load_device(ROOT / "profiles" / "mouse.yaml"))
    write_pcap(tmp_path / "a.pcap", kb, False, devnum=3)
    write_pcap(tmp_path / "b.pcap", mouse, False, devnum=4)
    both = tmp_path / "both.pcap"
    both.write_bytes((tmp_path / "a.pcap").read_bytes() + (tmp_path / "b.pcap").read_bytes()[24:])
    with pytest.raises(CloneError, match=r"several devices .*1:3, 1:4.*--address"):
        from_pcap(both)
    assert from_pcap(both, address=4).device == mouse.device_bytes
    assert from_pcap(both, address="1:3").device == kb.device_bytes
    with pytest.raises(CloneError, match="address 9 returned no descriptors"):
        from_pcap(both, address=9)


# ------------------------------------------------------------------ raw-descriptor profiles


RAW = """\
identity:
  vendor_id: 0x046d
  speed: low
descriptors:
  device: "12 01 00 02 00 00 00 08 6d 04 1b c0 00 18 01 02 00 01"
  configurations:
    - "09 02 22 00 01 01 00 a0 31 09 04 00 00 01 03 01 02 00 09 21 10 01 00 01 22 34 00 07 05 81 03 05 00 0a"
  strings: {1: Logitech, 2: USB-PS/2 Optical Mouse}
"""

PROFILE_ERRORS = [
    ("identity disagrees", RAW.replace("vendor_id: 0x046d", "vendor_id: 0x1234"),
     "p.yaml:2:14: field 'identity.vendor_id': 0x1234 disagrees with idVendor (0x046d) in descriptors.device"),
    ("product string disagrees", RAW.replace("  speed: low\n", "  speed: low\n  product: Mouse\n"),
     "p.yaml:4:12: field 'identity.product': 'Mouse' disagrees with iProduct ('USB-PS/2 Optical Mouse')"),
    ("speed does not fit", RAW.replace("speed: low", "speed: high"),
     "p.yaml:5:3: field 'descriptors': DeviceDescriptor.max_packet_size0 = 8 is wrong for high speed"),
    ("short device descriptor", RAW.replace("00 01\"", "00\""),
     "p.yaml:5:11: field 'descriptors.device': DeviceDescriptor"),
    ("configuration length", RAW.replace("09 02 22 00", "09 02 23 00"),
     "p.yaml:7:7: field 'descriptors.configurations[0]': ConfigurationDescriptor: wTotalLength 35 but only 34 bytes"),
    ("bad string index", RAW.replace("{1: Logitech", "{0: Logitech"),
     "p.yaml:8:13: field 'descriptors.strings.0': a string index 0 is out of range 1..255"),
    ("report on a non-HID interface", RAW + "  report_descriptors: {3: '05 01'}\n",
     "p.yaml:9:24: field 'descriptors.report_descriptors.3': interface 3 is not a HID interface"),
    ("report length mismatch", RAW + "  report_descriptors: {0: '05 01 09 02'}\n",
     "p.yaml:9:27: field 'descriptors.report_descriptors.0': the report descriptor is 4 bytes but interface 0's HID "
     "descriptor says wDescriptorLength 52"),
    ("function without interface", RAW + "functions:\n  - kind: mouse\n",
     "p.yaml:10:5: field 'functions[0].interface': required field 'interface' is missing"),
    ("function on a missing interface", RAW + "functions:\n  - kind: mouse\n    interface: 2\n",
     "p.yaml:11:16: field 'functions[0].interface': interface 2 is not in the configurations"),
    ("kind that cannot attach", RAW + "functions:\n  - kind: cdc-acm\n    interface: 0\n",
     "p.yaml:10:5: field 'functions[0].kind': kind 'cdc-acm' cannot be attached to raw descriptors"),
    ("unknown descriptors field", RAW + "  colour: red\n",
     "p.yaml:9:3: field 'descriptors.colour': unknown field 'colour'"),
    ("no identity and no descriptors", "functions:\n  - kind: mouse\n",
     "p.yaml:1:1: field 'identity': required field 'identity' is missing"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in PROFILE_ERRORS], ids=[c[0] for c in PROFILE_ERRORS])
def test_raw_profile_errors(text: str, expected: str) -> None:
    with pytest.raises(ProfileError) as exc:
        parse_profile(text, "p.yaml")
    assert expected in str(exc.value)


async def test_raw_profile_with_a_mouse_function_on_interface_0() -> None:
    profile = parse_profile(RAW + "functions:\n  - kind: mouse\n    interface: 0\n", "p.yaml")
    assert profile.identity["product"] == "USB-PS/2 Optical Mouse"
    device = profile.build()
    async with LocalHost(device) as host:
        info = await host.enumerate()
        assert info.configuration_bytes == [MX310_CONFIG]
        mouse = device.functions[0]
        task = mouse.send_report(b"\x01\x02\x03\x00")  # type: ignore[attr-defined]
        assert await host.transfer_in(0x81, 5) == b"\x01\x02\x03\x00"
        await task
        # a request nobody handles still stalls
        with pytest.raises(Exception, match="stall"):
            await host.control(SetupPacket(0xC0, 0x42, 0, 0, 4))


async def test_fix_report_lengths_rewrites_only_wdescriptorlength() -> None:
    text = RAW.replace("22 34 00", "22 47 00") + "  fix_report_lengths: true\n"
    device = parse_profile(text, "p.yaml").build()
    async with LocalHost(device) as host:
        info = await host.enumerate()
        patched = MX310_CONFIG.replace(b"\x22\x34\x00", b"\x22" + len(BOOT_MOUSE_REPORT_DESCRIPTOR).to_bytes(2, "little"))
        assert info.configuration_bytes == [patched]
    quiet = parse_profile(RAW.replace("22 34 00", "22 47 00"), "p.yaml")
    assert quiet.descriptors is not None and "not served" in quiet.descriptors.notes[0]


def test_per_language_strings() -> None:
    text = RAW.replace("strings: {1: Logitech, 2: USB-PS/2 Optical Mouse}",
                       "strings:\n    0x0409: {1: Logitech, 2: Mouse}\n    0x0407: {1: Logitech, 2: Maus}")
    device = parse_profile(text, "p.yaml").build()
    assert device.strings.languages == (0x0409, 0x0407)
    assert device.strings.get(2, 0x0407) == "Maus"


# ------------------------------------------------------------------ command line


def vusb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_cli_clone_and_validate(tmp_path: Path) -> None:
    out = tmp_path / "mouse.yaml"
    result = vusb("clone", "--from", "lsusb", str(DATA / "logitech-mx310.lsusb.txt"), "-o", str(out))
    assert result.returncode == 0, result.stderr
    checked = vusb("validate", str(out))
    assert checked.returncode == 0 and "ok:" in checked.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(out.read_text().replace("product_id: 0xc01b", "product_id: 0xc01c"))
    both = vusb("validate", str(bad), str(out), "profiles/keyboard.yaml")
    assert both.returncode == 1
    assert f"{bad}:5:15: field 'identity.product_id': 0xc01c disagrees with idProduct (0xc01b)" in both.stderr
    assert both.stdout.count("ok:") == 2
    missing = vusb("clone", "--from", "pcap", str(tmp_path / "nope.pcap"))
    assert missing.returncode == 2 and "nope.pcap: cannot read" in missing.stderr


def test_cli_clone_speed_override_to_stdout() -> None:
    result = vusb("clone", "--from", "lsusb", str(DATA / "logitech-mx310.lsusb.txt"), "--speed", "full")
    assert result.returncode == 0, result.stderr
    assert "  speed: full\n" in result.stdout and "descriptors:" in result.stdout
    bad = vusb("clone", "--from", "lsusb", str(DATA / "logitech-mx310.lsusb.txt"), "--address", "9")
    assert bad.returncode == 2 and "logitech-mx310.lsusb.txt: --address 9: no such device" in bad.stderr


# ------------------------------------------------------------------ a real kernel binds the clone


@pytest.mark.kernel
async def test_cloned_mouse_is_bound_by_hid_generic(vusb_guest: Any, vusb_attach: Callable[..., Any]) -> None:
    device = load_device(ROOT / "profiles" / "cloned-example.yaml")
    attached = await vusb_attach(device)
    assert attached.node is not None and attached.node.startswith("/dev/input/event")
    for name, expected in (("idVendor", "046d"), ("idProduct", "c01b"), ("product", "USB-PS/2 Optical Mouse"),
                           ("speed", "1.5")):
        assert (await vusb_guest.run(f"cat {attached.sysfs}/{name}", check=True)).stdout.strip() == expected
    driver = await vusb_guest.run(f"basename $(readlink {attached.sysfs}:1.0/*:046D:C01B.*/driver)", check=True)
    assert driver.stdout.strip() == "hid-generic"
    raw = await vusb_guest.run(f"od -An -tx1 -v {attached.sysfs}/descriptors", check=True)
    assert bytes.fromhex(raw.stdout.replace("\n", " ")) == MX310_DEVICE + MX310_CONFIG
