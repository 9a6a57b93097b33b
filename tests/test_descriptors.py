"""Descriptors: exact bytes, computed fields, parsing, and validation at definition time."""

from __future__ import annotations

import pytest

from vusb.constants import Speed, TransferType
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
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
