"""USB descriptors as immutable values.

Each descriptor is a frozen dataclass whose binary layout is declared once, with
``construct``, in :mod:`vusb.layouts`.  ``to_bytes()`` builds the exact bytes and
``parse()`` reads them back; computed fields (``bLength``, ``wTotalLength``,
``bNumInterfaces``, ``bNumEndpoints``, ``bNumDeviceCaps``) are never given by hand.

Which dataclass field carries which layout field is declared once too, in the class's
``wire`` attribute (a :class:`WireMap`): its layout, the plain field-to-field copies
(``vendor_id`` is ``idVendor``) and the names of the layout fields the class computes.
Both directions are derived from it; only fields that are not plain copies (lengths,
counts, packed ``bmAttributes``, HID's descriptor list) are written out in the class.

Values are checked when a descriptor is created, and again against the device
speed when a :class:`~vusb.device.Device` is defined, so a wrong value fails in the
program that defines it, never later when a host enumerates the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import construct  # type: ignore[import-untyped]

from vusb import layouts
from vusb.constants import LANG_EN_US, DescriptorType, Speed, TransferType
from vusb.errors import DescriptorError

__all__ = [
    "BosDescriptor",
    "ClassSpecificDescriptor",
    "ConfigurationDescriptor",
    "Descriptor",
    "DeviceCapability",
    "DeviceDescriptor",
    "DeviceQualifierDescriptor",
    "EndpointDescriptor",
    "HidDescriptor",
    "InterfaceAssociation",
    "InterfaceDescriptor",
    "LanguageTable",
    "RawCapability",
    "RawDescriptor",
    "Remaining",
    "StringDescriptor",
    "SuperSpeedCapability",
    "SuperSpeedEndpointCompanion",
    "Usb2Extension",
    "iter_descriptors",
    "valid_max_packet_sizes",
]


def _check_range(owner: str, name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DescriptorError(f"{owner}.{name} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise DescriptorError(f"{owner}.{name} = {value} is out of range {lo}..{hi}")


def _u8(owner: str, name: str, value: int) -> None:
    _check_range(owner, name, value, 0, 0xFF)


def _u16(owner: str, name: str, value: int) -> None:
    _check_range(owner, name, value, 0, 0xFFFF)


def _u32(owner: str, name: str, value: int) -> None:
    _check_range(owner, name, value, 0, 0xFFFF_FFFF)


def _check_bcd(owner: str, name: str, value: int) -> None:
    _u16(owner, name, value)
    for shift in (0, 4, 8, 12):
        if (value >> shift) & 0xF > 9:
            raise DescriptorError(f"{owner}.{name} = 0x{value:04x} is not binary-coded decimal")


def iter_descriptors(data: bytes, where: str = "descriptor data") -> Iterator[tuple[int, bytes]]:
    """Split concatenated descriptors into ``(bDescriptorType, bytes)`` pairs."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            raise DescriptorError(f"{where}: {len(data) - pos} stray byte(s) at offset {pos}")
        length = data[pos]
        if length < 2:
            raise DescriptorError(f"{where}: bLength {length} at offset {pos} is below 2")
        if pos + length > len(data):
            raise DescriptorError(
                f"{where}: descriptor at offset {pos} claims {length} bytes, only {len(data) - pos} left"
            )
        yield data[pos + 1], bytes(data[pos : pos + length])
        pos += length


class Descriptor:
    """Common behaviour: every descriptor serializes itself."""

    descriptor_type: ClassVar[int]

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __len__(self) -> int:
        return len(self.to_bytes())

    def __bool__(self) -> bool:
        # A descriptor is always truthy; without this, `if descriptor` would serialize it via __len__.
        return True


@dataclass(frozen=True)
class WireMap:
    """How one descriptor class lies on its ``construct`` layout: the single place that says so.

    ``fields`` maps each dataclass field that is a plain copy of a layout field to that field's wire
    name.  ``computed`` names the layout fields the class works out itself (lengths, counts, packed bits,
    constants); between them the two name every value-carrying field of ``layout`` exactly once, which
    ``tests/test_descriptors.py`` checks for every class.
    """

    layout: Any
    fields: Mapping[str, str]
    computed: tuple[str, ...] = ()

    def to_wire(self, descriptor: object) -> dict[str, Any]:
        """The mapped layout values of ``descriptor``, by wire name."""
        return {wire: getattr(descriptor, attribute) for attribute, wire in self.fields.items()}

    def from_wire(self, parsed: Mapping[str, Any]) -> dict[str, Any]:
        """The mapped dataclass arguments read from a parsed layout, by field name."""
        return {attribute: parsed[wire] for attribute, wire in self.fields.items()}


class _Mapped(Descriptor):
    """A descriptor whose fixed body after bLength/bDescriptorType is ``wire.layout``.

    ``to_bytes()`` and ``parse()`` copy the mapped fields both ways; a subclass whose layout holds
    computed fields passes them to :meth:`_build` and reads them back from :meth:`_read`.
    """

    wire: ClassVar[WireMap]

    def _build(self, computed: Mapping[str, Any] | None = None, trailing: bytes = b"") -> bytes:
        """bLength, bDescriptorType, the layout built from the mapped and ``computed`` values, then ``trailing``."""
        body: bytes = self.wire.layout.build(self.wire.to_wire(self) | dict(computed or {})) + trailing
        return bytes((len(body) + 2, self.descriptor_type)) + body

    @classmethod
    def _read(cls, data: bytes) -> tuple[dict[str, Any], Any, bytes]:
        """Check the header; return the mapped arguments, the whole parsed layout and the bytes after it up to bLength."""
        name, dtype, size = cls.__name__, cls.descriptor_type, cls.wire.layout.sizeof()
        if len(data) < 2:
            raise DescriptorError(f"{name}: {len(data)} bytes is too short for a descriptor")
        if data[1] != dtype:
            raise DescriptorError(f"{name}: bDescriptorType is 0x{data[1]:02x}, expected 0x{dtype:02x}")
        if data[0] < 2 + size or data[0] > len(data):
            raise DescriptorError(f"{name}: bLength {data[0]} is invalid (need {2 + size}, have {len(data)})")
        parsed = cls.wire.layout.parse(data[2 : 2 + size])
        return cls.wire.from_wire(parsed), parsed, bytes(data[2 + size : data[0]])

    def to_bytes(self) -> bytes:
        return self._build()

    @classmethod
    def parse(cls, data: bytes) -> Self:
        return cls(**cls._read(data)[0])


