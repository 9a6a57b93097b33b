"""PCM samples: formats, conversion, microphone sources and speaker sinks.

Samples travel as interleaved little-endian signed integers, the layout USB audio
uses on the wire.  A :class:`PcmFormat` says how many channels, how many bytes each
sample occupies (the subslot) and how many bits of it are significant.  Conversions
between formats work on whole byte columns with slicing, so they run at C speed.

A *source* feeds the microphone: ``read(frames, fmt)`` returns exactly ``frames``
frames in ``fmt``.  A *sink* takes what the host plays on the speaker:
``write(data, fmt)``.  Both are plain objects; a source or sink that raises is
dropped by its stream (logged) and the stream carries on with silence / discards.
"""

from __future__ import annotations

import array
import asyncio
import logging
import math
import wave
from collections.abc import AsyncIterable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, Union

from vusb.errors import UsageError, VusbError

log = logging.getLogger("vusb.devices.audio")


class MediaError(VusbError):
    """A media file that is missing, unreadable or not in a usable format."""


@dataclass(frozen=True)
class PcmFormat:
    """Interleaved PCM: ``channels`` samples of ``subslot`` bytes (``bits`` significant) per frame."""

    channels: int
    bits: int
    rate: int
    subslot: int = 0  # bytes per sample; 0: the smallest that holds ``bits``

    def __post_init__(self) -> None:
        if self.subslot == 0:
            object.__setattr__(self, "subslot", (self.bits + 7) // 8)
        if self.subslot not in (1, 2, 3, 4) or not 8 <= self.bits <= self.subslot * 8:
            raise UsageError(f"PCM format: {self.bits} bits in {self.subslot}-byte samples is not possible")
        if not 1 <= self.channels <= 8:
            raise UsageError(f"PCM format: {self.channels} channels; 1..8 are supported")

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.subslot

    def describe(self) -> str:
        return f"{self.rate} Hz {self.bits}-bit {self.channels} ch"


def _to_32(data: bytes, width: int) -> bytearray:
    """Samples of ``width`` bytes to 4-byte samples, left-justified (the low bytes zero)."""
    n = len(data) // width
    if width == 4:
        return bytearray(data[: n * 4])
    out = bytearray(n * 4)
    for i in range(width):
        out[4 - width + i :: 4] = data[i : n * width : width]
    return out


def _from_32(data: bytes | bytearray, width: int) -> bytes:
    if width == 4:
        return bytes(data)
    n = len(data) // 4
    out = bytearray(n * width)
    for i in range(width):
        out[i::width] = data[4 - width + i :: 4]
    return bytes(out)


def _remap(data32: bytearray, ch_in: int, ch_out: int) -> bytearray:
    """Change the channel count of 4-byte samples: mono is copied to every channel, extra channels dropped."""
    if ch_in == ch_out:
        return data32
    frames = len(data32) // (4 * ch_in)
    out = bytearray(frames * 4 * ch_out)
    for c in range(ch_out):
        src = min(c, ch_in - 1) if ch_in > 1 else 0
        for b in range(4):
            out[c * 4 + b :: 4 * ch_out] = data32[src * 4 + b : frames * 4 * ch_in : 4 * ch_in]
    return out


def convert(data: bytes | bytearray | memoryview, src: PcmFormat, dst: PcmFormat) -> bytes:
    """PCM from ``src`` layout to ``dst`` layout (width and channels; the rate is not changed)."""
    data = bytes(data)
    if src.subslot == dst.subslot and src.channels == dst.channels:
        return data[: len(data) - len(data) % src.frame_bytes]
    wide = _to_32(data[: len(data) - len(data) % src.frame_bytes], src.subslot)
    return _from_32(_remap(wide, src.channels, dst.channels), dst.subslot)


def resample(data: bytes, fmt: PcmFormat, rate: int) -> bytes:
    """Nearest-sample rate change (for media files whose rate differs from the stream's)."""
    if rate == fmt.rate or not data:
        return data
    fb = fmt.frame_bytes
    frames = len(data) // fb
    out_frames = frames * rate // fmt.rate
    view = memoryview(data)
    return b"".join(view[(i * fmt.rate // rate) * fb : (i * fmt.rate // rate + 1) * fb] for i in range(out_frames))


def samples_to_bytes(samples: Sequence[int] | Sequence[Sequence[int]], fmt: PcmFormat) -> bytes:
    """Integer samples (one int per frame for mono, or a tuple per frame) to PCM bytes in ``fmt``."""
    flat: list[int] = []
    for frame in samples:
        if isinstance(frame, int):
            flat.extend([frame] * fmt.channels)
        else:
            if len(frame) != fmt.channels:
                raise UsageError(f"a frame has {len(frame)} samples but the format has {fmt.channels} channels")
            flat.extend(frame)
    low, high = -(1 << (fmt.bits - 1)), (1 << (fmt.bits - 1)) - 1
    shift = fmt.subslot * 8 - fmt.bits
    out = bytearray()
    for value in flat:
        if not low <= value <= high:
            raise UsageError(f"sample {value} is outside {low}..{high} for {fmt.bits}-bit audio")
        out += (value << shift).to_bytes(fmt.subslot, "little", signed=True)
    return bytes(out)


def bytes_to_samples(data: bytes, fmt: PcmFormat) -> list[tuple[int, ...]]:
    """PCM bytes to one tuple of signed integers (``bits`` significant) per frame."""
    shift = fmt.subslot * 8 - fmt.bits
    w = fmt.subslot
    values = [int.from_bytes(data[i : i + w], "little", signed=True) >> shift for i in range(0, len(data) - w + 1, w)]
    ch = fmt.channels
    return [tuple(values[i : i + ch]) for i in range(0, len(values) - ch + 1, ch)]


# ---------------------------------------------------------------- sources
class Source(Protocol):
    """Feeds a microphone: exactly ``frames`` frames of PCM in ``fmt`` per call."""

    def read(self, frames: int, fmt: PcmFormat) -> bytes: ...


class Silence:
    """Zeros, forever."""

    def read(self, frames: int, fmt: PcmFormat) -> bytes:
        return bytes(frames * fmt.frame_bytes)

    def __repr__(self) -> str:
        return "Silence()"


class Tone:
    """A sine wave at ``frequency`` Hz, ``amplitude`` of full scale (0..1), on every channel."""

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.5) -> None:
        if not 0 < frequency <= 48000:
            raise UsageError(f"tone frequency {frequency} Hz is outside (0, 48000]")
        if not 0 <= amplitude <= 1:
            raise UsageError(f"tone amplitude {amplitude} is outside 0..1")
        self.frequency = frequency
        self.amplitude = amplitude
        self._phase = 0  # frames produced so far
        self._table: tuple[PcmFormat, bytes, int] | None = None

    def _period(self, fmt: PcmFormat) -> tuple[bytes, int]:
        if self._table is None or self._table[0] != fmt:
            freq = self.frequency
            # One exact period when the ratio is rational with a small denominator, else one second.
            frames = fmt.rate // math.gcd(fmt.rate, int(freq)) if freq == int(freq) else fmt.rate
            frames = min(frames, fmt.rate)
            full = (1 << (fmt.bits - 1)) - 1
            shift = fmt.subslot * 8 - fmt.bits
            out = bytearray()
            for i in range(frames):
                v = round(self.amplitude * full * math.sin(2 * math.pi * freq * i / fmt.rate))
                out += ((v << shift).to_bytes(fmt.subslot, "little", signed=True)) * fmt.channels
            self._table = (fmt, bytes(out), frames)
        return self._table[1], self._table[2]

    def read(self, frames: int, fmt: PcmFormat) -> bytes:
        table, period = self._period(fmt)
        fb = fmt.frame_bytes
        start = self._phase % period
        self._phase += frames
        out = bytearray()
        while frames > 0:
            take = min(frames, period - start)
            out += table[start * fb : (start + take) * fb]
            frames -= take
            start = 0
        return bytes(out)

    def __repr__(self) -> str:
        return f"Tone({self.frequency:g} Hz, amplitude {self.amplitude:g})"


class Counting:
    """A counting pattern: sample ``i`` of the stream (frames interleaved) holds ``i`` modulo 2**bits.

    Every sample differs from its neighbour by one, so a lost, repeated or reordered
    packet shows in a capture.
    """

    def __init__(self) -> None:
        self.position = 0  # samples produced so far

    def read(self, frames: int, fmt: PcmFormat) -> bytes:
        n = frames * fmt.channels
        mask = (1 << fmt.bits) - 1
        start = self.position
        self.position += n
        values = array.array("I", ((v & mask) << (32 - fmt.bits) for v in range(start, start + n)))
        raw = values.tobytes()
        if array.array("I").itemsize != 4:  # pragma: no cover - every platform vusb runs on has 4-byte I
            raise RuntimeError("unsupported platform: array('I') is not 4 bytes")
        return _from_32(bytearray(raw), fmt.subslot)

    @staticmethod
    def value(sample: bytes, fmt: PcmFormat) -> int:
        """The counter a sample of this pattern holds."""
        shift = fmt.subslot * 8 - fmt.bits
        return int.from_bytes(sample, "little") >> shift

    def __repr__(self) -> str:
        return "Counting()"


def read_wav(path: str | Path) -> tuple[bytes, PcmFormat]:
    """The frames and format of a PCM WAV file; :class:`MediaError` if it cannot be used."""
    p = Path(path)
    try:
        with wave.open(str(p), "rb") as w:
            channels, width, rate, nframes = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            data = w.readframes(nframes)
    except FileNotFoundError:
        raise MediaError(f"WAV file {p} does not exist") from None
    except IsADirectoryError:
        raise MediaError(f"WAV file {p} is a directory") from None
    except PermissionError:
        raise MediaError(f"WAV file {p} cannot be read: permission denied") from None
    except (wave.Error, EOFError) as exc:
        raise MediaError(f"{p} is not a PCM WAV file vusb can read: {exc}") from None
    except OSError as exc:
        raise MediaError(f"WAV file {p} cannot be read: {exc.strerror or exc}") from None
    if width not in (2, 3, 4) or not 1 <= channels <= 8:
        raise MediaError(f"{p}: {width * 8}-bit {channels}-channel WAV is not supported (16, 24 or 32 bit; 1..8 channels)")
    if width == 1:  # pragma: no cover - refused above; 8-bit WAV is unsigned
        raise MediaError(f"{p}: 8-bit WAV is not supported")
    return data, PcmFormat(channels, width * 8, rate)


class WavSource:
    """The frames of a WAV file, converted to the stream's format; then silence (or again, with ``loop``)."""

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        self.path = Path(path)
        self.data, self.format = read_wav(path)
        self.loop = loop
        self._cache: tuple[PcmFormat, bytes] | None = None
        self._pos = 0  # frames of the converted data read so far

    def _converted(self, fmt: PcmFormat) -> bytes:
        if self._cache is None or self._cache[0] != fmt:
            src = PcmFormat(self.format.channels, self.format.bits, self.format.rate, self.format.subslot)
            data = convert(self.data, src, PcmFormat(fmt.channels, fmt.bits, src.rate, fmt.subslot))
            data = resample(data, PcmFormat(fmt.channels, fmt.bits, src.rate, fmt.subslot), fmt.rate)
            if self._cache is not None:  # keep the position in time across a format change
                self._pos = self._pos * fmt.rate // self._cache[0].rate
            self._cache = (fmt, data)
        return self._cache[1]

    @property
    def finished(self) -> bool:
        return not self.loop and self._cache is not None and self._pos * self._cache[0].frame_bytes >= len(self._cache[1])

    def read(self, frames: int, fmt: PcmFormat) -> bytes:
        data = self._converted(fmt)
        fb = fmt.frame_bytes
        total = len(data) // fb
        out = bytearray()
        want = frames
        while want > 0:
            if self._pos >= total:
                if not self.loop or total == 0:
                    out += bytes(want * fb)
                    break
                self._pos = 0
            take = min(want, total - self._pos)
            out += data[self._pos * fb : (self._pos + take) * fb]
            self._pos += take
            want -= take
        return bytes(out)

    def __repr__(self) -> str:
        return f"WavSource({str(self.path)!r}{', loop' if self.loop else ''})"


class CallbackSource:
    """``callback(frames, fmt)`` returns the PCM bytes of the next ``frames`` frames (short: padded with silence)."""

    def __init__(self, callback: Callable[[int, PcmFormat], bytes | bytearray]) -> None:
        self.callback = callback

    def read(self, frames: int, fmt: PcmFormat) -> bytes:
        data = bytes(self.callback(frames, fmt))
        want = frames * fmt.frame_bytes
        return data[:want] + bytes(max(0, want - len(data)))


class Fifo:
    """PCM bytes in one format waiting to be read in another; short reads are padded with silence."""

    def __init__(self, fmt: PcmFormat | None = None, limit: int = 8 << 20) -> None:
        self.format = fmt
        self.limit = limit
        self.buffer = bytearray()
        self.underruns = 0
        self.dropped = 0

    def put(self, data: bytes, fmt: PcmFormat) -> None:
        if self.format is not None and fmt != self.format:
            self.buffer.clear()
        self.format = fmt
        room = self.limit - len(self.buffer)
        if len(data) > room:
            self.dropped += len(data) - room
            data = data[:room]
        self.buffer += data

    def take(self, frames: int, fmt: PcmFormat) -> bytes:
        src = self.format
        if src is None:
            self.underruns += 1
            return bytes(frames * fmt.frame_bytes)
        want = frames * src.frame_bytes
        chunk = bytes(self.buffer[:want])
        del self.buffer[:want]
        out = convert(chunk, src, fmt) if src.subslot != fmt.subslot or src.channels != fmt.channels else chunk
        missing = frames * fmt.frame_bytes - len(out)
        if missing > 0:
            self.underruns += 1
            out += bytes(missing)
        return out


class IteratorSource:
    """Chunks of PCM bytes (in ``fmt``'s layout) from an async iterator, buffered; silence when it lags."""

    def __init__(self, chunks: AsyncIterable[bytes], fmt: PcmFormat, *, buffer_frames: int = 48000) -> None:
        self.chunks = chunks
        self.format = fmt
        self.fifo = Fifo(fmt, limit=buffer_frames * fmt.frame_bytes)
        self._task: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self.error: BaseException | None = None
        self.finished = False

    def start(self) -> None:
        """Begin filling the buffer (the microphone calls this when the host starts streaming)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for chunk in self.chunks:
                while len(self.fifo.buffer) >= self.fifo.limit:
                    self._room.clear()
                    await self._room.wait()
                self.fifo.put(bytes(chunk), self.format)
        except Exception as exc:  # noqa: BLE001 - the iterator's failure ends this source only
            log.error("audio source %r failed: %r; the microphone sends silence", self, exc)
            self.error = exc
        finally:
            self.finished = True

    def read(self, frames: int, fmt: PcmFormat) -> bytes:
        self.start()
        if self.error is not None:
            raise self.error
        out = self.fifo.take(frames, fmt)
        self._room.set()
        return out

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()


# ---------------------------------------------------------------- sinks
class Sink(Protocol):
    """Takes what the host plays on the speaker."""

    def write(self, data: bytes, fmt: PcmFormat) -> None: ...


class Discard:
    """Throws the samples away (the speaker still records them for :meth:`Speaker.recorded` if asked)."""

    def write(self, data: bytes, fmt: PcmFormat) -> None:
        return None

    def __repr__(self) -> str:
        return "Discard()"


class WavSink:
    """Writes what the host plays to a WAV file, in the format of the first stream.

    Later streams in another format are converted to the file's format (channels and
    width; a rate change is logged, not resampled).  The file is complete (header
    updated) after every write.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.resolve(strict=True)
        except OSError:
            raise MediaError(f"cannot write WAV file {self.path}: its folder does not exist") from None
        self._wave: wave.Wave_write | None = None
        self._file: BinaryIO | None = None
        self.format: PcmFormat | None = None
        self.frames = 0
        self._warned = False

    def write(self, data: bytes, fmt: PcmFormat) -> None:
        if self._wave is None:
            try:
                self._file = open(self.path, "wb")  # noqa: SIM115 - held until close()
            except OSError as exc:
                raise MediaError(f"cannot write WAV file {self.path}: {exc.strerror or exc}") from None
            w = wave.open(self._file, "wb")  # noqa: SIM115 - kept open until close()
            w.setnchannels(fmt.channels)
            w.setsampwidth(fmt.subslot)
            w.setframerate(fmt.rate)
            self._wave = w
            self.format = fmt
        assert self.format is not None
        if fmt != self.format:
            if fmt.rate != self.format.rate and not self._warned:
                log.warning("WAV sink %s: the host now plays %s; the file stays at %s", self.path, fmt.describe(),
                            self.format.describe())
                self._warned = True
            data = convert(data, fmt, self.format)
        self._wave.writeframes(data)  # also rewrites the header's lengths: the file is valid as it grows
        self.frames += len(data) // self.format.frame_bytes
        assert self._file is not None
        self._file.flush()

    def close(self) -> None:
        if self._wave is not None:
            self._wave.close()
            self._wave = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"WavSink({str(self.path)!r})"


class CallbackSink:
    """``callback(data, fmt)`` gets every packet's samples as the host plays them."""

    def __init__(self, callback: Callable[[bytes, PcmFormat], object]) -> None:
        self.callback = callback

    def write(self, data: bytes, fmt: PcmFormat) -> None:
        self.callback(data, fmt)


SourceLike = Union[Source, None]
