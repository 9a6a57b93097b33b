"""The webcam through a real Linux kernel: delivered frame rate and drops at each shipped size.

profiles/webcam.yaml is attached to a QEMU guest (6.1 by default); for every format
and frame size it offers, ``v4l2-ctl --stream-mmap`` captures frames at 30 fps in the
guest.  The rate is taken from when the capture's frames left the device (the guest
takes each one in as it comes: a stream's isochronous URBs wait for the host), from the
first to the last, so v4l2-ctl's start and stop are left out.  Drops are
counted from the frame counters the device stamps into every frame (a gap or a repeat
in the longer capture) and from the device's own count of frames it had to discard.
The committed rate, the bytes per second it needs and the machine's loopback TCP copy
are printed beside them.  The guest CPU is emulated (TCG): compare figures only within
one run.

Before the guest, the device's own packetisation is timed in-process (no guest, no
network): the CPU time the webcam spends turning VGA YUYV frames into isochronous URBs
of 32 packets of 3072 bytes, beside the former way of building them (a bytes object per
packet, header concatenated to its slice of the frame, the URB joined), kept here as the
reference and run on the same frames.

    python -m benchmarks.bench_video [--kernel 6.1] [--seconds 4] [--quick] [--no-guest]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vusb.devices.video import ColourBars, UvcFunction, Webcam, frame_counter, spec
from vusb.devices.video.function import _Frame, _Stream
from vusb.devices.video.sources import _digit_layout, counter_rows, stamp_yuyv
from vusb.devices.video.spec import PixelFormat, StreamingControl

from benchmarks.common import tcp_copy
from vusb.constants import Speed
from vusb.harness import Guest
from vusb.profile import load_device
from vusb.protocol import IsoPacket
from vusb.server import Server, run
from vusb.urb import Completion, Urb

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "webcam.yaml"
FPS = 30
FOURCC = {PixelFormat.YUYV: "YUYV", PixelFormat.MJPEG: "MJPG"}


@dataclass
class Row:
    label: str
    fps: float
    frames: int
    gaps: int
    repeats: int
    device_dropped: int
    megabytes_per_second: float
    cpu: float


async def _capture(guest: Guest, node: str, fourcc: str, width: int, height: int, count: int) -> tuple[float, list[int | None]]:
    path = "/tmp/vusb-bench.raw"
    cmd = (f"v4l2-ctl -d {node} --set-fmt-video=width={width},height={height},pixelformat={fourcc} "
           f"--set-parm={FPS} --stream-mmap=4 --stream-count={count} --stream-to={path}")
    start = time.perf_counter()
    await guest.run(cmd, timeout=300, check=True)
    seconds = time.perf_counter() - start
    frame = width * height * 2
    if fourcc == "YUYV":
        heads = (await guest.run(
            f"for i in $(seq 0 {count - 1}); do dd if={path} bs=64 count=1 skip=$((i * {frame // 64})) 2>/dev/null; "
            "done", timeout=120, check=True)).stdout_bytes
        counters = [frame_counter(heads[i:i + 64]) for i in range(0, len(heads), 64)]
    else:
        data = await guest.read_file(path)
        counters = [frame_counter(b"\xff\xd8" + part) for part in data.split(b"\xff\xd8")[1:]]
    await guest.run(f"rm -f {path}")
    return seconds, counters


PACKETS, PACKET_SIZE = 32, 3072


class _FormerStream(_Stream):
    """The reference: the webcam's isochronous path as it was (a bytes object per packet, joined per URB)."""

    def former_packet(self, capacity: int, stc: int, sof: int) -> bytes:
        if self.current is None and not self._next_frame():
            return spec.payload_header(self.fid, eof=False, pts=self.current_pts, stc=stc, sof=sof)
        assert self.current is not None
        room = max(capacity - spec.HEADER_LENGTH, 0)
        chunk = self.current[self.offset:self.offset + room]
        self.offset += len(chunk)
        eof = self.offset >= len(self.current)
        header = spec.payload_header(self.fid, eof=eof, pts=self.current_pts, stc=stc, sof=sof)
        if eof:
            self.current = None
            self.function.stats.frames_sent += 1
            self._sent()
        self.function.stats.payloads += 1
        return header + chunk

    async def iso(self, urb: Urb, capacity: int, packet_time: float) -> Completion:
        loop = asyncio.get_running_loop()
        packets = urb.iso_packets or ()
        now = loop.time()
        self.bus_time = max(self.bus_time, now - 0.1)
        first = self.bus_time
        self.bus_time += len(packets) * packet_time
        if self.bus_time > now:
            await asyncio.sleep(self.bus_time - now)
        parts: list[bytes] = []
        out: list[IsoPacket] = []
        per_ms = round(1e-3 / packet_time) if packet_time else 8
        for i, p in enumerate(packets):
            t = first + i * packet_time
            sof = int(t * 1000 * per_ms) // per_ms
            data = self.former_packet(min(p.length, capacity), self.stc(t), sof)
            parts.append(data)
            out.append(IsoPacket(p.offset, p.length, len(data), 0))
        data = b"".join(parts)
        self.function.stats.bytes_sent += len(data)
        return Completion(0, data, iso_packets=tuple(out))


