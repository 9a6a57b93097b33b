"""USB network adapters through a real Linux kernel: TCP throughput of NCM, ECM and RNDIS.

For each function an adapter with the endpoint backend is attached to the QEMU guest, which
sends MiB of zeros with busybox ``nc`` to the discard port (9) of vusb's IP host.  The
same run measures the USB/IP limit of that path: usbtest's bulk OUT test against Gadget Zero
(test 1, one URB at a time, 16 KiB and 1514 bytes per URB: an NTB and one Ethernet frame).
The guest's CPU is emulated (TCG), so compare figures only within one run.

    python -m benchmarks.bench_net [--kernel 6.1] [--mib 16] [--kinds ncm,ecm,rndis]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from vusb.harness import Guest
from vusb.server import Server

MiB = 1 << 20
ENDPOINT = "169.254.77.1"


async def _overhead(guest: Guest) -> float:
    start = time.perf_counter()
    await guest.run("true", check=True)
    return time.perf_counter() - start


async def _adapter_rate(guest: Guest, kind: str, mib: int) -> tuple[float, float]:
    """MB/s of ``mib`` MiB from the guest to the endpoint's discard port, and vusb's CPU share."""
    from vusb.devices.net import NetworkAdapter

    nic = NetworkAdapter(kind, serial_number=f"VBENCH-{kind}")
    async with Server([nic], port=0) as server:
        port = await guest.attach(None, server.port, "1-1")
        try:
            devdir = await guest.wait_for_usb_device(0x1209, nic.descriptor.product_id, timeout=60)
            await guest.wait_for(f"ls {devdir}:1.0/net/* >/dev/null 2>&1", timeout=60)
            ifname = (await guest.run(f"ls {devdir}:1.0/net", check=True)).stdout.split()[0]
            await guest.run(f"ip addr add 169.254.77.2/16 dev {ifname} && ip link set {ifname} up", check=True)
            await guest.wait_for(f"[ $(cat /sys/class/net/{ifname}/carrier) = 1 ]", timeout=30)
            await guest.run(f"ping -c 1 -W 5 {ENDPOINT}", timeout=30, check=True)
            host = nic.backend.host  # type: ignore[attr-defined]
            before = host.counters.get("tcp bytes received", 0)
            overhead = await _overhead(guest)
            start, cpu = time.perf_counter(), time.process_time()
            await guest.run(f"dd if=/dev/zero bs=64k count={mib * 16} 2>/dev/null | timeout 600 nc {ENDPOINT} 9",
                            timeout=700, check=True)
            wall = time.perf_counter() - start
            busy = (time.process_time() - cpu) / wall
            received = host.counters.get("tcp bytes received", 0) - before
            if received != mib * MiB:
                raise RuntimeError(f"{kind}: the endpoint received {received} bytes, not {mib * MiB}")
            return received / max(wall - overhead, 1e-6) / 1e6, busy
        finally:
            await guest.detach(port)
            await nic.close()


async def _usbip_rate(guest: Guest, size: int, mib: int) -> float:
    """MB/s of usbtest's bulk OUT (test 1) to Gadget Zero through the same guest and USB/IP path."""
    from vusb.devices.gadget_zero import GadgetZero

    device = GadgetZero(serial_number="bench-net")
    async with Server([device], port=0) as server:
        port = await guest.attach(None, server.port, "1-1")
        try:
            sysfs = await guest.wait_for_usb_device(device.descriptor.vendor_id, device.descriptor.product_id,
                                                    serial="bench-net", timeout=60)
            node = (await guest.run(f"printf '/dev/bus/usb/%03d/%03d' $(cat {sysfs}/busnum) $(cat {sysfs}/devnum)",
                                    check=True)).stdout
            await guest.wait_for(f"[ -e {sysfs}:{device.configuration_value}.0/driver ]", timeout=60)
            count = max(1, mib * MiB // size)
            overhead = await _overhead(guest)
            start = time.perf_counter()
            await guest.run(f"testusb -D {node} -t 1 -s {size} -c {count}", timeout=700, check=True)
            wall = time.perf_counter() - start
            return count * size / max(wall - overhead, 1e-6) / 1e6
        finally:
            await guest.detach(port)


async def measure(guest: Guest, mib: int = 16, kinds: Sequence[str] = ("ncm", "ecm", "rndis")) -> list[tuple[str, float]]:
    """(row name, MB/s) for each function, then the USB/IP bulk OUT references."""
    rows: list[tuple[str, float]] = []
    for kind in kinds:
        rate, busy = await _adapter_rate(guest, kind, mib)
        rows.append((f"{kind}: TCP to the endpoint's discard port, {mib} MiB (vusb CPU {busy:.0%})", rate))
    for size, label in ((16384, "16 KiB"), (1514, "1514 B")):
        rows.append((f"USB/IP limit: usbtest bulk OUT, {label} per URB, {mib} MiB", await _usbip_rate(guest, size, mib)))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_net", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", default="6.1")
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--kinds", default="ncm,ecm,rndis")
    args = parser.parse_args(argv)

    async def run() -> list[tuple[str, float]]:
        guest = await asyncio.to_thread(Guest.shared, args.kernel)
        return await measure(guest, args.mib, [k for k in args.kinds.split(",") if k])

    rows = asyncio.run(run())
    width = max(len(name) for name, _ in rows)
    print(f"USB network adapters, Linux {args.kernel} guest (TCG), figures of one run")
    for name, rate in rows:
        print(f"  {name:<{width}}  {rate:8.2f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
