"""Isochronous benchmarks: packets per second the server sustains per core, and audio drift.

    python -m benchmarks.bench_iso                  # full run: about 70 s (drift over 60 s)
    python -m benchmarks.bench_iso --duration 600   # drift over ten minutes
    python -m benchmarks.bench_iso --quick          # tiny counts: proves the script works, figures mean nothing

What is measured (the server runs in its own process, on an ephemeral loopback port; the client is
the library's asyncio client in this process):

- isochronous IN packets per second, with 16 URBs of 8 packets in flight, through a device whose iso
  endpoint answers at once (no pacing: this is the server's own cost), divided by the server's CPU
  use: packets per core-second.  Beside it, the reference measured in the same run through the same
  server: small bulk IN URBs per core-second (the same round trip with one packet and no descriptors);
- audio drift: the sound card's microphone streamed at 48 kHz and 44.1 kHz (high speed, 64 packets a
  URB, 8 URBs in flight) for ``--duration`` seconds; the frames received against what the nominal
  rate makes in the same wall-clock time, in parts per million (also the least-squares slope of
  frames against completion time, which catch-up bursts on a busy machine disturb).  The reference is
  the wall clock itself (time.monotonic): 0 ppm is perfect.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
from collections.abc import Sequence

from vusb.devices.audio import Format, Microphone, SoundCard

from benchmarks.common import CpuMeter, Row, Section, ServerProcess, Tally, format_table, machine_description
from vusb.client import RemoteDevice
from vusb.constants import Speed, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import BuildContext, Device, Function
from vusb.protocol import IsoPacket
from vusb.urb import Completion, SetupPacket, Urb

ISO_PACKETS = 8
ISO_PACKET_BYTES = 24  # 6 stereo 16-bit frames: 48 kHz at high speed
ISO_IN_FLIGHT = 16
DRIFT_PACKETS = 64  # 8 ms a URB: the client's own load stays small on a busy machine
DRIFT_IN_FLIGHT = 8


class _Bench(Function):
    """An isochronous IN endpoint and a bulk IN endpoint that answer at once."""

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.iso = ctx.endpoint(True, TransferType.ISOCHRONOUS, max_packet_size=ISO_PACKET_BYTES)
        self.bulk = ctx.endpoint(True, TransferType.BULK)
        return [InterfaceDescriptor(ctx.interface_number(), 0, 0xFF, endpoints=(self.iso, self.bulk))]

    def bind(self, device: Device) -> None:
        device.endpoint(self.iso.address).handler = self._iso
        device.endpoint(self.bulk.address).handler = lambda urb: Completion(0, b"\0" * 8)

    @staticmethod
    def _iso(urb: Urb) -> Completion:
        packets = tuple(IsoPacket(p.offset, p.length, p.length) for p in urb.iso_packets or ())
        return Completion(0, bytes(sum(p.length for p in packets)), iso_packets=packets)


def iso_device() -> Device:
    return Device(_Bench(), vendor_id=0x1209, product_id=0xB150, speed=Speed.HIGH)


def sound_card() -> Device:
    return SoundCard(microphone=Microphone([Format(2, 16)], [44100, 48000]))


async def _rate(port: int, pid: int | None, seconds: float, iso: bool) -> Tally:
    tally = Tally()
    async with await RemoteDevice.open("127.0.0.1", "1-1", port) as dev:
        await dev.enumerate()
        address = 1 if iso else 2
        packets = [IsoPacket(i * ISO_PACKET_BYTES, ISO_PACKET_BYTES) for i in range(ISO_PACKETS)]

        def submit() -> asyncio.Future[object]:
            if iso:
                return dev.submit(address, 1, ISO_PACKETS * ISO_PACKET_BYTES, iso_packets=packets)[1]  # type: ignore[return-value]
            return dev.submit(address, 1, 512)[1]  # type: ignore[return-value]

        meter = CpuMeter(pid)
        start = time.perf_counter()
        pending = {submit() for _ in range(ISO_IN_FLIGHT)}
        done_urbs = 0
        while time.perf_counter() - start < seconds:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            done_urbs += len(done)
            pending |= {submit() for _ in done}
        elapsed = time.perf_counter() - start
        meter.add_to(tally, done_urbs * (ISO_PACKETS if iso else 1), elapsed)
        await asyncio.wait(pending)
    return tally


async def _drift(port: int, rate: int, seconds: float) -> tuple[float, float, int, float]:
    """(ppm by count, ppm by least-squares slope, frames, seconds) of the microphone streaming at ``rate``.

    By count: the frames of every URB answered after the first, against the wall-clock time from the
    first answer to the last (its error is the wake-up jitter of those two answers over the duration).
    """
    async with await RemoteDevice.open("127.0.0.1", "1-1", port) as dev:
        await dev.enumerate()
        await dev.control(SetupPacket(0x21, 1, 0x0100, 9 << 8, 4), struct.pack("<I", rate))
        await dev.set_interface(1, 1)
        packets = [IsoPacket(i * 28, 28) for i in range(DRIFT_PACKETS)]
        pending = [dev.submit(0x81, 1, DRIFT_PACKETS * 28, iso_packets=packets)[1] for _ in range(DRIFT_IN_FLIGHT)]
        first = await pending.pop(0)
        t0 = time.monotonic()
        assert first.status == 0, first
        # least-squares slope of frames received against completion time: the rate the host sees
        n = st = sf = stt = stf = 0.0
        frames = 0
        t_last = t0
        while t_last - t0 < seconds:
            pending.append(dev.submit(0x81, 1, DRIFT_PACKETS * 28, iso_packets=packets)[1])
            reply = await pending.pop(0)
            t_last = time.monotonic()
            frames += len(reply.data) // 4
            t = t_last - t0
            n, st, sf, stt, stf = n + 1, st + t, sf + frames, stt + t * t, stf + t * frames
        for fut in pending:
            await fut
        await dev.set_interface(1, 0)
    elapsed = t_last - t0
    slope = (n * stf - st * sf) / (n * stt - st * st)
    return (frames / (elapsed * rate) - 1) * 1e6, (slope / rate - 1) * 1e6, frames, elapsed


def run(duration: float, rate_seconds: float) -> list[Section]:
    with ServerProcess(iso_device) as server:
        iso = asyncio.run(_rate(server.port, server.pid, rate_seconds, iso=True))
        bulk = asyncio.run(_rate(server.port, server.pid, rate_seconds, iso=False))
    per_core_iso = iso.units / iso.server_cpu if iso.server_cpu > 0 else float("nan")
    per_core_bulk = bulk.units / bulk.server_cpu if bulk.server_cpu > 0 else float("nan")
    rows = [
        Row("iso IN packets per server core-second", f"{per_core_iso:,.0f}",
            f"bulk IN URBs per core-second: {per_core_bulk:,.0f}", f"x{per_core_iso / per_core_bulk:.2f}"),
        Row("iso IN packets/s (8 a URB, 16 URBs in flight)", f"{iso.rate:,.0f}", f"bulk URBs/s: {bulk.rate:,.0f}",
            str(iso.cpu)),
    ]
    drift_rows = []
    with ServerProcess(sound_card) as server:
        for rate in (48000, 44100):
            ppm, slope, frames, elapsed = asyncio.run(_drift(server.port, rate, duration))
            drift_rows.append(Row(f"microphone {rate} Hz drift over {elapsed:.1f} s", f"{ppm:+.1f} ppm",
                                  "the wall clock: 0 ppm", f"{frames:,} frames; slope {slope:+.0f} ppm"))
    return [Section("isochronous packets through the server", rows),
            Section(f"audio drift (high speed, {DRIFT_PACKETS} packets a URB, {DRIFT_IN_FLIGHT} URBs in flight)",
                    drift_rows)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts: proves the script works")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of audio for the drift (default 60)")
    args = parser.parse_args(argv)
    duration = 1.0 if args.quick else args.duration
    rate_seconds = 0.3 if args.quick else 5.0
    print(machine_description())
    print(format_table(run(duration, rate_seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
