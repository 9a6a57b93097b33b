"""Class-specific descriptors, decoded field by field the way ``lsusb -v`` prints them.

``vusb probe`` shows every descriptor a device returns. The standard ones are parsed by
:mod:`vusb.descriptors`; the class-specific ones between them arrive as raw bytes, and
this module names their fields from the class specifications:

- CDC 1.2 (functional descriptors: header, call management, ACM, union, Ethernet
  networking) and CDC NCM 1.0;
- HID 1.11 (the HID descriptor itself is parsed by :class:`vusb.descriptors.HidDescriptor`);
- USB Audio 1.0 and 2.0 (AudioControl and AudioStreaming interfaces, streaming endpoints);
- USB MIDI 1.0 (MIDIStreaming interfaces and endpoints);
- USB Video Class 1.1/1.5 (VideoControl and VideoStreaming interfaces, formats and frames);
- DFU 1.1 (the functional descriptor).

A descriptor too short for the fields its subtype declares is not an error of the
decoder: it is shown with a warning and its bytes, as lsusb does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

CS_INTERFACE = 0x24
CS_ENDPOINT = 0x25
DFU_FUNCTIONAL = 0x21

#: The label of the line that ends each decoded descriptor with its bytes (vusb.clone reads it back).
RAW_BYTES = "raw bytes:"

#: A function that returns the text of a string descriptor index ("" when unknown).
Strings = Callable[[int], str]


class _Short(Exception):
    """The descriptor ended before a field its subtype declares."""


class Fields:
    """Reads a descriptor's fields in order and prints each as ``name value comment``."""

    def __init__(self, raw: bytes, indent: int, strings: Strings, start: int = 2) -> None:
        self.raw = raw
        self.pos = start
        self.indent = indent
        self.strings = strings
        self.lines: list[str] = []
        self.values: dict[str, int] = {}
        """Each number read so far by its field name (what counts and conditions of later fields read)."""

    def line(self, name: str, value: object, comment: str = "") -> None:
        text = f"{' ' * self.indent}{name:<19} {value!s:>5}"
        self.lines.append(f"{text} {comment}".rstrip())

    def note(self, text: str, extra_indent: int = 2) -> None:
        self.lines.append(f"{' ' * (self.indent + extra_indent)}{text}")

    def peek(self) -> int:
        """The next byte, or -1 at the end."""
        return self.raw[self.pos] if self.pos < len(self.raw) else -1

    @property
    def left(self) -> int:
        return len(self.raw) - self.pos

    def take(self, size: int) -> int:
        if self.pos + size > len(self.raw):
            raise _Short
        value = int.from_bytes(self.raw[self.pos:self.pos + size], "little")
        self.pos += size
        return value

    def dec(self, name: str, size: int = 1, comment: str = "") -> int:
        value = self.values[name] = self.take(size)
        self.line(name, value, comment)
        return value

    def hex(self, name: str, size: int = 1, comment: str = "") -> int:
        value = self.values[name] = self.take(size)
        self.line(name, f"0x{value:0{2 * size}x}", comment)
        return value

    def bcd(self, name: str) -> int:
        value = self.take(2)
        self.line(name, f"{value >> 8:x}.{value & 0xFF:02x}")
        return value

    def string(self, name: str) -> int:
        index = self.take(1)
        self.line(name, index, self.strings(index) if index else "")
        return index

    def guid(self, name: str) -> str:
        if self.pos + 16 > len(self.raw):
            raise _Short
        text = "{" + str(uuid.UUID(bytes_le=bytes(self.raw[self.pos:self.pos + 16]))) + "}"
        self.pos += 16
        self.lines.append(f"{' ' * self.indent}{name:<19} {text}")
        return text

    def bits(self, value: int, names: dict[int, str]) -> None:
        for bit, text in names.items():
            if value & (1 << bit):
                self.note(text)

    def trailing(self) -> None:
        if self.left > 0:
            self.note(f"(trailing bytes: {self.raw[self.pos:].hex(' ')})", 0)


