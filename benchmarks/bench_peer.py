"""vusb beside its nearest peer, PyPI ``usbip`` 0.7.0, measured in one run by one client.

Both servers run as their own processes on loopback and export the same two devices: a
boot keyboard (busid 1-1) and a 64 MiB memory disk at high speed (busid 1-2). One
blocking-socket client (:class:`benchmarks.common.RawClient`, which costs almost nothing
per URB) measures both in alternating rounds, vusb first in odd rounds and the peer
first in even ones, so a change in the machine's load hits both alike. Each figure is
the median of its rounds:

- control transfer round trip, GET_DESCRIPTOR(DEVICE) at queue depth 1: p50 and p99;
- server CPU per control transfer (all threads, from ``/proc/PID/task/*/schedstat``) around
  the timed loop, and its user share (``/proc/PID/stat``, in clock ticks) (the steadiest figure on a shared machine: it does not depend on how
  long a halted CPU takes to wake);
- mass storage READ(10) and WRITE(10) of 120 KiB and 1 MiB per command, one command at a
  time as Linux usb-storage sends them (CBW, data, CSW), with server CPU per GiB.

The peer is installed from PyPI into a virtual environment kept in
``~/.cache/vusb/peer/`` (made on first use; ``--peer-python`` names another
interpreter that has it). Nothing here asserts: the table prints both figures, the
ratio, the issue's target for it and whether the ratio meets it.

- with ``--guest KERNEL``: both disks through that guest kernel's usb-storage driver (the
  vhci-hcd client Linux itself uses), dd O_DIRECT read and write at 120 KiB and 1 MiB per
  command.
- with ``--floor``: another server measured in the same rounds (not through the guest),
  one reduced to what the wire needs: canned replies and a bare Bulk-Only disk from
  blocking sockets, no device model, no event loop (:data:`FLOOR_SERVER`).  What it
  spends is what the kernel's loopback TCP and the wake-ups cost any server, so
  ``floor/peer`` is the lowest ratio a Python server can reach on the machine.

    python -m benchmarks.bench_peer [--rounds 3] [--seconds 1.5] [--quick] [--guest 6.1] [--floor]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_server import GET_DEVICE_DESCRIPTOR, raw_control_samples
from benchmarks.bench_storage import CONFIGURATION_DESCRIPTOR, GET_DESCRIPTOR, SET_CONFIGURATION, BotHost, RawBulk
from benchmarks.common import HOST, RawClient, ServerProcess, machine_description, percentile
from vusb.descriptors import ConfigurationDescriptor
from vusb.device import Device
from vusb.urb import SetupPacket

PEER_REQUIREMENT = "usbip==0.7.0"
KIB = 1024
MIB = 1024 * KIB
DISK_SIZE = 64 * MIB
SIZES = (120 * KIB, MIB)

#: The peer's server: the same two devices through its own public API, on the port given.
PEER_SERVER = textwrap.dedent('''
    import sys, threading
    from usbip import SPEED_HIGH, USBIP
    from usbip.classes.device.hid import HID, keyboard_report_descriptor
    from usbip.classes.device.msc import MSC
    from usbip.device import USBDevice

    class MemoryStore:
        block_size = 512
        def __init__(self, size):
            self.data = bytearray(size)
            self.num_blocks = size // 512
        def read(self, lba, count):
            return bytes(self.data[lba * 512:(lba + count) * 512])
        def write(self, lba, count, data):
            self.data[lba * 512:lba * 512 + len(data)] = data

    port, size = int(sys.argv[1]), int(sys.argv[2])
    transport = USBIP("127.0.0.1", port)
    keyboard = USBDevice(0x1209, 0x0001, product="Peer Keyboard")
    keyboard.set_speed(SPEED_HIGH)
    keyboard.add(HID(keyboard_report_descriptor(), subclass=1, protocol=1, in_mps=8))
    keyboard.plug(via=transport)
    disk = USBDevice(0x1209, 0x0002, product="Peer Disk")
    disk.set_speed(SPEED_HIGH)
    disk.add(MSC(MemoryStore(size)))
    disk.plug(via=transport)
    print("ready", flush=True)
    sys.stdin.read()  # until the benchmark closes our standard input
''')


#: vusb's server from another interpreter (``--baseline-python``: another vusb version installed there), the
#: same two devices as :func:`vusb_server`, for a before/after column measured in the same run.
BASELINE_SERVER = textwrap.dedent('''
    import asyncio, sys
    from vusb.devices import Keyboard
    from vusb.devices.storage import MassStorage
    from vusb.server import Server, run

    async def main(port, size):
        devices = [Keyboard(speed="high"), MassStorage(memory=True, size=size, speed="high")]
        async with Server(devices, port=port):
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    run(main(int(sys.argv[1]), int(sys.argv[2])))
''')

#: The floor: a USB/IP server reduced to what the wire needs (standard library only, one thread per
#: connection, blocking sockets, canned descriptors).  Busid 1-2 is a 64 MiB disk that knows four SCSI
#: commands (TEST UNIT READY, READ CAPACITY(10), READ(10), WRITE(10)) over Bulk-Only Transport, its data
#: sent from and received into one bytearray with no copy; any other busid is a device that answers
#: every control IN with its device descriptor.  No checks, no device model, no event loop: it is what
#: the kernel's loopback TCP and the wake-ups cost any server written in Python.
FLOOR_SERVER = textwrap.dedent('''
    import socket, struct, sys, threading
    HEAD = struct.Struct(">7I")
    RET = struct.Struct(">10I8x")
    CBW = struct.Struct("<IIIBBB16s")
    DEVICE = bytes((18, 1, 0, 2, 0, 0, 0, 64, 0x09, 0x12, 0x99, 0x99, 0, 1, 0, 0, 0, 1))
    CONFIG = bytes((9, 2, 32, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 2, 8, 6, 0x50, 0,
                    7, 5, 0x81, 2, 0, 2, 0, 7, 5, 0x02, 2, 0, 2, 0))

    def serve(conn, size):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = bytearray(48)
        view = memoryview(head)
        if conn.recv_into(view, 40, socket.MSG_WAITALL) < 40:
            return
        busid = bytes(head[8:40])
        disk = memoryview(bytearray(size)) if busid.rstrip(b"\\0") == b"1-2" else None
        record = (b"/floor".ljust(256, b"\\0") + busid
                  + struct.pack(">3I3H6B", 1, 1, 3, 0x1209, 0x9999, 0x100, 0, 0, 0, 1, 1, 1))
        conn.sendall(struct.pack(">HHI", 0x0111, 0x0003, 0) + record)
        recv, send, unpack, pack = conn.recv_into, conn.send, HEAD.unpack_from, RET.pack
        tag = 0
        data_in = None  # a READ's or READ CAPACITY's data, due on the next bulk IN
        data_out = None  # where a WRITE's data goes, on the next bulk OUT
        while recv(view, 48, socket.MSG_WAITALL) == 48:
            command, seqnum, _, direction, ep, _, length = unpack(head)
            if command == 2:
                send(pack(4, seqnum, 0, 0, 0, 0, 0, 0, 0, 0))
            elif ep == 0 and direction:
                data = (CONFIG if head[43] == 2 else DEVICE)[:length]
                send(pack(3, seqnum, 0, 0, 0, 0, len(data), 0, 0, 0) + data)
            elif ep == 0:
                send(pack(3, seqnum, 0, 0, 0, 0, 0, 0, 0, 0))
            elif direction:  # bulk IN: the data stage, else the CSW
                if data_in is not None:
                    conn.sendmsg((pack(3, seqnum, 0, 0, 0, 0, len(data_in), 0, 0, 0), data_in))
                    data_in = None
                else:
                    send(pack(3, seqnum, 0, 0, 0, 0, 13, 0, 0, 0) + struct.pack("<IIIB", 0x53425355, tag, 0, 0))
            elif data_out is not None:  # bulk OUT: a WRITE's data, else a CBW
                recv(data_out, length, socket.MSG_WAITALL)
                data_out = None
                send(pack(3, seqnum, 0, 0, 0, 0, length, 0, 0, 0))
            else:
                cbw = bytearray(length)
                recv(cbw, length, socket.MSG_WAITALL)
                _, tag, _, _, _, _, cdb = CBW.unpack_from(cbw)
                lba, blocks = struct.unpack_from(">IxH", cdb, 2)
                if cdb[0] == 0x25:
                    data_in = struct.pack(">II", len(disk) // 512 - 1, 512)
                elif cdb[0] == 0x28:
                    data_in = disk[lba * 512:(lba + blocks) * 512]
                elif cdb[0] == 0x2A:
                    data_out = disk[lba * 512:(lba + blocks) * 512]
                send(pack(3, seqnum, 0, 0, 0, 0, length, 0, 0, 0))
        conn.close()

    port, size = int(sys.argv[1]), int(sys.argv[2])
    listener = socket.create_server(("127.0.0.1", port))
    threading.Thread(target=lambda: [threading.Thread(target=serve, args=(listener.accept()[0], size),
                                                      daemon=True).start() for _ in iter(int, 1)],
                     daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
''')

# ------------------------------------------------------------------ the servers


def default_peer_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vusb" / "peer" / PEER_REQUIREMENT.replace("==", "-")


def peer_python(directory: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """An interpreter with the peer installed: a virtual environment made (once) for it."""
    directory = directory or default_peer_dir()
    python = directory / "bin" / "python"
    probe = [str(python), "-c", "import usbip, sys; sys.exit(usbip.__version__ != '0.7.0')"]
    if python.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return python
    log(f"installing {PEER_REQUIREMENT} into {directory} (once)")
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                             PEER_REQUIREMENT], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not install {PEER_REQUIREMENT}: {result.stderr.strip()[-400:]}")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    """A server process measured by the benchmark: what it is called, its port and its pid."""

    name: str
    port: int
    pid: int | None


@contextlib.contextmanager
def peer_server(python: Path) -> Iterator[Served]:
    with script_server(python, PEER_SERVER, f"usbip {PEER_REQUIREMENT.split('==')[1]}") as served:
        yield served


@contextlib.contextmanager
def baseline_server(python: Path) -> Iterator[Served]:
    """vusb as installed for ``python`` (say the version before a change), serving vusb's two devices."""
    with script_server(python, BASELINE_SERVER, "vusb before") as served:
        yield served