@dataclass(frozen=True)
class RawDescriptor(Descriptor):
    """Any descriptor given as its exact bytes (class-specific, vendor, unknown)."""

    data: bytes
    descriptor_type: ClassVar[int] = 0

    def __post_init__(self) -> None:
        data = bytes(self.data)
        object.__setattr__(self, "data", data)
        if len(data) < 2 or data[0] != len(data):
            raise DescriptorError(
                f"RawDescriptor: bLength byte is {data[0] if data else 'missing'} but the descriptor has "
                f"{len(data)} bytes"
            )

    @property
    def type(self) -> int:
        return self.data[1]

    def to_bytes(self) -> bytes:
        return self.data


class Remaining(construct.Construct):  # type: ignore[misc]
    """A layout field holding as many ``item`` values as the descriptor's length leaves room for.

    For variable-length tails whose count no other field gives: a UAC2 feature unit's
    ``bmaControls`` (one per channel, then ``iFeature``: ``Remaining(Int32ul, after=1)``),
    a CDC union's subordinate interfaces (``Remaining(Int8ul)``).  When building it
    writes every item of the value; when parsing it reads ``(rest - after) / size``
    items, where ``rest`` is what is left of the descriptor before the last ``after``
    bytes.  Only :class:`ClassSpecificDescriptor` parses with the length it needs.
    """

    def __init__(self, item: Any, *, after: int = 0) -> None:
        super().__init__()
        self.item = item
        self.after = after
        self.item_size = item.sizeof()

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        total = context._params.body_length
        room = total - construct.stream_tell(stream, path) - self.after
        count, extra = divmod(room, self.item_size)
        if room < 0 or extra:
            raise construct.ConstructError(
                f"{room} bytes left for items of {self.item_size} bytes (then {self.after} more)", path=path)
        return construct.ListContainer(self.item._parsereport(stream, context, path) for _ in range(count))

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        for value in obj:
            self.item._build(value, stream, context, path)
        return obj

    def _sizeof(self, context: Any, path: str) -> int:
        raise construct.SizeofError("a Remaining field has no fixed size", path=path)


@dataclass(frozen=True)
class ClassSpecificDescriptor(Descriptor):
    """A class-specific descriptor declared once: its type, subtype and ``construct`` layout.

    A subclass is a frozen dataclass whose fields are the layout's fields, by the same
    names, in any order; ``bLength`` (and the type and subtype bytes) are never given::

        @dataclass(frozen=True)
        class FeatureUnit(ClassSpecificDescriptor):        # USB Audio 2.0 section 4.7.2.8
            descriptor_type = DescriptorType.CS_INTERFACE
            subtype = 0x06
            layout = Struct("unit_id" / Int8ul, "source_id" / Int8ul,
                            "controls" / Remaining(Int32ul, after=1), "name_index" / Int8ul)
            unit_id: int
            source_id: int
            controls: tuple[int, ...]
            name_index: int = 0

    ``to_bytes()`` writes ``bLength``, ``bDescriptorType``, ``bDescriptorSubtype``
    (omitted when :attr:`subtype` is None, as in a DFU functional descriptor) and the
    layout; :meth:`parse` reads them back and checks the header and the length.  A
    value the layout cannot hold (300 in a byte) raises
    :class:`~vusb.errors.DescriptorError` when the descriptor is created, naming the
    class; lists become tuples, so a descriptor is immutable and hashable.  Override
    :meth:`wire_values` and :meth:`from_wire` for fields that are not plain copies (a
    count the class computes, packed bits); a subclass with its own checks defines
    ``__post_init__`` and calls ``super().__post_init__()`` first.

    Instances go in ``InterfaceDescriptor(extra=...)``, or in the ``extra=`` of
    ``ctx.endpoint_in()``/``ctx.endpoint_out()`` for class-specific endpoint descriptors.
    """

    descriptor_type: ClassVar[int] = DescriptorType.CS_INTERFACE
    """bDescriptorType: CS_INTERFACE (0x24), CS_ENDPOINT (0x25) or a class's own type (DFU functional: 0x21)."""
    subtype: ClassVar[int | None] = None
    """bDescriptorSubtype, or None for a descriptor that has none."""
    layout: ClassVar[Any]
    """The ``construct`` layout of the bytes after the header; its field names are the dataclass's."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.to_bytes()  # checks every value against the layout, and the length, once

    @property
    def header_size(self) -> int:
        """bLength, bDescriptorType and, if there is one, bDescriptorSubtype: 2 or 3 bytes."""
        return 2 if self.subtype is None else 3

    def wire_values(self) -> dict[str, Any]:
        """The values the layout is built from, by layout field name (the dataclass fields by default)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, parsed: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments read from a parsed layout (the dataclass fields by default)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.init and f.name in parsed:
                value = parsed[f.name]
                out[f.name] = tuple(value) if isinstance(value, list) else value
        return out

    def body(self) -> bytes:
        """The bytes after the header."""
        try:
            return bytes(self.layout.build(self.wire_values()))
        except (construct.ConstructError, TypeError, ValueError, KeyError) as exc:
            raise DescriptorError(f"{type(self).__name__}: a value does not fit the layout: {exc}") from None

    def to_bytes(self) -> bytes:
        body = self.body()
        size = len(body) + self.header_size
        if size > 255:
            raise DescriptorError(f"{type(self).__name__}: {size} bytes do not fit in bLength (255 at most)")
        head = (size, self.descriptor_type)
        return bytes(head if self.subtype is None else (*head, self.subtype)) + body

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Self:
        """Read one descriptor of this class; raises DescriptorError naming what is wrong."""
        data, name = bytes(data), cls.__name__
        head = 2 if cls.subtype is None else 3
        if len(data) < head:
            raise DescriptorError(f"{name}: {len(data)} bytes is too short for a descriptor")
        if data[1] != cls.descriptor_type:
            raise DescriptorError(f"{name}: bDescriptorType is 0x{data[1]:02x}, expected 0x{cls.descriptor_type:02x}")
        if cls.subtype is not None and data[2] != cls.subtype:
            raise DescriptorError(f"{name}: bDescriptorSubtype is 0x{data[2]:02x}, expected 0x{cls.subtype:02x}")
        if not head <= data[0] <= len(data):
            raise DescriptorError(f"{name}: bLength {data[0]} is invalid (have {len(data)} bytes)")
        body = data[head : data[0]]
        try:
            parsed = cls.layout.parse(body, body_length=len(body))
            used = len(cls.layout.build(parsed))
        except construct.ConstructError as exc:
            raise DescriptorError(f"{name}: bLength {data[0]} does not match the layout: {exc}") from None
        if used != len(body):
            raise DescriptorError(f"{name}: bLength {data[0]} does not match the layout ({head + used} bytes)")
        return cls(**cls.from_wire(parsed))