# ----------------------------------------------------------------------------------- field tables
Step = Callable[[Fields], None]
"""One entry of a field table: reads (and prints) the next field or group of fields."""
Size = int | str
"""A field's size in bytes, or the name of an earlier field that holds it."""
Comment = str | Callable[[Fields], str]
"""A field's comment, or a function of the fields before it is read (it may peek at its byte)."""


def _size(f: Fields, size: Size) -> int:
    return f.values[size] if isinstance(size, str) else size


def _comment(f: Fields, comment: Comment) -> str:
    return comment if isinstance(comment, str) else comment(f)


def dec(name: str, size: Size = 1, comment: Comment = "") -> Step:
    """A number printed in decimal."""
    def step(f: Fields) -> None:
        f.dec(name, _size(f, size), _comment(f, comment))
    return step


def hexa(name: str, size: Size = 1, bits: Mapping[int, str] | None = None) -> Step:
    """A number printed in hex, then a line for each set bit that ``bits`` names."""
    def step(f: Fields) -> None:
        value = f.hex(name, _size(f, size))
        if bits:
            f.bits(value, dict(bits))
    return step


def bcd(name: str) -> Step:
    """A version number (``bcdXXX``)."""
    def step(f: Fields) -> None:
        f.bcd(name)
    return step


def string(name: str) -> Step:
    """A string index, with the string."""
    def step(f: Fields) -> None:
        f.string(name)
    return step


def guid(name: str, known: Mapping[str, str] | None = None) -> Step:
    """A GUID; one ``known`` names is noted below it."""
    def step(f: Fields) -> None:
        text = f.guid(name)
        if known and text in known:
            f.note(known[text], 20)
    return step


def lookup(name: str, size: int, names: Mapping[int, str], *, hex_digits: int = 0, missing: str = "",
           parens: bool = False) -> Step:
    """A code with its name from ``names`` as the comment (in hex with ``hex_digits`` digits, else decimal)."""
    def step(f: Fields) -> None:
        value = f.values[name] = f.take(size)
        text = names.get(value, missing)
        f.line(name, f"0x{value:0{hex_digits}x}" if hex_digits else value, f"({text})" if parens else text)
    return step


def each(count: str, *names: str, size: Size = 1, hex: bool = False) -> Step:
    """For n in range(the value of field ``count``): the fields ``names`` (formatted with ``n``)."""
    def step(f: Fields) -> None:
        width = _size(f, size)
        for n in range(f.values[count]):
            for name in names:
                (f.hex if hex else f.dec)(name.format(n=n), width)
    return step


def when(condition: Callable[[Fields], bool], *steps: Step) -> Step:
    """The fields ``steps`` only if ``condition`` holds (a field's value, or bytes left)."""
    def step(f: Fields) -> None:
        if condition(f):
            for inner in steps:
                inner(f)
    return step


def notes(field: str, *flags: tuple[int, str, str]) -> Step:
    """For each ``(mask, if_set, if_clear)``: a note saying which, from the value of ``field``."""
    def step(f: Fields) -> None:
        for mask, if_set, if_clear in flags:
            f.note(if_set if f.values[field] & mask else if_clear)
    return step


def is_(field: str, value: int) -> Callable[[Fields], bool]:
    return lambda f: f.values[field] == value


def rest(name: str) -> Step:
    """One field ``name`` per byte left (the slave interfaces of a CDC union)."""
    def step(f: Fields) -> None:
        for _ in range(f.left):
            f.dec(name)
    return step


@dataclass(frozen=True)
class Layout:
    """The fields of one family of class-specific descriptors, by subtype, and how it is titled.

    ``subtypes`` names the bDescriptorSubtype values (None: the descriptor has no
    subtype byte, and ``fields`` has one entry, under -1). ``title`` is fixed, or made
    from the subtype byte.
    """

    title: str | Callable[[int], str]
    subtypes: Mapping[int, str] | None
    fields: Mapping[int, Sequence[Step]]

    def __call__(self, f: Fields) -> None:
        title = self.title if isinstance(self.title, str) else self.title(f.raw[2])
        subtype = _head(f, title, self.subtypes)
        for step in self.fields.get(subtype, ()):
            step(f)
        f.trailing()


