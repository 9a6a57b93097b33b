"""The USB Video Class 1.1 function: a webcam that Linux's uvcvideo drives.

Interfaces
    VideoControl (camera terminal 1 -> processing unit 2 -> output terminal 3) and
    VideoStreaming, tied by an interface association.  The processing unit's controls
    (brightness, contrast, ...) answer GET_CUR/MIN/MAX/RES/DEF/INFO/LEN from their
    declared ranges; SET_CUR outside the range or off the step stalls and sets the
    request error code, as the specification asks.

Streaming
    Isochronous (default): alternate setting 0 has no endpoint; settings 1..N have one
    isochronous IN endpoint each, sized from 128 bytes to three 1024-byte transactions
    a microframe.  The probe control's dwMaxPayloadTransferSize is the smallest setting
    that carries the committed format at its frame rate; the host selects it, and
    frames flow while it is selected.  Each isochronous URB completes when the
    (micro)frames its packets stand for have passed, one payload a packet, so data
    leaves at the rate of a real bus.

    Bulk (``transport="bulk"``): one bulk IN endpoint in alternate setting 0; a
    commit starts the stream, CLEAR_FEATURE(ENDPOINT_HALT) stops it (what Windows and
    Linux send).  Each frame is one payload of dwMaxPayloadTransferSize at most.

    Every payload starts with a 12-byte header: FID toggles per frame, EOF marks the
    frame's last payload, PTS is the frame's capture time and SCR the device clock
    and (micro)frame number when the payload left, both in dwClockFrequency units.

Frames are made by the source at the committed frame interval, whether or not the
host reads them; a frame the host has not taken when ``queued_frames`` (3) more are
ready is dropped (counted in :attr:`UvcFunction.stats`).  A source that raises stops
producing frames for that stream (logged, :attr:`VideoStats.last_error`); the
server and the device carry on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vusb.devices.video import spec
from vusb.devices.video.sources import (
    ColourBars,
    VideoSource,
    VideoSourceError,
    as_source,
    frame_counter,
    jpeg_with_counter,
)
from vusb.devices.video.spec import (
    HEADER_LENGTH,
    ControlSpec,
    FrameSize,
    PixelFormat,
    RequestError,
    StillControl,
    StreamingControl,
    VideoFormat,
)

from vusb.constants import RequestType, Speed, TransferType
from vusb.descriptors import EndpointDescriptor, InterfaceAssociation, InterfaceDescriptor, RawDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function
from vusb.endpoint import HandlerResult
from vusb.errors import DeviceDefinitionError, Stall, UsageError
from vusb.protocol import IsoPacket
from vusb.urb import Completion, Gather, SetupPacket, Urb

log = logging.getLogger("vusb.video")
_HEADER_PACK_INTO = spec.HEADER_STRUCT.pack_into

DEFAULT_FORMATS: tuple[VideoFormat, ...] = (
    VideoFormat(PixelFormat.YUYV, (FrameSize(640, 480, (30, 15)), FrameSize(320, 240, (30, 15)))),
    VideoFormat(PixelFormat.MJPEG, (FrameSize(640, 480, (30, 15)), FrameSize(320, 240, (30, 15)))),
)
DEFAULT_CONTROLS: tuple[str, ...] = ("brightness", "contrast", "hue", "saturation", "sharpness", "gamma", "gain",
                                     "power_line_frequency", "backlight_compensation")
TRANSPORTS = ("iso", "bulk")
QUEUED_FRAMES = 3
"""Frames made but not yet sent that the device keeps; a further one drops the oldest."""
MAX_QUEUED_FRAMES = 1024
CATCH_UP = 0.1
"""Seconds the isochronous bus clock may lag real time (the host's jitter it absorbs), see _Stream.iso."""

# Bulk throughput a bus can give one endpoint: 13 x 512 bytes a microframe, 19 x 64 a frame.
BULK_BYTES_PER_SECOND = {Speed.HIGH: 13 * 512 * 8000, Speed.FULL: 19 * 64 * 1000}


@dataclasses.dataclass
class VideoStats:
    """What the webcam did since it was made."""

    streams_started: int = 0
    frames_made: int = 0
    frames_sent: int = 0
    """Frames whose last payload (EOF) went to the host."""
    frames_dropped: int = 0
    """Frames made but replaced by newer ones before the host took them."""
    payloads: int = 0
    bytes_sent: int = 0
    stills_sent: int = 0
    """Still images whose last payload went to the host (capture methods 2 and 3)."""
    last_error: str | None = None
    """Why the last stream stopped making frames (a source that raised), or None."""


def bandwidth_problems(formats: Sequence[VideoFormat], speed: Speed, transport: str) -> list[tuple[int, int, str]]:
    """(format position, frame position, why) for every frame the bus cannot carry at its fastest rate."""
    problems = []
    for fi, fmt in enumerate(formats):
        for si, size in enumerate(fmt.frames):
            if size.width % 2 or not 2 <= size.width <= 0xFFFF or not 1 <= size.height <= 0xFFFF:
                problems.append((fi, si, f"frame size {size.label()} is not possible (width even, 2..65535)"))
                continue
            if transport == "iso":
                need = spec.required_bandwidth(size, fmt.format, speed)
                have = spec.max_bandwidth(speed)
                if need > have:
                    problems.append((fi, si, (
                        f"{fmt.format.value} {size.label()} at {max(size.fps):g} fps needs {need} bytes per "
                        f"{'micro' if speed == Speed.HIGH else ''}frame, more than the {have} an isochronous "
                        f"endpoint carries at {speed.name.lower()} speed")))
            else:
                per_second = size.max_frame_size(fmt.format) // (2 if fmt.format.compressed else 1) * max(size.fps)
                if per_second > BULK_BYTES_PER_SECOND[speed]:
                    problems.append((fi, si, (
                        f"{fmt.format.value} {size.label()} at {max(size.fps):g} fps needs {per_second / 1e6:.1f} MB/s, "
                        f"more than bulk carries at {speed.name.lower()} speed "
                        f"({BULK_BYTES_PER_SECOND[speed] / 1e6:.1f} MB/s)")))
    return problems


def check_formats(formats: Sequence[VideoFormat]) -> None:
    if not formats:
        raise DeviceDefinitionError("a webcam needs at least one format")
    if len(formats) > 255:
        raise DeviceDefinitionError("a webcam has at most 255 formats")
    for i, fmt in enumerate(formats):
        if not fmt.frames:
            raise DeviceDefinitionError(f"format {i + 1} ({fmt.format.value}) has no frame size")
        if len(fmt.frames) > 255:
            raise DeviceDefinitionError(f"format {i + 1} ({fmt.format.value}) has more than 255 frame sizes")
        for size in fmt.frames:
            if not size.fps:
                raise DeviceDefinitionError(f"format {i + 1} frame {size.label()} has no frame rate")
            for fps in size.fps:
                if not 0.1 <= fps <= 1000:
                    raise DeviceDefinitionError(f"format {i + 1} frame {size.label()}: {fps:g} fps is outside 0.1..1000")
            if len(set(size.intervals)) != len(size.intervals):
                raise DeviceDefinitionError(f"format {i + 1} frame {size.label()}: frame rates repeat")
        if len(fmt.still_sizes) > 255:
            raise DeviceDefinitionError(f"format {i + 1} ({fmt.format.value}) has more than 255 still sizes")
        for w, h in fmt.still_sizes:
            if w % 2 or not 2 <= w <= 0xFFFF or not 1 <= h <= 0xFFFF:
                raise DeviceDefinitionError(f"format {i + 1} still size {w}x{h} is not possible (width even, 2..65535)")
        if fmt.still_compressions and not fmt.format.compressed:
            raise DeviceDefinitionError(f"format {i + 1} ({fmt.format.value}) is uncompressed: its stills have no "
                                        "compression to choose")
        if len(fmt.still_compressions) > 255 or not all(1 <= c <= 255 for c in fmt.still_compressions):
            raise DeviceDefinitionError(f"format {i + 1} still compressions must be 1..255 (at most 255 of them)")


@dataclasses.dataclass
class _Frame:
    index: int
    data: bytes
    pts: int
    still: bool = False


class _Still:
    """A still image the host triggered: made by the source, then sent in the stream (method 2) or on the
    still endpoint (method 3)."""

    def __init__(self, number: int, fmt: PixelFormat, width: int, height: int, bulk: bool) -> None:
        self.number = number
        self.format = fmt
        self.width = width
        self.height = height
        self.bulk = bulk
        self.data: bytes | None = None
        """The still's bytes once the source made them."""
        self.task: asyncio.Task[None] | None = None


class _Stream:
    """One stream from its start (alternate setting or commit) to its stop: frames made and being sent."""

    def __init__(self, function: UvcFunction, ctrl: StreamingControl) -> None:
        self.function = function
        self.ctrl = ctrl
        self.format = function.formats[ctrl.bFormatIndex - 1]
        self.size = self.format.frames[ctrl.bFrameIndex - 1]
        self.period = ctrl.dwFrameInterval / 10_000_000
        self.queue: deque[_Frame] = deque()
        self.ready = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.epoch = loop.time()
        self.fid = 1
        self.current: memoryview | None = None
        self.current_pts = 0
        self.current_still = False
        self.info = spec.HEADER_EOH | spec.HEADER_PTS | spec.HEADER_SCR | self.fid
        """bmHeaderInfo of the frame being sent, without EOF."""
        self.offset = 0
        self._iso_packets: dict[tuple[int, int, int], IsoPacket] = {}
        """Packet descriptors answered before, reused (most packets of a stream are alike)."""
        self.bus_time = self.epoch
        # bulk: payloads of the frame being sent
        self.payloads: deque[Gather] = deque()
        self.payload_frame: _Frame | None = None
        self.payload_offset = 0
        self.zlp_due = False
        self.failed = False
        self.sent_at: list[float] = []
        """When each frame's last payload left (loop time), for measurements; the first 100000 frames."""
        self.task = loop.create_task(self._produce(), name="vusb webcam frames")

    def stc(self, t: float) -> int:
        return int((t - self.epoch) * spec.CLOCK_FREQUENCY) & 0xFFFFFFFF

    def stop(self) -> None:
        self.task.cancel()
        self.ready.set()

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        stats = self.function.stats
        start = loop.time()
        n = 0
        while True:
            made = loop.time()
            source = self.function.source
            try:
                data = await source.frame(n, self.format.format, self.size)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed = True
                stats.last_error = f"{source.description}: {exc}"
                log.error("webcam: frame %d from %s failed: %s; the stream makes no more frames", n,
                          source.description, exc, exc_info=not isinstance(exc, VideoSourceError))
                return
            if self.format.format is PixelFormat.MJPEG and frame_counter(data) != n:
                data = jpeg_with_counter(data, n)  # every JPEG says which frame it is
            if self.queue and len(self.queue) >= self.function.queued_frames:
                self.queue.popleft()
                stats.frames_dropped += 1
            self.queue.append(_Frame(n, data, self.stc(made)))
            stats.frames_made += 1
            self.ready.set()
            n += 1
            delay = start + n * self.period - loop.time()
            if delay < -2 * self.period:  # far behind (a slow source): keep the rate from now on, no burst
                start = loop.time() - n * self.period
                delay = 0
            await asyncio.sleep(max(delay, 0))

    # ------------------------------------------------------------ isochronous
    def _next_frame(self) -> bool:
        still = self.function._still_for_stream()
        if still is not None:
            frame = _Frame(-1, still, self.stc(asyncio.get_running_loop().time()), still=True)
        elif self.queue:
            frame = self.queue.popleft()
        else:
            return False
        self.fid ^= 1
        self.current = memoryview(frame.data)
        self.current_pts = frame.pts
        self.current_still = frame.still
        self.info = (spec.HEADER_EOH | spec.HEADER_PTS | spec.HEADER_SCR | self.fid
                     | (spec.HEADER_STI if frame.still else 0))
        self.offset = 0
        return True

    def _frame_done(self, current: memoryview) -> None:
        self.current = None
        if self.current_still:
            self.function._still_sent(current)
        else:
            self.function.stats.frames_sent += 1
            self._sent()

    def _fill_urb(self, buf: bytearray, lengths: Sequence[int], capacity: int, stc0: int, ticks: int, ms0: float,
                  per_packet_ms: float) -> list[int]:
        """Write one payload per packet into ``buf``, back to back; return each payload's length.

        A payload is its 12-byte header, packed in place, and the next slice of the frame, copied once
        (a header alone when no frame is ready).  No bytes object is made per packet.
        """
        written: list[int] = []
        pos = 0
        current = self.current
        offset = self.offset
        length = len(current) if current is not None else 0
        pack_into = _HEADER_PACK_INTO
        payloads = 0
        for i, asked in enumerate(lengths):
            room = (asked if asked < capacity else capacity) - HEADER_LENGTH
            stc = (stc0 + i * ticks) & 0xFFFFFFFF
            sof = int(ms0 + i * per_packet_ms) & 0x7FF
            if current is None:
                if not self._next_frame():
                    pack_into(buf, pos, HEADER_LENGTH, self.info & ~spec.HEADER_STI, self.current_pts, stc, sof)
                    pos += HEADER_LENGTH
                    written.append(HEADER_LENGTH)
                    continue
                current = self.current
                assert current is not None
                offset, length = 0, len(current)
            end = offset + room if room > 0 else offset
            if end >= length:
                end = length
                pack_into(buf, pos, HEADER_LENGTH, self.info | spec.HEADER_EOF, self.current_pts, stc, sof)
            else:
                pack_into(buf, pos, HEADER_LENGTH, self.info, self.current_pts, stc, sof)
            body = pos + HEADER_LENGTH
            buf[body:body + end - offset] = current[offset:end]
            size = HEADER_LENGTH + end - offset
            pos += size
            written.append(size)
            payloads += 1
            offset = end
            if end >= length:
                self._frame_done(current)
                current = None
        self.offset = offset
        self.function.stats.payloads += payloads
        return written

    async def iso(self, urb: Urb, capacity: int, packet_time: float) -> Completion:
        loop = asyncio.get_running_loop()
        packets = urb.iso_packets or ()
        now = loop.time()
        # The bus clock may run behind real time by CATCH_UP at most: a host that came back late (a busy
        # guest) gets the (micro)frames it missed at once, as long as it keeps up on average; later
        # than that, the URB starts at the next (micro)frame (ISO_ASAP) and the time missed is lost.
        self.bus_time = max(self.bus_time, now - CATCH_UP)
        first = self.bus_time
        self.bus_time += len(packets) * packet_time
        if self.bus_time > now:
            await asyncio.sleep(self.bus_time - now)
        # One buffer for the whole URB, its payloads back to back.
        capacity = max(capacity, HEADER_LENGTH)
        lengths = [p.length if p.length > HEADER_LENGTH else HEADER_LENGTH for p in packets]
        buf = bytearray(capacity * len(packets))
        written = self._fill_urb(buf, lengths, capacity, self.stc(first), round(packet_time * spec.CLOCK_FREQUENCY),
                                 first * 1000, packet_time * 1000)
        cache = self._iso_packets
        out = []
        for p, n in zip(packets, written, strict=True):
            key = (p.offset, p.length, n)
            d = cache.get(key)
            if d is None:
                d = cache[key] = IsoPacket(p.offset, p.length, n, 0)
            out.append(d)
        if len(cache) > 4096:
            cache.clear()
        total = sum(written)
        self.function.stats.bytes_sent += total
        return Completion(0, memoryview(buf)[:total], iso_packets=tuple(out))

    # ------------------------------------------------------------ bulk
    async def bulk(self, urb: Urb) -> Completion:
        if self.zlp_due:
            self.zlp_due = False
            return Completion(0, b"")
        while not self.payloads:
            still = self.function._still_for_stream()
            if still is not None:
                self._frame_payloads(_Frame(-1, still, self.stc(asyncio.get_running_loop().time()), still=True))
                break
            if self.queue:
                self._frame_payloads(self.queue.popleft())
                break
            self.ready.clear()
            await self.ready.wait()
            if self.task.done() and not self.queue:
                await asyncio.Event().wait()  # stopped or failed: the host's URB waits (NAK) until unlinked
        payload = self.payloads[0]
        chunk = payload[self.payload_offset:self.payload_offset + urb.length]
        self.payload_offset += len(chunk)
        if self.payload_offset >= len(payload):
            self.payloads.popleft()
            self.payload_offset = 0
            max_payload = self.ctrl.dwMaxPayloadTransferSize
            # A payload shorter than the maximum ends with a short transfer; one that fills URBs exactly needs a ZLP.
            self.zlp_due = len(chunk) == urb.length and len(payload) < max_payload and urb.length > 0
            self.function.stats.payloads += 1
            if not self.payloads:
                if self.payload_frame is not None and self.payload_frame.still:
                    self.function._still_sent(self.payload_frame.data)
                else:
                    self.function.stats.frames_sent += 1
                    self._sent()
                self.payload_frame = None
        self.function.stats.bytes_sent += len(chunk)
        return Completion(0, chunk)

    def _sent(self) -> None:
        if len(self.sent_at) < 100_000:
            self.sent_at.append(asyncio.get_running_loop().time())

    def _frame_payloads(self, frame: _Frame) -> None:
        """The frame's payloads, each its header and a view of the frame's bytes (sent without joining them)."""
        self.fid ^= 1
        self.payload_frame = frame
        room = max(self.ctrl.dwMaxPayloadTransferSize - HEADER_LENGTH, 1)
        data = memoryview(frame.data)
        t = asyncio.get_running_loop().time()
        pieces = [data[i:i + room] for i in range(0, len(data), room)] or [data]
        sof = int(t * 1000) & 0x7FF
        for i, piece in enumerate(pieces):
            header = spec.payload_header(self.fid, eof=i == len(pieces) - 1, pts=frame.pts, stc=self.stc(t), sof=sof,
                                         still=frame.still)
            self.payloads.append(Gather((header, piece)))
        self.payload_offset = 0


class UvcFunction(Function):
    """A UVC 1.1 camera: formats and frame sizes, a frame source, processing-unit controls.

    ``formats`` lists :class:`~vusb.devices.video.spec.VideoFormat` (default: YUYV and
    MJPEG at 640x480 and 320x240, 30 and 15 fps).  ``source`` is what the camera
    shows (default :class:`~vusb.devices.video.sources.ColourBars`): any
    :class:`VideoSource`, an image path, a PIL image, a callback or an async iterator.
    ``controls`` names the processing-unit controls offered, or gives their
    :class:`~vusb.devices.video.spec.ControlSpec` with ranges of your own.
    ``camera_controls`` names the camera terminal's controls (exposure, focus, zoom,
    pan/tilt...; none by default) the same way.
    ``transport`` is ``"iso"`` (default) or ``"bulk"``.  ``queued_frames`` is how many
    frames the device keeps for a host that is late (default 3, as a camera's buffer; a
    test that must see every frame on a slow host keeps more).  ``still_method`` is the
    still image capture method offered: 0 (none, default), 2 (a still frame in the video
    stream) or 3 (a dedicated bulk still endpoint); the still sizes are each format's
    ``still_sizes`` (default: its frame sizes).  ``still_source`` is what stills show
    (default: the video source).
    """

    function_class = None  # the function declares its own interface association
    name: str | None = "Webcam"

    def __init__(
        self,
        formats: Sequence[VideoFormat] = DEFAULT_FORMATS,
        *,
        source: Any = None,
        transport: str = "iso",
        controls: Sequence[str | ControlSpec] = DEFAULT_CONTROLS,
        camera_controls: Sequence[str | ControlSpec] = (),
        interface_name: str | None = "Video Control",
        queued_frames: int = QUEUED_FRAMES,
        still_method: int = 0,
        still_source: Any = None,
    ) -> None:
        super().__init__()
        if not 1 <= queued_frames <= MAX_QUEUED_FRAMES:
            raise DeviceDefinitionError(f"webcam queued_frames {queued_frames} is out of range 1..{MAX_QUEUED_FRAMES}")
        self.queued_frames = queued_frames
        """Frames made but not yet taken by the host that the device keeps; one more drops the oldest."""
        self.formats = tuple(formats)
        check_formats(self.formats)
        if transport not in TRANSPORTS:
            raise DeviceDefinitionError(f"webcam transport {transport!r} is not one of: {', '.join(TRANSPORTS)}")
        self.transport = transport
        self._source: VideoSource = ColourBars() if source is None else as_source(source)
        self.controls: dict[tuple[int, int], tuple[ControlSpec, ...]] = _control_table(controls, camera_controls)
        """(entity, selector) -> the values the control carries (one, or pan and tilt)."""
        self.values: dict[str, int] = {cs.name: cs.default for parts in self.controls.values() for cs in parts}
        if still_method not in spec.STILL_METHODS:
            raise DeviceDefinitionError(f"webcam still_method {still_method} is not one of: 0 (none), 2 (in the video "
                                        "stream), 3 (a bulk still endpoint)")
        self.still_method = still_method
        self.still_source: VideoSource | None = None if still_source is None else as_source(still_source)
        """What still images show; None: the video source."""
        self.still_ep_address = 0
        self.still_probe = StillControl()
        self.still_committed: StillControl | None = None
        self.trigger = spec.TRIGGER_NORMAL
        """VS_STILL_IMAGE_TRIGGER_CONTROL: non-zero from the host's trigger until the still has left."""
        self.last_still: bytes | None = None
        """The bytes of the last still image sent to the host."""
        self._still: _Still | None = None
        self._still_payload: Gather | None = None
        self._still_offset = 0
        self._still_zlp = False
        self._still_ready = asyncio.Event()
        self._still_waiters: list[asyncio.Future[bytes]] = []
        self.interface_name = interface_name
        self.stats = VideoStats()
        self.request_error = RequestError.NO_ERROR
        self.speed: Speed | None = None
        self.vc_interface = 0
        self.vs_interface = 1
        self.ep_address = 0
        self.alt_settings: tuple[spec.AltSetting, ...] = ()
        self.probe: StreamingControl = StreamingControl()
        self.committed: StreamingControl | None = None
        self._stream: _Stream | None = None
        self._last_sent_at: list[float] = []

    # ------------------------------------------------------------ public API
    @property
    def source(self) -> VideoSource:
        return self._source

    @source.setter
    def source(self, value: Any) -> None:
        """Show something else from the next frame on (a source, an image path, a PIL image, a callback...)."""
        old, self._source = self._source, as_source(value)
        if old is not self._source:
            old.close()

    def show(self, value: Any) -> None:
        """Same as setting :attr:`source`."""
        self.source = value

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def frame_times(self) -> list[float]:
        """When each frame of the current (or last) stream finished leaving the device, in event-loop time."""
        return list(self._last_sent_at)

    def control_value(self, name: str) -> int:
        """The current value of a processing-unit or camera control, by name (``"brightness"``,
        ``"exposure_time_absolute"``)."""
        if name not in self.values:
            raise KeyError(f"this webcam has no control {name!r}; it has: {', '.join(self.values)}")
        return self.values[name]

    def set_control_value(self, name: str, value: int) -> None:
        """Change a control from the device's side (a physical privacy shutter, an automatic exposure): the host
        reads the new value with its next GET_CUR.  Raises :class:`~vusb.errors.UsageError` outside the range."""
        spec_ = self._spec(name)
        refusal = spec_.refusal(value)
        if refusal is not None:
            raise UsageError(refusal[1])
        self.values[name] = value

    def _spec(self, name: str) -> ControlSpec:
        for parts in self.controls.values():
            for cs in parts:
                if cs.name == name:
                    return cs
        raise KeyError(f"this webcam has no control {name!r}; it has: {', '.join(self.values)}")

    async def still(self, picture: Any = None, *, timeout: float | None = None) -> bytes:
        """Wait for the host to trigger a still image and receive it; return the still's bytes (YUYV or JPEG).

        ``picture`` (an image path, PIL image, source...) is what this and later stills show (default: what
        they showed before, the video source unless :attr:`still_source` was set).  Needs ``still_method``
        2 or 3.
        """
        if self.still_method == 0:
            raise UsageError("this webcam offers no still image capture: make it with still_method=2 or 3")
        if picture is not None:
            self.still_source = as_source(picture)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._still_waiters.append(future)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            if future in self._still_waiters:
                self._still_waiters.remove(future)

    # ------------------------------------------------------------ declaration
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        speed = ctx.speed
        primary = self.speed is None or self.speed == speed
        if speed not in (Speed.HIGH, Speed.FULL):
            raise DeviceDefinitionError(f"the webcam runs at full or high speed, not {speed.name.lower()}")
        if primary:
            problems = bandwidth_problems(self.formats, speed, self.transport)
            if problems:
                raise DeviceDefinitionError(problems[0][2])
        vc = ctx.interface_number()
        vs = ctx.interface_number()
        alts = spec.ALT_SETTINGS[speed]
        if self.transport == "iso":
            address = ctx.endpoint_address(True)
            endpoints = [EndpointDescriptor(address, TransferType.ISOCHRONOUS, a.w_max_packet_size, 1,
                                            attributes_extra=0x04) for a in alts]
        else:
            bulk = ctx.endpoint(True, TransferType.BULK)
            address = bulk.address
        still_eps: tuple[EndpointDescriptor, ...] = ()
        if self.still_method == 3:
            still_eps = (ctx.endpoint(True, TransferType.BULK),)
        still_address = still_eps[0].address if still_eps else 0
        name = ctx.string(self.interface_name)
        ctx.associations.append(InterfaceAssociation(vc, 2, spec.CC_VIDEO, spec.SC_VIDEO_INTERFACE_COLLECTION, 0,
                                                     ctx.string(self.name)))
        pu_bm = ct_bm = 0
        for parts in self.controls.values():
            for cs in parts:
                if cs.entity == spec.CAMERA_TERMINAL_ID:
                    ct_bm |= 1 << cs.bit
                else:
                    pu_bm |= 1 << cs.bit
        units = spec.camera_terminal(ct_bm) + spec.processing_unit(pu_bm) + spec.output_terminal()
        header = spec.vc_header(12 + 1 + len(units), (vs,))
        vc_extra = (RawDescriptor(header), RawDescriptor(spec.camera_terminal(ct_bm)),
                    RawDescriptor(spec.processing_unit(pu_bm)), RawDescriptor(spec.output_terminal()))
        body: list[bytes] = []
        for fi, fmt in enumerate(self.formats, start=1):
            body.append(spec.format_descriptor(fi, fmt))
            body.extend(spec.frame_descriptor(si, fmt.format, size) for si, size in enumerate(fmt.frames, start=1))
            if self.still_method:  # uvcvideo expects it after the frames, before the colour matching descriptor
                body.append(spec.still_frame_descriptor(still_address, fmt.stills(), fmt.compressions()))
            body.append(spec.color_matching())
        total = 13 + len(self.formats) + sum(len(b) for b in body)
        vs_extra = (RawDescriptor(spec.vs_input_header(len(self.formats), total, address, self.still_method)),
                    *(RawDescriptor(b) for b in body))
        interfaces = [InterfaceDescriptor(vc, 0, spec.CC_VIDEO, spec.SC_VIDEOCONTROL, 0, name, (), vc_extra)]
        # The bulk still endpoint (method 3) is in every alternate setting: bulk reserves no bandwidth.
        if self.transport == "iso":
            interfaces.append(InterfaceDescriptor(vs, 0, spec.CC_VIDEO, spec.SC_VIDEOSTREAMING, 0, 0, still_eps,
                                                  vs_extra))
            interfaces.extend(InterfaceDescriptor(vs, i, spec.CC_VIDEO, spec.SC_VIDEOSTREAMING, 0, 0, (ep, *still_eps))
                              for i, ep in enumerate(endpoints, start=1))
        else:
            interfaces.append(InterfaceDescriptor(vs, 0, spec.CC_VIDEO, spec.SC_VIDEOSTREAMING, 0, 0,
                                                  (bulk, *still_eps), vs_extra))
        if primary:
            self.speed = speed
            self.vc_interface, self.vs_interface, self.ep_address = vc, vs, address
            self.still_ep_address = still_address
            self.alt_settings = alts
            self.probe = self._default_control()
            if self.still_method:
                self.still_probe = self._filled_still(1, 1, 0)
        return interfaces

    def bind(self, device: Device) -> None:
        ep = device.endpoint(self.ep_address)
        ep.handler = self._iso_in if self.transport == "iso" else self._bulk_in
        if self.still_ep_address:
            device.endpoint(self.still_ep_address).handler = self._still_in

    # ------------------------------------------------------------ streaming lifecycle
    def on_alternate(self, interface: int, alternate: int) -> None:
        if interface != self.vs_interface or self.transport != "iso":
            return
        self._stop()
        if alternate:
            self._start()

    def on_configured(self, configured: bool) -> None:
        self._stop()

    def on_reset(self) -> None:
        self._stop()
        self.committed = None
        self.probe = self._default_control()
        self.request_error = RequestError.NO_ERROR
        self._abort_still()
        self.still_committed = None
        if self.still_method:
            self.still_probe = self._filled_still(1, 1, 0)

    def on_clear_halt(self, address: int) -> None:
        if address == self.ep_address and self.transport == "bulk":
            self._stop()  # how hosts tell a bulk camera to stop streaming

    async def close(self) -> None:  # type: ignore[override]
        self._stop()
        self._abort_still()
        self._source.close()

    def _start(self) -> None:
        ctrl = self.committed
        if ctrl is None:
            log.warning("webcam: the host started streaming without a commit; using the probe's settings")
            ctrl = self.probe
        self._stream = _Stream(self, ctrl)
        self._last_sent_at = self._stream.sent_at
        self.stats.streams_started += 1
        log.info("webcam: streaming %s %s at %.3g fps (%s)", self._stream.format.format.value,
                 self._stream.size.label(), 1 / self._stream.period, self.transport)

    def _stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream = None
            if self._still is not None and not self._still.bulk:
                log.info("webcam: the stream stopped before still image %d left; it is dropped", self._still.number)
                self._abort_still()

    def _iso_in(self, urb: Urb) -> HandlerResult:
        stream = self._stream
        device = self.device
        if stream is None or device is None:
            raise Stall()
        alt = device.alternates.get(self.vs_interface, 0)
        setting = self.alt_settings[alt - 1] if 1 <= alt <= len(self.alt_settings) else self.alt_settings[0]
        packet_time = 125e-6 if device.speed == Speed.HIGH else 1e-3
        return stream.iso(urb, setting.bytes_per_interval, packet_time)

    def _bulk_in(self, urb: Urb) -> HandlerResult:
        stream = self._stream
        if stream is None:
            return asyncio.get_running_loop().create_future()  # not streaming: the host's read waits (NAK)
        return stream.bulk(urb)

    # ------------------------------------------------------------ probe and commit
    def _filled(self, fi: int, si: int, interval: int, *, hint: int = 0, quality: int = 0) -> StreamingControl:
        fmt = self.formats[fi - 1]
        size = fmt.frames[si - 1]
        frame_bytes = size.max_frame_size(fmt.format)
        if self.transport == "iso":
            speed = self.speed or Speed.HIGH
            at_rate = FrameSize(size.width, size.height, (10_000_000 / interval,))
            need = spec.required_bandwidth(at_rate, fmt.format, speed)
            fitting = [a.bytes_per_interval for a in self.alt_settings if a.bytes_per_interval >= need]
            payload = min(fitting) if fitting else max(a.bytes_per_interval for a in self.alt_settings)
        else:
            payload = frame_bytes + HEADER_LENGTH
        return StreamingControl(
            bmHint=hint, bFormatIndex=fi, bFrameIndex=si, dwFrameInterval=interval,
            wCompQuality=quality if fmt.format.compressed else 0,
            dwMaxVideoFrameSize=frame_bytes, dwMaxPayloadTransferSize=payload,
            dwClockFrequency=spec.CLOCK_FREQUENCY, bmFramingInfo=spec.BM_FRAMING_INFO,
            bPreferedVersion=1, bMinVersion=1, bMaxVersion=1,
        )

    def _default_control(self) -> StreamingControl:
        return self._filled(1, 1, self.formats[0].frames[0].intervals[0])

    def _negotiate(self, asked: StreamingControl, setup: SetupPacket) -> StreamingControl:
        fi, si = asked.bFormatIndex, asked.bFrameIndex
        if not 1 <= fi <= len(self.formats):
            self._refuse(setup, RequestError.OUT_OF_RANGE,
                         f"format index {fi} is not offered (1..{len(self.formats)})")
        frames = self.formats[fi - 1].frames
        if not 1 <= si <= len(frames):
            self._refuse(setup, RequestError.OUT_OF_RANGE,
                         f"frame index {si} is not offered by format {fi} (1..{len(frames)})")
        intervals = frames[si - 1].intervals
        interval = asked.dwFrameInterval
        if interval == 0 or interval not in intervals:
            # The device picks the closest interval it supports (UVC 1.1 section 4.3.1.1.1).
            interval = intervals[0] if interval == 0 else min(intervals, key=lambda i: (abs(i - asked.dwFrameInterval), i))
        return self._filled(fi, si, interval, hint=asked.bmHint, quality=asked.wCompQuality)

    def _streaming_request(self, setup: SetupPacket, data: bytes) -> ControlResult:
        selector = setup.value >> 8
        if self.still_method and selector in (spec.VS_STILL_PROBE_CONTROL, spec.VS_STILL_COMMIT_CONTROL,
                                              spec.VS_STILL_IMAGE_TRIGGER_CONTROL) and not setup.index >> 8:
            return self._still_request(setup, data)
        if selector not in (spec.VS_PROBE_CONTROL, spec.VS_COMMIT_CONTROL) or setup.index >> 8:
            self._refuse(setup, RequestError.INVALID_CONTROL, f"no streaming control {selector}")
        probe = selector == spec.VS_PROBE_CONTROL
        req = setup.request
        if req == spec.SET_CUR:
            try:
                asked = StreamingControl.parse(data)
            except ValueError as exc:
                self._refuse(setup, RequestError.INVALID_REQUEST, str(exc))
            ctrl = self._negotiate(asked, setup)
            if probe:
                self.probe = ctrl
            else:
                self.committed = ctrl
                self.probe = ctrl
                if self.transport == "bulk" or self._stream is not None:
                    self._stop()
                    self._start()
            self.request_error = RequestError.NO_ERROR
            return None
        if req == spec.GET_INFO:
            return bytes((spec.INFO_GET_SET,))
        if req == spec.GET_LEN:
            return spec.PROBE_LENGTH.to_bytes(2, "little")
        current = self.probe if probe else (self.committed or self.probe)
        if req == spec.GET_CUR:
            return current.to_bytes()
        if not probe:
            self._refuse(setup, RequestError.INVALID_REQUEST, "the commit control answers GET_CUR, GET_INFO and GET_LEN")
        fi, si = current.bFormatIndex, current.bFrameIndex
        intervals = self.formats[fi - 1].frames[si - 1].intervals
        if req == spec.GET_MIN:
            return self._filled(fi, si, intervals[0], quality=0).to_bytes()
        if req == spec.GET_MAX:
            return self._filled(fi, si, intervals[-1], quality=10000).to_bytes()
        if req == spec.GET_DEF:
            return self._default_control().to_bytes()
        if req == spec.GET_RES:
            return StreamingControl(dwFrameInterval=1, wCompQuality=1).to_bytes()
        self._refuse(setup, RequestError.INVALID_REQUEST, f"request 0x{req:02x} is not a UVC request")
        return None

    # ------------------------------------------------------------ still images (methods 2 and 3)
    def _filled_still(self, fi: int, si: int, ci: int) -> StillControl:
        fmt = self.formats[fi - 1]
        width, height = fmt.stills()[si - 1]
        compressions = fmt.compressions()
        frame_bytes = width * height * 2
        if self.still_method == 3:
            payload = frame_bytes + HEADER_LENGTH  # one payload: the whole still and its header
        else:
            payload = (self.committed or self.probe).dwMaxPayloadTransferSize  # the video stream's payloads
        return StillControl(fi, si, (ci or 1) if compressions else 0, frame_bytes, payload)

    def _still_request(self, setup: SetupPacket, data: bytes) -> ControlResult:
        selector = setup.value >> 8
        req = setup.request
        if selector == spec.VS_STILL_IMAGE_TRIGGER_CONTROL:
            if req == spec.GET_INFO:
                return bytes((spec.INFO_GET_SET,))
            if req == spec.GET_LEN:
                return b"\x01\x00"
            if req == spec.GET_CUR:
                return bytes((self.trigger,))
            if req != spec.SET_CUR:
                self._refuse(setup, RequestError.INVALID_REQUEST, "the still trigger answers SET_CUR, GET_CUR, "
                             "GET_INFO and GET_LEN")
            if len(data) != 1:
                self._refuse(setup, RequestError.INVALID_REQUEST, f"the still trigger is 1 byte, SET_CUR sent {len(data)}")
            self._trigger(setup, data[0])
            self.request_error = RequestError.NO_ERROR
            return None
        probe = selector == spec.VS_STILL_PROBE_CONTROL
        if req == spec.SET_CUR:
            try:
                asked = StillControl.parse(data)
            except ValueError as exc:
                self._refuse(setup, RequestError.INVALID_REQUEST, str(exc))
            fi, si, ci = asked.bFormatIndex, asked.bFrameIndex, asked.bCompressionIndex
            if not 1 <= fi <= len(self.formats):
                self._refuse(setup, RequestError.OUT_OF_RANGE, f"still format index {fi} is not offered "
                                                               f"(1..{len(self.formats)})")
            fmt = self.formats[fi - 1]
            if not 1 <= si <= len(fmt.stills()):
                self._refuse(setup, RequestError.OUT_OF_RANGE, f"still frame index {si} is not offered by format {fi} "
                                                               f"(1..{len(fmt.stills())})")
            n = len(fmt.compressions())
            if n and not 0 <= ci <= n:
                self._refuse(setup, RequestError.OUT_OF_RANGE, f"still compression index {ci} is not offered by "
                                                               f"format {fi} (1..{n})")
            ctrl = self._filled_still(fi, si, ci)
            self.still_probe = ctrl
            if not probe:
                self.still_committed = ctrl
            self.request_error = RequestError.NO_ERROR
            return None
        if req == spec.GET_INFO:
            return bytes((spec.INFO_GET_SET,))
        if req == spec.GET_LEN:
            return spec.STILL_PROBE_LENGTH.to_bytes(2, "little")
        current = self.still_probe if probe else (self.still_committed or self.still_probe)
        if req == spec.GET_CUR:
            return current.to_bytes()
        if not probe:
            self._refuse(setup, RequestError.INVALID_REQUEST, "the still commit control answers GET_CUR, GET_INFO "
                                                              "and GET_LEN")
        fmt = self.formats[current.bFormatIndex - 1]
        if req in (spec.GET_MIN, spec.GET_DEF):
            return self._filled_still(current.bFormatIndex, 1, 1).to_bytes()
        if req == spec.GET_MAX:
            return self._filled_still(current.bFormatIndex, len(fmt.stills()), len(fmt.compressions())).to_bytes()
        if req == spec.GET_RES:
            return StillControl(0, 1, 1 if fmt.compressions() else 0, 0, 0).to_bytes()
        self._refuse(setup, RequestError.INVALID_REQUEST, f"request 0x{req:02x} is not a UVC request")
        return None

    def _trigger(self, setup: SetupPacket, value: int) -> None:
        if value == spec.TRIGGER_NORMAL:
            return
        if value == spec.TRIGGER_ABORT:
            if self._still is not None:
                log.info("webcam: the host aborted still image %d", self._still.number)
            self._abort_still()
            return
        if value not in (spec.TRIGGER_STILL, spec.TRIGGER_STILL_BULK):
            self._refuse(setup, RequestError.OUT_OF_RANGE, f"still trigger {value} is not 0..3")
        bulk = self.still_method == 3
        if value == spec.TRIGGER_STILL_BULK and not bulk:
            self._refuse(setup, RequestError.OUT_OF_RANGE, "trigger 2 (the bulk still pipe) needs still method 3; "
                                                           "this webcam uses method 2")
        if not bulk and self._stream is None:
            self._refuse(setup, RequestError.WRONG_STATE, "still method 2 sends the still in the video stream: "
                                                          "start streaming first")
        if self._still is not None:
            self._refuse(setup, RequestError.WRONG_STATE, f"still image {self._still.number} is still on its way")
        ctrl = self.still_committed or self.still_probe
        fmt = self.formats[ctrl.bFormatIndex - 1]
        width, height = fmt.stills()[ctrl.bFrameIndex - 1]
        still = _Still(self.stats.stills_sent, fmt.format, width, height, bulk)
        self._still = still
        self.trigger = value
        still.task = asyncio.get_running_loop().create_task(self._make_still(still), name="vusb webcam still")
        log.info("webcam: still image %d triggered: %s %dx%d %s", still.number, fmt.format.value, width, height,
                 "on the bulk still endpoint" if bulk else "in the video stream")

    async def _make_still(self, still: _Still) -> None:
        source = self.still_source or self._source
        try:
            data = await source.frame(still.number, still.format, FrameSize(still.width, still.height))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.last_error = f"still image from {source.description}: {exc}"
            log.error("webcam: still image %d from %s failed: %s", still.number, source.description, exc,
                      exc_info=not isinstance(exc, VideoSourceError))
            if self._still is still:
                self._still = None
                self.trigger = spec.TRIGGER_NORMAL
            return
        if self._still is not still:
            return
        still.data = data
        if still.bulk:
            header = spec.payload_header(self.stats.stills_sent & 1, eof=True, pts=0, stc=0, sof=0, still=True)
            self._still_payload = Gather((header, data))
            self._still_offset = 0
            self._still_ready.set()
        elif self._stream is not None:
            self._stream.ready.set()  # a bulk stream waiting for a frame takes the still

    def _still_for_stream(self) -> bytes | None:
        """The still to send in the video stream next (method 2), once it is made; taken once."""
        still = self._still
        if still is None or still.bulk or still.data is None or still.task is None:
            return None
        still.task = None  # taken
        return still.data

    def _still_sent(self, data: bytes | memoryview) -> None:
        still = self._still
        self._still = None
        self.trigger = spec.TRIGGER_NORMAL
        self.last_still = bytes(data)
        self.stats.stills_sent += 1
        log.info("webcam: still image %d sent (%d bytes)", still.number if still else -1, len(data))
        for waiter in self._still_waiters:
            if not waiter.done():
                waiter.set_result(self.last_still)
        self._still_waiters.clear()

    def _abort_still(self) -> None:
        if self._still is not None and self._still.task is not None:
            self._still.task.cancel()
        self._still = None
        self._still_payload = None
        self._still_zlp = False
        self.trigger = spec.TRIGGER_NORMAL

    async def _still_in(self, urb: Urb) -> Completion:
        """The bulk still endpoint (method 3): one payload a still (header with STI and EOF, then the image)."""
        if self._still_zlp:
            self._still_zlp = False
            return Completion(0, b"")
        while self._still_payload is None:
            self._still_ready.clear()
            await self._still_ready.wait()  # no still triggered: the host's read waits (NAK)
        payload = self._still_payload
        chunk = payload[self._still_offset:self._still_offset + urb.length]
        self._still_offset += len(chunk)
        if self._still_offset >= len(payload):
            self._still_payload = None
            ctrl = self.still_committed or self.still_probe
            self._still_zlp = len(chunk) == urb.length and len(payload) < ctrl.dwMaxPayloadTransferSize and urb.length > 0
            self.stats.payloads += 1
            still = self._still
            self._still_sent(still.data if still is not None and still.data is not None else bytes(payload)[12:])
        self.stats.bytes_sent += len(chunk)
        return Completion(0, chunk)

    # ------------------------------------------------------------ VideoControl requests
    def _control_request(self, setup: SetupPacket, data: bytes) -> ControlResult:
        entity = setup.index >> 8
        selector = setup.value >> 8
        req = setup.request
        if entity == 0:
            if selector == spec.VC_REQUEST_ERROR_CODE_CONTROL and req in (spec.GET_CUR, spec.GET_INFO):
                return bytes((int(self.request_error),)) if req == spec.GET_CUR else b"\x01"
            self._refuse(setup, RequestError.INVALID_CONTROL, f"no interface control {selector}")
        if entity not in (spec.CAMERA_TERMINAL_ID, spec.PROCESSING_UNIT_ID, spec.OUTPUT_TERMINAL_ID):
            self._refuse(setup, RequestError.INVALID_UNIT, f"no unit or terminal {entity}")
        parts = self.controls.get((entity, selector))
        if parts is None:
            what = {spec.CAMERA_TERMINAL_ID: "the camera terminal", spec.PROCESSING_UNIT_ID: "the processing unit"}
            self._refuse(setup, RequestError.INVALID_CONTROL,
                         f"{what.get(entity, f'terminal {entity}')} has no control {selector}")
        assert parts is not None
        first = parts[0]
        size = sum(cs.size for cs in parts)
        label = "/".join(cs.name for cs in parts)
        if req == spec.SET_CUR:
            if len(data) != size:
                self._refuse(setup, RequestError.INVALID_REQUEST, f"{label} is {size} bytes, SET_CUR sent {len(data)}")
            values = [cs.decode(data[cs.offset:cs.offset + cs.size]) for cs in parts]
            for cs, value in zip(parts, values, strict=True):
                refusal = cs.refusal(value)
                if refusal is not None:
                    self._refuse(setup, *refusal)
            automatic = self._automatic(first)
            if automatic:
                self._refuse(setup, RequestError.WRONG_STATE, f"{label} is under device control while {automatic}")
            for cs, value in zip(parts, values, strict=True):
                self.values[cs.name] = value
            self.request_error = RequestError.NO_ERROR
            log.info("webcam: %s set to %s", label, "/".join(str(v) for v in values))
            return None
        if req == spec.GET_INFO:
            return bytes((spec.INFO_GET_SET | (spec.INFO_DISABLED_BY_AUTO if self._automatic(first) else 0),))
        if req == spec.GET_LEN:
            return size.to_bytes(2, "little")
        answers: dict[int, Callable[[ControlSpec], int]] = {
            spec.GET_CUR: lambda cs: self.values[cs.name], spec.GET_DEF: lambda cs: cs.default}
        if first.kind == "range":
            answers.update({spec.GET_MIN: lambda cs: cs.minimum, spec.GET_MAX: lambda cs: cs.maximum,
                            spec.GET_RES: lambda cs: cs.resolution})
        elif first.kind == "bitmap":
            answers[spec.GET_RES] = lambda cs: cs.resolution  # the modes offered
        answer = answers.get(req)
        if answer is None:
            name = spec.REQUEST_NAMES.get(req, f"0x{req:02x}")
            self._refuse(setup, RequestError.INVALID_REQUEST, f"{label} ({first.kind}) does not answer {name}")
        assert answer is not None
        self.request_error = RequestError.NO_ERROR
        return b"".join(cs.encode(answer(cs)) for cs in parts)

    def _automatic(self, cs: ControlSpec) -> str | None:
        """Why ``cs`` is under device control now (its automatic mode is on), or None."""
        dependency = spec.DEPENDENCIES.get(cs.name)
        if dependency is None:
            return None
        master, automatic = dependency
        value = self.values.get(master)
        if value is None or value not in automatic:
            return None
        if master == "auto_exposure_mode":
            mode = next(k for k, v in spec.AE_MODES.items() if v == value)
            return f"auto_exposure_mode is {mode}"
        return f"{master} is on"

    def _refuse(self, setup: SetupPacket, code: RequestError, why: str) -> None:
        self.request_error = code
        name = spec.REQUEST_NAMES.get(setup.request, f"0x{setup.request:02x}")
        log.warning("webcam: stalling %s (%s): %s", name, setup.describe(), why)
        raise Stall()

    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type != RequestType.CLASS:
            return NOT_HANDLED
        interface = setup.index & 0xFF
        if interface == self.vs_interface:
            return self._streaming_request(setup, data)
        if interface == self.vc_interface:
            return self._control_request(setup, data)
        return NOT_HANDLED


def _control_table(controls: Sequence[str | ControlSpec],
                   camera_controls: Sequence[str | ControlSpec]) -> dict[tuple[int, int], tuple[ControlSpec, ...]]:
    """(entity, selector) -> the control's values, checked: processing-unit controls in ``controls``, camera
    terminal ones in ``camera_controls``; pan and tilt are one control (declaring one brings the other)."""
    table: dict[tuple[int, int], dict[str, ControlSpec]] = {}
    for given, entity, unit in ((controls, spec.PROCESSING_UNIT_ID, "processing-unit"),
                                (camera_controls, spec.CAMERA_TERMINAL_ID, "camera")):
        names = spec.CONTROL_NAMES if entity == spec.PROCESSING_UNIT_ID else spec.CAMERA_CONTROL_NAMES
        for c in given:
            if isinstance(c, str) and c not in names:
                raise DeviceDefinitionError(f"no {unit} control {c!r}; known: {', '.join(names)}")
            cs = spec.control_spec(c) if isinstance(c, str) else c
            if cs.entity != entity:
                raise DeviceDefinitionError(f"webcam control {cs.name} is not a {unit} control")
            problem = cs.check()
            if problem:
                raise DeviceDefinitionError(f"webcam control {cs.name}: {problem}")
            parts = table.setdefault((entity, cs.selector), {})
            if cs.name in parts:
                raise DeviceDefinitionError(f"webcam control {cs.name} is declared twice")
            parts[cs.name] = cs
    for partner in (("pan_absolute", "tilt_absolute"),):
        together = table.get((spec.CAMERA_TERMINAL_ID, spec.control_spec(partner[0]).selector))
        if together is not None:
            for name in partner:
                together.setdefault(name, spec.control_spec(name))
    return {key: tuple(sorted(parts.values(), key=lambda cs: cs.offset)) for key, parts in table.items()}


def controls_from(values: Mapping[str, Mapping[str, int]]) -> list[ControlSpec]:
    """ControlSpecs from ``{name: {min, max, step, default}}`` (every key optional)."""
    out = []
    for name, r in values.items():
        if name not in spec.CONTROL_NAMES:
            raise DeviceDefinitionError(f"no processing unit control {name!r}; known: {', '.join(spec.CONTROL_NAMES)}")
        out.append(spec.control_spec(name, minimum=r.get("min"), maximum=r.get("max"), step=r.get("step"),
                                     default=r.get("default")))
    return out