@contextlib.contextmanager
def floor_server() -> Iterator[Served]:
    """The floor (:data:`FLOOR_SERVER`), run by this interpreter."""
    with script_server(Path(sys.executable), FLOOR_SERVER, "floor") as served:
        yield served


@contextlib.contextmanager
def script_server(python: Path, script: str, name: str) -> Iterator[Served]:
    """A server made by ``script`` run with ``python``: it prints "ready" and serves until its stdin closes."""
    port = free_port()
    # Run from a neutral directory: "-c" puts the working directory first on sys.path, which from a checkout
    # would import this tree's vusb instead of the one installed for ``python``.
    proc = subprocess.Popen([str(python), "-c", script, str(port), str(DISK_SIZE)], cwd=tempfile.gettempdir(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"{name}: the server did not start: {line}{proc.communicate()[1][-600:]}")
        yield Served(name, port, proc.pid)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Devices:
    """vusb's two devices, made in the server's process: the keyboard first, then the disk."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> Device:
        from vusb.devices import Keyboard
        from vusb.devices.storage import MassStorage

        self.made += 1
        device: Device = Keyboard(speed="high") if self.made == 1 else MassStorage(memory=True, size=DISK_SIZE,
                                                                                    speed="high")
        return device


@contextlib.contextmanager
def vusb_server() -> Iterator[Served]:
    with ServerProcess(_Devices(), count=2) as server:
        yield Served(f"vusb ({server.loop})", server.port, server.pid)


# ------------------------------------------------------------------ measurements


def cpu_times(pid: int | None) -> tuple[float, float]:
    """(CPU seconds, of which user) of a process and all its threads; NaN when unknown.

    The total comes from each thread's /proc/PID/task/TID/schedstat (nanoseconds on a CPU, so a
    few thousand transfers measure well); the user share from /proc/PID/stat, which counts in
    clock ticks (10 ms), so it needs longer runs to mean much.
    """
    if pid is None:
        return float("nan"), float("nan")
    try:
        total_ns = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/schedstat",
                                                              encoding="ascii") as fh:
                total_ns += int(fh.read().split()[0])
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return total_ns / 1e9, int(fields[11]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan"), float("nan")


@dataclass
class Figures:
    """One server's figures over the rounds: figure name -> one value per round."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        values = self.values.get(name, [])
        return statistics.median(values) if values else float("nan")


