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
from collections.abc import Callable

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
        value = self.take(size)
        self.line(name, value, comment)
        return value

    def hex(self, name: str, size: int = 1, comment: str = "") -> int:
        value = self.take(size)
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


def _head(f: Fields, title: str, subtype_names: dict[int, str] | None) -> int:
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


def _cdc(f: Fields) -> None:
    subtype = f.take(1)
    f.pos -= 1
    title = f"CDC {CDC_SUBTYPES.get(subtype, f'functional descriptor 0x{subtype:02x}')}"
    _head(f, title, {k: v.upper() for k, v in CDC_SUBTYPES.items()})
    if subtype == 0x00:
        f.bcd("bcdCDC")
    elif subtype == 0x01:
        caps = f.hex("bmCapabilities")
        f.bits(caps, {0: "call management", 1: "use DataInterface"})
        f.dec("bDataInterface")
    elif subtype == 0x02:
        caps = f.hex("bmCapabilities")
        f.bits(caps, {0: "comm features", 1: "line coding and serial state", 2: "sends break",
                      3: "connection notifications"})
    elif subtype == 0x06:
        f.dec("bMasterInterface")
        for _ in range(f.left):
            f.dec("bSlaveInterface")  # one line per slave interface, as lsusb prints them
    elif subtype == 0x0F:
        index = f.take(1)
        f.line("iMacAddress", index, f.strings(index) if index else "")
        f.hex("bmEthernetStatistics", 4)
        f.dec("wMaxSegmentSize", 2)
        f.hex("wNumberMCFilters", 2)
        f.dec("bNumberPowerFilters")
    elif subtype == 0x1A:
        f.bcd("bcdNcmVersion")
        caps = f.hex("bmNetworkCapabilities")
        f.bits(caps, {0: "packet filter", 1: "net address", 2: "encapsulated commands", 3: "max datagram size",
                      4: "crc mode", 5: "8-byte ntb input size"})
    f.trailing()


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


def _terminal(f: Fields, name: str = "wTerminalType") -> None:
    value = f.take(2)
    f.line(name, f"0x{value:04x}", TERMINAL_TYPES.get(value, ""))


def _uac1_control(f: Fields) -> None:
    subtype = _head(f, "AudioControl Interface Descriptor", UAC1_AC)
    if subtype == 1:
        f.bcd("bcdADC")
        f.hex("wTotalLength", 2)
        count = f.dec("bInCollection")
        for n in range(count):
            f.dec(f"baInterfaceNr({n})")
    elif subtype == 2:
        f.dec("bTerminalID")
        _terminal(f)
        f.dec("bAssocTerminal")
        f.dec("bNrChannels")
        f.hex("wChannelConfig", 2)
        f.string("iChannelNames")
        f.string("iTerminal")
    elif subtype == 3:
        f.dec("bTerminalID")
        _terminal(f)
        f.dec("bAssocTerminal")
        f.dec("bSourceID")
        f.string("iTerminal")
    elif subtype == 6:
        f.dec("bUnitID")
        f.dec("bSourceID")
        size = f.dec("bControlSize")
        channel = 0
        while size and f.left >= size + 1:  # the last byte is iFeature
            controls = f.take(size)
            f.line(f"bmaControls({channel})", f"0x{controls:0{2 * size}x}")
            f.bits(controls, dict(enumerate(FEATURE_CONTROLS)))
            channel += 1
        f.string("iFeature")
    elif subtype == 5:
        f.dec("bUnitID")
        pins = f.dec("bNrInPins")
        for n in range(pins):
            f.dec(f"baSourceID({n})")
        f.string("iSelector")
    elif subtype == 4:
        f.dec("bUnitID")
        pins = f.dec("bNrInPins")
        for n in range(pins):
            f.dec(f"baSourceID({n})")
        f.dec("bNrChannels")
        f.hex("wChannelConfig", 2)
        f.string("iChannelNames")
        f.note(f"bmControls {f.raw[f.pos:-1].hex(' ')}", 0)
        f.pos = len(f.raw) - 1
        f.string("iMixer")
    f.trailing()


