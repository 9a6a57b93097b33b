"""What the webcam shows: colour bars with a frame counter, images, or frames from Python.

A source makes one frame on demand, already in the committed format: YUYV bytes
(exactly ``width * height * 2``) or a complete JPEG.  The streaming function asks for
frame 0, 1, 2... at the committed frame rate.

Images (files, :class:`PIL.Image.Image`) and MJPEG need Pillow, an optional
dependency (``pip install vusb[video]``); YUYV colour bars work without it.

Frame counters
    :class:`ColourBars` draws the frame number as digits a person can read and also
    stamps it where a program reads it exactly: in a YUYV frame, the first 16 bytes
    are ``b"vusb"``, the number (32-bit little-endian), its complement, and
    ``b"\\x80" * 4``; every MJPEG frame (whatever the source) carries a JPEG comment
    ``vusb frame N``.  :func:`frame_counter` reads either back.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import struct
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from vusb.devices.video.spec import FrameSize, PixelFormat

from vusb.errors import UsageError, VusbError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("vusb.video")

Picture = Union["Image.Image", bytes, bytearray, memoryview]
"""A frame from Python: a Pillow image (any size and mode: it is converted) or bytes already in the stream's format."""

FrameCallback = Callable[[int, int, int], Union[Picture, Awaitable[Picture]]]
"""``callback(index, width, height)`` returns the frame (or an awaitable of it)."""

JPEG_QUALITY = 85
_STAMP_MAGIC = b"vusb"
_STAMP = struct.Struct("<4sII4s")
_COMMENT_PREFIX = b"vusb frame "


class VideoSourceError(VusbError):
    """A source cannot make frames: a missing or unreadable image, a frame of the wrong size."""


def require_pillow(what: str) -> Any:
    """The PIL.Image module, or a clear error naming what needed it."""
    try:
        from PIL import Image
    except ImportError:
        raise VideoSourceError(f"{what} needs Pillow; install it with: pip install 'vusb[video]'") from None
    return Image


# ------------------------------------------------------------------ counters
def stamp_yuyv(frame: bytearray, index: int) -> None:
    """Write the frame number into the first 16 bytes (8 pixels) of a YUYV frame."""
    frame[0:16] = _STAMP.pack(_STAMP_MAGIC, index & 0xFFFFFFFF, ~index & 0xFFFFFFFF, b"\x80" * 4)


def jpeg_with_counter(jpeg: bytes, index: int) -> bytes:
    """The JPEG with a ``vusb frame N`` comment segment right after its start-of-image marker."""
    text = _COMMENT_PREFIX + str(index).encode()
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def frame_counter(frame: bytes | bytearray | memoryview) -> int | None:
    """The frame number a vusb webcam stamped into ``frame`` (YUYV or JPEG), or None if it carries none."""
    head = bytes(frame[:512])
    if head[:2] == b"\xff\xd8":
        at = head.find(b"\xff\xfe")
        if at < 0:
            return None
        length = int.from_bytes(head[at + 2:at + 4], "big")
        body = head[at + 4:at + 2 + length]
        if not body.startswith(_COMMENT_PREFIX):
            return None
        try:
            return int(body[len(_COMMENT_PREFIX):])
        except ValueError:
            return None
    if len(head) < 16:
        return None
    magic, index, check, _ = _STAMP.unpack_from(head)
    if magic != _STAMP_MAGIC or index != ~check & 0xFFFFFFFF:
        return None
    return int(index)


# ------------------------------------------------------------------ digits
_FONT = {  # 5 columns x 7 rows, one string of '#' and '.' per row
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}
DIGITS = 6
"""The counter shows the frame number modulo 10**6."""