async def _frames_through(kind: type[_Stream], frames: int) -> tuple[float, int]:
    """CPU seconds per VGA YUYV frame through ``kind``'s iso path, and the URBs a frame took."""
    function = Webcam().camera
    function.speed, function.alt_settings = Speed.HIGH, spec.ALT_SETTINGS[Speed.HIGH]
    data = [ColourBars().yuyv(i, 640, 480) for i in range(4)]
    ctrl = StreamingControl(bFormatIndex=1, bFrameIndex=1, dwFrameInterval=333333, dwMaxPayloadTransferSize=3072)
    stream = kind(function, ctrl)
    stream.task.cancel()  # frames are handed in below, not made at the frame rate
    packets = tuple(IsoPacket(i * PACKET_SIZE, PACKET_SIZE) for i in range(PACKETS))
    urbs = 0
    start = time.process_time()
    for n in range(frames):
        stream.queue.append(_Frame(n, data[n % 4], 0))
        while function.stats.frames_sent <= n:
            urb = Urb(urbs, 1, 1, PACKETS * PACKET_SIZE, iso_packets=packets)
            await stream.iso(urb, PACKET_SIZE, 0.0)  # no bus time to wait for: the cost alone
            urbs += 1
    seconds = (time.process_time() - start) / frames
    stream.stop()
    return seconds, -(-urbs // frames)


def _former_bars(bars: ColourBars, index: int, width: int, height: int) -> bytes:
    """The reference: colour bars as they were made before (a bytearray copy of the bars, the counter drawn
    into it, then copied again into bytes: two fresh frame-sized allocations a frame)."""
    bars.yuyv(0, width, height)  # the cached bars
    frame = bytearray(bars._yuyv[(width, height)])
    scale, x0, y0 = _digit_layout(width, height)
    pitch = width * 2
    for r, dots in enumerate(counter_rows(index, scale)):
        line = bytearray()
        for on in dots:
            line += (b"\xeb\x80" if on else b"\x10\x80") * scale
        for dy in range(scale):
            y = y0 + r * scale + dy
            start = y * pitch + x0 * 2
            end = min(start + len(line), (y + 1) * pitch)
            frame[start:end] = line[: end - start]
    stamp_yuyv(frame, index)
    return bytes(frame)


def bars_cost(frames: int) -> tuple[float, float]:
    """CPU seconds to make one VGA YUYV colour-bars frame: now, and the former way."""
    bars = ColourBars()
    assert _former_bars(bars, 7, 640, 480) == bars.yuyv(7, 640, 480)
    start = time.process_time()
    for n in range(frames):
        _former_bars(bars, n, 640, 480)
    former = (time.process_time() - start) / frames
    start = time.process_time()
    for n in range(frames):
        bars.yuyv(n, 640, 480)
    return (time.process_time() - start) / frames, former


async def packetisation(frames: int) -> tuple[float, float, int]:
    """CPU seconds per VGA YUYV frame: the webcam's iso path now, the former one; and the URBs a frame takes."""
    former, _ = await _frames_through(_FormerStream, frames // 4)  # warm up both
    current, _ = await _frames_through(_Stream, frames // 4)
    former, _ = await _frames_through(_FormerStream, frames)
    current, urbs = await _frames_through(_Stream, frames)
    return current, former, urbs


async def measure(kernel: str, seconds: float, short: int = 10) -> list[Row]:
    guest = await asyncio.to_thread(Guest.shared, kernel)
    device = load_device(PROFILE)
    camera = next(f for f in device.functions if isinstance(f, UvcFunction))
    rows: list[Row] = []
    async with Server([device], port=0) as server:
        port = await guest.attach(None, server.port, "1-1")
        try:
            d = device.descriptor
            sysfs = await guest.wait_for_usb_device(d.vendor_id, d.product_id, timeout=60)
            await guest.wait_for(f"ls {sysfs}:1.0/video4linux/ 2>/dev/null | grep -q video", timeout=60)
            names = (await guest.run(f"ls {sysfs}:1.0/video4linux/", check=True)).stdout.split()
            node = f"/dev/{sorted(names, key=lambda n: int(n[5:]))[0]}"
            long = short + max(int(seconds * FPS), 1)
            for fmt in camera.formats:
                for size in fmt.frames:
                    fourcc = FOURCC[fmt.format]
                    dropped_before = camera.stats.frames_dropped
                    cpu0, wall0 = time.process_time(), time.perf_counter()
                    _, counters = await _capture(guest, node, fourcc, size.width, size.height, long)
                    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
                    # The capture's frames are the stream's first ones: from the first to the last of
                    # them, when each left the device.
                    sent = camera.frame_times()[:long]
                    known = [c for c in counters if c is not None]
                    gaps = sum(max(b - a - 1, 0) for a, b in itertools.pairwise(known))
                    repeats = sum(1 for a, b in itertools.pairwise(known) if b <= a)
                    fps = (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 and sent[-1] > sent[0] else float("nan")
                    need = size.width * size.height * 2 * FPS / 1e6 if fmt.format is PixelFormat.YUYV else float("nan")
                    rows.append(Row(f"{fourcc} {size.label()} at {FPS} fps", fps, len(counters), gaps, repeats,
                                    camera.stats.frames_dropped - dropped_before, need, cpu))
        finally:
            await guest.detach(port)
            await device.aclose()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_video", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", default="6.1")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of frames each capture asks for")
    parser.add_argument("--quick", action="store_true", help="tiny captures: proves the script works")
    parser.add_argument("--no-guest", action="store_true", help="only the in-process packetisation figures")
    args = parser.parse_args(argv)
    bars_now, bars_former = bars_cost(20 if args.quick else 300)
    print(f"making a VGA YUYV colour-bars frame, CPU per frame: now {bars_now * 1e6:8.0f} us   "
          f"former way (reference): {bars_former * 1e6:8.0f} us")
    current, former, urbs = run(packetisation(20 if args.quick else 300))
    print("the webcam's isochronous packetisation, VGA YUYV (614400 bytes a frame, "
          f"{urbs} URBs of {PACKETS} x {PACKET_SIZE} bytes), CPU per frame:")
    print(f"  now: {current * 1e6:8.0f} us   former way (reference): {former * 1e6:8.0f} us   "
          f"-> {1 / current:,.0f} vs {1 / former:,.0f} frames/s a core ({FPS} needed)")
    if args.no_guest:
        return 0
    total, secs = tcp_copy(0.5 if args.quick else 2.0)
    rows = run(measure(args.kernel, 0.3 if args.quick else args.seconds, 3 if args.quick else 10))
    print(f"loopback TCP copy between two processes (machine limit): {total / secs / 1e6:,.0f} MB/s")
    print(f"committed rate: {FPS} fps; the guest is Linux {args.kernel} under QEMU TCG")
    print(f"{'stream':26} {'delivered':>10} {'frames':>7} {'gaps':>5} {'repeats':>8} {'device drops':>13} "
          f"{'raw MB/s needed':>16} {'vusb CPU':>9}")
    for r in rows:
        need = f"{r.megabytes_per_second:.1f}" if r.megabytes_per_second == r.megabytes_per_second else "-"
        print(f"{r.label:26} {r.fps:6.1f} fps {r.frames:7d} {r.gaps:5d} {r.repeats:8d} {r.device_dropped:13d} "
              f"{need:>16} {100 * r.cpu:8.0f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