def measure_control(served: Served, iterations: int, figures: Figures) -> None:
    with RawClient(served.port, "1-1") as client:
        if len(client.control(GET_DEVICE_DESCRIPTOR)) != 18:
            raise RuntimeError(f"{served.name}: GET_DESCRIPTOR(DEVICE) did not return 18 bytes")
        raw_control_samples(client, 200, 50)  # warm both ends
        cpu0, user0 = cpu_times(served.pid)
        samples = sorted(raw_control_samples(client, iterations, 0))
        cpu1, user1 = cpu_times(served.pid)
    figures.add("control p50 µs", percentile(samples, 50) / 1000)
    figures.add("control p99 µs", percentile(samples, 99) / 1000)
    figures.add("control server CPU µs", (cpu1 - cpu0) / iterations * 1e6)
    figures.add("control server user µs", (user1 - user0) / iterations * 1e6)


def open_disk(served: Served) -> tuple[RawClient, BotHost]:
    client = RawClient(served.port, "1-2")
    head = client.control(SetupPacket(0x80, GET_DESCRIPTOR, CONFIGURATION_DESCRIPTOR << 8, 0, 9))
    full = client.control(SetupPacket(0x80, GET_DESCRIPTOR, CONFIGURATION_DESCRIPTOR << 8, 0,
                                      int.from_bytes(head[2:4], "little")))
    config = ConfigurationDescriptor.parse(full)
    client.control(SetupPacket(0x00, SET_CONFIGURATION, config.value, 0, 0))
    bulk = [ep.address for itf in config.interfaces for ep in itf.endpoints]
    ep_in = next(a for a in bulk if a & 0x80)
    ep_out = next(a for a in bulk if not a & 0x80)
    return client, BotHost(RawBulk(client), ep_in, ep_out)


