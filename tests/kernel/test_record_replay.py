"""Record a device as a real kernel drives it, replay the recording to the kernel, and get the same.

Each test serves a vusb device with a usbmon-form capture (what ``tcpdump -i usbmonN``
writes on a machine with the hardware; the disk also with the USB/IP form, the TCP stream
Wireshark records) while the guest's own drivers use it, turns
the capture into a replay profile with ``vusb record`` (the function the command
calls), and attaches the replay to the guest: the same driver binds, and the data the
guest reads is what the original device gave.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from vusb.harness import Guest
from vusb.harness.events import EV_KEY, keys_to_text, read_input_events
from vusb.profile import load_device
from vusb.record import record_to
from vusb.replay import ReplayFunction
from vusb.replay_storage import StorageReplay
from vusb.server import Server

pytestmark = pytest.mark.kernel

DISK_PROFILE = """\
identity: {vendor_id: 0x1209, product_id: 0x0005, manufacturer: vusb, product: Recorded Disk,
           serial_number: "5655534230303031", speed: high}
functions:
  - kind: mass-storage
    image: disk.img
"""

KEYBOARD_PROFILE = """\
identity: {vendor_id: 0x1209, product_id: 0x0001, manufacturer: vusb, product: Recorded Keyboard, speed: full}
functions:
  - kind: keyboard
"""


async def driver_of(guest: Guest, devdir: str, interface: int = 0) -> str:
    link = f"{devdir}:1.{interface}/driver"
    await guest.wait_for(f"[ -e {link} ]", timeout=60, description=f"a driver bound to interface {interface}")
    return (await guest.run(f"basename $(readlink {link})", check=True)).stdout.strip()


async def read_disk(guest: Guest, devdir: str, blocks: int) -> bytes:
    sd = await guest.wait_for_disk(devdir, timeout=60)
    got = await guest.run(f"dd if=/dev/{sd} bs=4096 count={blocks} iflag=direct 2>/dev/null", timeout=120, check=True)
    return got.stdout_bytes


async def disk_round_trip(guest: Guest, tmp_path: Path, form: str) -> None:
    """Record the guest reading a disk (capture ``form``), replay it to the guest, read and write it again."""
    image = random.Random(16).randbytes(2 * 1024 * 1024)
    (tmp_path / "disk.img").write_bytes(image)
    (tmp_path / "disk.yaml").write_text(DISK_PROFILE)
    original = load_device(tmp_path / "disk.yaml")
    capture = tmp_path / "disk.pcap"  # as usbmon records it, or the USB/IP session in TCP as Wireshark does
    async with Server([original], port=0, capture=str(capture), capture_format=form) as server:
        port = await guest.attach(guest.host_address, server.port, "1-1")
        devdir = await guest.wait_for_usb_device(0x1209, 0x0005, timeout=60)
        assert await driver_of(guest, devdir) == "usb-storage"
        first = await read_disk(guest, devdir, 64)
        await guest.detach(port)
    await original.aclose()
    assert first == image[:64 * 4096]

    rec, written = record_to(capture, tmp_path / "replay.yaml")
    assert rec.device_class == "storage" and written[1].name == "replay.bin"
    replay = load_device(tmp_path / "replay.yaml")
    function = replay.functions[0]
    assert isinstance(function, StorageReplay)
    async with Server([replay], port=0) as server:
        port = await guest.attach(guest.host_address, server.port, "1-1")
        devdir = await guest.wait_for_usb_device(0x1209, 0x0005, timeout=60)
        assert await driver_of(guest, devdir) == "usb-storage"
        product = (await guest.run(f"cat {devdir}/product", check=True)).stdout.strip()
        assert product == "Recorded Disk"
        again = await read_disk(guest, devdir, 64)
        sd = await guest.wait_for_disk(devdir, timeout=60)
        await guest.write_file("/tmp/new.bin", bytes([0xA5]) * 8192)
        await guest.run(f"dd if=/tmp/new.bin of=/dev/{sd} bs=4096 seek=256 oflag=direct 2>/dev/null",
                              timeout=60, check=True)
        written = await guest.run(f"dd if=/dev/{sd} bs=4096 skip=256 count=2 iflag=direct 2>/dev/null",
                                        timeout=60, check=True)
        await guest.detach(port)
    assert again == first  # the replayed disk returns the recorded blocks, by LBA, to a fresh attach
    assert written.stdout_bytes == bytes([0xA5]) * 8192  # what the guest wrote is kept in the overlay
    assert len(function.overlay) == 16  # 8 KiB of 512-byte blocks
    assert function.served > 0
    missing = [d for d in function.divergences if "never read" in d.recorded]
    assert not missing, [str(d) for d in missing]


async def test_a_disk_recorded_by_each_kernel_replays_the_same_blocks_to_its_usb_storage(
        any_guest: Guest, tmp_path: Path) -> None:
    await disk_round_trip(any_guest, tmp_path, "usbmon")


async def test_a_disk_recorded_as_a_usbip_tcp_stream_replays_too(clean_guest: Guest, tmp_path: Path) -> None:
    await disk_round_trip(clean_guest, tmp_path, "usbip")


async def test_a_keyboard_recorded_by_each_kernel_replays_its_key_events_on_demand(any_guest: Guest,
                                                                                   tmp_path: Path) -> None:
    (tmp_path / "kbd.yaml").write_text(KEYBOARD_PROFILE)
    original = load_device(tmp_path / "kbd.yaml")
    keyboard = original.functions[0]
    capture = tmp_path / "kbd.pcap"
    text = "replay me 42\n"
    async with Server([original], port=0, capture=str(capture), capture_format="usbmon") as server:
        port = await any_guest.attach(any_guest.host_address, server.port, "1-1")
        devdir = await any_guest.wait_for_usb_device(0x1209, 0x0001, timeout=60)
        node = await any_guest.wait_for_input_device("vusb Recorded Keyboard", timeout=30)
        recorded = await read_input_events(any_guest, node, keyboard.type(text, timeout=30))  # type: ignore[attr-defined]
        await any_guest.detach(port)
    assert keys_to_text(recorded) == text  # type: ignore[arg-type]

    rec, _ = record_to(capture, tmp_path / "replay.yaml")
    assert rec.device_class == "hid"
    profile = (tmp_path / "replay.yaml").read_text().replace("timing: recorded", "timing: on-demand")
    (tmp_path / "replay.yaml").write_text(profile)
    replay = load_device(tmp_path / "replay.yaml")
    function = replay.functions[0]
    assert isinstance(function, ReplayFunction)
    async with Server([replay], port=0) as server:
        port = await any_guest.attach(any_guest.host_address, server.port, "1-1")
        devdir = await any_guest.wait_for_usb_device(0x1209, 0x0001, timeout=60)
        assert await driver_of(any_guest, devdir) == "usbhid"
        node = await any_guest.wait_for_input_device("vusb Recorded Keyboard", timeout=30)

        async def release_all() -> None:
            function.release(count=1000)
            for _ in range(100):
                if not any(function.pending_in().values()):
                    break
                await asyncio.sleep(0.1)

        replayed = await read_input_events(any_guest, node, release_all())
        await any_guest.detach(port)
    keys = [(e.code, e.value) for e in replayed if e.type == EV_KEY]  # type: ignore[attr-defined]
    assert keys == [(e.code, e.value) for e in recorded if e.type == EV_KEY]  # type: ignore[attr-defined]
    assert keys_to_text(replayed) == text  # type: ignore[arg-type]


MODEM_PROFILE = """\
identity: {vendor_id: 0x1209, product_id: 0x0007, manufacturer: vusb, product: Recorded Modem, speed: full}
functions:
  - kind: cdc-acm
    backend: none