def valid_max_packet_sizes(transfer: TransferType, speed: Speed) -> str:
    """Describe the legal wMaxPacketSize values, for error messages."""
    rules = {
        (TransferType.CONTROL, Speed.LOW): "8",
        (TransferType.CONTROL, Speed.FULL): "8, 16, 32 or 64",
        (TransferType.CONTROL, Speed.HIGH): "64",
        (TransferType.CONTROL, Speed.SUPER): "512",
        (TransferType.BULK, Speed.LOW): "nothing (bulk is not allowed at low speed)",
        (TransferType.BULK, Speed.FULL): "8, 16, 32 or 64",
        (TransferType.BULK, Speed.HIGH): "512",
        (TransferType.BULK, Speed.SUPER): "1024",
        (TransferType.INTERRUPT, Speed.LOW): "1..8",
        (TransferType.INTERRUPT, Speed.FULL): "1..64",
        (TransferType.INTERRUPT, Speed.HIGH): "1..1024 (with up to 2 extra transactions)",
        (TransferType.INTERRUPT, Speed.SUPER): "1..1024",
        (TransferType.ISOCHRONOUS, Speed.LOW): "nothing (isochronous is not allowed at low speed)",
        (TransferType.ISOCHRONOUS, Speed.FULL): "0..1023",
        (TransferType.ISOCHRONOUS, Speed.HIGH): "0..1024 (with up to 2 extra transactions)",
        (TransferType.ISOCHRONOUS, Speed.SUPER): "0..1024",
    }
    return rules[(transfer, speed)]


def _max_packet_ok(transfer: TransferType, speed: Speed, wmax: int) -> bool:
    size = wmax & 0x7FF
    mult = (wmax >> 11) & 0x3
    if wmax >> 13:
        return False
    if mult and not (speed == Speed.HIGH and transfer in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS)):
        return False
    if mult == 3:
        return False
    if transfer == TransferType.CONTROL:
        return size in {Speed.LOW: (8,), Speed.FULL: (8, 16, 32, 64), Speed.HIGH: (64,), Speed.SUPER: (512,)}[speed]
    if transfer == TransferType.BULK:
        return size in {Speed.LOW: (), Speed.FULL: (8, 16, 32, 64), Speed.HIGH: (512,), Speed.SUPER: (1024,)}[speed]
    if transfer == TransferType.INTERRUPT:
        hi = {Speed.LOW: 8, Speed.FULL: 64, Speed.HIGH: 1024, Speed.SUPER: 1024}[speed]
        return 1 <= size <= hi
    hi = {Speed.LOW: -1, Speed.FULL: 1023, Speed.HIGH: 1024, Speed.SUPER: 1024}[speed]
    return 0 <= size <= hi


@dataclass(frozen=True)
class SuperSpeedEndpointCompanion(_Mapped):
    """SuperSpeed endpoint companion (USB 3.2 section 9.6.7)."""

    max_burst: int = 0
    attributes: int = 0
    bytes_per_interval: int = 0
    descriptor_type: ClassVar[int] = DescriptorType.SUPERSPEED_ENDPOINT_COMPANION
    wire: ClassVar[WireMap] = WireMap(
        layouts.SS_ENDPOINT_COMPANION,
        {"max_burst": "bMaxBurst", "attributes": "bmAttributes", "bytes_per_interval": "wBytesPerInterval"},
    )

    def __post_init__(self) -> None:
        _check_range("SuperSpeedEndpointCompanion", "max_burst", self.max_burst, 0, 15)
        _u8("SuperSpeedEndpointCompanion", "attributes", self.attributes)
        _u16("SuperSpeedEndpointCompanion", "bytes_per_interval", self.bytes_per_interval)