def _uac2_control(f: Fields) -> None:
    subtype = _head(f, "AudioControl Interface Descriptor", UAC2_AC)
    if subtype == 1:
        f.bcd("bcdADC")
        f.hex("bCategory")
        f.hex("wTotalLength", 2)
        f.hex("bmControls")
    elif subtype == 2:
        f.dec("bTerminalID")
        _terminal(f)
        f.dec("bAssocTerminal")
        f.dec("bCSourceID")
        f.dec("bNrChannels")
        f.hex("bmChannelConfig", 4)
        f.string("iChannelNames")
        f.hex("bmControls", 2)
        f.string("iTerminal")
    elif subtype == 3:
        f.dec("bTerminalID")
        _terminal(f)
        f.dec("bAssocTerminal")
        f.dec("bSourceID")
        f.dec("bCSourceID")
        f.hex("bmControls", 2)
        f.string("iTerminal")
    elif subtype == 6:
        f.dec("bUnitID")
        f.dec("bSourceID")
        channel = 0
        while f.left >= 5:
            controls = f.take(4)
            f.line(f"bmaControls({channel})", f"0x{controls:08x}")
            for n, name in enumerate(FEATURE_CONTROLS):
                mode = (controls >> (2 * n)) & 3
                if mode:
                    f.note(f"{name} Control ({'read/write' if mode == 3 else 'read-only'})")
            channel += 1
        f.string("iFeature")
    elif subtype == 10:
        f.dec("bClockID")
        attributes = f.hex("bmAttributes")
        kind = ("External", "Internal fixed", "Internal variable", "Internal programmable")[attributes & 3]
        f.note(f"{kind} clock{' (synced to SOF)' if attributes & 4 else ''}")
        controls = f.hex("bmControls")
        f.bits(controls, {0: "Clock Frequency Control (read-only)", 1: "Clock Frequency Control (read/write)",
                          2: "Clock Validity Control (read-only)"})
        f.dec("bAssocTerminal")
        f.string("iClockSource")
    elif subtype == 11:
        f.dec("bClockID")
        pins = f.dec("bNrInPins")
        for n in range(pins):
            f.dec(f"baCSourceID({n})")
        f.hex("bmControls")
        f.string("iClockSelector")
    elif subtype == 12:
        f.dec("bClockID")
        f.dec("bCSourceID")
        f.hex("bmControls")
        f.string("iClockMultiplier")
    elif subtype == 5:
        f.dec("bUnitID")
        pins = f.dec("bNrInPins")
        for n in range(pins):
            f.dec(f"baSourceID({n})")
        f.hex("bmControls")
        f.string("iSelector")
    f.trailing()


def _sample_rates(f: Fields, count: int) -> None:
    if count == 0:
        f.dec("tLowerSamFreq", 3)
        f.dec("tUpperSamFreq", 3)
    for n in range(count):
        f.dec(f"tSamFreq[{n:2d}]", 3)


def _uac1_streaming(f: Fields) -> None:
    subtype = _head(f, "AudioStreaming Interface Descriptor", AS_SUBTYPES)
    if subtype == 1:
        f.dec("bTerminalLink")
        f.dec("bDelay", 1, "frames")
        tag = f.take(2)
        f.line("wFormatTag", f"0x{tag:04x}", FORMAT_TAGS.get(tag, ""))
    elif subtype == 2:
        kind = f.dec("bFormatType", 1, "(FORMAT_TYPE_I)" if f.peek() == 1 else "")
        if kind == 1:
            f.dec("bNrChannels")
            f.dec("bSubframeSize")
            f.dec("bBitResolution")
            _sample_rates(f, f.dec("bSamFreqType", 1, "Discrete" if f.peek() else "Continuous"))
    f.trailing()


