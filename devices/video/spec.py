"""USB Video Class 1.1 wire formats: descriptors, probe/commit control, payload headers.

Numbers and layouts are those of the UVC 1.1 specification (chapters 3 and 4, and the
payload specifications for uncompressed and MJPEG video); every descriptor is built
here from values, never copied.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace
from typing import Final

from vusb.constants import Speed

UVC_VERSION: Final = 0x0110
CLOCK_FREQUENCY: Final = 48_000_000
"""dwClockFrequency: the device clock that presentation timestamps and SCR count in (Hz)."""

CC_VIDEO: Final = 0x0E
SC_VIDEOCONTROL: Final = 0x01
SC_VIDEOSTREAMING: Final = 0x02
SC_VIDEO_INTERFACE_COLLECTION: Final = 0x03

CS_INTERFACE: Final = 0x24
# VideoControl descriptor subtypes
VC_HEADER: Final = 0x01
VC_INPUT_TERMINAL: Final = 0x02
VC_OUTPUT_TERMINAL: Final = 0x03
VC_PROCESSING_UNIT: Final = 0x05
# VideoStreaming descriptor subtypes
VS_INPUT_HEADER: Final = 0x01
VS_STILL_IMAGE_FRAME: Final = 0x03
VS_FORMAT_UNCOMPRESSED: Final = 0x04
VS_FRAME_UNCOMPRESSED: Final = 0x05
VS_FORMAT_MJPEG: Final = 0x06
VS_FRAME_MJPEG: Final = 0x07
VS_COLORFORMAT: Final = 0x0D

ITT_CAMERA: Final = 0x0201
TT_STREAMING: Final = 0x0101

CAMERA_TERMINAL_ID: Final = 1
PROCESSING_UNIT_ID: Final = 2
OUTPUT_TERMINAL_ID: Final = 3

# Class-specific requests (bRequest)
SET_CUR: Final = 0x01
GET_CUR: Final = 0x81
GET_MIN: Final = 0x82
GET_MAX: Final = 0x83
GET_RES: Final = 0x84
GET_LEN: Final = 0x85
GET_INFO: Final = 0x86
GET_DEF: Final = 0x87
REQUEST_NAMES: Final = {SET_CUR: "SET_CUR", GET_CUR: "GET_CUR", GET_MIN: "GET_MIN", GET_MAX: "GET_MAX",
                        GET_RES: "GET_RES", GET_LEN: "GET_LEN", GET_INFO: "GET_INFO", GET_DEF: "GET_DEF"}

# Control selectors
VC_REQUEST_ERROR_CODE_CONTROL: Final = 0x02
VS_PROBE_CONTROL: Final = 0x01
VS_COMMIT_CONTROL: Final = 0x02
VS_STILL_PROBE_CONTROL: Final = 0x03
VS_STILL_COMMIT_CONTROL: Final = 0x04
VS_STILL_IMAGE_TRIGGER_CONTROL: Final = 0x05

# bTrigger of VS_STILL_IMAGE_TRIGGER_CONTROL (UVC 1.1 section 4.3.1.4)
TRIGGER_NORMAL: Final = 0
TRIGGER_STILL: Final = 1
"""Send a still image (method 2: in the video stream; method 3: on the still endpoint)."""
TRIGGER_STILL_BULK: Final = 2
"""Send a still image on the dedicated bulk still endpoint (method 3)."""
TRIGGER_ABORT: Final = 3

INFO_GET_SET: Final = 0x03
"""GET_INFO answer: the control supports GET and SET requests."""
INFO_DISABLED_BY_AUTO: Final = 0x04
"""GET_INFO bit D2: the control is under device control (an automatic mode is on)."""
INFO_AUTOUPDATE: Final = 0x08
"""GET_INFO bit D3: the device may change the value by itself (an automatic mode)."""


class RequestError(enum.IntEnum):
    """bRequestErrorCode of the VC_REQUEST_ERROR_CODE_CONTROL (UVC 1.1 section 4.2.1.2)."""

    NO_ERROR = 0x00
    NOT_READY = 0x01
    WRONG_STATE = 0x02
    POWER = 0x03
    OUT_OF_RANGE = 0x04
    INVALID_UNIT = 0x05
    INVALID_CONTROL = 0x06
    INVALID_REQUEST = 0x07
    INVALID_VALUE_WITHIN_RANGE = 0x08
    UNKNOWN = 0xFF


# Payload header bmHeaderInfo bits
HEADER_FID: Final = 0x01
HEADER_EOF: Final = 0x02
HEADER_PTS: Final = 0x04
HEADER_SCR: Final = 0x08
HEADER_STI: Final = 0x20
"""Still image: the payload belongs to a still image frame (capture methods 2 and 3)."""
HEADER_ERR: Final = 0x40
HEADER_EOH: Final = 0x80
HEADER_LENGTH: Final = 12
"""Every payload carries the full header: bHeaderLength, bmHeaderInfo, PTS (4), SCR (6)."""

HEADER_STRUCT: Final = struct.Struct("<BBIIH")
"""bHeaderLength, bmHeaderInfo, PTS, SCR (STC and the 11-bit (micro)frame number)."""


def payload_header(fid: int, *, eof: bool, pts: int, stc: int, sof: int, error: bool = False,
                   still: bool = False) -> bytes:
    """A 12-byte payload header with PTS and SCR (UVC 1.1 section 2.4.3.3)."""
    info = HEADER_EOH | HEADER_PTS | HEADER_SCR | (fid & HEADER_FID)
    if eof:
        info |= HEADER_EOF
    if error:
        info |= HEADER_ERR
    if still:
        info |= HEADER_STI
    return HEADER_STRUCT.pack(HEADER_LENGTH, info, pts & 0xFFFFFFFF, stc & 0xFFFFFFFF, sof & 0x7FF)


@dataclass(frozen=True)
class PayloadHeader:
    """A payload header as a host reads it (for tests and tools)."""

    length: int
    fid: int
    eof: bool
    error: bool
    pts: int | None
    scr: tuple[int, int] | None
    still: bool = False

    @classmethod
    def parse(cls, data: bytes | memoryview) -> PayloadHeader:
        if len(data) < 2 or data[0] < 2 or data[0] > len(data):
            raise ValueError(f"not a UVC payload header: {bytes(data[:12]).hex(' ')}")
        info = data[1]
        pos = 2
        pts = scr = None
        if info & HEADER_PTS:
            pts = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if info & HEADER_SCR:
            scr = (int.from_bytes(data[pos:pos + 4], "little"), int.from_bytes(data[pos + 4:pos + 6], "little") & 0x7FF)
        return cls(data[0], info & HEADER_FID, bool(info & HEADER_EOF), bool(info & HEADER_ERR), pts, scr,
                   bool(info & HEADER_STI))


# ------------------------------------------------------------------ formats
YUY2_GUID: Final = bytes.fromhex("5955593200001000800000aa00389b71")
"""The uncompressed YUY2 (YUYV 4:2:2) format GUID: 'YUY2' then the standard suffix."""


class PixelFormat(enum.StrEnum):
    YUYV = "yuyv"
    MJPEG = "mjpeg"

    @property
    def compressed(self) -> bool:
        return self is PixelFormat.MJPEG


def interval_for(fps: float) -> int:
    """dwFrameInterval (100 ns units) for a frame rate."""
    return int(10_000_000 / fps)


@dataclass(frozen=True)
class FrameSize:
    """One frame descriptor: a size and the frame rates offered at that size (fastest first)."""

    width: int
    height: int
    fps: tuple[float, ...] = (30.0,)

    @property
    def intervals(self) -> tuple[int, ...]:
        return tuple(sorted(interval_for(f) for f in self.fps))

    def max_frame_size(self, fmt: PixelFormat) -> int:
        """dwMaxVideoFrameBufferSize: YUYV is exactly 2 bytes a pixel; a JPEG stays under that bound."""
        return self.width * self.height * 2

    def label(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class VideoFormat:
    """One format descriptor and its frame sizes (bFormatIndex = position + 1)."""

    format: PixelFormat
    frames: tuple[FrameSize, ...]
    still_sizes: tuple[tuple[int, int], ...] = ()
    """Still image sizes (width, height) for still capture methods 2 and 3; empty: the frame sizes."""
    still_compressions: tuple[int, ...] = ()
    """bCompression values of the Still Image Frame descriptor (MJPEG only; empty: one, 1)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", PixelFormat(self.format))
        object.__setattr__(self, "frames", tuple(self.frames))
        object.__setattr__(self, "still_sizes", tuple((int(w), int(h)) for w, h in self.still_sizes))
        object.__setattr__(self, "still_compressions", tuple(self.still_compressions))

    def stills(self) -> tuple[tuple[int, int], ...]:
        """The still image sizes offered: those declared, or else the frame sizes."""
        return self.still_sizes or tuple((f.width, f.height) for f in self.frames)

    def compressions(self) -> tuple[int, ...]:
        """The still compressions offered: none for uncompressed formats, those declared (or 1) for MJPEG."""
        if not self.format.compressed:
            return ()
        return self.still_compressions or (1,)