@dataclass(frozen=True)
class EndpointDescriptor(_Mapped):
    """Endpoint descriptor (USB 2.0 section 9.6.6).

    ``address`` carries the direction in bit 7 (0x81 is EP1 IN).  ``companion`` is
    required for SuperSpeed devices.  ``extra`` holds class-specific endpoint
    descriptors that follow it; ``trailing`` keeps bytes of an extended endpoint
    descriptor (audio class bRefresh/bSynchAddress) so parsing round-trips.
    """

    address: int
    transfer_type: TransferType
    max_packet_size: int
    interval: int = 0
    attributes_extra: int = 0  # bits 2..5 of bmAttributes: sync and usage types
    companion: SuperSpeedEndpointCompanion | None = None
    extra: tuple[Descriptor, ...] = ()
    trailing: bytes = b""
    descriptor_type: ClassVar[int] = DescriptorType.ENDPOINT
    # bmAttributes packs transfer_type and attributes_extra (see the ``attributes`` property).
    wire: ClassVar[WireMap] = WireMap(
        layouts.ENDPOINT,
        {"address": "bEndpointAddress", "max_packet_size": "wMaxPacketSize", "interval": "bInterval"},
        computed=("bmAttributes",),
    )

    def __post_init__(self) -> None:
        _u8("EndpointDescriptor", "address", self.address)
        if self.address & 0x70:
            raise DescriptorError(f"EndpointDescriptor.address 0x{self.address:02x} sets reserved bits 4..6")
        if self.number == 0:
            raise DescriptorError("EndpointDescriptor.address: endpoint 0 is the default control pipe and has no descriptor")
        object.__setattr__(self, "transfer_type", TransferType(self.transfer_type))
        _u16("EndpointDescriptor", "max_packet_size", self.max_packet_size)
        _u8("EndpointDescriptor", "interval", self.interval)
        if self.attributes_extra & ~0x3C:
            raise DescriptorError("EndpointDescriptor.attributes_extra may only set bits 2..5 (sync/usage type)")
        object.__setattr__(self, "extra", tuple(self.extra))
        object.__setattr__(self, "trailing", bytes(self.trailing))

    @property
    def number(self) -> int:
        return self.address & 0x0F

    @property
    def is_in(self) -> bool:
        return bool(self.address & 0x80)

    @property
    def attributes(self) -> int:
        return int(self.transfer_type) | self.attributes_extra

    def validate_for_speed(self, speed: Speed, where: str) -> None:
        if not _max_packet_ok(self.transfer_type, speed, self.max_packet_size):
            raise DescriptorError(
                f"{where}: wMaxPacketSize {self.max_packet_size} is illegal for a {self.transfer_type.name.lower()} "
                f"endpoint at {speed.name.lower()} speed (allowed: {valid_max_packet_sizes(self.transfer_type, speed)})"
            )
        if self.transfer_type in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS):
            if speed in (Speed.HIGH, Speed.SUPER) or self.transfer_type == TransferType.ISOCHRONOUS:
                if not 1 <= self.interval <= 16:
                    raise DescriptorError(
                        f"{where}: bInterval {self.interval} must be 1..16 (2^(n-1) (micro)frames) "
                        f"for this endpoint at {speed.name.lower()} speed"
                    )
            elif self.interval < 1:
                raise DescriptorError(f"{where}: bInterval must be 1..255 ms for an interrupt endpoint")
        if speed == Speed.SUPER and self.companion is None:
            raise DescriptorError(f"{where}: a SuperSpeed endpoint needs a SuperSpeedEndpointCompanion")
        if speed != Speed.SUPER and self.companion is not None:
            raise DescriptorError(f"{where}: endpoint companion descriptors are only for SuperSpeed devices")

    def to_bytes(self) -> bytes:
        parts = [self._build({"bmAttributes": self.attributes}, self.trailing)]
        if self.companion is not None:
            parts.append(self.companion.to_bytes())
        parts.extend(d.to_bytes() for d in self.extra)
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse the endpoint descriptor itself (companion and extras are attached by the configuration parser)."""
        values, p, trailing = cls._read(data)
        return cls(
            **values,
            transfer_type=TransferType(p.bmAttributes & 3),
            attributes_extra=p.bmAttributes & 0x3C,
            trailing=trailing,
        )


@dataclass(frozen=True)
class HidDescriptor(_Mapped):
    """HID class descriptor (HID 1.11 section 6.2.1)."""

    report_length: int
    hid_version: int = 0x0111
    country_code: int = 0
    other: tuple[tuple[int, int], ...] = ()  # further (bDescriptorType, wDescriptorLength)
    descriptor_type: ClassVar[int] = DescriptorType.HID
    # The descriptors array holds report_length (as type 0x22) followed by ``other``.
    wire: ClassVar[WireMap] = WireMap(
        layouts.HID,
        {"hid_version": "bcdHID", "country_code": "bCountryCode"},
        computed=("bNumDescriptors", "descriptors"),
    )

    def __post_init__(self) -> None:
        _u16("HidDescriptor", "report_length", self.report_length)
        _check_bcd("HidDescriptor", "hid_version", self.hid_version)
        _u8("HidDescriptor", "country_code", self.country_code)
        object.__setattr__(self, "other", tuple(tuple(o) for o in self.other))

    def to_bytes(self) -> bytes:
        descs = [{"bDescriptorType": DescriptorType.HID_REPORT, "wDescriptorLength": self.report_length}]
        descs += [{"bDescriptorType": t, "wDescriptorLength": n} for t, n in self.other]
        return self._build({"bNumDescriptors": len(descs), "descriptors": descs})

    @classmethod
    def parse(cls, data: bytes) -> Self:
        # The body has a variable length, so the fixed-size checks of _read do not apply.
        if len(data) < 9 or data[1] != DescriptorType.HID or data[0] > len(data):
            raise DescriptorError("HidDescriptor: not a HID descriptor of at least 9 bytes")
        p = cls.wire.layout.parse(data[2 : data[0]])
        descs = [(d.bDescriptorType, d.wDescriptorLength) for d in p.descriptors]
        report = next((n for t, n in descs if t == DescriptorType.HID_REPORT), 0)
        others = tuple((t, n) for t, n in descs if t != DescriptorType.HID_REPORT)
        return cls(report_length=report, other=others, **cls.wire.from_wire(p))


@dataclass(frozen=True)
class InterfaceDescriptor(_Mapped):
    """One alternate setting of an interface (USB 2.0 section 9.6.5)."""

    number: int
    alternate: int = 0
    interface_class: int = 0
    interface_subclass: int = 0
    interface_protocol: int = 0
    name_index: int = 0
    endpoints: tuple[EndpointDescriptor, ...] = ()
    extra: tuple[Descriptor, ...] = ()  # class descriptors between interface and endpoints
    trailing: bytes = b""
    descriptor_type: ClassVar[int] = DescriptorType.INTERFACE
    # bNumEndpoints is len(endpoints).
    wire: ClassVar[WireMap] = WireMap(
        layouts.INTERFACE,
        {
            "number": "bInterfaceNumber",
            "alternate": "bAlternateSetting",
            "interface_class": "bInterfaceClass",
            "interface_subclass": "bInterfaceSubClass",
            "interface_protocol": "bInterfaceProtocol",
            "name_index": "iInterface",
        },
        computed=("bNumEndpoints",),
    )

    def __post_init__(self) -> None:
        owner = "InterfaceDescriptor"
        _u8(owner, "number", self.number)
        _u8(owner, "alternate", self.alternate)
        _u8(owner, "interface_class", self.interface_class)
        _u8(owner, "interface_subclass", self.interface_subclass)
        _u8(owner, "interface_protocol", self.interface_protocol)
        _u8(owner, "name_index", self.name_index)
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        object.__setattr__(self, "extra", tuple(self.extra))
        object.__setattr__(self, "trailing", bytes(self.trailing))
        seen: set[int] = set()
        for ep in self.endpoints:
            if ep.address in seen:
                raise DescriptorError(
                    f"interface {self.number} alternate {self.alternate}: duplicate endpoint address 0x{ep.address:02x}"
                )
            seen.add(ep.address)
        if len(self.endpoints) > 30:
            raise DescriptorError(f"interface {self.number}: at most 30 endpoints, got {len(self.endpoints)}")

    def to_bytes(self) -> bytes:
        head = self._build({"bNumEndpoints": len(self.endpoints)}, self.trailing)
        return head + b"".join(d.to_bytes() for d in self.extra) + b"".join(e.to_bytes() for e in self.endpoints)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        """Parse the interface descriptor itself (extras and endpoints are attached by the configuration parser)."""
        values, _, trailing = cls._read(data)
        return cls(**values, trailing=trailing)


@dataclass(frozen=True)
class InterfaceAssociation(_Mapped):
    """Interface association descriptor (IAD, USB 2.0 ECN)."""

    first_interface: int
    interface_count: int
    function_class: int
    function_subclass: int = 0
    function_protocol: int = 0
    name_index: int = 0
    descriptor_type: ClassVar[int] = DescriptorType.INTERFACE_ASSOCIATION
    wire: ClassVar[WireMap] = WireMap(
        layouts.INTERFACE_ASSOCIATION,
        {
            "first_interface": "bFirstInterface",
            "interface_count": "bInterfaceCount",
            "function_class": "bFunctionClass",
            "function_subclass": "bFunctionSubClass",
            "function_protocol": "bFunctionProtocol",
            "name_index": "iFunction",
        },
    )

    def __post_init__(self) -> None:
        for name in ("first_interface", "function_class", "function_subclass", "function_protocol", "name_index"):
            _u8("InterfaceAssociation", name, getattr(self, name))
        _check_range("InterfaceAssociation", "interface_count", self.interface_count, 1, 0xFF)


@dataclass(frozen=True)
class ConfigurationDescriptor(Descriptor):
    """A configuration with its whole descriptor tree (USB 2.0 section 9.6.3).

    ``interfaces`` lists every alternate setting of every interface.  ``wTotalLength``
    and ``bNumInterfaces`` are computed.  ``associations`` are emitted just before
    their first interface.  ``max_power_ma`` is in milliamperes.
    """

    value: int = 1
    interfaces: tuple[InterfaceDescriptor, ...] = ()
    associations: tuple[InterfaceAssociation, ...] = ()
    self_powered: bool = False
    remote_wakeup: bool = False
    max_power_ma: int = 100
    name_index: int = 0
    extra: tuple[Descriptor, ...] = ()  # descriptors between the configuration and the first interface
    power_unit_ma: int = 2  # 2 mA below SuperSpeed, 8 mA at SuperSpeed
    descriptor_type: ClassVar[int] = DescriptorType.CONFIGURATION
    # The layout is the whole 9-byte header; bmAttributes packs the power flags, bMaxPower is in power units.
    wire: ClassVar[WireMap] = WireMap(
        layouts.CONFIGURATION,
        {"value": "bConfigurationValue", "name_index": "iConfiguration"},
        computed=("bLength", "bDescriptorType", "wTotalLength", "bNumInterfaces", "bmAttributes", "bMaxPower"),
    )

    def __post_init__(self) -> None:
        owner = "ConfigurationDescriptor"
        _check_range(owner, "value", self.value, 1, 0xFF)
        _u8(owner, "name_index", self.name_index)
        object.__setattr__(self, "interfaces", tuple(self.interfaces))
        object.__setattr__(self, "associations", tuple(self.associations))
        object.__setattr__(self, "extra", tuple(self.extra))
        if self.power_unit_ma not in (2, 8):
            raise DescriptorError(f"{owner}.power_unit_ma must be 2 or 8, got {self.power_unit_ma}")
        if self.max_power_ma % self.power_unit_ma or not 0 <= self.max_power_ma <= 255 * self.power_unit_ma:
            raise DescriptorError(
                f"{owner}.max_power_ma = {self.max_power_ma} must be a multiple of {self.power_unit_ma} "
                f"up to {255 * self.power_unit_ma}"
            )
        seen: set[tuple[int, int]] = set()
        owner_of_ep: dict[int, int] = {}
        for itf in self.interfaces:
            key = (itf.number, itf.alternate)
            if key in seen:
                raise DescriptorError(f"configuration {self.value}: interface {itf.number} alternate {itf.alternate} is defined twice")
            seen.add(key)
            for ep in itf.endpoints:
                other = owner_of_ep.setdefault(ep.address, itf.number)
                if other != itf.number:
                    raise DescriptorError(
                        f"configuration {self.value}: endpoint address 0x{ep.address:02x} is used by interfaces "
                        f"{other} and {itf.number}"
                    )
        numbers = sorted({n for n, _ in seen})
        for n in numbers:
            alts = sorted(a for m, a in seen if m == n)
            if alts != list(range(len(alts))):
                raise DescriptorError(f"configuration {self.value}: interface {n} has alternate settings {alts}, expected 0..{len(alts) - 1}")
        for iad in self.associations:
            span = range(iad.first_interface, iad.first_interface + iad.interface_count)
            missing = [n for n in span if n not in numbers]
            if missing:
                raise DescriptorError(f"interface association starting at {iad.first_interface} names missing interfaces {missing}")

    @property
    def num_interfaces(self) -> int:
        return len({i.number for i in self.interfaces})

    @property
    def attributes(self) -> int:
        return 0x80 | (0x40 if self.self_powered else 0) | (0x20 if self.remote_wakeup else 0)

    def interface(self, number: int, alternate: int = 0) -> InterfaceDescriptor | None:
        for itf in self.interfaces:
            if itf.number == number and itf.alternate == alternate:
                return itf
        return None

    def alternates(self, number: int) -> list[InterfaceDescriptor]:
        return [i for i in self.interfaces if i.number == number]

    def _body(self) -> bytes:
        parts: list[bytes] = [d.to_bytes() for d in self.extra]
        iads = {a.first_interface: a for a in self.associations}
        for itf in self.interfaces:
            if itf.alternate == 0 and itf.number in iads:
                parts.append(iads.pop(itf.number).to_bytes())
            parts.append(itf.to_bytes())
        return b"".join(parts)

    def to_bytes(self, descriptor_type: int = DescriptorType.CONFIGURATION) -> bytes:
        """Build the full tree; pass ``OTHER_SPEED_CONFIGURATION`` for that variant."""
        body = self._body()
        head: bytes = self.wire.layout.build(
            self.wire.to_wire(self)
            | {
                "bLength": 9,
                "bDescriptorType": descriptor_type,
                "wTotalLength": 9 + len(body),
                "bNumInterfaces": self.num_interfaces,
                "bmAttributes": self.attributes,
                "bMaxPower": self.max_power_ma // self.power_unit_ma,
            }
        )
        total = len(head) + len(body)
        if total > 0xFFFF:
            raise DescriptorError(f"configuration {self.value}: total length {total} exceeds 65535 bytes")
        return head + body

    @classmethod
    def parse(cls, data: bytes, *, speed: Speed | None = None) -> Self:
        """Parse a full configuration tree (as returned for GET_DESCRIPTOR(CONFIGURATION, wTotalLength))."""
        if len(data) < 9 or data[1] not in (DescriptorType.CONFIGURATION, DescriptorType.OTHER_SPEED_CONFIGURATION):
            raise DescriptorError("ConfigurationDescriptor: not a configuration descriptor")
        head = cls.wire.layout.parse(data[:9])
        if head.wTotalLength > len(data):
            raise DescriptorError(f"ConfigurationDescriptor: wTotalLength {head.wTotalLength} but only {len(data)} bytes")
        items = list(iter_descriptors(data[head.bLength : head.wTotalLength], "configuration"))
        unit = 8 if speed == Speed.SUPER else 2
        extra: list[Descriptor] = []
        iads: list[InterfaceAssociation] = []
        interfaces: list[InterfaceDescriptor] = []
        cur_itf: dict[str, Any] | None = None
        cur_eps: list[dict[str, Any]] = []

        def close_interface() -> None:
            nonlocal cur_itf, cur_eps
            if cur_itf is None:
                return
            eps = tuple(
                dataclasses.replace(e["ep"], companion=e["companion"], extra=tuple(e["extra"])) for e in cur_eps
            )
            interfaces.append(dataclasses.replace(cur_itf["itf"], endpoints=eps, extra=tuple(cur_itf["extra"])))
            cur_itf, cur_eps = None, []

        for dtype, raw in items:
            if dtype == DescriptorType.INTERFACE:
                close_interface()
                cur_itf = {"itf": InterfaceDescriptor.parse(raw), "extra": []}
            elif dtype == DescriptorType.ENDPOINT and cur_itf is not None:
                cur_eps.append({"ep": EndpointDescriptor.parse(raw), "companion": None, "extra": []})
            elif dtype == DescriptorType.SUPERSPEED_ENDPOINT_COMPANION and cur_eps and cur_eps[-1]["companion"] is None and not cur_eps[-1]["extra"]:
                cur_eps[-1]["companion"] = SuperSpeedEndpointCompanion.parse(raw)
            elif dtype == DescriptorType.INTERFACE_ASSOCIATION and len(raw) == 8:
                close_interface()
                iads.append(InterfaceAssociation.parse(raw))
            else:
                desc: Descriptor = RawDescriptor(raw)
                if dtype == DescriptorType.HID and cur_itf is not None and not cur_eps:
                    try:
                        hid = HidDescriptor.parse(raw)
                        if hid.to_bytes() == raw:
                            desc = hid
                    except Exception:  # noqa: BLE001 - keep unknown HID variants as raw bytes
                        pass
                if cur_eps:
                    cur_eps[-1]["extra"].append(desc)
                elif cur_itf is not None:
                    cur_itf["extra"].append(desc)
                else:
                    extra.append(desc)
        close_interface()
        try:
            return cls(
                **cls.wire.from_wire(head),
                interfaces=tuple(interfaces),
                associations=tuple(iads),
                self_powered=bool(head.bmAttributes & 0x40),
                remote_wakeup=bool(head.bmAttributes & 0x20),
                max_power_ma=head.bMaxPower * unit,
                extra=tuple(extra),
                power_unit_ma=unit,
            )
        except DescriptorError as exc:
            raise DescriptorError(f"ConfigurationDescriptor: {exc}") from exc


@dataclass(frozen=True)
class DeviceDescriptor(_Mapped):
    """Device descriptor (USB 2.0 section 9.6.1)."""

    vendor_id: int
    product_id: int
    device_version: int = 0x0100
    usb_version: int = 0x0200
    device_class: int = 0
    device_subclass: int = 0
    device_protocol: int = 0
    max_packet_size0: int = 64
    manufacturer_index: int = 0
    product_index: int = 0
    serial_number_index: int = 0
    num_configurations: int = 1
    descriptor_type: ClassVar[int] = DescriptorType.DEVICE
    wire: ClassVar[WireMap] = WireMap(
        layouts.DEVICE,
        {
            "vendor_id": "idVendor",
            "product_id": "idProduct",
            "device_version": "bcdDevice",
            "usb_version": "bcdUSB",
            "device_class": "bDeviceClass",
            "device_subclass": "bDeviceSubClass",
            "device_protocol": "bDeviceProtocol",
            "max_packet_size0": "bMaxPacketSize0",
            "manufacturer_index": "iManufacturer",
            "product_index": "iProduct",
            "serial_number_index": "iSerialNumber",
            "num_configurations": "bNumConfigurations",
        },
    )

    def __post_init__(self) -> None:
        owner = "DeviceDescriptor"
        _u16(owner, "vendor_id", self.vendor_id)
        _u16(owner, "product_id", self.product_id)
        _check_bcd(owner, "device_version", self.device_version)
        _check_bcd(owner, "usb_version", self.usb_version)
        for name in ("device_class", "device_subclass", "device_protocol", "manufacturer_index",
                     "product_index", "serial_number_index"):
            _u8(owner, name, getattr(self, name))
        _check_range(owner, "num_configurations", self.num_configurations, 1, 0xFF)
        if self.max_packet_size0 not in (8, 16, 32, 64, 9):
            raise DescriptorError(f"{owner}.max_packet_size0 = {self.max_packet_size0}: must be 8, 16, 32, 64 (or 9 for USB 3)")

    def validate_for_speed(self, speed: Speed) -> None:
        allowed = {Speed.LOW: (8,), Speed.FULL: (8, 16, 32, 64), Speed.HIGH: (64,), Speed.SUPER: (9,)}[speed]
        if self.max_packet_size0 not in allowed:
            raise DescriptorError(
                f"DeviceDescriptor.max_packet_size0 = {self.max_packet_size0} is wrong for {speed.name.lower()} "
                f"speed (must be {' or '.join(map(str, allowed))})"
            )
        if speed == Speed.SUPER and self.usb_version < 0x0300:
            raise DescriptorError(f"DeviceDescriptor.usb_version 0x{self.usb_version:04x}: SuperSpeed needs bcdUSB >= 0x0300")
        if speed != Speed.SUPER and self.usb_version >= 0x0300:
            raise DescriptorError(f"DeviceDescriptor.usb_version 0x{self.usb_version:04x} is USB 3 but the speed is {speed.name.lower()}")
        if speed == Speed.HIGH and self.usb_version < 0x0200:
            raise DescriptorError(f"DeviceDescriptor.usb_version 0x{self.usb_version:04x}: high speed needs bcdUSB >= 0x0200")


@dataclass(frozen=True)
class DeviceQualifierDescriptor(_Mapped):
    """Device qualifier (USB 2.0 section 9.6.2): how the device would look at the other speed."""

    usb_version: int = 0x0200
    device_class: int = 0
    device_subclass: int = 0
    device_protocol: int = 0
    max_packet_size0: int = 64
    num_configurations: int = 1
    descriptor_type: ClassVar[int] = DescriptorType.DEVICE_QUALIFIER
    wire: ClassVar[WireMap] = WireMap(
        layouts.DEVICE_QUALIFIER,
        {
            "usb_version": "bcdUSB",
            "device_class": "bDeviceClass",
            "device_subclass": "bDeviceSubClass",
            "device_protocol": "bDeviceProtocol",
            "max_packet_size0": "bMaxPacketSize0",
            "num_configurations": "bNumConfigurations",
        },
    )

    def __post_init__(self) -> None:
        _check_bcd("DeviceQualifierDescriptor", "usb_version", self.usb_version)
        for name in ("device_class", "device_subclass", "device_protocol", "num_configurations"):
            _u8("DeviceQualifierDescriptor", name, getattr(self, name))
        if self.max_packet_size0 not in (8, 16, 32, 64):
            raise DescriptorError(f"DeviceQualifierDescriptor.max_packet_size0 = {self.max_packet_size0}: must be 8, 16, 32 or 64")

    @classmethod
    def for_device(cls, device: DeviceDescriptor) -> DeviceQualifierDescriptor:
        """The usual qualifier: same identity, full-speed EP0 of 64 bytes."""
        return DeviceQualifierDescriptor(
            device.usb_version, device.device_class, device.device_subclass, device.device_protocol, 64,
            device.num_configurations,
        )


@dataclass(frozen=True)
class StringDescriptor(Descriptor):
    """A string descriptor: text encoded as UTF-16LE, at most 126 code units."""

    text: str
    descriptor_type: ClassVar[int] = DescriptorType.STRING

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise DescriptorError(f"StringDescriptor.text must be a str, not {type(self.text).__name__}")
        units = len(self.text.encode("utf-16-le")) // 2
        if units > 126:
            raise DescriptorError(
                f"string {self.text[:20]!r}... is {units} UTF-16 code units long; a string descriptor holds at most 126"
            )

    def to_bytes(self) -> bytes:
        body = self.text.encode("utf-16-le")
        return bytes((len(body) + 2, self.descriptor_type)) + body

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) < 2 or data[1] != DescriptorType.STRING or data[0] > len(data) or data[0] % 2:
            raise DescriptorError("StringDescriptor: malformed string descriptor")
        return cls(data[2 : data[0]].decode("utf-16-le", errors="replace"))


@dataclass(frozen=True)
class LanguageTable(Descriptor):
    """String descriptor zero: the supported LANGIDs."""

    languages: tuple[int, ...] = (LANG_EN_US,)
    descriptor_type: ClassVar[int] = DescriptorType.STRING

    def __post_init__(self) -> None:
        object.__setattr__(self, "languages", tuple(self.languages))
        if not 1 <= len(self.languages) <= 126:
            raise DescriptorError("LanguageTable: needs 1..126 language ids")
        for lang in self.languages:
            _u16("LanguageTable", "languages[]", lang)

    def to_bytes(self) -> bytes:
        body = b"".join(lang.to_bytes(2, "little") for lang in self.languages)
        return bytes((len(body) + 2, self.descriptor_type)) + body

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) < 4 or data[1] != DescriptorType.STRING or data[0] > len(data) or data[0] % 2:
            raise DescriptorError("LanguageTable: malformed string descriptor 0")
        return cls(tuple(int.from_bytes(data[i : i + 2], "little") for i in range(2, data[0], 2)))


class DeviceCapability(Descriptor):
    """A BOS device capability."""

    descriptor_type: ClassVar[int] = DescriptorType.DEVICE_CAPABILITY
    capability_type: ClassVar[int]


class _MappedCapability(DeviceCapability, _Mapped):
    """A capability with a fixed layout; its bDevCapabilityType is the class's ``capability_type``."""

    def to_bytes(self) -> bytes:
        return self._build({"bDevCapabilityType": self.capability_type})

    @classmethod
    def parse(cls, data: bytes) -> Self:
        values, p, _ = cls._read(data)
        if p.bDevCapabilityType != cls.capability_type:
            raise DescriptorError(
                f"{cls.__name__}: bDevCapabilityType is {p.bDevCapabilityType}, expected {cls.capability_type}"
            )
        return cls(**values)