def _digit_layout(width: int, height: int) -> tuple[int, int, int]:
    """Scale (pixels per font dot) and top-left corner of the counter box."""
    scale = max(1, min(height // 60, width // (DIGITS * 6 + 2) // 1))
    return scale, 8, 8


def counter_rows(index: int, scale: int) -> list[list[bool]]:
    """The counter's dots, row by row (box margin of one dot around the digits)."""
    text = f"{index % 10 ** DIGITS:0{DIGITS}d}"
    cols = DIGITS * 6 + 1
    rows = [[False] * cols]
    for r in range(7):
        row = [False]
        for ch in text:
            row.extend(c == "#" for c in _FONT[ch][r])
            row.append(False)
        rows.append(row)
    rows.append([False] * cols)
    return rows


# ------------------------------------------------------------------ colour bars
_BARS_RGB = ((235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16), (235, 16, 235), (235, 16, 16),
             (16, 16, 235), (16, 16, 16))
_BARS_YUV = ((235, 128, 128), (219, 16, 138), (188, 154, 16), (173, 42, 26), (78, 214, 230), (63, 102, 240),
             (32, 240, 118), (16, 128, 128))
"""The same eight bars (white, yellow, cyan, green, magenta, red, blue, black) in BT.601 limited-range YCbCr."""


class VideoSource:
    """Base of every source: :meth:`frame` returns frame ``index`` encoded for ``fmt`` at ``size``."""

    description = "source"

    async def frame(self, index: int, fmt: PixelFormat, size: FrameSize) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (an iterator, files)."""


class ColourBars(VideoSource):
    """Eight vertical colour bars with the frame number drawn in the top-left corner and stamped exactly."""

    description = "colour bars"

    def __init__(self) -> None:
        self._yuyv: dict[tuple[int, int], bytes] = {}
        self._rgb: dict[tuple[int, int], Any] = {}

    def yuyv(self, index: int, width: int, height: int) -> bytes:
        base = self._yuyv.get((width, height))
        if base is None:
            row = bytearray()
            for x in range(0, width, 2):
                y, u, v = _BARS_YUV[min(x * 8 // width, 7)]
                row += bytes((y, u, y, v))
            base = bytes(row) * height
            self._yuyv[(width, height)] = base
        # The frame is the bars with the counter's rows and the stamp put in: one join of views of the bars
        # and the new rows, so the 2 bytes a pixel are allocated and copied once.
        scale, x0, y0 = _digit_layout(width, height)
        pitch = width * 2
        on, off = b"\xeb\x80" * scale, b"\x10\x80" * scale
        view = memoryview(base)
        pieces: list[bytes | memoryview] = []
        pos = 0
        stamp = bytearray(16)
        stamp_yuyv(stamp, index)
        if len(base) >= 16:
            pieces.append(bytes(stamp))
            pos = 16
        for r, dots in enumerate(counter_rows(index, scale)):
            line = b"".join(on if d else off for d in dots)
            for dy in range(scale):
                y = y0 + r * scale + dy
                if y >= height:
                    break
                start = max(y * pitch + x0 * 2, pos)
                end = min(y * pitch + x0 * 2 + len(line), (y + 1) * pitch)
                if end <= start:
                    continue
                pieces.append(view[pos:start])
                pieces.append(line[start - (y * pitch + x0 * 2):end - (y * pitch + x0 * 2)])
                pos = end
        pieces.append(view[pos:])
        return b"".join(pieces)

    def rgb(self, index: int, width: int, height: int) -> Image.Image:
        image_mod = require_pillow("MJPEG colour bars")
        from PIL import ImageDraw

        base: Image.Image | None = self._rgb.get((width, height))
        if base is None:
            base = image_mod.new("RGB", (width, height))
            draw = ImageDraw.Draw(base)
            for i, colour in enumerate(_BARS_RGB):
                draw.rectangle((i * width // 8, 0, (i + 1) * width // 8 - 1, height - 1), fill=colour)
            self._rgb[(width, height)] = base
        image = base.copy()
        draw = ImageDraw.Draw(image)
        scale, x0, y0 = _digit_layout(width, height)
        rows = counter_rows(index, scale)
        draw.rectangle((x0, y0, x0 + len(rows[0]) * scale - 1, y0 + len(rows) * scale - 1), fill=(16, 16, 16))
        for r, dots in enumerate(rows):
            for c, on in enumerate(dots):
                if on:
                    x, y = x0 + c * scale, y0 + r * scale
                    draw.rectangle((x, y, x + scale - 1, y + scale - 1), fill=(235, 235, 235))
        return image

    async def frame(self, index: int, fmt: PixelFormat, size: FrameSize) -> bytes:
        if fmt is PixelFormat.YUYV:
            return self.yuyv(index, size.width, size.height)
        image = self.rgb(index, size.width, size.height)
        return jpeg_with_counter(await asyncio.to_thread(encode_jpeg, image), index)


# ------------------------------------------------------------------ conversions
def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def to_yuyv(image: Image.Image) -> bytes:
    """A Pillow image as YUYV 4:2:2 (Y0 U Y1 V), chroma averaged over each pixel pair."""
    image_mod = require_pillow("YUYV from an image")
    width, height = image.size
    if width % 2:
        raise VideoSourceError(f"YUYV needs an even width, not {width}")
    y, cb, cr = image.convert("YCbCr").split()
    half = (width // 2, height)
    cb = cb.resize(half, image_mod.Resampling.BOX)
    cr = cr.resize(half, image_mod.Resampling.BOX)
    out = bytearray(width * height * 2)
    out[0::2] = y.tobytes()
    out[1::4] = cb.tobytes()
    out[3::4] = cr.tobytes()
    return bytes(out)


def fit(image: Image.Image, size: FrameSize) -> Image.Image:
    """``image`` scaled to exactly the frame size (aspect ratio not kept)."""
    if image.size == (size.width, size.height):
        return image
    image_mod = require_pillow("scaling an image")
    return image.resize((size.width, size.height), image_mod.Resampling.BILINEAR)


def encode_picture(picture: Picture, fmt: PixelFormat, size: FrameSize, what: str) -> bytes:
    """A picture from a source in the stream's format; raw bytes are checked, images converted."""
    if isinstance(picture, (bytes, bytearray, memoryview)):
        data = bytes(picture)
        if fmt is PixelFormat.YUYV:
            want = size.width * size.height * 2
            if len(data) != want:
                raise VideoSourceError(f"{what}: a {size.label()} YUYV frame is {want} bytes, got {len(data)}")
        elif not data.startswith(b"\xff\xd8"):
            raise VideoSourceError(f"{what}: an MJPEG frame must be a JPEG (start with FF D8), got {data[:4].hex(' ')}")
        elif len(data) > size.max_frame_size(fmt):
            raise VideoSourceError(f"{what}: a {len(data)}-byte JPEG exceeds the {size.max_frame_size(fmt)}-byte "
                                   f"frame buffer of {size.label()}")
        return data
    image_mod = require_pillow(what)
    if not isinstance(picture, image_mod.Image):
        raise VideoSourceError(f"{what}: a frame must be a PIL image or bytes, not {type(picture).__name__}")
    fitted = fit(picture, size)
    return to_yuyv(fitted) if fmt is PixelFormat.YUYV else encode_jpeg(fitted)


def load_image(path: str | Path) -> Image.Image:
    """Open and decode an image file; a missing or unreadable one is a :class:`VideoSourceError` naming it."""
    image_mod = require_pillow(f"image {path}")
    p = Path(path)
    if not p.is_file():
        raise VideoSourceError(f"image {str(p)!r} does not exist" if not p.exists() else f"image {str(p)!r} is not a file")
    try:
        with image_mod.open(p) as img:
            img.load()
            rgb: Image.Image = img.convert("RGB")
            return rgb
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises these for unreadable or corrupt files
        raise VideoSourceError(f"image {str(p)!r} cannot be read: {exc}") from None


class _Converted:
    """Encoded frames of fixed pictures, per picture, format and size (a still image is encoded once)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, PixelFormat, int, int], bytes] = {}

    async def get(self, key: int, picture: Picture, fmt: PixelFormat, size: FrameSize, what: str) -> bytes:
        k = (key, fmt, size.width, size.height)
        data = self._cache.get(k)
        if data is None:
            data = await asyncio.to_thread(encode_picture, picture, fmt, size, what)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[k] = data
        return data


class StillImage(VideoSource):
    """One picture, shown in every frame (scaled to the frame size)."""

    def __init__(self, picture: str | Path | Image.Image) -> None:
        if isinstance(picture, (str, Path)):
            self.description = f"image {picture}"
            self.picture: Image.Image = load_image(picture)
        else:
            image_mod = require_pillow("an image source")
            if not isinstance(picture, image_mod.Image):
                raise UsageError(f"StillImage takes a path or a PIL image, not {type(picture).__name__}")
            self.description = "image"
            self.picture = picture.convert("RGB")
        self._converted = _Converted()

    async def frame(self, index: int, fmt: PixelFormat, size: FrameSize) -> bytes:
        return await self._converted.get(0, self.picture, fmt, size, self.description)


class ImageSequence(VideoSource):
    """Image files shown one per frame, in order, then again from the first (``loop``) or holding the last."""

    def __init__(self, paths: Sequence[str | Path], *, loop: bool = True) -> None:
        if not paths:
            raise VideoSourceError("an image sequence needs at least one file")
        self.pictures = [load_image(p) for p in paths]
        self.loop = loop
        self.description = f"{len(paths)} images"
        self._converted = _Converted()

    async def frame(self, index: int, fmt: PixelFormat, size: FrameSize) -> bytes:
        n = len(self.pictures)
        i = index % n if self.loop else min(index, n - 1)
        return await self._converted.get(i, self.pictures[i], fmt, size, f"image {i} of the sequence")


class CallbackSource(VideoSource):
    """Frames from ``callback(index, width, height)``: a PIL image or bytes in the stream's format (or an awaitable)."""

    description = "callback"

    def __init__(self, callback: FrameCallback) -> None:
        self.callback = callback

    async def frame(self, index: int, fmt: PixelFormat, size: FrameSize) -> bytes:
        result = self.callback(index, size.width, size.height)
        if inspect.isawaitable(result):
            result = await result
        return encode_picture(result, fmt, size, "frame from the callback")


class IteratorSource(VideoSource):
    """Frames from an async iterator of PIL images or bytes; when it ends, the last frame is repeated."""

    description = "async iterator"

    def __init__(self, frames: AsyncIterable[Picture]) -> None:
        self._iter: AsyncIterator[Picture] = aiter(frames)
        self._last: Picture | None = None
        self.finished = False

    async def frame(self, index: int, fmt: PixelFormat, size: FrameSize) -> bytes:
        if not self.finished:
            try:
                self._last = await anext(self._iter)
            except StopAsyncIteration:
                self.finished = True
                log.info("webcam: the frame iterator ended; repeating its last frame")
        if self._last is None:
            raise VideoSourceError("the frame iterator ended before giving a frame")
        return encode_picture(self._last, fmt, size, "frame from the iterator")


def as_source(value: VideoSource | str | Path | Image.Image | FrameCallback | AsyncIterable[Picture]) -> VideoSource:
    """A source from what a user gives: a source, an image path, a PIL image, a callback or an async iterator."""
    if isinstance(value, VideoSource):
        return value
    if isinstance(value, (str, Path)):
        return StillImage(value)
    if hasattr(value, "__aiter__"):
        return IteratorSource(value)  # type: ignore[arg-type]
    if callable(value):
        return CallbackSource(value)
    return StillImage(value)
