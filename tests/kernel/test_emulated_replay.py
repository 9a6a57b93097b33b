"""Devices nobody here wrote, recorded once and replayed to a real kernel.

tests/data/recordings holds usbmon captures of QEMU's own USB devices as a 6.1 guest
drove them (see its README.md and ``python -m vusb.harness record-emulated``). For each,
``vusb record`` builds a replay profile and ``vusb serve`` serves it into the shared 6.1
guest over USB/IP. The guest must see the same device: the same ids, speed and strings,
the same driver on every interface; the replayed disk must hold the recorded blocks, and
the replayed keyboard and tablet must deliver the recorded input events.
recordings.json (written while recording) says what the guest saw the first time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from serve_subprocess import ServeProcesses

from vusb.harness import EMULATED_DEVICES, EmulatedDevice, Guest
from vusb.harness.emulated import audio_pattern, input_events

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "tests" / "data" / "recordings"
MANIFEST: dict[str, Any] = json.loads((RECORDINGS / "recordings.json").read_text())
RECORDED = {d["name"]: d for d in MANIFEST["devices"]}


def vusb_record(capture: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", "record", str(capture), "-o", str(out), *options],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


async def replay(guest: Guest, serve_processes: ServeProcesses, device: EmulatedDevice,
                 tmp_path: Path) -> tuple[str, int]:
    """Record `device`'s capture into a profile, serve it, attach it; return (sysfs dir, vhci port)."""
    profile = tmp_path / f"{device.name}.yaml"
    # No --speed: a usbmon record has no speed field; vusb record tells it from the interrupt
    # URBs' intervals (or the descriptors), and the identity test checks it against the guest's.
    made = await asyncio.to_thread(vusb_record, RECORDINGS / f"{device.name}.pcap", profile)
    assert made.returncode == 0, made.stdout + made.stderr
    server = await serve_processes.astart(str(profile), "--port", "0", "--no-control", cwd=str(tmp_path))
    assert len(server.busids) == 1, server.banner.lines
    port = await guest.attach(None, server.port, server.busids[0])
    devdir = await guest.wait_for_usb_device(device.vendor_id, device.product_id, timeout=60)
    return devdir, port


async def sysfs(guest: Guest, path: str) -> str:
    return (await guest.run(f"cat {path} 2>/dev/null; true", check=True)).stdout.strip()


@pytest.mark.parametrize("device", EMULATED_DEVICES, ids=lambda d: d.name)
async def test_the_replay_binds_the_same_driver_with_the_same_ids_and_strings(
        clean_guest: Guest, serve_processes: ServeProcesses, device: EmulatedDevice, tmp_path: Path) -> None:
    recorded = RECORDED[device.name]
    devdir, _ = await replay(clean_guest, serve_processes, device, tmp_path)
    seen = {field: await sysfs(clean_guest, f"{devdir}/{field}")
            for field in ("idVendor", "idProduct", "bcdDevice", "speed", "manufacturer", "product", "serial")}
    assert seen == {"idVendor": recorded["vendor_id"], "idProduct": recorded["product_id"],
                    "bcdDevice": recorded["bcdDevice"], "speed": recorded["speed"],
                    "manufacturer": recorded["manufacturer"], "product": recorded["product"],
                    "serial": recorded["serial"]}
    for interface in recorded["interfaces"]:
        link = f"{devdir}:1.{interface['number']}/driver"
        await clean_guest.wait_for(f"[ -e {link} ]", timeout=60,
                                   description=f"a driver on interface {interface['number']} of the replayed {device.name}")
        driver = (await clean_guest.run(f"basename $(readlink {link})", check=True)).stdout.strip()
        assert driver == interface["driver"], (device.name, interface)


async def test_the_replayed_disk_holds_the_recorded_blocks(
        clean_guest: Guest, serve_processes: ServeProcesses, tmp_path: Path) -> None:
    recorded = RECORDED["usb-storage"]["exercise"]
    devdir, _ = await replay(clean_guest, serve_processes, EMULATED_DEVICES[2], tmp_path)
    disk = await clean_guest.wait_for_disk(devdir)
    r = await clean_guest.run(f"cat /sys/block/{disk}/size; dd if=/dev/{disk} bs=65536 2>/dev/null | sha256sum; "
                              f"dd if=/dev/{disk} bs=512 count=1 2>/dev/null | sha256sum", check=True, timeout=120)
    size, whole, first = r.stdout.split()[0], r.stdout.split()[1], r.stdout.split()[3]
    assert (int(size), whole, first) == (recorded["blocks"], recorded["sha256"], recorded["block0_sha256"])


