"""Mass storage through a real Linux kernel: sequential dd with O_DIRECT in the QEMU guest.

The disk is served by vusb on the host's loopback; the guest's usb-storage driver
reads and writes it with one SCSI command per dd block, at 120 KiB (usb-storage's
default for a high-speed device) and at 1 MiB per command (max_sectors raised to
2048). The machine's plain loopback TCP copy rate is measured in the same run for
scale. The guest CPU is emulated (TCG), so compare figures only within one run.

    python -m benchmarks.bench_guest [--kernel 6.1] [--mib 128]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from benchmarks.common import tcp_copy
from vusb.harness import Guest
from vusb.server import Server, run

MiB = 1 << 20
SIZES = ((120 * 1024, 240, "120 KiB"), (MiB, 2048, "1 MiB"))


async def _measure(kernel: str, total_mib: int, busy_poll: float) -> list[tuple[str, float, float]]:
    from vusb.devices import MassStorage
    guest = await asyncio.to_thread(Guest.shared, kernel)
    disk = MassStorage(memory=True, size=(total_mib + 8) * MiB)
    rows: list[tuple[str, float, float]] = []
    server_label = f"server busy-polls {busy_poll * 1e6:.0f} µs" if busy_poll else "server sleeps between requests"
    async with Server([disk], port=0, busy_poll=busy_poll) as server:
        port = await guest.attach(None, server.port, "1-1")
        try:
            devdir = await guest.wait_for_usb_device(0x1209, disk.descriptor.product_id, timeout=60)
            sd = await guest.wait_for_disk(devdir, timeout=60)
            for size, max_sectors, label in SIZES:
                await guest.run(f"echo {max_sectors} > /sys/block/{sd}/device/max_sectors", check=True)
                count = total_mib * MiB // size
                for name, dd in (
                    ("write", f"dd if=/dev/zero of=/dev/{sd} bs={size} count={count} oflag=direct"),
                    ("read", f"dd if=/dev/{sd} of=/dev/null bs={size} count={count} iflag=direct"),
                ):
                    # Timed from the host (busybox date has no sub-second format), less the
                    # round-trip cost of an empty command measured just before.
                    overhead = await _command_overhead(guest)
                    start, cpu = time.perf_counter(), time.process_time()
                    await guest.run(f"{dd} 2>/dev/null", timeout=600, check=True)
                    wall = time.perf_counter() - start
                    busy = (time.process_time() - cpu) / wall
                    rows.append((f"guest {name}, {label}/command (dd O_DIRECT, {total_mib} MiB), {server_label}",
                                 count * size / (wall - overhead) / 1e6, busy))
        finally:
            await guest.detach(port)
            await disk.aclose()
    return rows


async def _measure_each(kernel: str, total_mib: int, polls: Sequence[float]) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    for busy_poll in polls:  # one event loop: the shared guest belongs to it
        rows += await _measure(kernel, total_mib, busy_poll)
    return rows


async def _command_overhead(guest: Guest) -> float:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        await guest.run("true", check=True)
        samples.append(time.perf_counter() - start)
    return sorted(samples)[len(samples) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_guest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", default="6.1")
    parser.add_argument("--mib", type=int, default=128, help="MiB moved per measurement")
    parser.add_argument("--busy-poll", type=int, default=50, metavar="MICROSECONDS",
                        help="also measure with the server busy-polling this long after each reply (0: skip)")
    args = parser.parse_args(argv)
    total, seconds = tcp_copy(2.0)
    copy_mbps = total / seconds / 1e6
    polls = (0.0, args.busy_poll / 1e6) if args.busy_poll else (0.0,)
    rows = run(_measure_each(args.kernel, args.mib, polls))
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'loopback TCP copy between two processes (machine limit)':{width}} {copy_mbps:9,.0f} MB/s")
    for label, mbps, busy in rows:
        print(f"{label:{width}} {mbps:9,.0f} MB/s  ({100 * mbps / copy_mbps:4.1f}% of TCP copy; "
              f"vusb process CPU {100 * busy:3.0f}%)")
    print("note: the vusb process CPU stays far below one core: the emulated guest (TCG CPU, e1000 NIC) is "
          "the bottleneck here, not the server")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
