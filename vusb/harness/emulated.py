"""QEMU's own emulated USB devices, recorded with usbmon inside a guest.

To a guest kernel, QEMU's ``usb-kbd``, ``usb-tablet``, ``usb-storage``, ``usb-serial``,
``usb-net`` and ``usb-audio`` on a ``qemu-xhci`` controller are real hardware that nobody
here wrote. :func:`record_emulated` boots a guest with all of them, starts ``tcpdump -i
usbmon0`` inside it, re-binds the xHCI controller so that every device enumerates again
while the capture runs, exercises each device (reads the disk, types on the keyboard,
moves the tablet, sends data both ways through the serial port, pings through the network
adapter, plays a short sound), stops the capture and brings it out. The capture is split
into one pcap per device (link type USB_LINUX_MMAPPED, as ``tcpdump -i usbmonN`` writes
it on a machine with the hardware), with a manifest (``recordings.json``) of what the
guest saw: ids, strings, the driver bound to each interface, and the data each exercise
produced (the disk blocks' sha256, the input events, the serial bytes)::

    python -m vusb.harness record-emulated --out tests/data/recordings

Keyboard and tablet input comes from QEMU's monitor (QMP ``input-send-event`` on a unix
socket), which works with ``-display none``; serial data goes through a unix-socket chardev
(``serial.sock`` in the work folder) that the recorder connects to.

:func:`emulated_qemu_args` gives the QEMU arguments for any subset of the devices, for
other tests (e.g. a guest that proxies its own keyboard and disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import shlex
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vusb.capture_read import LINKTYPE_USB_LINUX, LINKTYPE_USB_LINUX_MMAPPED
from vusb.errors import ArgumentError

from .events import EV_MSC, EV_SYN, parse_events
from .guest import Guest
from .image import DEFAULT_KERNEL, HarnessError, find_qemu

__all__ = [
    "DISK_BLOCKS",
    "EMULATED_DEVICES",
    "EmulatedDevice",
    "QmpClient",
    "audio_pattern",
    "disk_pattern",
    "emulated_qemu_args",
    "input_events",
    "record_emulated",
    "split_usbmon_pcap",
    "write_disk_image",
]

logger = logging.getLogger("vusb.harness")

#: The xHCI controller's QEMU id; its USB 2 root hub carries every device (``p3=0``: no
#: USB 3 ports, so usb-storage runs at high speed like the others).
XHCI_ID = "xhci"

#: 512-byte blocks of the emulated disk (1 MiB), each filled by :func:`disk_pattern`.
DISK_BLOCKS = 2048

#: What the tablet and keyboard are made to do while recording.
KEYS_TYPED = "vusb"
TABLET_POINTS = ((0x1000, 0x2000), (0x6000, 0x3000), (0x7000, 0x7000))
SERIAL_TO_GUEST = b"hello from qemu's chardev\n"
SERIAL_FROM_GUEST = b"hello from the guest\n"
#: A quarter second of 48 kHz stereo S16_LE, a ramp on the left and its negation on the right.
AUDIO_FRAMES = 12000


@dataclasses.dataclass(frozen=True)
class EmulatedDevice:
    """One of QEMU's USB devices, as plugged into the recording guest."""

    name: str
    """QEMU's device name (``-device NAME``); also the recording's file stem."""
    port: int
    """Root hub port on the xHCI controller's USB 2 bus."""
    vendor_id: int
    product_id: int
    product: str
    """The product string QEMU gives it."""
    drivers: tuple[str, ...]
    """The guest drivers bound to its interfaces, in interface order."""

    def qemu_args(self, workdir: Path) -> list[str]:
        """The QEMU arguments that plug it in (`workdir` holds the disk image)."""
        dev = f"{self.name},bus={XHCI_ID}.0,port={self.port},id={self.qemu_id}"
        if self.name == "usb-storage":
            disk = workdir / "disk.img"
            if not disk.exists():
                write_disk_image(disk)
            return ["-drive", f"if=none,id=disk0,file={disk},format=raw",
                    "-device", dev + ",drive=disk0"]
        if self.name == "usb-serial":
            sock = workdir / "serial.sock"
            return ["-chardev", f"socket,id=ser0,path={sock},server=on,wait=off", "-device", dev + ",chardev=ser0"]
        if self.name == "usb-net":
            return ["-netdev", "user,id=unet,net=10.0.3.0/24", "-device", dev + ",netdev=unet"]
        if self.name == "usb-audio":
            return ["-audiodev", "none,id=snd0", "-device", dev + ",audiodev=snd0"]
        return ["-device", dev]

    @property
    def qemu_id(self) -> str:
        return self.name.replace("usb-", "") + "0"

    @property
    def vid_pid(self) -> str:
        return f"{self.vendor_id:04x}:{self.product_id:04x}"