def _uac2_streaming(f: Fields) -> None:
    subtype = _head(f, "AudioStreaming Interface Descriptor", AS_SUBTYPES)
    if subtype == 1:
        f.dec("bTerminalLink")
        f.hex("bmControls")
        f.dec("bFormatType")
        formats = f.hex("bmFormats", 4)
        f.bits(formats, UAC2_FORMATS)
        f.dec("bNrChannels")
        f.hex("bmChannelConfig", 4)
        f.string("iChannelNames")
    elif subtype == 2:
        kind = f.dec("bFormatType", 1, "(FORMAT_TYPE_I)" if f.peek() == 1 else "")
        if kind == 1:
            f.dec("bSubslotSize")
            f.dec("bBitResolution")
    f.trailing()


def _audio_endpoint(f: Fields, version2: bool) -> None:
    subtype = _head(f, "AudioStreaming Endpoint Descriptor", {1: "EP_GENERAL"})
    if subtype == 1:
        attributes = f.hex("bmAttributes")
        if version2:
            f.bits(attributes, {7: "MaxPacketsOnly"})
            f.hex("bmControls")
        else:
            f.bits(attributes, {0: "Sampling Frequency", 1: "Pitch", 7: "MaxPacketsOnly"})
        units = ("Undefined", "Milliseconds", "Decoded PCM samples")
        f.dec("bLockDelayUnits", 1, units[f.peek()] if 0 <= f.peek() < 3 else "")
        f.dec("wLockDelay", 2)
    f.trailing()


# ----------------------------------------------------------------------------------- MIDI
MS_SUBTYPES = {1: "MS_HEADER", 2: "MIDI_IN_JACK", 3: "MIDI_OUT_JACK", 4: "ELEMENT"}
JACK_TYPES = {1: "Embedded", 2: "External"}


def _midi_streaming(f: Fields) -> None:
    subtype = _head(f, "MIDIStreaming Interface Descriptor", MS_SUBTYPES)
    if subtype == 1:
        f.bcd("bcdADC")
        f.hex("wTotalLength", 2)
    elif subtype in (2, 3):
        jack = f.take(1)
        f.line("bJackType", jack, JACK_TYPES.get(jack, ""))
        f.dec("bJackID")
        if subtype == 3:
            pins = f.dec("bNrInputPins")
            for n in range(pins):
                f.dec(f"baSourceID({n})")
                f.dec(f"BaSourcePin({n})")
        f.string("iJack")
    f.trailing()


def _midi_endpoint(f: Fields) -> None:
    subtype = _head(f, "MIDIStreaming Endpoint Descriptor", {1: "MS_GENERAL"})
    if subtype == 1:
        jacks = f.dec("bNumEmbMIDIJack")
        for n in range(jacks):
            f.dec(f"baAssocJackID({n})")
    f.trailing()


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


def _controls(f: Fields, name: str, size: int, names: tuple[str, ...]) -> None:
    value = f.take(size)
    f.line(name, f"0x{value:0{2 * size}x}")
    f.bits(value, dict(enumerate(names)))