def _head(f: Fields, title: str, subtype_names: Mapping[int, str] | None) -> int:
    f.lines.append(f"{' ' * (f.indent - 2)}{title}:")
    f.line("bLength", f.raw[0])
    f.line("bDescriptorType", f.raw[1])
    if subtype_names is None:
        return -1
    subtype = f.take(1)
    f.line("bDescriptorSubtype", subtype, f"({subtype_names[subtype]})" if subtype in subtype_names else "(unknown)")
    return subtype


# ----------------------------------------------------------------------------------- CDC
CDC_SUBTYPES = {0x00: "Header", 0x01: "Call Management", 0x02: "ACM", 0x06: "Union", 0x0F: "Ethernet",
                0x1A: "NCM"}

CDC = Layout(
    lambda subtype: f"CDC {CDC_SUBTYPES.get(subtype, f'functional descriptor 0x{subtype:02x}')}",
    {k: v.upper() for k, v in CDC_SUBTYPES.items()},
    {
        0x00: [bcd("bcdCDC")],
        0x01: [hexa("bmCapabilities", bits={0: "call management", 1: "use DataInterface"}), dec("bDataInterface")],
        0x02: [hexa("bmCapabilities", bits={0: "comm features", 1: "line coding and serial state", 2: "sends break",
                                            3: "connection notifications"})],
        0x06: [dec("bMasterInterface"), rest("bSlaveInterface")],  # one line per slave interface, as lsusb prints
        0x0F: [string("iMacAddress"), hexa("bmEthernetStatistics", 4), dec("wMaxSegmentSize", 2),
               hexa("wNumberMCFilters", 2), dec("bNumberPowerFilters")],
        0x1A: [bcd("bcdNcmVersion"),
               hexa("bmNetworkCapabilities", bits={0: "packet filter", 1: "net address", 2: "encapsulated commands",
                                                   3: "max datagram size", 4: "crc mode", 5: "8-byte ntb input size"})],
    },
)


# ----------------------------------------------------------------------------------- audio
TERMINAL_TYPES = {
    0x0100: "USB Undefined", 0x0101: "USB Streaming", 0x01FF: "USB Vendor Specific",
    0x0200: "Input Undefined", 0x0201: "Microphone", 0x0202: "Desktop Microphone", 0x0203: "Personal Microphone",
    0x0204: "Omni-directional Microphone", 0x0205: "Microphone Array", 0x0206: "Processing Microphone Array",
    0x0300: "Output Undefined", 0x0301: "Speaker", 0x0302: "Headphones", 0x0303: "Head Mounted Display Audio",
    0x0304: "Desktop Speaker", 0x0305: "Room Speaker", 0x0306: "Communication Speaker",
    0x0307: "Low Frequency Effects Speaker",
    0x0400: "Bidirectional Undefined", 0x0401: "Handset", 0x0402: "Headset", 0x0403: "Speakerphone",
    0x0500: "Telephony Undefined", 0x0501: "Phone line", 0x0502: "Telephone",
    0x0600: "External Undefined", 0x0601: "Analog Connector", 0x0602: "Digital Audio Interface",
    0x0603: "Line Connector", 0x0605: "SPDIF interface",
    0x0700: "Embedded Undefined", 0x0703: "CD player", 0x0710: "Synthesizer",
}
UAC1_AC = {1: "HEADER", 2: "INPUT_TERMINAL", 3: "OUTPUT_TERMINAL", 4: "MIXER_UNIT", 5: "SELECTOR_UNIT",
           6: "FEATURE_UNIT", 7: "PROCESSING_UNIT", 8: "EXTENSION_UNIT"}
UAC2_AC = {1: "HEADER", 2: "INPUT_TERMINAL", 3: "OUTPUT_TERMINAL", 4: "MIXER_UNIT", 5: "SELECTOR_UNIT",
           6: "FEATURE_UNIT", 7: "EFFECT_UNIT", 8: "PROCESSING_UNIT", 9: "EXTENSION_UNIT", 10: "CLOCK_SOURCE",
           11: "CLOCK_SELECTOR", 12: "CLOCK_MULTIPLIER", 13: "SAMPLE_RATE_CONVERTER"}
