"""Descriptors: exact bytes, computed fields, parsing, the field <-> wire-name maps, and validation at definition time."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from vusb import descriptors, layouts
from vusb.constants import Speed, TransferType
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    Descriptor,
    DeviceDescriptor,
    DeviceQualifierDescriptor,
    EndpointDescriptor,
    HidDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    LanguageTable,
    RawDescriptor,
    StringDescriptor,
    SuperSpeedCapability,
    SuperSpeedEndpointCompanion,
    Usb2Extension,
    WireMap,
)
from vusb.errors import DescriptorError

# Device descriptors of real hardware, transcribed field by field from published `lsusb -v` output.
REAL_DEVICES = [
    # Novatek keyboard 0603:1020: bcdUSB 1.10, EP0 8 bytes, bcdDevice 3.01, no strings
    ("novatek-keyboard", "12 01 10 01 00 00 00 08 03 06 20 10 01 03 00 00 00 01",
     dict(vendor_id=0x0603, product_id=0x1020, device_version=0x0301, usb_version=0x0110, max_packet_size0=8)),
    # Logitech MX310 mouse 046d:c01b: bcdUSB 2.00, bcdDevice 18.00, iManufacturer 1, iProduct 2
    ("logitech-mx310", "12 01 00 02 00 00 00 08 6d 04 1b c0 00 18 01 02 00 01",
     dict(vendor_id=0x046D, product_id=0xC01B, device_version=0x1800, usb_version=0x0200, max_packet_size0=8,
          manufacturer_index=1, product_index=2)),
]


@pytest.mark.parametrize(("name", "hexbytes", "fields"), REAL_DEVICES, ids=[d[0] for d in REAL_DEVICES])
def test_real_device_descriptors_round_trip(name: str, hexbytes: str, fields: dict[str, int]) -> None:
    raw = bytes.fromhex(hexbytes)
    parsed = DeviceDescriptor.parse(raw)
    for key, value in fields.items():
        assert getattr(parsed, key) == value
    assert DeviceDescriptor(**fields).to_bytes() == raw
    assert parsed.to_bytes() == raw


def _keyboard_config() -> ConfigurationDescriptor:
    # Novatek keyboard's configuration as lsusb shows it (bmAttributes 0xa0, 100 mA, EP 0x81 8 bytes every 10 ms),
    # with a HID descriptor for a 65-byte report descriptor.
    ep = EndpointDescriptor(0x81, TransferType.INTERRUPT, 8, 10)
    itf = InterfaceDescriptor(0, 0, 3, 1, 1, 0, (ep,), (HidDescriptor(65, 0x0110),))
    return ConfigurationDescriptor(1, (itf,), remote_wakeup=True, max_power_ma=100)


def test_configuration_computes_total_length_and_interface_count() -> None:
    raw = _keyboard_config().to_bytes()
    assert raw.hex(" ") == (
        "09 02 22 00 01 01 00 a0 32 "  # wTotalLength 0x22 = 34 as lsusb reported, 1 interface
        "09 04 00 00 01 03 01 01 00 "
        "09 21 10 01 00 01 22 41 00 "
        "07 05 81 03 08 00 0a"
    )


def test_configuration_parses_back_to_the_same_tree() -> None:
    config = _keyboard_config()
    parsed = ConfigurationDescriptor.parse(config.to_bytes())
    assert parsed == config
    assert isinstance(parsed.interfaces[0].extra[0], HidDescriptor)


def test_other_speed_configuration_uses_type_7() -> None:
    assert _keyboard_config().to_bytes(7)[1] == 7


def test_alternate_settings_and_iad_are_emitted_in_order() -> None:
    comm = InterfaceDescriptor(0, 0, 2, 2, 1, endpoints=(EndpointDescriptor(0x83, TransferType.INTERRUPT, 16, 4),))
    data0 = InterfaceDescriptor(1, 0, 10)
    data1 = InterfaceDescriptor(1, 1, 10, endpoints=(
        EndpointDescriptor(0x81, TransferType.BULK, 512), EndpointDescriptor(0x02, TransferType.BULK, 512)))
    iad = InterfaceAssociation(0, 2, 2, 2, 1)
    config = ConfigurationDescriptor(1, (comm, data0, data1), (iad,))
    raw = config.to_bytes()
    assert config.num_interfaces == 2
    assert raw[9:17] == bytes.fromhex("08 0b 00 02 02 02 01 00")  # IAD right after the header
    assert ConfigurationDescriptor.parse(raw) == config


def test_superspeed_endpoint_companion_follows_its_endpoint() -> None:
    ep = EndpointDescriptor(0x81, TransferType.BULK, 1024, companion=SuperSpeedEndpointCompanion(15))
    assert ep.to_bytes() == bytes.fromhex("07 05 81 02 00 04 00 06 30 0f 00 00 00")


def test_string_descriptors() -> None:
    assert StringDescriptor("vusb").to_bytes() == bytes.fromhex("0a 03 76 00 75 00 73 00 62 00")
    assert StringDescriptor.parse(StringDescriptor("Grüße ✓").to_bytes()).text == "Grüße ✓"
    assert LanguageTable((0x0409, 0x0407)).to_bytes() == bytes.fromhex("06 03 09 04 07 04")
    assert StringDescriptor("x" * 126).to_bytes()[0] == 254


def test_bos_with_usb2_extension_and_superspeed_capability() -> None:
    bos = BosDescriptor((Usb2Extension(0x2), SuperSpeedCapability()))
    raw = bos.to_bytes()
    assert raw[:5] == bytes.fromhex("05 0f 16 00 02")
    assert raw[5:12] == bytes.fromhex("07 10 02 02 00 00 00")
    assert raw[12:] == bytes.fromhex("0a 10 03 00 0e 00 01 0a ff 07")
    assert BosDescriptor.parse(raw) == bos


def test_device_qualifier() -> None:
    q = DeviceQualifierDescriptor(0x0200, 0, 0, 0, 64, 1)
    assert q.to_bytes() == bytes.fromhex("0a 06 00 02 00 00 00 40 01 00")
    assert DeviceQualifierDescriptor.parse(q.to_bytes()) == q


def test_unknown_descriptors_survive_parsing_as_raw_bytes() -> None:
    cs = RawDescriptor(bytes.fromhex("05 24 00 10 01"))
    itf = InterfaceDescriptor(0, 0, 2, 2, 1, extra=(cs,), endpoints=(EndpointDescriptor(0x81, TransferType.INTERRUPT, 8, 10),))
    config = ConfigurationDescriptor(1, (itf,))
    assert ConfigurationDescriptor.parse(config.to_bytes()).to_bytes() == config.to_bytes()


def test_descriptors_are_immutable() -> None:
    d = DeviceDescriptor(1, 2)
    with pytest.raises(AttributeError):
        d.vendor_id = 3  # type: ignore[misc]


INVALID = [
    ("vendor id too large", lambda: DeviceDescriptor(0x10000, 1), "vendor_id = 65536 is out of range"),
    ("bcdDevice not BCD", lambda: DeviceDescriptor(1, 1, device_version=0x01A0), "not binary-coded decimal"),
    ("EP0 size 7", lambda: DeviceDescriptor(1, 1, max_packet_size0=7), "max_packet_size0 = 7"),
    ("string too long", lambda: StringDescriptor("x" * 127), "at most 126"),
    ("endpoint 0 descriptor", lambda: EndpointDescriptor(0x80, TransferType.BULK, 64), "endpoint 0"),
    ("reserved address bits", lambda: EndpointDescriptor(0x91, TransferType.BULK, 64), "reserved bits"),
    ("duplicate endpoint in interface", lambda: InterfaceDescriptor(0, endpoints=(
        EndpointDescriptor(0x81, TransferType.BULK, 64), EndpointDescriptor(0x81, TransferType.BULK, 64))),
     "duplicate endpoint address 0x81"),
    ("endpoint shared by interfaces", lambda: ConfigurationDescriptor(1, (
        InterfaceDescriptor(0, endpoints=(EndpointDescriptor(0x81, TransferType.BULK, 64),)),
        InterfaceDescriptor(1, endpoints=(EndpointDescriptor(0x81, TransferType.BULK, 64),)))),
     "0x81 is used by interfaces 0 and 1"),
    ("interface defined twice", lambda: ConfigurationDescriptor(1, (InterfaceDescriptor(0), InterfaceDescriptor(0))),
     "defined twice"),
    ("alternate gap", lambda: ConfigurationDescriptor(1, (InterfaceDescriptor(0), InterfaceDescriptor(0, 2))),
     "alternate settings [0, 2]"),
    ("configuration value 0", lambda: ConfigurationDescriptor(0), "value = 0 is out of range"),
    ("odd max power", lambda: ConfigurationDescriptor(1, max_power_ma=101), "multiple of 2"),
    ("IAD over missing interface", lambda: ConfigurationDescriptor(1, (InterfaceDescriptor(0),),
                                                                      (InterfaceAssociation(0, 2, 2),)),
     "missing interfaces [1]"),
    ("raw descriptor length", lambda: RawDescriptor(b"\x05\x24\x00"), "bLength byte is 5"),
]


@pytest.mark.parametrize(("case", "make", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_values_fail_when_defined(case: str, make: object, message: str) -> None:
    with pytest.raises(DescriptorError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make()  # type: ignore[operator]


PACKET_SIZES = [
    # (transfer, speed, size, legal)
    (TransferType.BULK, Speed.FULL, 64, True),
    (TransferType.BULK, Speed.FULL, 65, False),
    (TransferType.BULK, Speed.HIGH, 512, True),
    (TransferType.BULK, Speed.HIGH, 64, False),
    (TransferType.BULK, Speed.SUPER, 1024, True),
    (TransferType.BULK, Speed.LOW, 8, False),
    (TransferType.INTERRUPT, Speed.LOW, 8, True),
    (TransferType.INTERRUPT, Speed.LOW, 9, False),
    (TransferType.INTERRUPT, Speed.FULL, 64, True),
    (TransferType.INTERRUPT, Speed.FULL, 65, False),
    (TransferType.INTERRUPT, Speed.HIGH, 1024 | (2 << 11), True),
    (TransferType.INTERRUPT, Speed.FULL, 8 | (1 << 11), False),
    (TransferType.ISOCHRONOUS, Speed.FULL, 1023, True),
    (TransferType.ISOCHRONOUS, Speed.FULL, 1024, False),
    (TransferType.ISOCHRONOUS, Speed.LOW, 8, False),
]


@pytest.mark.parametrize(("transfer", "speed", "size", "legal"), PACKET_SIZES)
def test_max_packet_size_rules(transfer: TransferType, speed: Speed, size: int, legal: bool) -> None:
    companion = SuperSpeedEndpointCompanion() if speed == Speed.SUPER else None
    ep = EndpointDescriptor(0x81, transfer, size, 1 if transfer != TransferType.BULK else 0, companion=companion)
    if legal:
        ep.validate_for_speed(speed, "ep")
    else:
        with pytest.raises(DescriptorError, match="illegal"):
            ep.validate_for_speed(speed, "ep")


@pytest.mark.parametrize(("speed", "ep0", "ok"), [
    (Speed.LOW, 8, True), (Speed.LOW, 64, False), (Speed.FULL, 32, True), (Speed.HIGH, 64, True),
    (Speed.HIGH, 8, False), (Speed.SUPER, 9, True), (Speed.SUPER, 64, False),
])
def test_ep0_size_must_suit_the_speed(speed: Speed, ep0: int, ok: bool) -> None:
    d = DeviceDescriptor(1, 1, usb_version=0x0300 if speed == Speed.SUPER else 0x0200, max_packet_size0=ep0)
    if ok:
        d.validate_for_speed(speed)
    else:
        with pytest.raises(DescriptorError, match="wrong for"):
            d.validate_for_speed(speed)


# Each class declares once, in its ``wire`` map, which dataclass field holds which layout field, and
# to_bytes() and parse() are both derived from it.  So the declaration itself is checked: with the fields
# the class computes it must name every field of the construct layout exactly once (a field added to a
# layout and forgotten in the class fails here), it may only name real dataclass fields, and a table of
# examples with every mapped field set to a distinct value must build the exact bytes and parse back.

MAPPED: list[type[Descriptor]] = sorted(
    (c for c in vars(descriptors).values()
     if isinstance(c, type) and issubclass(c, Descriptor) and isinstance(getattr(c, "wire", None), WireMap)),
    key=lambda c: c.__name__,
)


def _wire(cls: type[Descriptor]) -> WireMap:
    wire = getattr(cls, "wire")  # noqa: B009 - Descriptor itself declares no map
    assert isinstance(wire, WireMap)
    return wire


def test_the_mapped_classes_are_the_fixed_layout_descriptors() -> None:
    assert [c.__name__ for c in MAPPED] == [
        "BosDescriptor", "ConfigurationDescriptor", "DeviceDescriptor", "DeviceQualifierDescriptor",
        "EndpointDescriptor", "HidDescriptor", "InterfaceAssociation", "InterfaceDescriptor",
        "SuperSpeedCapability", "SuperSpeedEndpointCompanion", "Usb2Extension",
    ]


@pytest.mark.parametrize("cls", MAPPED, ids=[c.__name__ for c in MAPPED])
def test_declaration_names_every_layout_field_once(cls: type[Descriptor]) -> None:
    wire = _wire(cls)
    declared = Counter([*wire.fields.values(), *wire.computed])
    assert sorted(declared) == sorted(layouts.field_names(wire.layout)), "mapped + computed must equal the layout"
    assert [name for name, count in declared.items() if count > 1] == [], "a layout field is named twice"


@pytest.mark.parametrize("cls", MAPPED, ids=[c.__name__ for c in MAPPED])
def test_declaration_maps_real_dataclass_fields(cls: type[Descriptor]) -> None:
    attributes = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    assert set(_wire(cls).fields) <= attributes


# (name, descriptor, its exact bytes): every mapped field holds a value no other field of it holds,
# so a wire name given to the wrong field changes the bytes.
EXAMPLES: list[tuple[str, Descriptor, str]] = [
    ("device", DeviceDescriptor(
        vendor_id=0x1234, product_id=0x5678, device_version=0x0102, usb_version=0x0210, device_class=0xEF,
        device_subclass=0x02, device_protocol=0x01, max_packet_size0=64, manufacturer_index=4, product_index=5,
        serial_number_index=6, num_configurations=3),
     "12 01 10 02 ef 02 01 40 34 12 78 56 02 01 04 05 06 03"),
    ("device qualifier", DeviceQualifierDescriptor(
        usb_version=0x0200, device_class=0xFF, device_subclass=0x01, device_protocol=0x02, max_packet_size0=8,
        num_configurations=3),
     "0a 06 00 02 ff 01 02 08 03 00"),
    ("configuration", ConfigurationDescriptor(
        value=2, interfaces=(InterfaceDescriptor(0, interface_class=0xFF),), self_powered=True, max_power_ma=500,
        name_index=4),
     "09 02 12 00 01 02 04 c0 fa  09 04 00 00 00 ff 00 00 00"),
    ("interface", InterfaceDescriptor(
        number=1, alternate=2, interface_class=3, interface_subclass=4, interface_protocol=5, name_index=6),
     "09 04 01 02 00 03 04 05 06"),
    ("bulk endpoint", EndpointDescriptor(address=0x02, transfer_type=TransferType.BULK, max_packet_size=512),
     "07 05 02 02 00 02 00"),
    ("audio iso endpoint", EndpointDescriptor(
        address=0x83, transfer_type=TransferType.ISOCHRONOUS, max_packet_size=192, interval=4, attributes_extra=0x04,
        trailing=b"\x00\x00"),
     "09 05 83 05 c0 00 04 00 00"),
    ("endpoint companion", SuperSpeedEndpointCompanion(max_burst=3, attributes=2, bytes_per_interval=1024),
     "06 30 03 02 00 04"),
    ("interface association", InterfaceAssociation(
        first_interface=2, interface_count=3, function_class=1, function_subclass=4, function_protocol=0x20,
        name_index=6),
     "08 0b 02 03 01 04 20 06"),
    ("hid", HidDescriptor(report_length=0x3F, hid_version=0x0111, country_code=0x21, other=((0x23, 0x10),)),
     "0c 21 11 01 21 02 22 3f 00 23 10 00"),
    ("usb 2.0 extension", Usb2Extension(attributes=0x0C1E), "07 10 02 1e 0c 00 00"),
    ("superspeed capability", SuperSpeedCapability(
        attributes=0x02, speeds_supported=0x000E, functionality_support=1, u1_exit_latency=0x0A,
        u2_exit_latency=0x0200),
     "0a 10 03 02 0e 00 01 0a 00 02"),
    ("bos", BosDescriptor((Usb2Extension(0x06), SuperSpeedCapability(u2_exit_latency=0x01F4))),
     "05 0f 16 00 02  07 10 02 06 00 00 00  0a 10 03 00 0e 00 01 0a f4 01"),
]


def test_every_mapped_class_has_an_example() -> None:
    assert {type(d) for _, d, _ in EXAMPLES} == set(MAPPED)


@pytest.mark.parametrize(("name", "descriptor", "hexbytes"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_example_builds_its_bytes_and_parses_back(name: str, descriptor: Descriptor, hexbytes: str) -> None:
    raw = bytes.fromhex(hexbytes)
    assert descriptor.to_bytes() == raw
    parse = getattr(type(descriptor), "parse")  # noqa: B009 - every mapped class has one; Descriptor does not
    assert parse(raw) == descriptor
    assert parse(descriptor.to_bytes()) == descriptor


@pytest.mark.parametrize(("cls", "raw", "message"), [
    (Usb2Extension, "05 10 02 1e 0c", "bLength 5 is invalid"),
    (Usb2Extension, "07 10 03 1e 0c 00 00", "bDevCapabilityType is 3, expected 2"),
    (SuperSpeedCapability, "0a 10 02 02 0e 00 01 0a 00 02", "bDevCapabilityType is 2, expected 3"),
    (SuperSpeedCapability, "0a 0f 03 02 0e 00 01 0a 00 02", "bDescriptorType is 0x0f, expected 0x10"),
])
def test_a_capability_refuses_another_capability(cls: type[Usb2Extension], raw: str, message: str) -> None:
    with pytest.raises(DescriptorError, match=f"{cls.__name__}: {message}"):
        cls.parse(bytes.fromhex(raw))