EMULATED_DEVICES: tuple[EmulatedDevice, ...] = (
    EmulatedDevice("usb-kbd", 1, 0x0627, 0x0001, "QEMU USB Keyboard", ("usbhid",)),
    EmulatedDevice("usb-tablet", 2, 0x0627, 0x0001, "QEMU USB Tablet", ("usbhid",)),
    EmulatedDevice("usb-storage", 3, 0x46F4, 0x0001, "QEMU USB HARDDRIVE", ("usb-storage",)),
    EmulatedDevice("usb-serial", 4, 0x0403, 0x6001, "QEMU USB SERIAL", ("ftdi_sio",)),
    EmulatedDevice("usb-net", 5, 0x0525, 0xA4A2, "RNDIS/QEMU USB Network Device", ("cdc_ether", "cdc_ether")),
    EmulatedDevice("usb-audio", 6, 0x46F4, 0x0002, "QEMU USB Audio", ("snd-usb-audio", "snd-usb-audio")),
)


def _device(name: str) -> EmulatedDevice:
    for dev in EMULATED_DEVICES:
        if dev.name == name:
            return dev
    raise ArgumentError(f"unknown emulated device {name!r}: choose from "
                        + ", ".join(d.name for d in EMULATED_DEVICES))


def disk_pattern(block: int) -> bytes:
    """The 512 bytes of block `block` of the emulated disk: its number, repeated."""
    line = b"vusb qemu disk block %08d\n" % block
    return (line * (512 // len(line) + 1))[:512]


def write_disk_image(path: Path, blocks: int = DISK_BLOCKS) -> None:
    """A raw disk image of `blocks` blocks, each one :func:`disk_pattern`."""
    path.write_bytes(b"".join(disk_pattern(i) for i in range(blocks)))


def emulated_qemu_args(names: Iterable[str], workdir: Path, qmp_socket: Path | None = None) -> list[str]:
    """QEMU arguments for a ``qemu-xhci`` controller with the named devices (and, with
    `qmp_socket`, a QMP monitor listening on that unix socket)."""
    args = ["-device", f"qemu-xhci,id={XHCI_ID},p2=8,p3=0"]
    for name in names:
        args += _device(name).qemu_args(workdir)
    if qmp_socket is not None:
        args += ["-chardev", f"socket,id=qmp,path={qmp_socket},server=on,wait=off",
                 "-mon", "chardev=qmp,mode=control"]
    return args


# ---------------------------------------------------------------------------
# QMP


class QmpClient:
    """A minimal blocking QMP client on a unix socket (what the recorder needs)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise HarnessError(f"no QMP monitor answers on {path}") from None
                time.sleep(0.1)
        self.buffer = b""
        self._message()  # the greeting
        self.execute("qmp_capabilities")

    def _message(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HarnessError(f"the QMP monitor on {self.path} closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        """Run a QMP command; return its ``return`` value (a QMP error raises HarnessError)."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._message()
            if "return" in message:
                return message["return"]
            if "error" in message:
                raise HarnessError(f"QMP {command} failed: {message['error'].get('desc', message['error'])}")

    def key(self, qcode: str, down: bool) -> None:
        self.execute("input-send-event", events=[
            {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}])

    def tablet(self, x: int, y: int, button: bool | None = None) -> None:
        events: list[dict[str, Any]] = [{"type": "abs", "data": {"axis": "x", "value": x}},
                                        {"type": "abs", "data": {"axis": "y", "value": y}}]
        if button is not None:
            events.append({"type": "btn", "data": {"down": button, "button": "left"}})
        self.execute("input-send-event", events=events)

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------
# pcap


_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
               b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}


def split_usbmon_pcap(data: bytes, devices: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """Split a usbmon pcap (classic format) into one pcap per device.

    `devices` maps a name to its (bus number, device address); each output keeps the
    global header and every packet whose usbmon header names that device.
    """
    if len(data) < 24 or data[:4] not in _PCAP_MAGIC:
        raise HarnessError("not a classic pcap file (tcpdump -w writes one)")
    order = _PCAP_MAGIC[data[:4]]
    linktype = struct.unpack_from(order + "I", data, 20)[0]
    if linktype not in (LINKTYPE_USB_LINUX, LINKTYPE_USB_LINUX_MMAPPED):
        raise HarnessError(f"pcap link type {linktype} is not usbmon's (189 or 220)")
    wanted = {addr: name for name, addr in devices.items()}
    out = {name: bytearray(data[:24]) for name in devices}
    submitted: set[bytes] = set()
    offset = 24
    while offset + 16 <= len(data):
        incl = struct.unpack_from(order + "I", data, offset + 8)[0]
        end = offset + 16 + incl
        if end > len(data):
            raise HarnessError(f"pcap truncated at byte {offset}")
        if incl >= 16:
            # usbmon's header is in the capturing machine's byte order (little-endian here).
            devnum = data[offset + 16 + 11]
            busnum = struct.unpack_from("<H", data, offset + 16 + 12)[0]
            name = wanted.get((busnum, devnum))
            urb_id, event = data[offset + 16:offset + 24], data[offset + 16 + 8:offset + 16 + 9]
            if event == b"S":
                submitted.add(urb_id)
            # A completion whose submission came before the capture started belongs to the
            # device that had this address before (the controller was re-bound): left out.
            if name is not None and (event == b"S" or urb_id in submitted):
                out[name] += data[offset:end]
        offset = end
    return {name: bytes(buf) for name, buf in out.items()}


def input_events(raw: bytes) -> list[tuple[int, int, int]]:
    """(type, code, value) of each 64-bit ``struct input_event`` in `raw`, without EV_SYN
    and EV_MSC (what a replay must reproduce: keys, buttons, axes)."""
    return [(e.type, e.code, e.value) for e in parse_events(raw) if e.type not in (EV_SYN, EV_MSC)]


# ---------------------------------------------------------------------------
# Recording


_DESCRIBE = r"""
for d in /sys/bus/usb/devices/[0-9]*-[0-9]*; do
  case ${d##*/} in *:*) continue;; esac
  [ "$(cat $d/busnum)" = "$BUS" ] || continue
  printf 'dev %s %s %s %s %s %s %s\n' "$(cat $d/devpath)" "$(cat $d/busnum)" "$(cat $d/devnum)" \
    "$(cat $d/idVendor)" "$(cat $d/idProduct)" "$(cat $d/bcdDevice)" "$(cat $d/speed)"
  for f in manufacturer product serial; do printf 's %s %s %s\n' "$(cat $d/devpath)" $f "$(cat $d/$f 2>/dev/null)"; done
  for i in $d:*; do
    drv=-; [ -e $i/driver ] && drv=$(basename $(readlink $i/driver))
    printf 'if %s %s %s %s\n' "$(cat $d/devpath)" "$(cat $i/bInterfaceNumber)" "$(cat $i/bInterfaceClass)" "$drv"
  done
done
"""


async def _describe(guest: Guest, bus: int) -> dict[int, dict[str, Any]]:
    out = (await guest.run(f"BUS={bus}\n" + _DESCRIBE, check=True)).stdout
    found: dict[int, dict[str, Any]] = {}
    for line in out.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "dev":
            path, busnum, devnum, vid, pid, bcd, speed = rest.split()
            found[int(path)] = {"busnum": int(busnum), "devnum": int(devnum), "vendor_id": vid,
                                "product_id": pid, "bcdDevice": bcd, "speed": speed, "interfaces": []}
        elif kind == "s":
            path, field, value = [*rest.split(" ", 2), ""][:3]
            found[int(path)][field] = value
        elif kind == "if":
            path, number, cls, driver = rest.split()
            found[int(path)]["interfaces"].append({"number": int(number, 16), "class": cls, "driver": driver})
    return found


def audio_pattern() -> bytes:
    """What the recorder plays on usb-audio: :data:`AUDIO_FRAMES` frames of a ramp (left) and its negation."""
    frames = bytearray()
    for i in range(AUDIO_FRAMES):
        left = (i * 37) % 65536 - 32768
        frames += struct.pack("<hh", left, -left - 1)
    return bytes(frames)


async def record_emulated(out: Path, kernel: str = DEFAULT_KERNEL,
                          names: Sequence[str] | None = None) -> dict[str, Any]:
    """Boot a guest with QEMU's devices, record them with usbmon, write one pcap per
    device and ``recordings.json`` into `out`; return the manifest."""
    chosen = [_device(n) for n in (names or [d.name for d in EMULATED_DEVICES])]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vusb-emulated-") as tmp:
        work = Path(tmp)
        qmp_path = work / "qmp.sock"
        args = emulated_qemu_args([d.name for d in chosen], work, qmp_path)
        guest = await Guest.start(kernel, qemu_args=args)
        try:
            rig = _Rig(await asyncio.to_thread(QmpClient, qmp_path))
            try:
                if any(d.name == "usb-serial" for d in chosen):
                    # QEMU plugs usb-serial in only once something holds its chardev open.
                    rig.serial = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    rig.serial.settimeout(10)
                    rig.serial.connect(str(work / "serial.sock"))
                manifest = await _record(guest, rig, chosen, out)
            finally:
                rig.close()
        finally:
            await guest.stop()
    qemu_version = subprocess.run([find_qemu(), "--version"], capture_output=True, text=True,
                                  check=False).stdout.splitlines()[0]
    manifest = {"kernel": guest.kernel_release, "qemu": qemu_version,
                "command": "python -m vusb.harness record-emulated --out DIR", **manifest}
    (out / "recordings.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


@dataclasses.dataclass
class _Rig:
    """The host's handles on the recording guest's devices."""

    qmp: QmpClient
    serial: socket.socket | None = None

    def close(self) -> None:
        self.qmp.close()
        if self.serial is not None:
            self.serial.close()


async def _record(guest: Guest, rig: _Rig, chosen: list[EmulatedDevice], out: Path) -> dict[str, Any]:
    pci = (await guest.run("ls /sys/bus/pci/drivers/xhci_hcd | grep '^0000:'", check=True)).stdout.split()[0]
    bus = int((await guest.run(
        f"cat /sys/bus/pci/devices/{pci}/usb*/busnum | head -n1", check=True)).stdout.strip())
    await guest.run("grep -q '^root:' /etc/passwd 2>/dev/null || echo 'root:x:0:0:root:/root:/bin/sh' >> /etc/passwd",
                    check=True)
    await guest.run("modprobe usbmon 2>/dev/null; [ -d /sys/kernel/debug/usb/usbmon ] || "
                    "mount -t debugfs none /sys/kernel/debug 2>/dev/null; true")
    tcpdump = await guest.start_background("exec tcpdump -U -Z root -s 262144 -i usbmon0 -w /tmp/usbmon.pcap")
    await guest.wait_for("grep -q listening " + shlex.quote(tcpdump.directory) + "/err", timeout=30,
                         description="tcpdump to listen on usbmon0")
    # Re-bind the controller: every device enumerates again, inside the capture.
    await guest.run(f"echo {pci} > /sys/bus/pci/drivers/xhci_hcd/unbind; sleep 0.5; "
                    f"echo {pci} > /sys/bus/pci/drivers/xhci_hcd/bind", check=True, timeout=60)
    bus = int((await guest.run(
        f"for i in $(seq 100); do b=$(cat /sys/bus/pci/devices/{pci}/usb*/busnum 2>/dev/null | head -n1); "
        "[ -n \"$b\" ] && break; sleep 0.1; done; echo $b", check=True)).stdout.strip())
    facts: dict[str, dict[str, Any]] = {}
    for dev in chosen:
        sysfs = f"/sys/bus/usb/devices/{bus}-{dev.port}"
        await guest.wait_for(f"[ -n \"$(cat {sysfs}/bConfigurationValue 2>/dev/null)\" ] && "
                             f"[ -e {sysfs}:1.0/driver ]", timeout=60,
                             description=f"{dev.name} to enumerate and bind a driver")
        facts[dev.name] = await _EXERCISES[dev.name](guest, rig, sysfs)
    await asyncio.sleep(0.5)
    await tcpdump.stop()
    described = await _describe(guest, bus)
    raw = await guest.read_file("/tmp/usbmon.pcap")
    addresses = {d.name: (described[d.port]["busnum"], described[d.port]["devnum"]) for d in chosen}
    pieces = split_usbmon_pcap(raw, addresses)
    devices = []
    for dev in chosen:
        info = described[dev.port]
        (out / f"{dev.name}.pcap").write_bytes(pieces[dev.name])
        devices.append({"name": dev.name, "file": f"{dev.name}.pcap",
                        "pcap_sha256": hashlib.sha256(pieces[dev.name]).hexdigest(),
                        **info, "exercise": facts[dev.name]})
    return {"devices": devices}


async def _exercise_keyboard(guest: Guest, rig: _Rig, sysfs: str) -> dict[str, Any]:
    event = await guest.wait_for_input_device("QEMU USB Keyboard")
    reader = await guest.start_background(f"exec cat {event}")
    await asyncio.sleep(1.0)  # usbhid starts polling once the device is open
    for ch in KEYS_TYPED:
        await asyncio.to_thread(rig.qmp.key, ch, True)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(rig.qmp.key, ch, False)
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    events = input_events((await reader.stop()).stdout_bytes)
    return {"typed": KEYS_TYPED, "events": [list(e) for e in events]}


async def _exercise_tablet(guest: Guest, rig: _Rig, sysfs: str) -> dict[str, Any]:
    event = await guest.wait_for_input_device("QEMU USB Tablet")
    reader = await guest.start_background(f"exec cat {event}")
    await asyncio.sleep(1.0)
    for i, (x, y) in enumerate(TABLET_POINTS):
        await asyncio.to_thread(rig.qmp.tablet, x, y, None if i != 1 else True)
        await asyncio.sleep(0.2)
    await asyncio.to_thread(rig.qmp.tablet, *TABLET_POINTS[-1], False)
    await asyncio.sleep(1.0)
    events = input_events((await reader.stop()).stdout_bytes)
    return {"points": [list(p) for p in TABLET_POINTS], "events": [list(e) for e in events]}


async def _exercise_storage(guest: Guest, rig: _Rig, sysfs: str) -> dict[str, Any]:
    disk = await guest.wait_for_disk(sysfs)
    r = await guest.run(f"dd if=/dev/{disk} bs=65536 2>/dev/null | sha256sum; "
                        f"dd if=/dev/{disk} bs=512 count=1 2>/dev/null | sha256sum; cat /sys/block/{disk}/size",
                        check=True, timeout=120)
    whole, first, size = r.stdout.split()[0], r.stdout.split()[2], int(r.stdout.split()[4])
    expected = hashlib.sha256(b"".join(disk_pattern(i) for i in range(DISK_BLOCKS))).hexdigest()
    if whole != expected:
        raise HarnessError(f"the guest read the emulated disk as {whole}, not the image's {expected}")
    return {"blocks": size, "sha256": whole, "block0_sha256": first}


async def _exercise_serial(guest: Guest, rig: _Rig, sysfs: str) -> dict[str, Any]:
    tty = (await guest.wait_for_path(f"{sysfs}:1.0/ttyUSB*"))[0].rsplit("/", 1)[1]
    await guest.run(f"stty -F /dev/{tty} 115200 raw -echo", check=True)
    reader = await guest.start_background(f"exec cat /dev/{tty}")
    await asyncio.sleep(0.5)
    chardev = rig.serial
    assert chardev is not None
    chardev.sendall(SERIAL_TO_GUEST)
    await asyncio.sleep(0.5)
    await guest.run(f"printf '%s' {shlex.quote(SERIAL_FROM_GUEST.decode())} > /dev/{tty}", check=True)
    sent = b""
    with contextlib.suppress(TimeoutError):
        while len(sent) < len(SERIAL_FROM_GUEST):
            chunk = await asyncio.to_thread(chardev.recv, 4096)
            if not chunk:
                break
            sent += chunk
    await asyncio.sleep(0.3)
    received = (await reader.stop()).stdout_bytes
    return {"tty": tty, "guest_read": received.decode("latin-1"), "qemu_received": sent.decode("latin-1")}


async def _exercise_net(guest: Guest, rig: _Rig, sysfs: str) -> dict[str, Any]:
    ifname = (await guest.wait_for_path(f"{sysfs}:1.0/net/*"))[0].rsplit("/", 1)[1]
    r = await guest.run(f"ip link set {ifname} up && ip addr add 10.0.3.15/24 dev {ifname} && "
                        "ping -c 3 -W 2 10.0.3.2; ip link set " + ifname + " down",
                        timeout=60)
    return {"interface": ifname, "ping_status": r.returncode, "ping": r.stdout.splitlines()[-2:]}


async def _exercise_audio(guest: Guest, rig: _Rig, sysfs: str) -> dict[str, Any]:
    card = (await guest.wait_for_path(f"{sysfs}:1.*/sound/card*"))[0].rsplit("card", 1)[1]
    pattern = audio_pattern()
    await guest.write_file("/tmp/pattern.raw", pattern)
    r = await guest.run(f"aplay -q -D hw:{card},0 -t raw -f S16_LE -r 48000 -c 2 /tmp/pattern.raw",
                        timeout=60)
    return {"card": int(card), "aplay_status": r.returncode, "frames": AUDIO_FRAMES,
            "sha256": hashlib.sha256(pattern).hexdigest()}


_EXERCISES = {
    "usb-kbd": _exercise_keyboard,
    "usb-tablet": _exercise_tablet,
    "usb-storage": _exercise_storage,
    "usb-serial": _exercise_serial,
    "usb-net": _exercise_net,
    "usb-audio": _exercise_audio,
}
