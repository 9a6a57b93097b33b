"""USB Audio Class 1.0 and 2.0 numbers and class-specific descriptors (the parts a sound card uses)."""

from __future__ import annotations

import enum
import struct

from vusb.descriptors import RawDescriptor

AUDIO = 0x01
SUBCLASS_CONTROL = 0x01
SUBCLASS_STREAMING = 0x02
SUBCLASS_MIDISTREAMING = 0x03
PROTOCOL_UAC2 = 0x20

CS_INTERFACE = 0x24
CS_ENDPOINT = 0x25

# Audio control interface descriptor subtypes
AC_HEADER = 0x01
AC_INPUT_TERMINAL = 0x02
AC_OUTPUT_TERMINAL = 0x03
AC_FEATURE_UNIT = 0x06
AC_CLOCK_SOURCE = 0x0A  # UAC2

# Audio streaming interface descriptor subtypes
AS_GENERAL = 0x01
AS_FORMAT_TYPE = 0x02
EP_GENERAL = 0x01
FORMAT_TYPE_I = 0x01

# Terminal types
TT_USB_STREAMING = 0x0101
TT_MICROPHONE = 0x0201
TT_SPEAKER = 0x0301


class Req(enum.IntEnum):
    """Class request codes (UAC1 uses the GET_/SET_ forms, UAC2 CUR and RANGE)."""

    CUR = 0x01  # UAC2 CUR, UAC1 SET_CUR
    RANGE = 0x02  # UAC2
    GET_CUR = 0x81
    GET_MIN = 0x82
    GET_MAX = 0x83
    GET_RES = 0x84


# Control selectors
CS_SAM_FREQ = 0x01  # clock source (UAC2) / endpoint (UAC1) sampling frequency
CS_CLOCK_VALID = 0x02
FU_MUTE = 0x01
FU_VOLUME = 0x02


def cs(subtype: int, body: bytes, descriptor_type: int = CS_INTERFACE) -> RawDescriptor:
    return RawDescriptor(bytes((3 + len(body), descriptor_type, subtype)) + body)


def channel_config(channels: int) -> int:
    """bmChannelConfig: mono has no spatial position; stereo is front left + right; more take the first bits."""
    return 0 if channels == 1 else (1 << channels) - 1


# ---------------------------------------------------------------- UAC2 (Audio Device Class 2.0)
def uac2_header(total_length: int, category: int = 0x08) -> RawDescriptor:
    return cs(AC_HEADER, struct.pack("<HBHB", 0x0200, category, total_length, 0))


def uac2_clock_source(clock_id: int, name: int = 0) -> RawDescriptor:
    # internal programmable clock; frequency read/write, validity read-only
    return cs(AC_CLOCK_SOURCE, struct.pack("<BBBBB", clock_id, 0x03, 0x07, 0, name))


def uac2_input_terminal(tid: int, ttype: int, clock: int, channels: int, name: int = 0) -> RawDescriptor:
    return cs(AC_INPUT_TERMINAL, struct.pack("<BHBBBIBHB", tid, ttype, 0, clock, channels, channel_config(channels),
                                             0, 0, name))


def uac2_output_terminal(tid: int, ttype: int, source: int, clock: int, name: int = 0) -> RawDescriptor:
    return cs(AC_OUTPUT_TERMINAL, struct.pack("<BHBBBHB", tid, ttype, 0, source, clock, 0, name))


def uac2_feature_unit(uid: int, source: int, channels: int, name: int = 0) -> RawDescriptor:
    # master channel: mute and volume, both read/write; the logical channels have none
    controls = struct.pack("<I", 0x0F) + bytes(4 * channels)
    return cs(AC_FEATURE_UNIT, struct.pack("<BB", uid, source) + controls + bytes((name,)))


def uac2_as_general(terminal: int, channels: int) -> RawDescriptor:
    return cs(AS_GENERAL, struct.pack("<BBBIBIB", terminal, 0, FORMAT_TYPE_I, 0x00000001, channels,
                                      channel_config(channels), 0))


def uac2_format_type_i(subslot: int, bits: int) -> RawDescriptor:
    return cs(AS_FORMAT_TYPE, bytes((FORMAT_TYPE_I, subslot, bits)))


def uac2_iso_endpoint_general() -> RawDescriptor:
    return cs(EP_GENERAL, struct.pack("<BBBH", 0, 0, 0, 0), CS_ENDPOINT)


# ---------------------------------------------------------------- UAC1 (Audio Devices 1.0)
def uac1_header(total_length: int, streaming: list[int]) -> RawDescriptor:
    return cs(AC_HEADER, struct.pack("<HHB", 0x0100, total_length, len(streaming)) + bytes(streaming))


def uac1_input_terminal(tid: int, ttype: int, channels: int, name: int = 0) -> RawDescriptor:
    return cs(AC_INPUT_TERMINAL, struct.pack("<BHBBHBB", tid, ttype, 0, channels, channel_config(channels), 0, name))


def uac1_output_terminal(tid: int, ttype: int, source: int, name: int = 0) -> RawDescriptor:
    return cs(AC_OUTPUT_TERMINAL, struct.pack("<BHBBB", tid, ttype, 0, source, name))


def uac1_feature_unit(uid: int, source: int, channels: int, name: int = 0) -> RawDescriptor:
    # bControlSize 1: master mute (bit 0) and volume (bit 1); nothing per channel
    return cs(AC_FEATURE_UNIT, struct.pack("<BBB", uid, source, 1) + bytes((0x03,)) + bytes(channels) + bytes((name,)))


def uac1_as_general(terminal: int) -> RawDescriptor:
    return cs(AS_GENERAL, struct.pack("<BBH", terminal, 1, 0x0001))


def uac1_format_type_i(channels: int, subslot: int, bits: int, rates: list[int]) -> RawDescriptor:
    body = bytes((FORMAT_TYPE_I, channels, subslot, bits, len(rates))) + b"".join(r.to_bytes(3, "little") for r in rates)
    return cs(AS_FORMAT_TYPE, body)


def uac1_iso_endpoint_general() -> RawDescriptor:
    # bmAttributes bit 0: the endpoint has a sampling frequency control
    return cs(EP_GENERAL, struct.pack("<BBH", 0x01, 0, 0), CS_ENDPOINT)