def _video_control(f: Fields) -> None:
    subtype = _head(f, "VideoControl Interface Descriptor", VC_SUBTYPES)
    if subtype == 1:
        f.bcd("bcdUVC")
        f.hex("wTotalLength", 2)
        clock = f.take(4)
        f.line("dwClockFrequency", f"{clock / 1e6:.6f}MHz")
        count = f.dec("bInCollection")
        for n in range(count):
            f.dec(f"baInterfaceNr({n})")
    elif subtype == 2:
        f.dec("bTerminalID")
        kind = f.take(2)
        f.line("wTerminalType", f"0x{kind:04x}", VIDEO_TERMINALS.get(kind, ""))
        f.dec("bAssocTerminal")
        f.string("iTerminal")
        if kind == 0x0201:
            f.dec("wObjectiveFocalLengthMin", 2)
            f.dec("wObjectiveFocalLengthMax", 2)
            f.dec("wOcularFocalLength", 2)
            size = f.dec("bControlSize")
            _controls(f, "bmControls", size, CAMERA_CONTROLS)
    elif subtype == 3:
        f.dec("bTerminalID")
        kind = f.take(2)
        f.line("wTerminalType", f"0x{kind:04x}", VIDEO_TERMINALS.get(kind, ""))
        f.dec("bAssocTerminal")
        f.dec("bSourceID")
        f.string("iTerminal")
    elif subtype == 4:
        f.dec("bUnitID")
        pins = f.dec("bNrInPins")
        for n in range(pins):
            f.dec(f"baSourceID({n})")
        f.string("iSelector")
    elif subtype == 5:
        f.dec("bUnitID")
        f.dec("bSourceID")
        f.dec("wMaxMultiplier", 2)
        size = f.dec("bControlSize")
        _controls(f, "bmControls", size, PROCESSING_CONTROLS)
        f.string("iProcessing")
        if f.left:
            f.hex("bmVideoStandards")
    elif subtype == 6:
        f.dec("bUnitID")
        f.guid("guidExtensionCode")
        f.dec("bNumControls")
        pins = f.dec("bNrInPins")
        for n in range(pins):
            f.dec(f"baSourceID({n})")
        size = f.dec("bControlSize")
        for n in range(size):
            f.hex(f"bmControls({n:2d})")
        f.string("iExtension")
    f.trailing()


def _frame(f: Fields) -> None:
    f.dec("bFrameIndex")
    caps = f.hex("bmCapabilities")
    f.bits(caps, {0: "Still image supported", 1: "Fixed frame-rate"})
    f.dec("wWidth", 2)
    f.dec("wHeight", 2)
    f.dec("dwMinBitRate", 4)
    f.dec("dwMaxBitRate", 4)
    f.dec("dwMaxVideoFrameBufferSize", 4)
    default = f.take(4)
    f.line("dwDefaultFrameInterval", default, f"{1e7 / default:.2f} fps" if default else "")
    count = f.dec("bFrameIntervalType")
    if count == 0:
        f.dec("dwMinFrameInterval", 4)
        f.dec("dwMaxFrameInterval", 4)
        f.dec("dwFrameIntervalStep", 4)
    for n in range(count):
        interval = f.take(4)
        f.line(f"dwFrameInterval({n})", interval, f"{1e7 / interval:.2f} fps" if interval else "")


def _video_streaming(f: Fields) -> None:
    subtype = _head(f, "VideoStreaming Interface Descriptor", VS_SUBTYPES)
    if subtype == 1:
        formats = f.dec("bNumFormats")
        f.hex("wTotalLength", 2)
        f.hex("bEndpointAddress")
        f.hex("bmInfo")
        f.dec("bTerminalLink")
        f.dec("bStillCaptureMethod")
        f.dec("bTriggerSupport")
        f.dec("bTriggerUsage")
        size = f.dec("bControlSize")
        for n in range(formats):
            f.hex(f"bmaControls({n:2d})", size)
    elif subtype == 2:
        formats = f.dec("bNumFormats")
        f.hex("wTotalLength", 2)
        f.hex("bEndpointAddress")
        f.dec("bTerminalLink")
        size = f.dec("bControlSize")
        for n in range(formats):
            f.hex(f"bmaControls({n:2d})", size)
    elif subtype in (4, 16):
        f.dec("bFormatIndex")
        f.dec("bNumFrameDescriptors")
        guid = f.guid("guidFormat")
        if guid in GUID_FORMATS:
            f.note(GUID_FORMATS[guid], 20)
        f.dec("bBitsPerPixel")
        f.dec("bDefaultFrameIndex")
        f.dec("bAspectRatioX")
        f.dec("bAspectRatioY")
        f.hex("bmInterlaceFlags")
        f.dec("bCopyProtect")
        if subtype == 16:
            f.dec("bVariableSize")
    elif subtype == 6:
        f.dec("bFormatIndex")
        f.dec("bNumFrameDescriptors")
        flags = f.dec("bFlags")
        f.note("Fixed-size samples: Yes" if flags & 1 else "Fixed-size samples: No")
        f.dec("bDefaultFrameIndex")
        f.dec("bAspectRatioX")
        f.dec("bAspectRatioY")
        f.hex("bmInterlaceFlags")
        f.dec("bCopyProtect")
    elif subtype in (5, 7):
        _frame(f)
    elif subtype == 17:
        f.dec("bFrameIndex")
        f.hex("bmCapabilities")
        f.dec("wWidth", 2)
        f.dec("wHeight", 2)
        f.dec("dwMinBitRate", 4)
        f.dec("dwMaxBitRate", 4)
        f.dec("dwDefaultFrameInterval", 4)
        count = f.dec("bFrameIntervalType")
        f.dec("dwBytesPerLine", 4)
        for n in range(count):
            f.dec(f"dwFrameInterval({n})", 4)
        if count == 0:
            f.dec("dwMinFrameInterval", 4)
            f.dec("dwMaxFrameInterval", 4)
            f.dec("dwFrameIntervalStep", 4)
    elif subtype == 13:
        value = f.take(1)
        f.line("bColorPrimaries", value, f"({COLOR_PRIMARIES.get(value, 'Reserved')})")
        value = f.take(1)
        f.line("bTransferCharacteristics", value, f"({TRANSFER_CHARACTERISTICS.get(value, 'Reserved')})")
        value = f.take(1)
        f.line("bMatrixCoefficients", value, f"({MATRIX_COEFFICIENTS.get(value, 'Reserved')})")
    f.trailing()