AS_SUBTYPES = {1: "AS_GENERAL", 2: "FORMAT_TYPE", 3: "FORMAT_SPECIFIC"}
FEATURE_CONTROLS = ("Mute", "Volume", "Bass", "Mid", "Treble", "Graphic Equalizer", "Automatic Gain",
                    "Delay", "Bass Boost", "Loudness", "Input gain", "Input gain pad", "Phase inverter",
                    "Underflow", "Overflow")
FORMAT_TAGS = {0x0001: "PCM", 0x0002: "PCM8", 0x0003: "IEEE_FLOAT", 0x0004: "ALAW", 0x0005: "MULAW"}
UAC2_FORMATS = {0: "PCM", 1: "PCM8", 2: "IEEE_FLOAT", 3: "ALAW", 4: "MULAW"}




def _uac1_feature_controls(f: Fields) -> None:
    size = f.values["bControlSize"]
    channel = 0
    while size and f.left >= size + 1:  # the last byte is iFeature
        controls = f.take(size)
        f.line(f"bmaControls({channel})", f"0x{controls:0{2 * size}x}")
        f.bits(controls, dict(enumerate(FEATURE_CONTROLS)))
        channel += 1


def _uac2_feature_controls(f: Fields) -> None:
    channel = 0
    while f.left >= 5:  # four bytes a channel, then iFeature
        controls = f.take(4)
        f.line(f"bmaControls({channel})", f"0x{controls:08x}")
        for n, name in enumerate(FEATURE_CONTROLS):
            mode = (controls >> (2 * n)) & 3
            if mode:
                f.note(f"{name} Control ({'read/write' if mode == 3 else 'read-only'})")
        channel += 1


def _mixer_controls(f: Fields) -> None:
    f.note(f"bmControls {f.raw[f.pos:-1].hex(' ')}", 0)
    f.pos = len(f.raw) - 1


def _clock_kind(f: Fields) -> None:
    attributes = f.values["bmAttributes"]
    kind = ("External", "Internal fixed", "Internal variable", "Internal programmable")[attributes & 3]
    f.note(f"{kind} clock{' (synced to SOF)' if attributes & 4 else ''}")


TERMINAL = lookup("wTerminalType", 2, TERMINAL_TYPES, hex_digits=4)
SOURCES = (dec("bNrInPins"), each("bNrInPins", "baSourceID({n})"))

UAC1_CONTROL = Layout("AudioControl Interface Descriptor", UAC1_AC, {
    1: [bcd("bcdADC"), hexa("wTotalLength", 2), dec("bInCollection"), each("bInCollection", "baInterfaceNr({n})")],
    2: [dec("bTerminalID"), TERMINAL, dec("bAssocTerminal"), dec("bNrChannels"), hexa("wChannelConfig", 2),
        string("iChannelNames"), string("iTerminal")],
    3: [dec("bTerminalID"), TERMINAL, dec("bAssocTerminal"), dec("bSourceID"), string("iTerminal")],
    6: [dec("bUnitID"), dec("bSourceID"), dec("bControlSize"), _uac1_feature_controls, string("iFeature")],
    5: [dec("bUnitID"), *SOURCES, string("iSelector")],
    4: [dec("bUnitID"), *SOURCES, dec("bNrChannels"), hexa("wChannelConfig", 2), string("iChannelNames"),
        _mixer_controls, string("iMixer")],
})

UAC2_CONTROL = Layout("AudioControl Interface Descriptor", UAC2_AC, {
    1: [bcd("bcdADC"), hexa("bCategory"), hexa("wTotalLength", 2), hexa("bmControls")],
    2: [dec("bTerminalID"), TERMINAL, dec("bAssocTerminal"), dec("bCSourceID"), dec("bNrChannels"),
        hexa("bmChannelConfig", 4), string("iChannelNames"), hexa("bmControls", 2), string("iTerminal")],
    3: [dec("bTerminalID"), TERMINAL, dec("bAssocTerminal"), dec("bSourceID"), dec("bCSourceID"),
        hexa("bmControls", 2), string("iTerminal")],
    6: [dec("bUnitID"), dec("bSourceID"), _uac2_feature_controls, string("iFeature")],
    10: [dec("bClockID"), hexa("bmAttributes"), _clock_kind,
         hexa("bmControls", bits={0: "Clock Frequency Control (read-only)", 1: "Clock Frequency Control (read/write)",
                                  2: "Clock Validity Control (read-only)"}),
         dec("bAssocTerminal"), string("iClockSource")],
    11: [dec("bClockID"), dec("bNrInPins"), each("bNrInPins", "baCSourceID({n})"), hexa("bmControls"),
         string("iClockSelector")],
    12: [dec("bClockID"), dec("bCSourceID"), hexa("bmControls"), string("iClockMultiplier")],
    5: [dec("bUnitID"), *SOURCES, hexa("bmControls"), string("iSelector")],
})