# ------------------------------------------------------------------ bandwidth
@dataclass(frozen=True)
class AltSetting:
    """One streaming alternate setting: its isochronous wMaxPacketSize and the bytes it carries a (micro)frame."""

    max_packet: int
    transactions: int = 1

    @property
    def w_max_packet_size(self) -> int:
        return self.max_packet | ((self.transactions - 1) << 11)

    @property
    def bytes_per_interval(self) -> int:
        return self.max_packet * self.transactions


ALT_SETTINGS: Final = {
    # High speed: up to three 1024-byte transactions a microframe (high-bandwidth endpoints).
    Speed.HIGH: (AltSetting(128), AltSetting(256), AltSetting(512), AltSetting(1024), AltSetting(1024, 2),
                 AltSetting(1024, 3)),
    Speed.FULL: (AltSetting(128), AltSetting(256), AltSetting(512), AltSetting(1023)),
}
INTERVALS_PER_SECOND: Final = {Speed.HIGH: 8000, Speed.FULL: 1000}


def required_bandwidth(size: FrameSize, fmt: PixelFormat, speed: Speed) -> int:
    """Bytes a (micro)frame must carry to deliver ``size`` at its fastest rate (payload headers included).

    An MJPEG frame's size is not known in advance; half the uncompressed size is assumed
    (a JPEG of camera content is usually far smaller).
    """
    per_second = INTERVALS_PER_SECOND[speed]
    frame_bytes = size.max_frame_size(fmt) // (2 if fmt.compressed else 1)
    fastest = max(size.fps)
    per_interval = -(-int(frame_bytes * fastest) // per_second)
    return per_interval + HEADER_LENGTH


def max_bandwidth(speed: Speed) -> int:
    return max(a.bytes_per_interval for a in ALT_SETTINGS[speed])


# ------------------------------------------------------------------ probe and commit
_PROBE = struct.Struct("<HBBIHHHHHIIIBBBB")
PROBE_LENGTH: Final = _PROBE.size  # 34 for UVC 1.1
PROBE_LENGTH_10: Final = 26
BM_FRAMING_INFO: Final = 0x03
"""FID toggles per frame and EOF marks a frame's last payload."""


@dataclass(frozen=True)
class StreamingControl:
    """The video probe and commit control (UVC 1.1 table 4-47)."""

    bmHint: int = 0
    bFormatIndex: int = 0
    bFrameIndex: int = 0
    dwFrameInterval: int = 0
    wKeyFrameRate: int = 0
    wPFrameRate: int = 0
    wCompQuality: int = 0
    wCompWindowSize: int = 0
    wDelay: int = 0
    dwMaxVideoFrameSize: int = 0
    dwMaxPayloadTransferSize: int = 0
    dwClockFrequency: int = 0
    bmFramingInfo: int = 0
    bPreferedVersion: int = 0
    bMinVersion: int = 0
    bMaxVersion: int = 0

    def to_bytes(self) -> bytes:
        return _PROBE.pack(self.bmHint, self.bFormatIndex, self.bFrameIndex, self.dwFrameInterval,
                           self.wKeyFrameRate, self.wPFrameRate, self.wCompQuality, self.wCompWindowSize,
                           self.wDelay, self.dwMaxVideoFrameSize, self.dwMaxPayloadTransferSize,
                           self.dwClockFrequency, self.bmFramingInfo, self.bPreferedVersion, self.bMinVersion,
                           self.bMaxVersion)

    @classmethod
    def parse(cls, data: bytes) -> StreamingControl:
        """From 26 (UVC 1.0) or 34 (UVC 1.1) bytes."""
        if len(data) not in (PROBE_LENGTH_10, PROBE_LENGTH):
            raise ValueError(f"a probe/commit control is {PROBE_LENGTH_10} or {PROBE_LENGTH} bytes, not {len(data)}")
        return cls(*_PROBE.unpack(data.ljust(PROBE_LENGTH, b"\x00")))

    def with_(self, **changes: int) -> StreamingControl:
        return replace(self, **changes)


# ------------------------------------------------------------------ class-specific descriptors
def vc_header(total_length: int, streaming_interfaces: tuple[int, ...]) -> bytes:
    n = len(streaming_interfaces)
    return struct.pack("<BBBHHIB", 12 + n, CS_INTERFACE, VC_HEADER, UVC_VERSION, total_length, CLOCK_FREQUENCY,
                       n) + bytes(streaming_interfaces)


def camera_terminal(bm_controls: int = 0) -> bytes:
    """The camera terminal; ``bm_controls`` has a bit for each camera control offered (bControlSize 3: D0-D18)."""
    return struct.pack("<BBBBHBBHHHB3s", 18, CS_INTERFACE, VC_INPUT_TERMINAL, CAMERA_TERMINAL_ID, ITT_CAMERA, 0, 0,
                       0, 0, 0, 3, bm_controls.to_bytes(3, "little"))


def processing_unit(bm_controls: int) -> bytes:
    return struct.pack("<BBBBBHBHBB", 12, CS_INTERFACE, VC_PROCESSING_UNIT, PROCESSING_UNIT_ID, CAMERA_TERMINAL_ID,
                       0, 2, bm_controls, 0, 0)


def output_terminal() -> bytes:
    return struct.pack("<BBBBHBBB", 9, CS_INTERFACE, VC_OUTPUT_TERMINAL, OUTPUT_TERMINAL_ID, TT_STREAMING, 0,
                       PROCESSING_UNIT_ID, 0)


def vs_input_header(num_formats: int, total_length: int, endpoint: int, still_method: int = 0) -> bytes:
    """bStillCaptureMethod ``still_method`` (0: none, 2 or 3); no hardware trigger (it needs a status endpoint)."""
    return struct.pack("<BBBBHBBBBBBB", 13 + num_formats, CS_INTERFACE, VS_INPUT_HEADER, num_formats, total_length,
                       endpoint, 0, OUTPUT_TERMINAL_ID, still_method, 0, 0, 1) + bytes(num_formats)


def still_frame_descriptor(endpoint: int, sizes: tuple[tuple[int, int], ...], compressions: tuple[int, ...]) -> bytes:
    """A Still Image Frame descriptor (UVC 1.1 table 3-18): the still sizes and compressions of one format.

    ``endpoint`` is the bulk still endpoint's address for method 3, 0 for method 2.
    """
    n, m = len(sizes), len(compressions)
    body = b"".join(struct.pack("<HH", w, h) for w, h in sizes)
    return (struct.pack("<BBBBB", 6 + 4 * n + m, CS_INTERFACE, VS_STILL_IMAGE_FRAME, endpoint, n) + body
            + bytes((m, *compressions)))


_STILL = struct.Struct("<BBBII")
STILL_PROBE_LENGTH: Final = _STILL.size  # 11


@dataclass(frozen=True)
class StillControl:
    """The still image probe and commit control (UVC 1.1 table 4-49)."""

    bFormatIndex: int = 0
    bFrameIndex: int = 0
    bCompressionIndex: int = 0
    dwMaxVideoFrameSize: int = 0
    dwMaxPayloadTransferSize: int = 0

    def to_bytes(self) -> bytes:
        return _STILL.pack(self.bFormatIndex, self.bFrameIndex, self.bCompressionIndex, self.dwMaxVideoFrameSize,
                           self.dwMaxPayloadTransferSize)

    @classmethod
    def parse(cls, data: bytes) -> StillControl:
        if len(data) != STILL_PROBE_LENGTH:
            raise ValueError(f"a still probe/commit control is {STILL_PROBE_LENGTH} bytes, not {len(data)}")
        return cls(*_STILL.unpack(data))


STILL_METHODS: Final = (0, 2, 3)
"""Still image capture methods a webcam can declare: 0 (none), 2 (in the video stream), 3 (bulk still endpoint).
Method 1 needs nothing from the device: the host keeps a video frame."""


def format_descriptor(index: int, fmt: VideoFormat) -> bytes:
    n = len(fmt.frames)
    if fmt.format is PixelFormat.YUYV:
        return struct.pack("<BBBBB16sBBBBBB", 27, CS_INTERFACE, VS_FORMAT_UNCOMPRESSED, index, n, YUY2_GUID, 16, 1,
                           0, 0, 0, 0)
    return struct.pack("<BBBBBBBBBBB", 11, CS_INTERFACE, VS_FORMAT_MJPEG, index, n, 1, 1, 0, 0, 0, 0)


def frame_descriptor(index: int, fmt: PixelFormat, size: FrameSize) -> bytes:
    intervals = size.intervals
    buffer = size.max_frame_size(fmt)
    bits_per_frame = buffer * 8
    min_rate = bits_per_frame * 10_000_000 // intervals[-1]
    max_rate = bits_per_frame * 10_000_000 // intervals[0]
    subtype = VS_FRAME_MJPEG if fmt.compressed else VS_FRAME_UNCOMPRESSED
    head = struct.pack("<BBBBBHHIIIIB", 26 + 4 * len(intervals), CS_INTERFACE, subtype, index, 0, size.width,
                       size.height, min_rate, max_rate, buffer, intervals[0], len(intervals))
    return head + b"".join(struct.pack("<I", i) for i in intervals)


def color_matching() -> bytes:
    """BT.709 primaries and transfer, SMPTE 170M (BT.601) matrix: the UVC defaults."""
    return struct.pack("<BBBBBB", 6, CS_INTERFACE, VS_COLORFORMAT, 1, 1, 4)


# ------------------------------------------------------------------ processing unit controls
@dataclass(frozen=True)
class ControlSpec:
    """A processing unit control: its selector, bmControls bit, size and declared range."""

    name: str
    selector: int
    bit: int
    size: int
    signed: bool
    minimum: int
    maximum: int
    resolution: int
    default: int
    entity: int = PROCESSING_UNIT_ID
    """The unit or terminal that has the control (processing unit 2, camera terminal 1)."""
    offset: int = 0
    """Where this value sits in the control's data: pan is bytes 0-3 and tilt bytes 4-7 of one control."""
    kind: str = "range"
    """``range`` (GET_MIN/MAX/RES/DEF), ``boolean`` (GET_CUR and GET_DEF only) or ``bitmap``
    (auto-exposure mode: GET_RES is the mask of the modes offered, a value is one of its bits)."""

    def encode(self, value: int) -> bytes:
        return value.to_bytes(self.size, "little", signed=self.signed)

    def decode(self, data: bytes) -> int:
        return int.from_bytes(data, "little", signed=self.signed)

    def refusal(self, value: int) -> tuple[RequestError, str] | None:
        """Why SET_CUR of ``value`` is refused (the error code and a sentence), or None."""
        if self.kind == "bitmap":
            if value == 0 or value & (value - 1) or not value & self.resolution:
                return (RequestError.OUT_OF_RANGE,
                        f"{self.name} 0x{value:02x} is not one of the modes offered (mask 0x{self.resolution:02x})")
            return None
        if not self.minimum <= value <= self.maximum:
            return RequestError.OUT_OF_RANGE, f"{self.name} {value} is outside {self.minimum}..{self.maximum}"
        if (value - self.minimum) % self.resolution:
            return (RequestError.INVALID_VALUE_WITHIN_RANGE,
                    f"{self.name} {value} is not {self.minimum} plus a multiple of {self.resolution}")
        return None

    def check(self) -> str | None:
        """Why the declared range is impossible, or None."""
        if self.kind == "bitmap":
            if not 0 < self.resolution < 1 << (8 * self.size):
                return f"the modes offered (mask 0x{self.resolution:x}) must be at least one of the {8 * self.size} bits"
            if self.default == 0 or self.default & (self.default - 1) or not self.default & self.resolution:
                return f"default 0x{self.default:x} must be one of the modes offered (mask 0x{self.resolution:x})"
            return None
        if self.kind == "boolean" and (self.minimum, self.maximum, self.resolution) != (0, 1, 1):
            return f"{self.name} is on or off (0 or 1): it has no range of its own"
        lo, hi = (-(1 << (8 * self.size - 1)), (1 << (8 * self.size - 1)) - 1) if self.signed else (0, (1 << (8 * self.size)) - 1)
        for what, v in (("min", self.minimum), ("max", self.maximum), ("default", self.default)):
            if not lo <= v <= hi:
                return f"{what} {v} does not fit the control's {self.size}-byte {'signed' if self.signed else 'unsigned'} value ({lo}..{hi})"
        if self.minimum > self.maximum:
            return f"min {self.minimum} is above max {self.maximum}"
        if self.resolution < 1:
            return f"step {self.resolution} must be at least 1"
        if not self.minimum <= self.default <= self.maximum:
            return f"default {self.default} is outside {self.minimum}..{self.maximum}"
        if (self.default - self.minimum) % self.resolution:
            return f"default {self.default} is not min {self.minimum} plus a multiple of step {self.resolution}"
        return None


# name: (selector, bmControls bit, size, signed, min, max, step, default)  (UVC 1.1 section 4.2.2.3)
_PU: Final = {
    "backlight_compensation": (0x01, 8, 2, False, 0, 2, 1, 1),
    "brightness": (0x02, 0, 2, True, -64, 64, 1, 0),
    "contrast": (0x03, 1, 2, False, 0, 95, 1, 32),
    "gain": (0x04, 9, 2, False, 0, 100, 1, 0),
    "power_line_frequency": (0x05, 10, 1, False, 0, 2, 1, 1),
    "hue": (0x06, 2, 2, True, -180, 180, 1, 0),
    "saturation": (0x07, 3, 2, False, 0, 100, 1, 64),
    "sharpness": (0x08, 4, 2, False, 0, 7, 1, 2),
    "gamma": (0x09, 5, 2, False, 100, 500, 1, 100),
}
CONTROL_NAMES: Final = tuple(_PU)


def control_spec(name: str, *, minimum: int | None = None, maximum: int | None = None, step: int | None = None,
                 default: int | None = None) -> ControlSpec:
    """The processing unit or camera terminal control ``name`` with its usual range, changed where given."""
    if name in _CT:
        sel, bit, size, signed, kind, lo, hi, res, dflt, offset = _CT[name]
        return ControlSpec(name, sel, bit, size, signed, lo if minimum is None else minimum,
                           hi if maximum is None else maximum, res if step is None else step,
                           dflt if default is None else default, CAMERA_TERMINAL_ID, offset, kind)
    sel, bit, size, signed, lo, hi, res, dflt = _PU[name]
    return ControlSpec(name, sel, bit, size, signed, lo if minimum is None else minimum,
                       hi if maximum is None else maximum, res if step is None else step,
                       dflt if default is None else default)


# ------------------------------------------------------------------ camera terminal controls
AE_MODES: Final = {"manual": 0x01, "auto": 0x02, "shutter_priority": 0x04, "aperture_priority": 0x08}
"""bAutoExposureMode bits (UVC 1.1 section 4.2.2.1.2)."""

# name: (selector, bmControls bit, size, signed, kind, min, max, step, default, offset)  (UVC 1.1 section 4.2.2.1)
# Units: exposure time in 100 us, focus in mm, iris in f-stop x 100, zoom in the device's own steps,
# pan and tilt in arc seconds, roll in degrees.
_CT: Final = {
    "scanning_mode": (0x01, 0, 1, False, "boolean", 0, 1, 1, 1, 0),  # 0 interlaced, 1 progressive
    "auto_exposure_mode": (0x02, 1, 1, False, "bitmap", 0, 0, 0x09, 0x08, 0),  # manual and aperture priority
    "auto_exposure_priority": (0x03, 2, 1, False, "boolean", 0, 1, 1, 0, 0),
    "exposure_time_absolute": (0x04, 3, 4, False, "range", 3, 2047, 1, 250, 0),
    "focus_absolute": (0x06, 5, 2, False, "range", 0, 250, 5, 0, 0),
    "iris_absolute": (0x09, 7, 2, False, "range", 100, 1600, 10, 200, 0),
    "zoom_absolute": (0x0B, 9, 2, False, "range", 100, 500, 1, 100, 0),
    "pan_absolute": (0x0D, 11, 4, True, "range", -36000, 36000, 3600, 0, 0),
    "tilt_absolute": (0x0D, 11, 4, True, "range", -36000, 36000, 3600, 0, 4),
    "roll_absolute": (0x0F, 13, 2, True, "range", -180, 180, 1, 0, 0),
    "focus_auto": (0x08, 17, 1, False, "boolean", 0, 1, 1, 1, 0),
    "privacy": (0x11, 18, 1, False, "boolean", 0, 1, 1, 0, 0),
}
CAMERA_CONTROL_NAMES: Final = tuple(_CT)

DEPENDENCIES: Final = {
    # control: (the control whose value puts it under device control, values that do)  (UVC 1.1 4.2.2.1.4-4.2.2.1.9)
    "exposure_time_absolute": ("auto_exposure_mode", (AE_MODES["auto"], AE_MODES["aperture_priority"])),
    "iris_absolute": ("auto_exposure_mode", (AE_MODES["auto"], AE_MODES["shutter_priority"])),
    "focus_absolute": ("focus_auto", (1,)),
}
"""SET_CUR of these while their automatic mode is on stalls with 'wrong state', as the specification asks."""
