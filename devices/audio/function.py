"""A USB sound card: speaker (isochronous OUT) and microphone (isochronous IN), UAC 2.0 or 1.0.

::

    from vusb.devices.audio import AudioFunction, Microphone, Speaker, Tone

    mic = Microphone(source=Tone(440))
    speaker = Speaker()
    card = AudioFunction(speaker=speaker, microphone=mic)          # UAC 2.0
    dev = Device(card, vendor_id=0x1209, product_id=0x0015, speed="high")

    await mic.play(pcm_bytes)         # the host's next captured samples
    speaker.recorded()                # what the host played so far

The topology is the one of a plain USB headset.  Playback: USB streaming input
terminal (1) -> feature unit (2, mute + volume) -> speaker output terminal (3), clocked
by clock source 8.  Capture: microphone input terminal (4) -> feature unit (5) -> USB
streaming output terminal (6), clocked by clock source 9.  Each direction has its own
streaming interface: alternate setting 0 has no endpoint (no bandwidth), and each
format (channels x bits) has an alternate setting of its own.  The speaker is
asynchronous, with an explicit feedback endpoint (16.16 frames per microframe at high
speed, 10.14 frames per frame at full speed).

A host that asks a rate or a format the card does not list is stalled, and the
refusal logged, as a real card does.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

from vusb.devices.audio import spec
from vusb.devices.audio.iso import FrameCounter, IsoClock, Slot
from vusb.devices.audio.pcm import (
    Discard,
    Fifo,
    PcmFormat,
    Silence,
    Sink,
    Source,
    convert,
    samples_to_bytes,
)

from vusb.constants import Speed, Status, TransferType
from vusb.descriptors import EndpointDescriptor, InterfaceAssociation, InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function
from vusb.endpoint import HandlerResult
from vusb.errors import DeviceDefinitionError, Stall, UsageError
from vusb.protocol import IsoPacket
from vusb.urb import Completion, SetupPacket, Urb

log = logging.getLogger("vusb.devices.audio")

SUPPORTED_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000)
SUPPORTED_BITS = (16, 24, 32)

VOLUME_MIN = -60 * 256  # 1/256 dB
VOLUME_MAX = 0
VOLUME_RES = 256


@dataclass(frozen=True)
class Format:
    """One streaming format: ``channels`` of ``bits``-bit samples (24 bits travel in 3 bytes)."""

    channels: int = 2
    bits: int = 16

    @property
    def subslot(self) -> int:
        return (self.bits + 7) // 8

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.subslot

    def pcm(self, rate: int) -> PcmFormat:
        return PcmFormat(self.channels, self.bits, rate, self.subslot)

    def describe(self) -> str:
        return f"{self.bits}-bit {'mono' if self.channels == 1 else 'stereo' if self.channels == 2 else f'{self.channels} ch'}"


def check_formats(formats: Sequence[Format], rates: Sequence[int], speed: Speed, interval: int, what: str) -> None:
    """Raise :class:`DeviceDefinitionError` naming the first format or rate the card cannot carry."""
    if not formats:
        raise DeviceDefinitionError(f"{what}: give at least one format")
    if not rates:
        raise DeviceDefinitionError(f"{what}: give at least one sample rate")
    if len(set(formats)) != len(formats):
        raise DeviceDefinitionError(f"{what}: a format is listed twice")
    for r in rates:
        if r not in SUPPORTED_RATES:
            raise DeviceDefinitionError(f"{what}: sample rate {r} Hz is not supported "
                                        f"(supported: {', '.join(str(x) for x in SUPPORTED_RATES)})")
    for f in formats:
        if f.bits not in SUPPORTED_BITS:
            raise DeviceDefinitionError(f"{what}: {f.bits}-bit samples are not supported (16, 24 or 32)")
        if not 1 <= f.channels <= 8:
            raise DeviceDefinitionError(f"{what}: {f.channels} channels; 1..8 are supported")
        size = max_packet_size(f, max(rates), speed, interval)
        limit = 1023 if speed == Speed.FULL else 1024
        if size > limit:
            raise DeviceDefinitionError(
                f"{what}: {f.describe()} at {max(rates)} Hz needs {size}-byte packets, more than the {limit} bytes "
                f"an isochronous endpoint carries at {speed.name.lower()} speed")


def max_packet_size(fmt: Format, rate: int, speed: Speed, interval: int) -> int:
    """wMaxPacketSize for ``fmt`` at up to ``rate``: the largest packet plus one frame of headroom."""
    return (FrameCounter(rate, speed, interval).max_per_packet + 1) * fmt.frame_bytes


class _Stream:
    """What both directions share: formats, rates, the selected alternate setting, the schedule."""

    direction = "stream"

    def __init__(self, formats: Sequence[Format] | None, rates: Sequence[int] | None, name: str | None) -> None:
        self.formats: tuple[Format, ...] = tuple(formats) if formats is not None else (Format(2, 16), Format(1, 16))
        self.rates: tuple[int, ...] = tuple(sorted(set(rates))) if rates is not None else (44100, 48000)
        self.name = name
        self.rate = 48000 if 48000 in self.rates else self.rates[-1]
        self.alternate = 0
        self.mute = False
        self.volume = 0
        self.function: AudioFunction | None = None
        self.interface = -1
        self.address = 0
        self.interval = 1
        self.speed = Speed.FULL
        self._clock: IsoClock | None = None
        self._counter: FrameCounter | None = None
        self.error: BaseException | None = None
        """The exception that stopped this stream's source or sink, if one did."""
        self.started = asyncio.Event()
        """Set while the host streams (an alternate setting with an endpoint is selected)."""
        self.frames = 0
        """Frames moved since the stream started."""
        self.urbs = 0
        self.packets = 0

    @property
    def format(self) -> PcmFormat | None:
        """The PCM format in use while the host streams, else None."""
        if self.alternate == 0:
            return None
        return self.formats[self.alternate - 1].pcm(self.rate)

    @property
    def streaming(self) -> bool:
        return self.alternate != 0

    def _start(self) -> None:
        assert self.function is not None
        self._clock = IsoClock(self.speed, self.interval, epoch=self.function.epoch)
        self._counter = FrameCounter(self.rate, self.speed, self.interval)
        self.frames = 0
        self.started.set()

    def _stop(self) -> None:
        if self._clock is not None and self._clock.restarts:
            log.info("%s: the schedule restarted %d time(s): the host stopped submitting for a while",
                     self.direction, self._clock.restarts)
        self._clock = None
        self._counter = None
        self.started.clear()

    def set_alternate(self, alt: int) -> None:
        if alt == self.alternate:
            return
        self.alternate = alt
        self._stop()
        if alt:
            log.info("%s: host streams %s", self.direction, self.format.describe() if self.format else "?")
            self._start()

    def set_rate(self, rate: int) -> None:
        if rate not in self.rates:
            log.warning("%s: host asked for %d Hz, which this card does not list (%s); stalling", self.direction, rate,
                        ", ".join(str(r) for r in self.rates))
            raise Stall()
        if rate != self.rate:
            self.rate = rate
            if self.streaming:
                self._stop()
                self._start()

    @property
    def drift_ppm(self) -> float | None:
        """Frames moved against what the nominal rate makes in the time since the stream started, in ppm."""
        clock = self._clock
        if clock is None or clock.started_at is None:
            return None
        elapsed = time.monotonic() - clock.started_at
        if elapsed <= 0:
            return None
        return (self.frames / (elapsed * self.rate) - 1) * 1e6

    async def _at(self, slot: Slot, clock: IsoClock | None = None) -> None:
        delay = slot.end - time.monotonic()
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:  # unlinked: the host stops the stream
                if clock is not None:
                    clock.stopped()
                raise
        if clock is not None:
            clock.finished(time.monotonic())