@pytest.mark.parametrize(("device", "events"), [
    (EMULATED_DEVICES[0], 8),   # "vusb": four keys, each pressed and released
    (EMULATED_DEVICES[1], 8),   # three points (x and y), the left button down and up
], ids=["usb-kbd", "usb-tablet"])
async def test_the_replayed_input_device_delivers_the_recorded_events(
        clean_guest: Guest, serve_processes: ServeProcesses, device: EmulatedDevice, events: int,
        tmp_path: Path) -> None:
    recorded = [tuple(e) for e in RECORDED[device.name]["exercise"]["events"]]
    assert len(recorded) == events
    await replay(clean_guest, serve_processes, device, tmp_path)
    event = await clean_guest.wait_for_input_device(device.product)
    reader = await clean_guest.start_background(f"exec cat {event}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline and len(input_events(await reader.read_stdout())) < events:
        await asyncio.sleep(0.2)
    got = input_events((await reader.stop()).stdout_bytes)
    assert got == recorded


async def test_the_replayed_serial_adapter_delivers_the_recorded_bytes(
        clean_guest: Guest, serve_processes: ServeProcesses, tmp_path: Path) -> None:
    recorded = RECORDED["usb-serial"]["exercise"]["guest_read"].encode("latin-1")
    devdir, _ = await replay(clean_guest, serve_processes, EMULATED_DEVICES[3], tmp_path)
    tty = (await clean_guest.wait_for_path(f"{devdir}:1.0/ttyUSB*"))[0].rsplit("/", 1)[1]
    await clean_guest.run(f"stty -F /dev/{tty} 115200 raw -echo", check=True)
    reader = await clean_guest.start_background(f"exec cat /dev/{tty}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline and len(await reader.read_stdout()) < len(recorded):
        await asyncio.sleep(0.2)
    assert (await reader.stop()).stdout_bytes == recorded


async def test_the_replayed_sound_card_plays_what_was_played(
        clean_guest: Guest, serve_processes: ServeProcesses, tmp_path: Path) -> None:
    recorded = RECORDED["usb-audio"]["exercise"]
    devdir, _ = await replay(clean_guest, serve_processes, EMULATED_DEVICES[5], tmp_path)
    card = (await clean_guest.wait_for_path(f"{devdir}:1.*/sound/card*"))[0].rsplit("card", 1)[1]
    await clean_guest.write_file("/tmp/pattern.raw", audio_pattern())
    r = await clean_guest.run(f"aplay -q -D hw:{card},0 -t raw -f S16_LE -r 48000 -c 2 /tmp/pattern.raw", timeout=60)
    assert (r.returncode, hashlib.sha256(audio_pattern()).hexdigest()) == (0, recorded["sha256"]), r.stderr


# The ARP request is byte for byte the recorded one (same MAC, same addresses), so the
# replayed adapter can answer it; the ICMP echo cannot be (ping's id is its pid).
async def test_the_replayed_network_adapter_answers_the_recorded_arp_request(
        clean_guest: Guest, serve_processes: ServeProcesses, tmp_path: Path) -> None:
    devdir, _ = await replay(clean_guest, serve_processes, EMULATED_DEVICES[4], tmp_path)
    ifname = (await clean_guest.wait_for_path(f"{devdir}:1.0/net/*"))[0].rsplit("/", 1)[1]
    r = await clean_guest.run(f"ip link set {ifname} up && ip addr add 10.0.3.15/24 dev {ifname} && "
                              f"ping -c 1 -W 3 10.0.3.2; ip neigh; ip link set {ifname} down",
                              timeout=60)
    assert re.search(rf"^10\.0\.3\.2 dev {ifname} lladdr 52:55:0a:00:03:02 ", r.stdout, re.M), r.stdout