FORMAT_TYPE = dec("bFormatType", 1, lambda f: "(FORMAT_TYPE_I)" if f.peek() == 1 else "")

UAC1_STREAMING = Layout("AudioStreaming Interface Descriptor", AS_SUBTYPES, {
    1: [dec("bTerminalLink"), dec("bDelay", 1, "frames"), lookup("wFormatTag", 2, FORMAT_TAGS, hex_digits=4)],
    2: [FORMAT_TYPE, when(is_("bFormatType", 1),
        dec("bNrChannels"), dec("bSubframeSize"), dec("bBitResolution"),
        dec("bSamFreqType", 1, lambda f: "Discrete" if f.peek() else "Continuous"),
        when(is_("bSamFreqType", 0), dec("tLowerSamFreq", 3), dec("tUpperSamFreq", 3)),
        each("bSamFreqType", "tSamFreq[{n:2d}]", size=3))],
})

UAC2_STREAMING = Layout("AudioStreaming Interface Descriptor", AS_SUBTYPES, {
    1: [dec("bTerminalLink"), hexa("bmControls"), dec("bFormatType"), hexa("bmFormats", 4, UAC2_FORMATS),
        dec("bNrChannels"), hexa("bmChannelConfig", 4), string("iChannelNames")],
    2: [FORMAT_TYPE, when(is_("bFormatType", 1), dec("bSubslotSize"), dec("bBitResolution"))],
})

LOCK_DELAY = dec("bLockDelayUnits", 1,
                 lambda f: ("Undefined", "Milliseconds", "Decoded PCM samples")[f.peek()] if 0 <= f.peek() < 3 else "")

UAC1_ENDPOINT = Layout("AudioStreaming Endpoint Descriptor", {1: "EP_GENERAL"}, {
    1: [hexa("bmAttributes", bits={0: "Sampling Frequency", 1: "Pitch", 7: "MaxPacketsOnly"}), LOCK_DELAY,
        dec("wLockDelay", 2)],
})
UAC2_ENDPOINT = Layout("AudioStreaming Endpoint Descriptor", {1: "EP_GENERAL"}, {
    1: [hexa("bmAttributes", bits={7: "MaxPacketsOnly"}), hexa("bmControls"), LOCK_DELAY, dec("wLockDelay", 2)],
})


# ----------------------------------------------------------------------------------- MIDI
MS_SUBTYPES = {1: "MS_HEADER", 2: "MIDI_IN_JACK", 3: "MIDI_OUT_JACK", 4: "ELEMENT"}
JACK_TYPES = {1: "Embedded", 2: "External"}



JACK = (lookup("bJackType", 1, JACK_TYPES), dec("bJackID"))

MIDI_STREAMING = Layout("MIDIStreaming Interface Descriptor", MS_SUBTYPES, {
    1: [bcd("bcdADC"), hexa("wTotalLength", 2)],
    2: [*JACK, string("iJack")],
    3: [*JACK, dec("bNrInputPins"), each("bNrInputPins", "baSourceID({n})", "BaSourcePin({n})"), string("iJack")],
})

MIDI_ENDPOINT = Layout("MIDIStreaming Endpoint Descriptor", {1: "MS_GENERAL"}, {
    1: [dec("bNumEmbMIDIJack"), each("bNumEmbMIDIJack", "baAssocJackID({n})")],
})