def _video_endpoint(f: Fields) -> None:
    subtype = _head(f, "VideoControl Endpoint Descriptor", {3: "EP_INTERRUPT"})
    if subtype == 3:
        f.dec("wMaxTransferSize", 2)
    f.trailing()


# ----------------------------------------------------------------------------------- DFU
def _dfu(f: Fields) -> None:
    _head(f, "Device Firmware Upgrade Interface Descriptor", None)
    attributes = f.hex("bmAttributes")
    f.note("Will Detach" if attributes & 8 else "Will Not Detach")
    f.note("Manifestation Tolerant" if attributes & 4 else "Manifestation Intolerant")
    f.note("Upload Supported" if attributes & 2 else "Upload Unsupported")
    f.note("Download Supported" if attributes & 1 else "Download Unsupported")
    f.dec("wDetachTimeout", 2, "milliseconds")
    f.dec("wTransferSize", 2, "bytes")
    if f.left >= 2:
        f.bcd("bcdDFUVersion")
    f.trailing()


# ----------------------------------------------------------------------------------- dispatch
def decoder_for(raw: bytes, interface: tuple[int, int, int] | None, on_endpoint: bool,
                ) -> Callable[[Fields], None] | None:
    """The decoder for a class-specific descriptor in an interface ``(class, subclass, protocol)``."""
    if interface is None or len(raw) < 3:
        return None
    cls, subclass, protocol = interface
    kind = raw[1]
    if kind == DFU_FUNCTIONAL and (cls, subclass) == (0xFE, 0x01) and not on_endpoint:
        return _dfu
    if cls == 0x01:  # audio
        version2 = protocol == 0x20
        if kind == CS_INTERFACE and not on_endpoint:
            if subclass == 0x01:
                return _uac2_control if version2 else _uac1_control
            if subclass == 0x02:
                return _uac2_streaming if version2 else _uac1_streaming
            if subclass == 0x03:
                return _midi_streaming
        if kind == CS_ENDPOINT and on_endpoint:
            if subclass == 0x02:
                return lambda f: _audio_endpoint(f, version2)
            if subclass == 0x03:
                return _midi_endpoint
    if cls == 0x0E:  # video
        if kind == CS_INTERFACE and not on_endpoint:
            return _video_control if subclass == 0x01 else _video_streaming if subclass == 0x02 else None
        if kind == CS_ENDPOINT and on_endpoint and subclass == 0x01:
            return _video_endpoint
    if cls in (0x02, 0x0A) and kind == CS_INTERFACE and not on_endpoint:
        return _cdc
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
