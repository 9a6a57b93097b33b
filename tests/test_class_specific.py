"""Class-specific descriptors declared with ClassSpecificDescriptor, and endpoints declared by direction.

Each class below is what a device class module writes for its specification: the
type, the subtype and a construct layout, once.  The table checks the exact bytes
against the specification's field order and that parsing gives the value back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Struct, this  # type: ignore[import-untyped]
from vusb.devices.cdc_acm import UnionDescriptor

from vusb import BuildContext, ClassSpecificDescriptor, DescriptorError, Remaining, Speed, StringTable, TransferType
from vusb.constants import DescriptorType


@dataclass(frozen=True)
class FeatureUnit(ClassSpecificDescriptor):
    """USB Audio 2.0 section 4.7.2.8: one bmaControls per channel (master first), then iFeature."""

    subtype = 0x06
    layout = Struct("unit_id" / Int8ul, "source_id" / Int8ul, "controls" / Remaining(Int32ul, after=1),
                    "name_index" / Int8ul)
    unit_id: int
    source_id: int
    controls: tuple[int, ...]
    name_index: int = 0


@dataclass(frozen=True)
class AudioStreamingEndpoint(ClassSpecificDescriptor):
    """USB Audio 2.0 section 4.10.1.2: the class-specific isochronous data endpoint (CS_ENDPOINT, EP_GENERAL)."""

    descriptor_type = DescriptorType.CS_ENDPOINT
    subtype = 0x01
    layout = Struct("attributes" / Int8ul, "controls" / Int8ul, "lock_delay_units" / Int8ul, "lock_delay" / Int16ul)
    attributes: int = 0
    controls: int = 0
    lock_delay_units: int = 0
    lock_delay: int = 0


@dataclass(frozen=True)
class VideoControlHeader(ClassSpecificDescriptor):
    """UVC 1.5 section 3.7.2: bInCollection is a count the class computes from its list."""

    subtype = 0x01
    layout = Struct("uvc_version" / Int16ul, "total_length" / Int16ul, "clock_frequency" / Int32ul,
                    "in_collection" / Int8ul, "streaming_interfaces" / Array(this.in_collection, Int8ul))
    uvc_version: int
    total_length: int
    clock_frequency: int
    streaming_interfaces: tuple[int, ...]

    def wire_values(self) -> dict[str, Any]:
        return super().wire_values() | {"in_collection": len(self.streaming_interfaces)}


@dataclass(frozen=True)
class UncompressedFormat(ClassSpecificDescriptor):
    """UVC 1.5 uncompressed payload 3.1.1: a video streaming format with a 16-byte GUID."""

    subtype = 0x04
    layout = Struct("format_index" / Int8ul, "frame_count" / Int8ul, "guid" / Bytes(16), "bits_per_pixel" / Int8ul,
                    "default_frame" / Int8ul, "aspect_x" / Int8ul, "aspect_y" / Int8ul, "interlace" / Int8ul,
                    "copy_protect" / Int8ul)
    format_index: int
    frame_count: int
    guid: bytes
    bits_per_pixel: int = 16
    default_frame: int = 1
    aspect_x: int = 0
    aspect_y: int = 0
    interlace: int = 0
    copy_protect: int = 0


YUY2 = bytes.fromhex("5955593200001000800000aa00389b71")


@dataclass(frozen=True)
class DfuFunctional(ClassSpecificDescriptor):
    """DFU 1.1 section 4.1.3: its own descriptor type (0x21) and no subtype."""

    descriptor_type: ClassVar[int] = 0x21
    subtype: ClassVar[int | None] = None
    layout = Struct("attributes" / Int8ul, "detach_timeout" / Int16ul, "transfer_size" / Int16ul,
                    "dfu_version" / Int16ul)
    attributes: int
    detach_timeout: int
    transfer_size: int
    dfu_version: int = 0x0110


@dataclass(frozen=True)
class EthernetNetworking(ClassSpecificDescriptor):
    """CDC ECM 1.2 section 5.4: the Ethernet networking functional descriptor."""

    subtype = 0x0F
    layout = Struct("mac_address_index" / Int8ul, "statistics" / Int32ul, "max_segment_size" / Int16ul,
                    "multicast_filters" / Int16ul, "power_filters" / Int8ul)
    mac_address_index: int
    statistics: int = 0
    max_segment_size: int = 1514
    multicast_filters: int = 0
    power_filters: int = 0


@dataclass(frozen=True)
class MidiInJack(ClassSpecificDescriptor):
    """USB MIDI 1.0 section 6.1.2.2: MIDI_IN_JACK."""

    subtype = 0x02
    layout = Struct("jack_type" / Int8ul, "jack_id" / Int8ul, "name_index" / Int8ul)
    jack_type: int
    jack_id: int
    name_index: int = 0


CASES: list[tuple[str, ClassSpecificDescriptor, str]] = [
    ("audio feature unit, 3 channels", FeatureUnit(2, 1, (0x0F, 0x0C, 0x0C)),
     "12 24 06 02 01 0f000000 0c000000 0c000000 00"),
    ("audio feature unit, master only", FeatureUnit(5, 4, (0x03,), 7), "0a 24 06 05 04 03000000 07"),
    ("audio streaming endpoint", AudioStreamingEndpoint(), "08 25 01 00 00 00 0000"),
    ("video control header", VideoControlHeader(0x0110, 0x34, 48_000_000, (1,)), "0d 24 01 1001 3400 006cdc02 01 01"),
    ("video control header, two streams", VideoControlHeader(0x0150, 0x40, 0, (1, 2)),
     "0e 24 01 5001 4000 00000000 02 01 02"),
    ("video uncompressed format (YUY2)", UncompressedFormat(1, 1, YUY2),
     "1b 24 04 01 01 5955593200001000800000aa00389b71 10 01 00 00 00 00"),
    ("DFU functional", DfuFunctional(0x0B, 255, 1024), "09 21 0b ff00 0004 1001"),
    ("CDC ethernet networking", EthernetNetworking(4), "0d 24 0f 04 00000000 ea05 0000 00"),
    ("MIDI IN jack", MidiInJack(1, 1), "06 24 02 01 01 00"),
    ("CDC union (the class in devices/cdc_acm/spec.py)", UnionDescriptor(0, (1, 2)), "06 24 06 00 01 02"),
]


@pytest.mark.parametrize(("case", "descriptor", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bytes_and_parse(case: str, descriptor: ClassSpecificDescriptor, expected: str) -> None:
    raw = descriptor.to_bytes()
    assert raw.hex(" ") == bytes.fromhex(expected).hex(" ")
    assert raw[0] == len(raw)  # bLength is computed
    assert type(descriptor).parse(raw) == descriptor


def test_lists_become_tuples_and_values_are_immutable() -> None:
    unit = FeatureUnit(2, 1, [1, 2])  # type: ignore[arg-type]
    assert unit.controls == (1, 2)
    assert hash(unit) == hash(FeatureUnit(2, 1, (1, 2)))
    with pytest.raises(AttributeError):
        unit.unit_id = 3  # type: ignore[misc]


ERRORS: list[tuple[str, Any, str]] = [
    ("a byte field holds 300", lambda: MidiInJack(1, 300), r"^MidiInJack: a value does not fit the layout"),
    ("a list too long for bLength", lambda: FeatureUnit(1, 1, tuple(range(70))), r"do not fit in bLength"),
    ("wrong descriptor type", lambda: MidiInJack.parse(bytes.fromhex("06 25 02 01 01 00")),
     r"^MidiInJack: bDescriptorType is 0x25, expected 0x24"),
    ("wrong subtype", lambda: MidiInJack.parse(bytes.fromhex("06 24 03 01 01 00")),
     r"^MidiInJack: bDescriptorSubtype is 0x03, expected 0x02"),
    ("bLength beyond the data", lambda: MidiInJack.parse(bytes.fromhex("07 24 02 01 01 00")), r"bLength 7 is invalid"),
    ("bLength too short for the layout", lambda: MidiInJack.parse(bytes.fromhex("05 24 02 01 01")),
     r"bLength 5 does not match the layout"),
    ("bLength longer than the layout", lambda: DfuFunctional.parse(bytes.fromhex("0a 21 0b ff00 0004 1001 00")),
     r"bLength 10 does not match the layout \(9 bytes\)"),
    ("a tail that is not whole items", lambda: FeatureUnit.parse(bytes.fromhex("0b 24 06 02 01 03000000 00 07")),
     r"^FeatureUnit: bLength 11 does not match the layout"),
]


@pytest.mark.parametrize(("case", "make", "message"), ERRORS, ids=[c[0] for c in ERRORS])
def test_errors_name_the_class_and_the_fault(case: str, make: Any, message: str) -> None:
    with pytest.raises(DescriptorError, match=message):
        make()


def context(speed: Speed = Speed.FULL) -> BuildContext:
    return BuildContext(speed, StringTable())


def test_endpoints_by_direction_carry_their_class_specific_descriptors() -> None:
    ctx = context()
    data_in = ctx.endpoint_in(TransferType.ISOCHRONOUS, max_packet_size=192, attributes_extra=0x04,  # asynchronous
                              extra=(AudioStreamingEndpoint(),))
    data_out = ctx.endpoint_out(TransferType.BULK, number=data_in.number)
    assert (data_in.address, data_out.address) == (0x81, 0x01)
    assert data_in.to_bytes().hex(" ") == bytes.fromhex("07 05 81 05 c000 01" "08 25 01 00 00 00 0000").hex(" ")
    itf = ctx.interface(0x01, 0x02, 0x20, endpoints=(data_in,), extra=(MidiInJack(1, 1),), name="Speaker")
    assert (itf.number, itf.name_index, itf.extra, itf.endpoints) == (0, 1, (MidiInJack(1, 1),), (data_in,))
    alt = ctx.interface(0x01, 0x02, 0x20, number=itf.number, alternate=1)
    assert (alt.number, alt.alternate) == (0, 1)


def test_an_audio_1_endpoint_keeps_its_extra_bytes() -> None:
    # USB Audio 1.0 endpoints are 9 bytes: bRefresh and bSynchAddress follow bInterval.
    endpoint = context().endpoint_out(TransferType.ISOCHRONOUS, max_packet_size=96, attributes_extra=0x0C,  # synchronous
                                      trailing=b"\x00\x00")
    assert endpoint.to_bytes().hex(" ") == bytes.fromhex("09 05 01 0d 6000 01 00 00").hex(" ")


def test_the_first_spelling_still_gives_the_same_endpoints() -> None:
    old, new = context(Speed.HIGH), context(Speed.HIGH)
    assert old.endpoint(True, TransferType.BULK) == new.endpoint_in(TransferType.BULK)
    assert old.endpoint(False, TransferType.INTERRUPT, preferred=0x03) == new.endpoint_out(
        TransferType.INTERRUPT, number=3)


@pytest.mark.parametrize(("number", "message"), [(0, "endpoint number 0 is not 1..15"), (16, "is not 1..15")])
def test_endpoint_numbers_are_checked(number: int, message: str) -> None:
    from vusb.errors import DeviceDefinitionError

    with pytest.raises(DeviceDefinitionError, match=message):
        context().endpoint_in(TransferType.BULK, number=number)


def test_a_taken_endpoint_number_is_refused() -> None:
    from vusb.errors import DeviceDefinitionError

    ctx = context()
    ctx.endpoint_in(TransferType.BULK, number=2)
    with pytest.raises(DeviceDefinitionError, match="0x82 is already used"):
        ctx.endpoint_in(TransferType.BULK, number=2)