# ----------------------------------------------------------------------------------- video
VC_SUBTYPES = {1: "VC_HEADER", 2: "VC_INPUT_TERMINAL", 3: "VC_OUTPUT_TERMINAL", 4: "VC_SELECTOR_UNIT",
               5: "VC_PROCESSING_UNIT", 6: "VC_EXTENSION_UNIT", 7: "VC_ENCODING_UNIT"}
VS_SUBTYPES = {1: "VS_INPUT_HEADER", 2: "VS_OUTPUT_HEADER", 3: "VS_STILL_IMAGE_FRAME", 4: "VS_FORMAT_UNCOMPRESSED",
               5: "VS_FRAME_UNCOMPRESSED", 6: "VS_FORMAT_MJPEG", 7: "VS_FRAME_MJPEG", 10: "VS_FORMAT_MPEG2TS",
               12: "VS_FORMAT_DV", 13: "VS_COLORFORMAT", 16: "VS_FORMAT_FRAME_BASED", 17: "VS_FRAME_FRAME_BASED",
               18: "VS_FORMAT_STREAM_BASED"}
VIDEO_TERMINALS = {0x0101: "USB Streaming", 0x0201: "Camera Sensor", 0x0202: "Media Transport Input",
                   0x0301: "Display", 0x0302: "Media Transport Output", 0x0401: "Composite Connector",
                   0x0402: "S-Video Connector", 0x0403: "Component Connector"}
CAMERA_CONTROLS = ("Scanning Mode", "Auto-Exposure Mode", "Auto-Exposure Priority", "Exposure Time (Absolute)",
                   "Exposure Time (Relative)", "Focus (Absolute)", "Focus (Relative)", "Iris (Absolute)",
                   "Iris (Relative)", "Zoom (Absolute)", "Zoom (Relative)", "PanTilt (Absolute)",
                   "PanTilt (Relative)", "Roll (Absolute)", "Roll (Relative)", "Reserved", "Reserved",
                   "Focus, Auto", "Privacy")
PROCESSING_CONTROLS = ("Brightness", "Contrast", "Hue", "Saturation", "Sharpness", "Gamma",
                       "White Balance Temperature", "White Balance Component", "Backlight Compensation", "Gain",
                       "Power Line Frequency", "Hue, Auto", "White Balance Temperature, Auto",
                       "White Balance Component, Auto", "Digital Multiplier", "Digital Multiplier Limit",
                       "Analog Video Standard", "Analog Video Lock Status", "Contrast, Auto")
GUID_FORMATS = {"{32595559-0000-0010-8000-00aa00389b71}": "YUY2", "{3231564e-0000-0010-8000-00aa00389b71}": "NV12",
                "{32315659-0000-0010-8000-00aa00389b71}": "YV12", "{30323449-0000-0010-8000-00aa00389b71}": "I420"}
COLOR_PRIMARIES = {0: "Unspecified", 1: "BT.709,sRGB", 2: "BT.470-2 (M)", 3: "BT.470-2 (B,G)",
                   4: "SMPTE 170M", 5: "SMPTE 240M"}
TRANSFER_CHARACTERISTICS = {0: "Unspecified", 1: "BT.709", 2: "BT.470-2 (M)", 3: "BT.470-2 (B,G)",
                            4: "SMPTE 170M", 5: "SMPTE 240M", 6: "Linear", 7: "sRGB"}
MATRIX_COEFFICIENTS = {0: "Unspecified", 1: "BT.709", 2: "FCC", 3: "BT.470-2 (B,G)", 4: "SMPTE 170M (BT.601)",
                       5: "SMPTE 240M"}



def _clock_frequency(f: Fields) -> None:
    clock = f.take(4)
    f.line("dwClockFrequency", f"{clock / 1e6:.6f}MHz")


def _fps(f: Fields, name: str) -> None:
    interval = f.take(4)
    f.line(name, interval, f"{1e7 / interval:.2f} fps" if interval else "")


def _frame_intervals(f: Fields) -> None:
    for n in range(f.values["bFrameIntervalType"]):
        _fps(f, f"dwFrameInterval({n})")


