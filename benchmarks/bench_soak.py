"""Load held: many exported devices, many clients attaching, transferring and detaching, for minutes.

One vusb server process exports 100 devices (keyboards and 1 MiB memory disks, alternately).
16 clients, each in its own asyncio task of one client process, loop over their own share
of the devices: import one (OP_REQ_IMPORT), enumerate and configure it as Linux does, make
transfers (GET_DESCRIPTOR on every device; a READ(10) of 64 KiB checked against what the
client wrote there first on a disk), then close the connection (the detach). Everything
runs on loopback and stops by itself after ``--minutes`` (10 by default).

Printed: operations completed (imports and transfers), errors (the target is 0), the
server's resident memory and open file descriptors at the start and at the end (the
target is flat: no growth beyond allocator noise), and the machine's load.

    python -m benchmarks.bench_soak [--minutes 10] [--devices 100] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.common import HOST, ServerProcess, load_average, machine_description
from vusb.client import RemoteDevice
from vusb.device import Device

DISK_SIZE = 1 << 20
READ_BLOCKS = 128  # 64 KiB per READ(10)
CBW = struct.Struct("<IIIBBB16s")


class _Devices:
    """The server's devices, made in its own process: keyboards and small disks, alternately."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> Device:
        from vusb.devices import Keyboard
        from vusb.devices.storage import MassStorage

        self.made += 1
        device: Device = Keyboard() if self.made % 2 else MassStorage(memory=True, size=DISK_SIZE)
        return device


def process_footprint(pid: int | None) -> tuple[int, int]:
    """(resident KiB, open file descriptors) of a process; (-1, -1) when /proc cannot tell."""
    if pid is None:
        return -1, -1
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return -1, -1


@dataclass
class Tally:
    imports: int = 0
    transfers: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)


async def _bot_read_check(dev: RemoteDevice, ep_in: int, ep_out: int, tag: int, lba: int, pattern: bytes) -> int:
    """WRITE(10) ``pattern`` at ``lba``, READ(10) it back, compare; returns the transfers made."""
    blocks = len(pattern) // 512
    for opcode, data_in in ((0x2A, False), (0x28, True)):
        cdb = struct.pack(">BBIBHB", opcode, 0, lba, 0, blocks, 0)
        await dev.transfer_out(ep_out, CBW.pack(0x43425355, tag, len(pattern), 0x80 if data_in else 0, 0, 10, cdb))
        if data_in:
            got = await dev.transfer_in(ep_in, len(pattern))
            if got != pattern:
                raise RuntimeError(f"READ(10) at LBA {lba} did not return what was written there")
        else:
            await dev.transfer_out(ep_out, pattern)
        csw = await dev.transfer_in(ep_in, 13)
        if len(csw) != 13 or csw[12] != 0 or int.from_bytes(csw[4:8], "little") != tag:
            raise RuntimeError(f"bad CSW {csw.hex()} for tag {tag}")
        tag += 1
    return 6


async def _client(port: int, busids: Sequence[str], deadline: float, tally: Tally, number: int) -> None:
    pattern = bytes((number + i) & 0xFF for i in range(READ_BLOCKS * 512))
    tag = 1
    while time.monotonic() < deadline:
        for busid in busids:
            if time.monotonic() >= deadline:
                return
            try:
                async with await RemoteDevice.open(HOST, busid, port=port, timeout=10) as dev:
                    tally.imports += 1
                    info = await dev.enumerate()
                    tally.transfers += 1
                    for _ in range(4):
                        if len(await dev.get_descriptor(1, 0, 18)) != 18:
                            raise RuntimeError("GET_DESCRIPTOR(DEVICE) did not return 18 bytes")
                        tally.transfers += 1
                    endpoints = [e for i in info.configurations[0].interfaces for e in i.endpoints]
                    if info.configurations[0].interfaces[0].interface_class == 0x08:
                        ep_in = next(e.address for e in endpoints if e.is_in) & 0x0F
                        ep_out = next(e.address for e in endpoints if not e.is_in)
                        lba = (number * READ_BLOCKS) % (DISK_SIZE // 512 - READ_BLOCKS)
                        made = await _bot_read_check(dev, ep_in, ep_out, tag, lba, pattern)
                        tally.transfers += made  # not `+= await`: that reads the count before the await
                        tally.bytes_read += len(pattern)
                        tag += 2
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown, the soak goes on
                tally.errors.append(f"client {number} on {busid}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)


async def _soak(port: int, devices: int, clients: int, seconds: float) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    busids = [f"1-{n}" for n in range(1, devices + 1)]
    await asyncio.gather(*(_client(port, busids[k::clients], deadline, tally, k) for k in range(clients)))
    return tally


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load is held (default 10)")
    parser.add_argument("--seconds", type=float, help="the same in seconds (overrides --minutes; for smoke runs)")
    parser.add_argument("--devices", type=int, default=100, help="exported devices (default 100)")
    parser.add_argument("--clients", type=int, default=16, help="clients attaching at once (default 16)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not 1 <= args.clients <= args.devices <= 255:
        print("bench_soak: need 1 <= --clients <= --devices <= 255", file=sys.stderr)
        return 2
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    with ServerProcess(_Devices(), count=args.devices) as server:
        time.sleep(0.5)
        rss0, fds0 = process_footprint(server.pid)
        started = time.perf_counter()
        tally = asyncio.run(_soak(server.port, args.devices, args.clients, seconds))
        elapsed = time.perf_counter() - started
        time.sleep(0.5)  # connections closed by the clients are gone from the server too
        rss1, fds1 = process_footprint(server.pid)
    print(f"soak: {args.devices} devices, {args.clients} clients, {elapsed:.0f} s on loopback")
    print(machine_description())
    print(f"imports (attach/detach cycles)  {tally.imports:,}  ({tally.imports / elapsed:,.0f}/s)")
    print(f"transfers                       {tally.transfers:,}  ({tally.transfers / elapsed:,.0f}/s)")
    print(f"disk data read and checked      {tally.bytes_read / 1e6:,.1f} MB")
    print(f"errors                          {len(tally.errors)}  (target 0)")
    for error in tally.errors[:10]:
        print(f"    {error}")
    print(f"server memory (RSS)             {rss0:,} KiB at start, {rss1:,} KiB at end ({rss1 - rss0:+,} KiB)")
    print(f"server file descriptors         {fds0} at start, {fds1} at end ({fds1 - fds0:+})")
    print(f"load at the end: {load_average()}")
    return 0 if not tally.errors else 1


if __name__ == "__main__":
    sys.exit(main())