"""
ANSWERS = {b"AT\n": b"OK\n", b"ATI\n": b"vusb modem 1.0\n"}


def talk(tty: str, lines: list[bytes]) -> str:
    """A guest script: write each line to the serial port and print what came back after it."""
    steps = []
    for line in lines:
        expected = len(ANSWERS[line])
        text = line.decode().replace("\n", "\\n")
        steps.append(f"""
: > /tmp/answer; head -c {expected} <&3 > /tmp/answer & reader=$!
printf '{text}' >&3
i=0; while [ "$(wc -c < /tmp/answer)" -lt {expected} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill $reader 2>/dev/null; cat /tmp/answer""")
    return f"stty -F {tty} raw -echo 115200\nexec 3<>{tty}\n" + "".join(steps)


async def test_a_recorded_modem_answers_matching_writes_in_any_order(clean_guest: Guest, tmp_path: Path) -> None:
    (tmp_path / "modem.yaml").write_text(MODEM_PROFILE)
    original = load_device(tmp_path / "modem.yaml")
    serial = original.functions[0]

    async def answer() -> None:
        while True:
            line = await serial.readline()  # type: ignore[attr-defined]
            await serial.write(ANSWERS[line])  # type: ignore[attr-defined]

    capture = tmp_path / "modem.pcap"
    async with Server([original], port=0, capture=str(capture), capture_format="usbmon") as server:
        responder = asyncio.ensure_future(answer())
        port = await clean_guest.attach(clean_guest.host_address, server.port, "1-1")
        devdir = await clean_guest.wait_for_usb_device(0x1209, 0x0007, timeout=60)
        assert await driver_of(clean_guest, devdir) == "cdc_acm"
        tty = await clean_guest.wait_for_tty()
        said = await clean_guest.run(talk(tty, [b"AT\n", b"ATI\n"]), timeout=60, check=True)
        await clean_guest.detach(port)
        responder.cancel()
    await original.aclose()
    assert said.stdout == "OK\nvusb modem 1.0\n"

    rec, _ = record_to(capture, tmp_path / "replay.yaml")
    assert rec.device_class == "cdc"
    replay = load_device(tmp_path / "replay.yaml")
    function = replay.functions[0]
    assert isinstance(function, ReplayFunction)
    async with Server([replay], port=0) as server:
        port = await clean_guest.attach(clean_guest.host_address, server.port, "1-1")
        devdir = await clean_guest.wait_for_usb_device(0x1209, 0x0007, timeout=60)
        assert await driver_of(clean_guest, devdir) == "cdc_acm"
        tty = await clean_guest.wait_for_tty()
        again = await clean_guest.run(talk(tty, [b"ATI\n", b"AT\n"]), timeout=60, check=True)  # the other order
        await clean_guest.detach(port)
    assert again.stdout == "vusb modem 1.0\nOK\n"  # each answer follows its own write
    assert any("resynchronised at the same write" in d.action for d in function.divergences)


