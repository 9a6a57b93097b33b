"""Record and replay cost: how fast `vusb record` reads a capture, and a replayed disk beside the original.

    python -m benchmarks.bench_replay [--mib N]

A disk image of random bytes (vusb's mass-storage class) is read once through USB/IP on loopback with a
usbmon-form capture on, in 120 KiB READ(10) commands as Linux usb-storage issues them.
Then, in this process:

* ``vusb record`` turns the capture into a replay profile (figure: capture MB per second);
* the same reads run through the in-process host (no sockets) against the original disk
  and against the replay (class storage: READs served by LBA from the recorded blocks),
  in alternating rounds; the figures are data MB per second (1 MB = 10**6 bytes), the
  original disk being the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import struct
import tempfile
import time
from pathlib import Path

from vusb.client import RemoteDevice
from vusb.device import Device
from vusb.host import UsbHost
from vusb.profile import load_device, parse_profile
from vusb.record import record_to
from vusb.server import Server
from vusb.testing import LocalHost

BLOCKS_PER_COMMAND = 240  # usb-storage's default max_sectors: 120 KiB
MB = 1e6


def disk(folder: Path, mib: int) -> Device:
    """A disk image of random bytes (so the recording's data file holds every block), served from the page cache."""
    (folder / "bench.img").write_bytes(os.urandom(mib * 1024 * 1024))
    return parse_profile("identity: {vendor_id: 0x1209, product_id: 0x0005, product: Bench Disk, speed: high}\n"
                         "functions:\n  - kind: mass-storage\n    image: bench.img\n", base_dir=folder).build()


def cbw(tag: int, length: int, cdb: bytes) -> bytes:
    return b"USBC" + struct.pack("<IIBBB", tag, length, 0x80, 0, len(cdb)) + cdb.ljust(16, b"\0")


async def read_all(host: UsbHost, mib: int) -> int:
    """Read the whole disk in READ(10) commands; returns the data bytes read."""
    total = 0
    blocks = mib * 2048
    for tag, lba in enumerate(range(0, blocks, BLOCKS_PER_COMMAND), 1):
        count = min(BLOCKS_PER_COMMAND, blocks - lba)
        await host.transfer_out(0x01, cbw(tag, count * 512, struct.pack(">BBIBHB", 0x28, 0, lba, 0, count, 0)))
        total += len(await host.transfer_in(0x81, count * 512))
        await host.transfer_in(0x81, 13)
    return total


async def timed_read(device: Device, mib: int) -> float:
    async with LocalHost(device) as host:
        await host.enumerate()
        start = time.perf_counter()
        moved = await read_all(host, mib)
        return moved / (time.perf_counter() - start) / MB


async def main(mib: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        capture = Path(folder) / "disk.pcap"
        original = disk(Path(folder), mib)
        async with Server([original], port=0, capture=str(capture), capture_format="usbmon") as server, \
                await RemoteDevice.open("127.0.0.1", "1-1", port=server.port) as host:
            await host.enumerate()
            await read_all(host, mib)
        start = time.perf_counter()
        _, written = record_to(capture, Path(folder) / "disk.yaml")
        record_seconds = time.perf_counter() - start
        size = os.path.getsize(capture)
        replay = load_device(Path(folder) / "disk.yaml")
        originals, replays = [], []
        for _ in range(rounds):
            originals.append(await timed_read(original, mib))
            replays.append(await timed_read(replay, mib))
        print(f"vusb record: {size / MB:.1f} MB capture ({mib} MiB of disk read) -> "
              f"{sum(os.path.getsize(p) for p in written) / MB:.1f} MB profile + data file in {record_seconds:.2f} s "
              f"({size / MB / record_seconds:.1f} MB/s of capture)")
        print(f"reading {mib} MiB in {BLOCKS_PER_COMMAND * 512 // 1024} KiB READ(10)s, in-process host, "
              f"median of {rounds} rounds:")
        print(f"  original mass-storage disk (reference): {statistics.median(originals):8.1f} MB/s")
        print(f"  replayed recording (class storage):      {statistics.median(replays):8.1f} MB/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=32, help="disk size read (default 32 MiB)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.mib, args.rounds))