async def _storage(served: Served, seconds: float, figures: Figures, pattern: bytes) -> None:
    client, bot = open_disk(served)
    try:
        await bot.ready()
        blocks, block = await bot.capacity()
        if blocks * block != DISK_SIZE:
            raise RuntimeError(f"{served.name}: the disk has {blocks} blocks of {block} bytes")
        await bot.rw10(True, 0, len(pattern) // block, block, pattern)
        if bytes(await bot.rw10(False, 0, len(pattern) // block, block)) != pattern:
            raise RuntimeError(f"{served.name}: the disk did not read back what was written")
        for size in SIZES:
            for write in (True, False):
                per = size // block
                data = pattern[:size] if write else b""
                lba = commands = 0
                cpu0, _ = cpu_times(served.pid)
                t0 = time.perf_counter()
                while commands == 0 or time.perf_counter() - t0 < seconds:
                    if lba + per > blocks:
                        lba = 0
                    payload = await bot.rw10(write, lba, per, block, data)
                    if not write and len(payload) != size:
                        raise RuntimeError(f"{served.name}: READ(10) returned {len(payload)} bytes of {size}")
                    lba += per
                    commands += 1
                elapsed = time.perf_counter() - t0
                cpu1, _ = cpu_times(served.pid)
                moved = commands * size
                label = f"{'write' if write else 'read'} {size // KIB} KiB"
                figures.add(f"{label} MB/s", moved / elapsed / 1e6)
                figures.add(f"{label} server CPU ms/GiB", (cpu1 - cpu0) / (moved / (1 << 30)) * 1e3)
    finally:
        client.close()


def measure_storage(served: Served, seconds: float, figures: Figures) -> None:
    pattern = bytes(range(256)) * (MIB // 256)
    asyncio.run(_storage(served, seconds, figures, pattern))


#: The disks' USB ids as the guest sees them: (vendor, product) of vusb's MassStorage and of the peer's.
VUSB_DISK_ID = (0x1209, 0x0005)
PEER_DISK_ID = (0x1209, 0x0002)
GUEST_SIZES = ((120 * KIB, 240, "120 KiB"), (MIB, 2048, "1024 KiB"))


def measure_guest(served: Served, guest: Any, usb_id: tuple[int, int], mib: int, figures: Figures) -> None:
    """The disk through the guest's kernel: dd O_DIRECT, one SCSI command per dd block (usb-storage), read and
    written at 120 KiB (its default for a high-speed device) and at 1 MiB (max_sectors raised to 2048).

    ``guest`` is a :class:`vusb.harness.guest.SyncGuest`. Timed from the host (busybox ``date`` has no
    sub-second format), less the round trip of an empty command measured just before.
    """
    port = guest.attach(None, served.port, "1-2")
    try:
        devdir = guest.wait_for_usb_device(*usb_id, timeout=60)
        sd = guest.wait_for_disk(devdir, timeout=60)
        for size, max_sectors, label in GUEST_SIZES:
            guest.run(f"echo {max_sectors} > /sys/block/{sd}/device/max_sectors", check=True)
            count = mib * MIB // size
            for name, dd in (("write", f"dd if=/dev/zero of=/dev/{sd} bs={size} count={count} oflag=direct"),
                             ("read", f"dd if=/dev/{sd} of=/dev/null bs={size} count={count} iflag=direct")):
                overhead = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    guest.run("true", check=True)
                    overhead.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                guest.run(f"{dd} 2>/dev/null", timeout=600, check=True)
                wall = time.perf_counter() - t0 - statistics.median(overhead)
                figures.add(f"guest {name} {label} MB/s", count * size / wall / 1e6)
    finally:
        guest.detach(port)


# ------------------------------------------------------------------ the table

#: figure -> (higher is better, the issue's target for vusb / peer, as text)
TARGETS: dict[str, tuple[bool, float | None]] = {
    "control p50 µs": (False, 1.0),
    "control p99 µs": (False, None),
    "control server CPU µs": (False, 0.6),
    "control server user µs": (False, None),
    "read 120 KiB MB/s": (True, 1.2),
    "read 120 KiB server CPU ms/GiB": (False, 0.6),
    "write 120 KiB MB/s": (True, None),
    "write 120 KiB server CPU ms/GiB": (False, None),
    "read 1024 KiB MB/s": (True, 1.0),
    "read 1024 KiB server CPU ms/GiB": (False, None),
    "write 1024 KiB MB/s": (True, None),
    "write 1024 KiB server CPU ms/GiB": (False, None),
    "guest read 120 KiB MB/s": (True, 1.0),
    "guest write 120 KiB MB/s": (True, 1.0),
    "guest read 1024 KiB MB/s": (True, 1.0),
    "guest write 1024 KiB MB/s": (True, 1.0),
}


def table(ours: Figures, theirs: Figures, names: tuple[str, str], *, verdicts: bool,
          more: Sequence[tuple[str, Figures]] = ()) -> str:
    """The figures side by side; each of ``more`` (a label and the figures of another server measured in the same
    rounds: vusb before a change, the floor) adds two columns, its figures and its own ratio to the peer."""
    extra = tuple(cell for label, _ in more for cell in (label, f"{label}/peer"))
    headers = ("figure (median of rounds)", names[0], names[1], "vusb/peer", "target", "", *extra)
    rows: list[tuple[str, ...]] = []
    for name, (higher, target) in TARGETS.items():
        a, b = ours.median(name), theirs.median(name)
        if a != a and b != b:  # NaN: not measured
            continue
        ratio = a / b if b else float("nan")
        target_text = "" if target is None else f"{'>=' if higher else '<='} {target:g}"
        verdict = ""
        if verdicts and target is not None:
            verdict = "PASS" if (ratio >= target if higher else ratio <= target) else "MISS"
        cells: tuple[str, ...] = ()
        for _, figures in more:
            c = figures.median(name)
            cells += ("", "") if c != c else (f"{c:,.1f}", f"{c / b:.2f}" if b else "nan")
        rows.append((name, f"{a:,.1f}", f"{b:,.1f}", f"{ratio:.2f}", target_text, verdict, *cells))
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (headers, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_peer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3; the median is shown)")
    parser.add_argument("--iterations", type=int, default=3000, help="control transfers per round (default 3000)")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per storage figure per round")
    parser.add_argument("--quick", action="store_true", help="1 round, 300 transfers, 0.2 s: figures only, "
                        "no verdicts (a smoke run)")
    parser.add_argument("--peer-python", type=Path, help="an interpreter that has usbip 0.7.0 installed")
    parser.add_argument("--no-storage", action="store_true", help="control transfers only")
    parser.add_argument("--guest", metavar="KERNEL", help="also read and write both disks through a guest running "
                        "this kernel (e.g. 6.1): dd O_DIRECT at 120 KiB and 1 MiB per command")
    parser.add_argument("--guest-mib", type=int, default=32, help="MiB each guest dd moves (default 32)")
    parser.add_argument("--baseline-python", type=Path, help="an interpreter with another vusb installed (say the "
                        "version before a change): measured in the same rounds as a third server, its figures "
                        "printed beside")
    parser.add_argument("--floor", action="store_true", help="also measure a server reduced to canned replies and a "
                        "bare disk: the lowest CPU and latency a Python server reaches here (not through the guest)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.rounds, args.iterations, args.seconds = 1, 300, 0.2
    python = args.peer_python or peer_python(log=lambda m: print(f"bench_peer: {m}", file=sys.stderr))
    ours, theirs = Figures(), Figures()
    names = ("vusb", "usbip 0.7.0")
    guest = None
    if args.guest:
        from vusb.harness import Guest
        print(f"bench_peer: starting the {args.guest} guest", file=sys.stderr)
        guest = Guest.shared(args.guest).sync
    before = Figures() if args.baseline_python else None
    floor = Figures() if args.floor else None
    with contextlib.ExitStack() as stack:
        vusb_served = stack.enter_context(vusb_server())
        peer_served = stack.enter_context(peer_server(python))
        names = (vusb_served.name, peer_served.name)
        servers: list[tuple[Served, Figures, tuple[int, int] | None]] = [
            (vusb_served, ours, VUSB_DISK_ID), (peer_served, theirs, PEER_DISK_ID)]
        if args.baseline_python:
            assert before is not None
            servers.insert(1, (stack.enter_context(baseline_server(args.baseline_python)), before, VUSB_DISK_ID))
        if floor is not None:
            servers.append((stack.enter_context(floor_server()), floor, None))
        for round_number in range(args.rounds):
            order = list(servers)
            if round_number % 2:
                order.reverse()
            for served, figures, usb_id in order:
                print(f"bench_peer: round {round_number + 1}/{args.rounds}: {served.name}", file=sys.stderr)
                measure_control(served, args.iterations, figures)
                if not args.no_storage:
                    measure_storage(served, args.seconds, figures)
                if guest is not None and usb_id is not None:  # the floor is not measured through the guest
                    measure_guest(served, guest, usb_id, args.guest_mib, figures)
    print(f"vusb beside PyPI {PEER_REQUIREMENT}: one raw client, {args.rounds} alternating round(s)")
    print(machine_description())
    more = [(label, figures) for label, figures in (("vusb before", before), ("floor", floor)) if figures is not None]
    print(table(ours, theirs, names, verdicts=not args.quick, more=more))
    return 0


if __name__ == "__main__":
    sys.exit(main())