class Microphone(_Stream):
    """The capture side: an isochronous IN endpoint fed by a source (silence when there is none).

    ``await play(samples)`` puts samples ahead of the source: the host's next captured
    frames are those, then the source resumes.
    """

    direction = "microphone"

    def __init__(self, formats: Sequence[Format] | None = None, rates: Sequence[int] | None = None, *,
                 source: Source | None = None, name: str | None = None) -> None:
        super().__init__(formats, rates, name)
        self.source: Source = source if source is not None else Silence()
        self._queue: list[tuple[bytes, PcmFormat, asyncio.Future[None] | None]] = []
        self._pos = 0  # bytes of the first queued buffer already sent

    async def play(self, samples: bytes | bytearray | Sequence[int] | Sequence[Sequence[int]], *,
                   bits: int | None = None, channels: int | None = None, wait: bool = True) -> None:
        """Queue ``samples`` for the host to capture; returns once the host has taken them all.

        ``samples`` is PCM bytes (little-endian, ``bits`` per sample in the smallest
        whole bytes, ``channels`` interleaved; both default to the format the host uses,
        else the first listed) or integers: one per frame (every channel the same) or a
        tuple per frame.  They are converted to whatever format the host streams.
        """
        base = self.formats[max(self.alternate, 1) - 1]
        fmt = PcmFormat(channels or base.channels, bits or base.bits, self.rate)
        if isinstance(samples, (bytes, bytearray, memoryview)):
            data = bytes(samples)
            if len(data) % fmt.frame_bytes:
                raise UsageError(f"{len(data)} bytes are not whole frames of {fmt.frame_bytes} bytes ({fmt.describe()})")
        else:
            data = samples_to_bytes(samples, fmt)
        done: asyncio.Future[None] | None = asyncio.get_running_loop().create_future() if wait else None
        self._queue.append((data, fmt, done))
        if done is not None:
            await done

    @property
    def queued_frames(self) -> int:
        return sum(len(d) // f.frame_bytes for d, f, _ in self._queue) - (
            self._pos // self._queue[0][1].frame_bytes if self._queue else 0)

    def _start(self) -> None:
        super()._start()
        starter = getattr(self.source, "start", None)
        if callable(starter):  # a source that fills a buffer (IteratorSource) begins now
            starter()

    def _read(self, frames: int, fmt: PcmFormat) -> bytes:
        out = bytearray()
        while frames > 0 and self._queue:
            data, qfmt, done = self._queue[0]
            fb = qfmt.frame_bytes
            take = min(frames, (len(data) - self._pos) // fb)
            out += convert(data[self._pos : self._pos + take * fb], qfmt, fmt)
            self._pos += take * fb
            frames -= take
            if self._pos >= len(data):
                self._queue.pop(0)
                self._pos = 0
                if done is not None and not done.done():
                    done.set_result(None)
        if frames > 0:
            try:
                chunk = self.source.read(frames, fmt)
                if len(chunk) != frames * fmt.frame_bytes:
                    raise ValueError(f"source {self.source!r} returned {len(chunk)} bytes for {frames} frames "
                                     f"of {fmt.frame_bytes} bytes")
            except Exception as exc:  # noqa: BLE001 - a failing source stops its stream only
                log.error("microphone: source %r failed: %r; it is dropped and the microphone sends silence",
                          self.source, exc)
                self.error = exc
                self.source = Silence()
                chunk = bytes(frames * fmt.frame_bytes)
            out += chunk
        return bytes(out)

    def handle(self, urb: Urb) -> HandlerResult:
        packets = urb.iso_packets
        clock, counter, fmt = self._clock, self._counter, self.format
        if packets is None or clock is None or counter is None or fmt is None:
            return Completion(Status.EPIPE)
        slot = clock.plan(len(packets), urb.flags, urb.start_frame, time.monotonic())
        if log.isEnabledFor(logging.DEBUG):
            log.debug("microphone: URB %d flags 0x%x start_frame %d, %d packets of %s bytes; slot %.4f..%.4f",
                      urb.seqnum, urb.flags, urb.start_frame, len(packets), packets[0].length if packets else 0,
                      slot.start, slot.end)
        return self._finish(urb, slot, packets, counter, fmt, clock)

    async def _finish(self, urb: Urb, slot: Slot, packets: tuple[IsoPacket, ...], counter: FrameCounter,
                      fmt: PcmFormat, clock: IsoClock) -> Completion:
        await self._at(slot, clock)
        fb = fmt.frame_bytes
        out: list[IsoPacket] = []
        pieces: list[bytes] = []
        errors = 0
        for i, p in enumerate(packets):
            if i < slot.skipped:
                counter.advance(counter.due())  # the slot went by: its frames are not sent
                out.append(IsoPacket(p.offset, p.length, 0, Status.EXDEV))
                errors += 1
                continue
            frames = min(counter.due(), p.length // fb)
            data = self._read(frames, fmt) if frames else b""
            counter.advance(frames)
            pieces.append(data)
            out.append(IsoPacket(p.offset, p.length, len(data), 0))
        payload = b"".join(pieces)
        self.frames += len(payload) // fb
        self.urbs += 1
        self.packets += len(packets)
        return Completion(slot.status, payload, iso_packets=tuple(out), error_count=errors, start_frame=slot.start_frame)


class Speaker(_Stream):
    """The playback side: an asynchronous isochronous OUT endpoint with a feedback endpoint.

    What the host plays goes to ``sink`` (default: :class:`Discard`) and is kept for
    :meth:`recorded` (up to ``record_limit`` bytes; 0 keeps nothing).
    """

    direction = "speaker"

    def __init__(self, formats: Sequence[Format] | None = None, rates: Sequence[int] | None = None, *,
                 sink: Sink | None = None, record_limit: int = 64 << 20, name: str | None = None) -> None:
        super().__init__(formats, rates, name)
        self.sink: Sink = sink if sink is not None else Discard()
        self.record_limit = record_limit
        self._recorded = bytearray()
        self._recorded_format: PcmFormat | None = None
        self.recorded_truncated = False
        self.loop: Fifo | None = None
        """What the host played, for a microphone that loops it back (:class:`LoopbackSource` sets it)."""
        self.feedback_address = 0
        self.feedback_interval = 1
        self._fb_clock: IsoClock | None = None
        self._fb_index = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def recorded(self) -> bytes:
        """Every sample the host played since the card was made (or :meth:`clear`), as PCM bytes."""
        return bytes(self._recorded)

    @property
    def recorded_format(self) -> PcmFormat | None:
        """The format of :meth:`recorded` (that of the first stream the host played)."""
        return self._recorded_format

    def clear(self) -> None:
        self._recorded.clear()
        self._recorded_format = None
        self.recorded_truncated = False

    async def wait_recorded(self, nbytes: int, timeout: float | None = None) -> bytes:
        """Wait until :meth:`recorded` holds at least ``nbytes`` bytes; returns it."""
        if len(self._recorded) < nbytes:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((nbytes, fut))
            await asyncio.wait_for(fut, timeout)
        return self.recorded()

    def _start(self) -> None:
        super()._start()
        assert self.function is not None
        self._fb_clock = IsoClock(self.speed, self.feedback_interval, epoch=self.function.epoch)
        self._fb_index = 0

    def _stop(self) -> None:
        super()._stop()
        self._fb_clock = None

    def _take(self, data: bytes, fmt: PcmFormat) -> None:
        if self.loop is not None:
            self.loop.put(data, fmt)
        if self.record_limit:
            if self._recorded_format is None:
                self._recorded_format = fmt
            kept = data if fmt == self._recorded_format else convert(data, fmt, self._recorded_format)
            room = self.record_limit - len(self._recorded)
            if len(kept) > room:
                self.recorded_truncated = True
                kept = kept[: max(room, 0)]
            self._recorded += kept
            if self._waiters:
                have = len(self._recorded)
                for entry in list(self._waiters):
                    if have >= entry[0] and not entry[1].done():
                        entry[1].set_result(None)
                self._waiters = [w for w in self._waiters if not w[1].done()]
        try:
            self.sink.write(data, fmt)
        except Exception as exc:  # noqa: BLE001 - a failing sink stops its stream only
            log.error("speaker: sink %r failed: %r; what the host plays is discarded from now on", self.sink, exc)
            self.error = exc
            self.sink = Discard()

    def handle(self, urb: Urb) -> HandlerResult:
        packets = urb.iso_packets
        clock, fmt = self._clock, self.format
        if packets is None or clock is None or fmt is None:
            return Completion(Status.EPIPE)
        slot = clock.plan(len(packets), urb.flags, urb.start_frame, time.monotonic())
        return self._finish(urb, slot, packets, fmt, clock)

    async def _finish(self, urb: Urb, slot: Slot, packets: tuple[IsoPacket, ...], fmt: PcmFormat,
                      clock: IsoClock) -> Completion:
        await self._at(slot, clock)
        data = bytes(urb.data)
        fb = fmt.frame_bytes
        out: list[IsoPacket] = []
        pieces: list[bytes] = []
        total = 0
        errors = 0
        for i, p in enumerate(packets):
            if i < slot.skipped:
                out.append(IsoPacket(p.offset, p.length, 0, Status.EXDEV))
                errors += 1
                continue
            chunk = data[p.offset : p.offset + p.length]
            pieces.append(chunk[: len(chunk) - len(chunk) % fb])
            out.append(IsoPacket(p.offset, p.length, len(chunk), 0))
            total += len(chunk)
        played = b"".join(pieces)
        self.frames += len(played) // fb
        self.urbs += 1
        self.packets += len(packets)
        if played:
            self._take(played, fmt)
        return Completion(slot.status, b"", total, iso_packets=tuple(out), error_count=errors,
                          start_frame=slot.start_frame)

    def feedback_value(self) -> bytes:
        """The next feedback report: the nominal rate, dithered so its average is exact."""
        if self.speed == Speed.FULL:  # 10.14 frames per 1 ms frame, 3 bytes
            scale, base, size = 1 << 14, 1000, 3
        else:  # 16.16 frames per 125 us microframe, 4 bytes
            scale, base, size = 1 << 16, 8000, 4
        j = self._fb_index
        self._fb_index += 1
        value = (j + 1) * self.rate * scale // base - j * self.rate * scale // base
        return value.to_bytes(size, "little")

    def handle_feedback(self, urb: Urb) -> HandlerResult:
        packets = urb.iso_packets
        clock = self._fb_clock
        if packets is None or clock is None:
            return Completion(Status.EPIPE)
        slot = clock.plan(len(packets), urb.flags, urb.start_frame, time.monotonic())
        return self._feedback(slot, packets, clock)

    async def _feedback(self, slot: Slot, packets: tuple[IsoPacket, ...], clock: IsoClock) -> Completion:
        await self._at(slot, clock)
        out: list[IsoPacket] = []
        pieces: list[bytes] = []
        for p in packets:
            value = self.feedback_value()[: p.length]
            pieces.append(value)
            out.append(IsoPacket(p.offset, p.length, len(value), 0))
        return Completion(0, b"".join(pieces), iso_packets=tuple(out), start_frame=slot.start_frame)


class AudioFunction(Function):
    """A sound card with a speaker, a microphone or both (see the module documentation).

    ``version`` is 2 (USB Audio Class 2.0, the default) or 1 (1.0; full speed only here).
    ``data_interval`` is the data endpoints' bInterval (high speed: 1 = every
    microframe, 4 = every millisecond; full speed: 1).
    """

    def __init__(self, *, speaker: Speaker | None = None, microphone: Microphone | None = None, version: int = 2,
                 name: str | None = "vusb Sound Card", data_interval: int | None = None) -> None:
        super().__init__()
        if speaker is None and microphone is None:
            raise DeviceDefinitionError("a sound card needs a speaker, a microphone or both")
        if version not in (1, 2):
            raise DeviceDefinitionError(f"USB Audio Class version {version}: 1 or 2")
        self.speaker = speaker
        self.microphone = microphone
        self.version = version
        self.name = name
        self.data_interval = data_interval
        self.function_class = None  # the function declares its own interface association (UAC2 needs one)
        self.epoch = time.monotonic()
        self.control_interface = -1
        self._built_speed: Speed | None = None
        self._refused: set[tuple[int, int, int, int]] = set()
        for stream in self.streams:
            stream.function = self

    @property
    def streams(self) -> list[_Stream]:
        return [s for s in (self.speaker, self.microphone) if s is not None]

    # ------------------------------------------------------------ descriptors
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        speed = ctx.speed
        if speed not in (Speed.FULL, Speed.HIGH):
            raise DeviceDefinitionError(f"the sound card runs at full or high speed, not {speed.name.lower()}")
        if self.version == 1 and speed != Speed.FULL:
            raise DeviceDefinitionError(f"the USB Audio Class 1.0 card runs at full speed, not {speed.name.lower()} "
                                        "(identity speed: full, or uac: 2)")
        interval = self.data_interval or 1
        if speed == Speed.FULL and interval != 1:
            raise DeviceDefinitionError(f"data_interval {interval}: at full speed audio endpoints use bInterval 1")
        if not 1 <= interval <= 4:
            raise DeviceDefinitionError(f"data_interval {interval}: 1..4 (1 microframe .. 1 ms)")
        for stream in self.streams:
            check_formats(stream.formats, stream.rates, speed, interval, stream.direction)
        primary = self._built_speed is None or self._built_speed == speed
        if self._built_speed is None:
            self._built_speed = speed
        ac = ctx.interface_number()
        self.control_interface = ac
        name = ctx.string(self.name)
        streaming: list[tuple[_Stream, int]] = []
        for stream in self.streams:
            streaming.append((stream, ctx.interface_number()))
        if self.version == 2:
            ctx.associations.append(InterfaceAssociation(ac, 1 + len(streaming), spec.AUDIO, 0, spec.PROTOCOL_UAC2,
                                                         name))
        units = []
        spk, mic = self.speaker, self.microphone
        v2 = self.version == 2
        if spk is not None:
            ch = max(f.channels for f in spk.formats)
            if v2:
                units += [spec.uac2_clock_source(8), spec.uac2_input_terminal(1, spec.TT_USB_STREAMING, 8, ch),
                          spec.uac2_feature_unit(2, 1, ch), spec.uac2_output_terminal(3, spec.TT_SPEAKER, 2, 8)]
            else:
                units += [spec.uac1_input_terminal(1, spec.TT_USB_STREAMING, ch), spec.uac1_feature_unit(2, 1, ch),
                          spec.uac1_output_terminal(3, spec.TT_SPEAKER, 2)]
        if mic is not None:
            ch = max(f.channels for f in mic.formats)
            if v2:
                units += [spec.uac2_clock_source(9), spec.uac2_input_terminal(4, spec.TT_MICROPHONE, 9, ch),
                          spec.uac2_feature_unit(5, 4, ch), spec.uac2_output_terminal(6, spec.TT_USB_STREAMING, 5, 9)]
            else:
                units += [spec.uac1_input_terminal(4, spec.TT_MICROPHONE, ch), spec.uac1_feature_unit(5, 4, ch),
                          spec.uac1_output_terminal(6, spec.TT_USB_STREAMING, 5)]
        body = sum(len(u.to_bytes()) for u in units)
        header = (spec.uac2_header(9 + body) if v2 else
                  spec.uac1_header(8 + len(streaming) + body, [n for _, n in streaming]))
        protocol = spec.PROTOCOL_UAC2 if v2 else 0
        interfaces = [InterfaceDescriptor(ac, 0, spec.AUDIO, spec.SUBCLASS_CONTROL, protocol, name,
                                          extra=(header, *units))]
        for stream, number in streaming:
            interfaces += self._streaming_interfaces(ctx, stream, number, interval if speed == Speed.HIGH else 1,
                                                     protocol, primary)
        return interfaces

    def _streaming_interfaces(self, ctx: BuildContext, stream: _Stream, number: int, interval: int,
                              protocol: int, primary: bool) -> list[InterfaceDescriptor]:
        # Device() builds the configuration at the device's speed first, then at full speed for the
        # other-speed configuration: the stream runs with what the first build chose.
        speed = ctx.speed
        is_mic = isinstance(stream, Microphone)
        address = ctx.endpoint_address(is_in=is_mic)
        if primary:
            stream.interface = number
            stream.speed = speed
            stream.interval = interval
            stream.address = address
        terminal = 6 if is_mic else 1
        feedback: EndpointDescriptor | None = None
        v2 = self.version == 2
        if isinstance(stream, Speaker):
            fb_address = ctx.endpoint_address(is_in=True)
            if v2:
                fb_interval = 4 if speed == Speed.HIGH else 1  # 1 ms
                if primary:
                    stream.feedback_address = fb_address
                    stream.feedback_interval = fb_interval
                feedback = EndpointDescriptor(fb_address, TransferType.ISOCHRONOUS, 4 if speed == Speed.HIGH else 3,
                                              fb_interval, attributes_extra=0x10)
            else:
                refresh = 3  # a report every 2**3 = 8 ms
                if primary:
                    stream.feedback_address = fb_address
                    stream.feedback_interval = refresh + 1
                feedback = EndpointDescriptor(fb_address, TransferType.ISOCHRONOUS, 3, 1, attributes_extra=0x10,
                                              trailing=bytes((refresh, 0)))
        out = [InterfaceDescriptor(number, 0, spec.AUDIO, spec.SUBCLASS_STREAMING, protocol,
                                   ctx.string(stream.name))]
        for alt, fmt in enumerate(stream.formats, start=1):
            size = max_packet_size(fmt, max(stream.rates), speed, interval)
            if v2:
                extra = (spec.uac2_as_general(terminal, fmt.channels), spec.uac2_format_type_i(fmt.subslot, fmt.bits))
                data = EndpointDescriptor(address, TransferType.ISOCHRONOUS, size, interval,
                                          attributes_extra=0x04, extra=(spec.uac2_iso_endpoint_general(),))
            else:
                extra = (spec.uac1_as_general(terminal),
                         spec.uac1_format_type_i(fmt.channels, fmt.subslot, fmt.bits, list(stream.rates)))
                sync = feedback.address if feedback is not None else 0
                data = EndpointDescriptor(address, TransferType.ISOCHRONOUS, size, interval,
                                          attributes_extra=0x04, extra=(spec.uac1_iso_endpoint_general(),),
                                          trailing=bytes((0, sync)))
            endpoints = (data,) if feedback is None else (data, feedback)
            out.append(InterfaceDescriptor(number, alt, spec.AUDIO, spec.SUBCLASS_STREAMING, protocol,
                                           ctx.string(stream.name), endpoints=endpoints, extra=extra))
        return out

    def bind(self, device: Device) -> None:
        if self.microphone is not None:
            device.endpoint(self.microphone.address).handler = self.microphone.handle
        if self.speaker is not None:
            device.endpoint(self.speaker.address).handler = self.speaker.handle
            device.endpoint(self.speaker.feedback_address).handler = self.speaker.handle_feedback
        if self.version == 1 and device.speed != Speed.FULL:
            raise DeviceDefinitionError("the USB Audio Class 1.0 card runs at full speed")

    # ------------------------------------------------------------ state
    def on_alternate(self, interface: int, alternate: int) -> None:
        for stream in self.streams:
            if stream.interface == interface:
                stream.set_alternate(alternate)

    def on_configured(self, configured: bool) -> None:
        if not configured:
            for stream in self.streams:
                stream.set_alternate(0)

    def on_reset(self) -> None:
        for stream in self.streams:
            stream.set_alternate(0)

    def close(self) -> Awaitable[None] | None:
        if self.speaker is not None:
            closer = getattr(self.speaker.sink, "close", None)
            if callable(closer):
                closer()
        if self.microphone is not None:
            closer = getattr(self.microphone.source, "close", None)
            if callable(closer):
                closer()
        return None

    # ------------------------------------------------------------ class requests
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if setup.type != 1:  # class requests only
            return NOT_HANDLED
        if setup.recipient == 2:  # endpoint: UAC1 sampling frequency
            return self._endpoint_request(setup, data)
        if setup.recipient != 1 or (setup.index & 0xFF) != self.control_interface:
            return NOT_HANDLED
        entity = setup.index >> 8
        selector, channel = setup.value >> 8, setup.value & 0xFF
        stream = self._stream_of_entity(entity)
        if stream is None:
            return self._refuse(setup, f"entity {entity} does not exist")
        if entity in (8, 9):
            return self._clock_request(setup, data, stream, selector)
        if entity in (2, 5):
            if channel != 0:
                return self._refuse(setup, f"feature unit {entity} has no control on channel {channel}")
            return self._feature_request(setup, data, stream, selector)
        return self._refuse(setup, f"entity {entity} has no controls")

    def _stream_of_entity(self, entity: int) -> _Stream | None:
        if entity in (1, 2, 3, 8) and (self.version == 2 or entity != 8):
            return self.speaker
        if entity in (4, 5, 6, 9) and (self.version == 2 or entity != 9):
            return self.microphone
        return None

    def _refuse(self, setup: SetupPacket, why: str) -> ControlResult:
        """Stall, as a card does; each kind of refused request is logged as a warning once, then at debug."""
        key = (setup.request_type, setup.request, setup.value, setup.index)
        level = logging.DEBUG if key in self._refused else logging.WARNING
        if len(self._refused) < 256:
            self._refused.add(key)
        log.log(level, "sound card: %s: %s; stalling", setup.describe(), why)
        raise Stall()

    def _clock_request(self, setup: SetupPacket, data: bytes, stream: _Stream, selector: int) -> ControlResult:
        if selector == spec.CS_SAM_FREQ:
            if setup.is_in and setup.request == spec.Req.CUR:
                return struct.pack("<I", stream.rate)
            if setup.is_in and setup.request == spec.Req.RANGE:
                return struct.pack("<H", len(stream.rates)) + b"".join(struct.pack("<III", r, r, 0) for r in stream.rates)
            if not setup.is_in and setup.request == spec.Req.CUR:
                if len(data) != 4:
                    return self._refuse(setup, "SET CUR of the sampling frequency takes 4 bytes")
                stream.set_rate(int.from_bytes(data, "little"))
                return None
        elif selector == spec.CS_CLOCK_VALID and setup.is_in and setup.request == spec.Req.CUR:
            return b"\x01"
        return self._refuse(setup, f"clock source: control {selector} request 0x{setup.request:02x} is not supported")

    def _feature_request(self, setup: SetupPacket, data: bytes, stream: _Stream, selector: int) -> ControlResult:
        req = setup.request
        if selector == spec.FU_MUTE:
            if setup.is_in and req in (spec.Req.CUR, spec.Req.GET_CUR):
                return bytes((1 if stream.mute else 0,))
            if not setup.is_in and req == spec.Req.CUR:
                if len(data) != 1:
                    return self._refuse(setup, "mute takes 1 byte")
                stream.mute = bool(data[0])
                return None
        elif selector == spec.FU_VOLUME:
            if setup.is_in:
                if req in (spec.Req.CUR, spec.Req.GET_CUR):
                    return struct.pack("<h", stream.volume)
                if req == spec.Req.RANGE and self.version == 2:
                    return struct.pack("<Hhhh", 1, VOLUME_MIN, VOLUME_MAX, VOLUME_RES)
                if self.version == 1 and req in (spec.Req.GET_MIN, spec.Req.GET_MAX, spec.Req.GET_RES):
                    value = {spec.Req.GET_MIN: VOLUME_MIN, spec.Req.GET_MAX: VOLUME_MAX, spec.Req.GET_RES: VOLUME_RES}[
                        spec.Req(req)]
                    return struct.pack("<h", value)
            elif req == spec.Req.CUR:
                if len(data) != 2:
                    return self._refuse(setup, "volume takes 2 bytes")
                value = int.from_bytes(data, "little", signed=True)
                stream.volume = max(VOLUME_MIN, min(VOLUME_MAX, value))  # a real card clamps
                return None
        return self._refuse(setup, f"feature unit: control {selector} request 0x{req:02x} is not supported")

    def _endpoint_request(self, setup: SetupPacket, data: bytes) -> ControlResult:
        address = setup.index & 0xFF
        stream = next((s for s in self.streams if s.address == address), None)
        if stream is None or self.version != 1:
            return NOT_HANDLED
        if (setup.value >> 8) != spec.CS_SAM_FREQ:
            return self._refuse(setup, f"endpoint 0x{address:02x} has no control {setup.value >> 8}")
        if not setup.is_in and setup.request == spec.Req.CUR:
            if len(data) != 3:
                return self._refuse(setup, "SET_CUR of the sampling frequency takes 3 bytes")
            stream.set_rate(int.from_bytes(data, "little"))
            return None
        if setup.is_in and setup.request == spec.Req.GET_CUR:
            return stream.rate.to_bytes(3, "little")
        return self._refuse(setup, f"endpoint 0x{address:02x}: request 0x{setup.request:02x} is not supported")


class SoundCard(Device):
    """A device that is just a sound card (UAC2 at high speed unless told otherwise)."""

    def __init__(self, *, speaker: Speaker | None = None, microphone: Microphone | None = None, version: int = 2,
                 vendor_id: int = 0x1209, product_id: int = 0x0015, manufacturer: str = "vusb",
                 product: str = "vusb Sound Card", serial_number: str | None = "VSC0001",
                 speed: Speed | str | None = None, data_interval: int | None = None) -> None:
        self.audio = AudioFunction(speaker=speaker, microphone=microphone, version=version, name=product,
                                   data_interval=data_interval)
        if speed is None:
            speed = Speed.HIGH if version == 2 else Speed.FULL
        super().__init__(self.audio, vendor_id=vendor_id, product_id=product_id, manufacturer=manufacturer,
                         product=product, serial_number=serial_number, speed=speed)

    @property
    def speaker(self) -> Speaker | None:
        return self.audio.speaker

    @property
    def microphone(self) -> Microphone | None:
        return self.audio.microphone


class LoopbackSource:
    """The microphone sends what the host plays on ``speaker`` (silence when it plays nothing)."""

    def __init__(self, speaker: Speaker, *, buffer_bytes: int = 256 << 10) -> None:
        self.speaker = speaker
        self.fifo = Fifo(limit=buffer_bytes)
        speaker.loop = self.fifo

    def read(self, frames: int, fmt: PcmFormat) -> bytes:
        return self.fifo.take(frames, fmt)

    def __repr__(self) -> str:
        return "LoopbackSource()"