@dataclass(frozen=True)
class Usb2Extension(_MappedCapability):
    """USB 2.0 Extension capability (type 2); bit 1 of attributes announces LPM."""

    attributes: int = 0
    capability_type: ClassVar[int] = 2
    wire: ClassVar[WireMap] = WireMap(
        layouts.USB2_EXTENSION, {"attributes": "bmAttributes"}, computed=("bDevCapabilityType",)
    )

    def __post_init__(self) -> None:
        _u32("Usb2Extension", "attributes", self.attributes)


@dataclass(frozen=True)
class SuperSpeedCapability(_MappedCapability):
    """SuperSpeed USB device capability (type 3)."""

    attributes: int = 0
    speeds_supported: int = 0x000E  # full, high, super
    functionality_support: int = 1  # lowest speed with full functionality: full
    u1_exit_latency: int = 0x0A
    u2_exit_latency: int = 0x07FF
    capability_type: ClassVar[int] = 3
    wire: ClassVar[WireMap] = WireMap(
        layouts.SUPERSPEED_CAPABILITY,
        {
            "attributes": "bmAttributes",
            "speeds_supported": "wSpeedsSupported",
            "functionality_support": "bFunctionalitySupport",
            "u1_exit_latency": "bU1DevExitLat",
            "u2_exit_latency": "wU2DevExitLat",
        },
        computed=("bDevCapabilityType",),
    )

    def __post_init__(self) -> None:
        _u8("SuperSpeedCapability", "attributes", self.attributes)
        _u16("SuperSpeedCapability", "speeds_supported", self.speeds_supported)
        _u8("SuperSpeedCapability", "functionality_support", self.functionality_support)
        _u8("SuperSpeedCapability", "u1_exit_latency", self.u1_exit_latency)
        _u16("SuperSpeedCapability", "u2_exit_latency", self.u2_exit_latency)