VIDEO_TERMINAL = lookup("wTerminalType", 2, VIDEO_TERMINALS, hex_digits=4)
CONTINUOUS_INTERVALS = (dec("dwMinFrameInterval", 4), dec("dwMaxFrameInterval", 4), dec("dwFrameIntervalStep", 4))

VIDEO_CONTROL = Layout("VideoControl Interface Descriptor", VC_SUBTYPES, {
    1: [bcd("bcdUVC"), hexa("wTotalLength", 2), _clock_frequency, dec("bInCollection"),
        each("bInCollection", "baInterfaceNr({n})")],
    2: [dec("bTerminalID"), VIDEO_TERMINAL, dec("bAssocTerminal"), string("iTerminal"),
        when(is_("wTerminalType", 0x0201),
             dec("wObjectiveFocalLengthMin", 2), dec("wObjectiveFocalLengthMax", 2), dec("wOcularFocalLength", 2),
             dec("bControlSize"), hexa("bmControls", "bControlSize", dict(enumerate(CAMERA_CONTROLS))))],
    3: [dec("bTerminalID"), VIDEO_TERMINAL, dec("bAssocTerminal"), dec("bSourceID"), string("iTerminal")],
    4: [dec("bUnitID"), *SOURCES, string("iSelector")],
    5: [dec("bUnitID"), dec("bSourceID"), dec("wMaxMultiplier", 2), dec("bControlSize"),
        hexa("bmControls", "bControlSize", dict(enumerate(PROCESSING_CONTROLS))), string("iProcessing"),
        when(lambda f: f.left > 0, hexa("bmVideoStandards"))],
    6: [dec("bUnitID"), guid("guidExtensionCode"), dec("bNumControls"), *SOURCES, dec("bControlSize"),
        each("bControlSize", "bmControls({n:2d})", hex=True), string("iExtension")],
})

UNCOMPRESSED_FORMAT = (dec("bFormatIndex"), dec("bNumFrameDescriptors"), guid("guidFormat", GUID_FORMATS),
                       dec("bBitsPerPixel"), dec("bDefaultFrameIndex"), dec("bAspectRatioX"), dec("bAspectRatioY"),
                       hexa("bmInterlaceFlags"), dec("bCopyProtect"))
FRAME = (dec("bFrameIndex"), hexa("bmCapabilities", bits={0: "Still image supported", 1: "Fixed frame-rate"}),
         dec("wWidth", 2), dec("wHeight", 2), dec("dwMinBitRate", 4), dec("dwMaxBitRate", 4),
         dec("dwMaxVideoFrameBufferSize", 4), lambda f: _fps(f, "dwDefaultFrameInterval"),
         dec("bFrameIntervalType"), when(is_("bFrameIntervalType", 0), *CONTINUOUS_INTERVALS), _frame_intervals)

VIDEO_STREAMING = Layout("VideoStreaming Interface Descriptor", VS_SUBTYPES, {
    1: [dec("bNumFormats"), hexa("wTotalLength", 2), hexa("bEndpointAddress"), hexa("bmInfo"), dec("bTerminalLink"),
        dec("bStillCaptureMethod"), dec("bTriggerSupport"), dec("bTriggerUsage"), dec("bControlSize"),
        each("bNumFormats", "bmaControls({n:2d})", size="bControlSize", hex=True)],
    2: [dec("bNumFormats"), hexa("wTotalLength", 2), hexa("bEndpointAddress"), dec("bTerminalLink"),
        dec("bControlSize"), each("bNumFormats", "bmaControls({n:2d})", size="bControlSize", hex=True)],
    4: UNCOMPRESSED_FORMAT,
    16: (*UNCOMPRESSED_FORMAT, dec("bVariableSize")),
    6: [dec("bFormatIndex"), dec("bNumFrameDescriptors"), dec("bFlags"),
        notes("bFlags", (1, "Fixed-size samples: Yes", "Fixed-size samples: No")), dec("bDefaultFrameIndex"),
        dec("bAspectRatioX"), dec("bAspectRatioY"), hexa("bmInterlaceFlags"), dec("bCopyProtect")],
    5: FRAME,
    7: FRAME,
    17: [dec("bFrameIndex"), hexa("bmCapabilities"), dec("wWidth", 2), dec("wHeight", 2), dec("dwMinBitRate", 4),
         dec("dwMaxBitRate", 4), dec("dwDefaultFrameInterval", 4), dec("bFrameIntervalType"),
         dec("dwBytesPerLine", 4), each("bFrameIntervalType", "dwFrameInterval({n})", size=4),
         when(is_("bFrameIntervalType", 0), *CONTINUOUS_INTERVALS)],
    13: [lookup("bColorPrimaries", 1, COLOR_PRIMARIES, missing="Reserved", parens=True),
         lookup("bTransferCharacteristics", 1, TRANSFER_CHARACTERISTICS, missing="Reserved", parens=True),
         lookup("bMatrixCoefficients", 1, MATRIX_COEFFICIENTS, missing="Reserved", parens=True)],
})

