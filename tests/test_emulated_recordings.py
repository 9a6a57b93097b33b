"""The committed recordings of QEMU's devices (tests/data/recordings) are what they claim.

Each file is a usbmon capture of one device from its first GET_DESCRIPTOR on, and
recordings.json agrees with vusb.harness.emulated's table. The kernel tests replaying
them are in tests/kernel/test_emulated_replay.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vusb.harness import HarnessError
from vusb.harness.emulated import DISK_BLOCKS, EMULATED_DEVICES, disk_pattern, input_events, split_usbmon_pcap

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"
MANIFEST: dict[str, Any] = json.loads((RECORDINGS / "recordings.json").read_text())
BY_NAME = {d["name"]: d for d in MANIFEST["devices"]}


def packets(data: bytes) -> list[bytes]:
    """The usbmon records (64-byte header + data) of a little-endian classic pcap."""
    out, offset = [], 24
    while offset < len(data):
        incl = struct.unpack_from("<I", data, offset + 8)[0]
        out.append(data[offset + 16:offset + 16 + incl])
        offset += 16 + incl
    return out


@pytest.mark.parametrize("device", EMULATED_DEVICES, ids=lambda d: d.name)
def test_each_recording_holds_one_whole_enumeration(device: Any) -> None:
    data = (RECORDINGS / f"{device.name}.pcap").read_bytes()
    assert struct.unpack_from("<I", data, 20)[0] == 220  # LINKTYPE_USB_LINUX_MMAPPED
    records = packets(data)
    fact = BY_NAME[device.name]
    assert {(struct.unpack_from("<H", r, 12)[0], r[11]) for r in records} == {(fact["busnum"], fact["devnum"])}
    first = records[0]
    # S(ubmit), control, endpoint 0, setup 80 06 00 01: GET_DESCRIPTOR(DEVICE).
    assert (first[8:9], first[9], first[10] & 0x7F, first[40:44]) == (b"S", 2, 0, b"\x80\x06\x00\x01")
    submitted = {r[:8] for r in records if r[8:9] == b"S"}
    assert all(r[:8] in submitted for r in records)


@pytest.mark.parametrize("device", EMULATED_DEVICES, ids=lambda d: d.name)
def test_the_manifest_names_the_device_and_its_drivers(device: Any) -> None:
    fact = BY_NAME[device.name]
    assert (fact["vendor_id"], fact["product_id"], fact["product"]) == (
        f"{device.vendor_id:04x}", f"{device.product_id:04x}", device.product)
    assert tuple(i["driver"] for i in fact["interfaces"]) == device.drivers
    assert hashlib.sha256((RECORDINGS / fact["file"]).read_bytes()).hexdigest() == fact["pcap_sha256"]


def test_the_storage_recording_holds_every_block_of_the_disk() -> None:
    records = packets((RECORDINGS / "usb-storage.pcap").read_bytes())
    read = b"".join(r[64:] for r in records if r[8:9] == b"C" and r[9] == 3 and r[10] & 0x80)
    missing = [n for n in range(DISK_BLOCKS) if disk_pattern(n) not in read]
    assert missing == []
    assert BY_NAME["usb-storage"]["exercise"]["blocks"] == DISK_BLOCKS


def test_the_keyboard_typed_what_the_manifest_says() -> None:
    events = BY_NAME["usb-kbd"]["exercise"]["events"]
    # KEY_V 47, KEY_U 22, KEY_S 31, KEY_B 48: pressed (1) and released (0) in turn.
    assert events == [[1, code, value] for code in (47, 22, 31, 48) for value in (1, 0)]


def test_input_events_drops_syn_and_msc() -> None:
    raw = b"".join(struct.pack("<qqHHi", 0, 0, kind, code, value)
                   for kind, code, value in [(4, 4, 0x70004), (1, 30, 1), (0, 0, 0), (3, 0, 100)])
    assert input_events(raw) == [(1, 30, 1), (3, 0, 100)]


@pytest.mark.parametrize(("data", "message"), [
    (b"nope" + bytes(20), "not a classic pcap file"),
    (b"\xd4\xc3\xb2\xa1" + bytes(16) + struct.pack("<I", 1), "link type 1 is not usbmon's"),
    ((RECORDINGS / "usb-kbd.pcap").read_bytes()[:200], "pcap truncated at byte"),
])
def test_splitting_refuses_what_is_not_a_usbmon_pcap(data: bytes, message: str) -> None:
    with pytest.raises(HarnessError, match=message):
        split_usbmon_pcap(data, {"kbd": (17, 2)})


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
@pytest.mark.parametrize("device", EMULATED_DEVICES, ids=lambda d: d.name)
def test_tshark_decodes_each_recording_without_malformed_packets(device: Any) -> None:
    out = subprocess.run(["tshark", "-r", str(RECORDINGS / f"{device.name}.pcap"), "-T", "fields",
                          "-e", "_ws.col.Protocol", "-e", "_ws.expert.message"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "USB" in out.stdout
    assert "malformed" not in out.stdout.lower(), out.stdout