@dataclass(frozen=True)
class RawCapability(DeviceCapability):
    """Any other capability, given as its bytes (bDevCapabilityType onwards is in ``data``)."""

    data: bytes = b"\x00"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", bytes(self.data))
        if not 1 <= len(self.data) <= 253:
            raise DescriptorError("RawCapability.data must hold 1..253 bytes starting with bDevCapabilityType")

    def to_bytes(self) -> bytes:
        return bytes((len(self.data) + 2, self.descriptor_type)) + self.data


_KNOWN_CAPABILITIES: dict[int, type[_MappedCapability]] = {
    c.capability_type: c for c in (Usb2Extension, SuperSpeedCapability)
}


@dataclass(frozen=True)
class BosDescriptor(Descriptor):
    """Binary device Object Store (USB 3.2 section 9.6.2) with its capabilities."""

    capabilities: tuple[DeviceCapability, ...] = ()
    descriptor_type: ClassVar[int] = DescriptorType.BOS
    # The layout is the whole 5-byte header, and every field of it is computed.
    wire: ClassVar[WireMap] = WireMap(
        layouts.BOS, {}, computed=("bLength", "bDescriptorType", "wTotalLength", "bNumDeviceCaps")
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", tuple(self.capabilities))
        if len(self.capabilities) > 255:
            raise DescriptorError("BosDescriptor: at most 255 capabilities")

    def to_bytes(self) -> bytes:
        body = b"".join(c.to_bytes() for c in self.capabilities)
        head: bytes = self.wire.layout.build(
            {"bLength": 5, "bDescriptorType": self.descriptor_type, "wTotalLength": 5 + len(body),
             "bNumDeviceCaps": len(self.capabilities)}
        )
        return head + body

    @classmethod
    def parse(cls, data: bytes) -> Self:
        if len(data) < 5 or data[1] != DescriptorType.BOS:
            raise DescriptorError("BosDescriptor: not a BOS descriptor")
        head = cls.wire.layout.parse(data[:5])
        caps: list[DeviceCapability] = []
        for dtype, raw in iter_descriptors(data[5 : head.wTotalLength], "BOS"):
            if dtype != DescriptorType.DEVICE_CAPABILITY or len(raw) < 3:
                raise DescriptorError(f"BosDescriptor: unexpected descriptor type 0x{dtype:02x} inside BOS")
            # A known capability of exactly its size is parsed; anything else is kept as its bytes.
            known = _KNOWN_CAPABILITIES.get(raw[2])
            if known is not None and len(raw) == 2 + known.wire.layout.sizeof():
                caps.append(known.parse(raw))
            else:
                caps.append(RawCapability(raw[2:]))
        return cls(tuple(caps))