VIDEO_ENDPOINT = Layout("VideoControl Endpoint Descriptor", {3: "EP_INTERRUPT"}, {3: [dec("wMaxTransferSize", 2)]})


# ----------------------------------------------------------------------------------- DFU
DFU = Layout("Device Firmware Upgrade Interface Descriptor", None, {-1: [
    hexa("bmAttributes"),
    notes("bmAttributes", (8, "Will Detach", "Will Not Detach"), (4, "Manifestation Tolerant", "Manifestation Intolerant"),
          (2, "Upload Supported", "Upload Unsupported"), (1, "Download Supported", "Download Unsupported")),
    dec("wDetachTimeout", 2, "milliseconds"), dec("wTransferSize", 2, "bytes"),
    when(lambda f: f.left >= 2, bcd("bcdDFUVersion")),
]})


# ----------------------------------------------------------------------------------- dispatch
def decoder_for(raw: bytes, interface: tuple[int, int, int] | None, on_endpoint: bool,
                ) -> Callable[[Fields], None] | None:
    """The decoder for a class-specific descriptor in an interface ``(class, subclass, protocol)``."""
    if interface is None or len(raw) < 3:
        return None
    cls, subclass, protocol = interface
    kind = raw[1]
    if kind == DFU_FUNCTIONAL and (cls, subclass) == (0xFE, 0x01) and not on_endpoint:
        return DFU
    if cls == 0x01:  # audio
        version2 = protocol == 0x20
        if kind == CS_INTERFACE and not on_endpoint:
            if subclass == 0x01:
                return UAC2_CONTROL if version2 else UAC1_CONTROL
            if subclass == 0x02:
                return UAC2_STREAMING if version2 else UAC1_STREAMING
            if subclass == 0x03:
                return MIDI_STREAMING
        if kind == CS_ENDPOINT and on_endpoint:
            if subclass == 0x02:
                return UAC2_ENDPOINT if version2 else UAC1_ENDPOINT
            if subclass == 0x03:
                return MIDI_ENDPOINT
    if cls == 0x0E:  # video
        if kind == CS_INTERFACE and not on_endpoint:
            return VIDEO_CONTROL if subclass == 0x01 else VIDEO_STREAMING if subclass == 0x02 else None
        if kind == CS_ENDPOINT and on_endpoint and subclass == 0x01:
            return VIDEO_ENDPOINT
    if cls in (0x02, 0x0A) and kind == CS_INTERFACE and not on_endpoint:
        return CDC
    return None


def format_class_descriptor(raw: bytes, interface: tuple[int, int, int] | None, indent: int, strings: Strings,
                            *, on_endpoint: bool = False) -> list[str] | None:
    """``lsusb -v``-style lines for a class-specific descriptor, or None when it is not one this module knows."""
    decode = decoder_for(raw, interface, on_endpoint)
    if decode is None:
        return None
    fields = Fields(raw, indent + 2, strings)
    try:
        decode(fields)
    except _Short:
        fields.lines.append(f"{' ' * indent}  warning: the descriptor ends after {len(raw)} bytes, before all "
                            "the fields of its subtype")
    # the exact bytes too: what a developer compares with a capture, and what `vusb clone` rebuilds it from
    fields.lines.append(f"{' ' * indent}  {RAW_BYTES} {raw.hex(' ')}")
    return fields.lines
