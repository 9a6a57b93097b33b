"""Values of the CDC 1.2 and PSTN 1.2 specifications used by the ACM serial function.

Codes (class, subclass, requests, notifications), the four functional descriptors
an ACM communications interface carries (CDC 1.2 section 5.2.3, PSTN 1.2 section
5.3), the 7-byte line coding structure (PSTN 6.3.11) and the notification packet
(CDC 6.3, PSTN 6.5.4).  Every value is immutable and checked when it is created.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from construct import Int8ul, Int16ul, Int32ul, Struct  # type: ignore[import-untyped]

from vusb.descriptors import ClassSpecificDescriptor, Remaining
from vusb.errors import DescriptorError, VusbError
from vusb.layouts import compile_fixed

CDC_CLASS = 0x02
"""bInterfaceClass of a communications interface (CDC 1.2 table 4)."""
CDC_DATA_CLASS = 0x0A
"""bInterfaceClass of a data interface (CDC 1.2 table 6)."""
ACM_SUBCLASS = 0x02
"""Abstract Control Model (CDC 1.2 table 4)."""
CS_INTERFACE = 0x24
"""bDescriptorType of class-specific interface descriptors (CDC 1.2 table 12)."""
CDC_VERSION = 0x0110
"""bcdCDC announced in the header functional descriptor (what Linux and Windows expect)."""


class AcmProtocol(enum.IntEnum):
    """bInterfaceProtocol of the communications interface (CDC 1.2 table 5)."""

    NONE = 0x00
    AT_V250 = 0x01  # AT commands, ITU-T V.250
    VENDOR = 0xFF


class FunctionalSubtype(enum.IntEnum):
    """bDescriptorSubtype of functional descriptors (CDC 1.2 table 13)."""

    HEADER = 0x00
    CALL_MANAGEMENT = 0x01
    ACM = 0x02
    UNION = 0x06


class CdcRequest(enum.IntEnum):
    """Class requests of an ACM communications interface (CDC 1.2 table 19, PSTN 1.2 table 13)."""

    SEND_ENCAPSULATED_COMMAND = 0x00
    GET_ENCAPSULATED_RESPONSE = 0x01
    SET_COMM_FEATURE = 0x02
    GET_COMM_FEATURE = 0x03
    CLEAR_COMM_FEATURE = 0x04
    SET_LINE_CODING = 0x20
    GET_LINE_CODING = 0x21
    SET_CONTROL_LINE_STATE = 0x22
    SEND_BREAK = 0x23


class CdcNotification(enum.IntEnum):
    """bNotification codes (CDC 1.2 table 20, PSTN 1.2 table 30)."""

    NETWORK_CONNECTION = 0x00
    RESPONSE_AVAILABLE = 0x01
    SERIAL_STATE = 0x20


class AcmCapability(enum.IntFlag):
    """bmCapabilities of the ACM functional descriptor (PSTN 1.2 table 4)."""

    NONE = 0
    COMM_FEATURE = 0x01  # Set/Get/Clear_Comm_Feature
    LINE = 0x02  # Set_Line_Coding, Get_Line_Coding, Set_Control_Line_State, Serial_State
    SEND_BREAK = 0x04  # Send_Break
    NETWORK_CONNECTION = 0x08  # Network_Connection notification


class CallManagementCapability(enum.IntFlag):
    """bmCapabilities of the call management functional descriptor (PSTN 1.2 table 3)."""

    NONE = 0
    HANDLES_CALLS = 0x01  # the device handles call management itself
    OVER_DATA_INTERFACE = 0x02  # ... and accepts call management commands on the data interface


class CommFeature(enum.IntEnum):
    """Feature selectors of Set/Get/Clear_Comm_Feature (PSTN 1.2 table 14)."""

    ABSTRACT_STATE = 0x01
    COUNTRY_SETTING = 0x02


class ControlLine(enum.IntFlag):
    """wValue of SET_CONTROL_LINE_STATE (PSTN 1.2 table 18)."""

    NONE = 0
    DTR = 0x01  # data terminal ready
    RTS = 0x02  # carrier control for half duplex modems: request to send


class SerialState(enum.IntFlag):
    """The UART state bitmap of the SERIAL_STATE notification (PSTN 1.2 table 31).

    DCD and DSR are states; the other bits are events the device reports once and
    then clears ("irregular signals").
    """

    NONE = 0
    DCD = 0x01  # bRxCarrier: data carrier detect
    DSR = 0x02  # bTxCarrier: data set ready
    BREAK = 0x04  # bBreak: break detected
    RING = 0x08  # bRingSignal
    FRAMING = 0x10  # bFraming: framing error
    PARITY = 0x20  # bParity: parity error
    OVERRUN = 0x40  # bOverRun: received data was dropped

    @classmethod
    def states(cls) -> SerialState:
        return cls.DCD | cls.DSR

    @classmethod
    def events(cls) -> SerialState:
        return cls.BREAK | cls.RING | cls.FRAMING | cls.PARITY | cls.OVERRUN


class StopBits(enum.IntEnum):
    """bCharFormat of the line coding (PSTN 1.2 table 17)."""

    ONE = 0
    ONE_AND_HALF = 1
    TWO = 2


class Parity(enum.IntEnum):
    """bParityType of the line coding (PSTN 1.2 table 17)."""

    NONE = 0
    ODD = 1
    EVEN = 2
    MARK = 3
    SPACE = 4


DATA_BITS = (5, 6, 7, 8, 16)
"""bDataBits values the line coding allows (PSTN 1.2 table 17)."""

SEND_BREAK_UNTIL_CLEARED = 0xFFFF
"""SEND_BREAK wValue that keeps the break on until a SEND_BREAK with 0 (PSTN 1.2 section 6.3.13)."""

# ---------------------------------------------------------------- layouts (little-endian, USB)

LINE_CODING = Struct("dwDTERate" / Int32ul, "bCharFormat" / Int8ul, "bParityType" / Int8ul, "bDataBits" / Int8ul)
NOTIFICATION = Struct(
    "bmRequestType" / Int8ul,
    "bNotification" / Int8ul,
    "wValue" / Int16ul,
    "wIndex" / Int16ul,
    "wLength" / Int16ul,
)

_LINE_CODING = compile_fixed(LINE_CODING)
_NOTIFICATION = compile_fixed(NOTIFICATION)

NOTIFICATION_REQUEST_TYPE = 0xA1
"""bmRequestType of every notification: device to host, class, interface."""


def _u8(owner: str, name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise DescriptorError(f"{owner}.{name} = {value!r} is not a byte (0..255)")


# ---------------------------------------------------------------- functional descriptors


@dataclass(frozen=True)
class FunctionalDescriptor(ClassSpecificDescriptor):
    """A CDC functional descriptor: bFunctionLength, CS_INTERFACE, bDescriptorSubtype, then its layout."""

    descriptor_type: ClassVar[int] = CS_INTERFACE


@dataclass(frozen=True)
class HeaderDescriptor(FunctionalDescriptor):
    """Header functional descriptor (CDC 1.2 section 5.2.3.1): starts the functional descriptors."""

    cdc_version: int = CDC_VERSION
    subtype: ClassVar[int | None] = FunctionalSubtype.HEADER
    layout: ClassVar[Any] = Struct("cdc_version" / Int16ul)  # bcdCDC

    def __post_init__(self) -> None:
        value = self.cdc_version
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise DescriptorError(f"HeaderDescriptor.cdc_version = {value!r} is not a 16-bit value")
        if any((value >> shift) & 0xF > 9 for shift in (0, 4, 8, 12)):
            raise DescriptorError(f"HeaderDescriptor.cdc_version = 0x{value:04x} is not binary-coded decimal")
        super().__post_init__()


@dataclass(frozen=True)
class CallManagementDescriptor(FunctionalDescriptor):
    """Call management functional descriptor (PSTN 1.2 section 5.3.1)."""

    data_interface: int
    capabilities: int = CallManagementCapability.NONE
    subtype: ClassVar[int | None] = FunctionalSubtype.CALL_MANAGEMENT
    layout: ClassVar[Any] = Struct("capabilities" / Int8ul, "data_interface" / Int8ul)  # bmCapabilities, bDataInterface

    def __post_init__(self) -> None:
        _u8("CallManagementDescriptor", "data_interface", self.data_interface)
        _u8("CallManagementDescriptor", "capabilities", self.capabilities)
        if self.capabilities & ~0x03:
            raise DescriptorError(
                f"CallManagementDescriptor.capabilities = 0x{self.capabilities:02x} sets reserved bits (only D0, D1)"
            )
        object.__setattr__(self, "capabilities", CallManagementCapability(self.capabilities))
        super().__post_init__()


@dataclass(frozen=True)
class AcmDescriptor(FunctionalDescriptor):
    """Abstract control management functional descriptor (PSTN 1.2 section 5.3.2)."""

    capabilities: int = AcmCapability.LINE | AcmCapability.SEND_BREAK
    subtype: ClassVar[int | None] = FunctionalSubtype.ACM
    layout: ClassVar[Any] = Struct("capabilities" / Int8ul)  # bmCapabilities

    def __post_init__(self) -> None:
        _u8("AcmDescriptor", "capabilities", self.capabilities)
        if self.capabilities & ~0x0F:
            raise DescriptorError(f"AcmDescriptor.capabilities = 0x{self.capabilities:02x} sets reserved bits (only D0..D3)")
        object.__setattr__(self, "capabilities", AcmCapability(self.capabilities))
        super().__post_init__()


@dataclass(frozen=True)
class UnionDescriptor(FunctionalDescriptor):
    """Union functional descriptor (CDC 1.2 section 5.2.3.2): the interfaces that make up the function."""

    control_interface: int
    subordinate_interfaces: tuple[int, ...]
    subtype: ClassVar[int | None] = FunctionalSubtype.UNION
    # bControlInterface, then bSubordinateInterface0..N-1: as many as bFunctionLength leaves room for.
    layout: ClassVar[Any] = Struct("control_interface" / Int8ul, "subordinate_interfaces" / Remaining(Int8ul))

    def __post_init__(self) -> None:
        _u8("UnionDescriptor", "control_interface", self.control_interface)
        subs = tuple(self.subordinate_interfaces)
        object.__setattr__(self, "subordinate_interfaces", subs)
        if not subs:
            raise DescriptorError("UnionDescriptor needs at least one subordinate interface")
        if len(subs) > 252:
            raise DescriptorError(f"UnionDescriptor: {len(subs)} subordinate interfaces do not fit in bFunctionLength")
        for i, number in enumerate(subs):
            _u8("UnionDescriptor", f"subordinate_interfaces[{i}]", number)
        super().__post_init__()


FUNCTIONAL_DESCRIPTORS: dict[int, type[HeaderDescriptor | CallManagementDescriptor | AcmDescriptor | UnionDescriptor]] = {
    FunctionalSubtype.HEADER: HeaderDescriptor,
    FunctionalSubtype.CALL_MANAGEMENT: CallManagementDescriptor,
    FunctionalSubtype.ACM: AcmDescriptor,
    FunctionalSubtype.UNION: UnionDescriptor,
}


def parse_functional(data: bytes | memoryview) -> HeaderDescriptor | CallManagementDescriptor | AcmDescriptor | UnionDescriptor:
    """Parse one of the four functional descriptors an ACM interface carries."""
    data = bytes(data)
    if len(data) < 3 or data[1] != CS_INTERFACE:
        raise DescriptorError("not a class-specific interface (CS_INTERFACE) descriptor")
    cls = FUNCTIONAL_DESCRIPTORS.get(data[2])
    if cls is None:
        raise DescriptorError(f"functional descriptor subtype 0x{data[2]:02x} is not one ACM uses")
    return cls.parse(data)


# ---------------------------------------------------------------- line coding


class LineCodingError(VusbError, ValueError):
    """A line coding field has a value PSTN 1.2 table 17 does not allow."""


_PARITY_LETTERS = {Parity.NONE: "N", Parity.ODD: "O", Parity.EVEN: "E", Parity.MARK: "M", Parity.SPACE: "S"}
_STOP_TEXT = {StopBits.ONE: "1", StopBits.ONE_AND_HALF: "1.5", StopBits.TWO: "2"}


@dataclass(frozen=True)
class LineCoding:
    """The asynchronous line character format (PSTN 1.2 section 6.3.11, table 17).

    ``str(LineCoding(115200))`` is ``"115200 8N1"``.
    """

    rate: int = 9600  # dwDTERate, bits per second
    data_bits: int = 8  # bDataBits: 5, 6, 7, 8 or 16
    parity: Parity = Parity.NONE  # bParityType
    stop_bits: StopBits = StopBits.ONE  # bCharFormat

    SIZE: ClassVar[int] = 7

    def __post_init__(self) -> None:
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, int) or not 1 <= rate <= 0xFFFF_FFFF:
            raise LineCodingError(f"dwDTERate = {rate!r} is not a bit rate (1..4294967295)")
        if self.data_bits not in DATA_BITS:
            raise LineCodingError(f"bDataBits = {self.data_bits!r} is not one of 5, 6, 7, 8, 16")
        try:
            object.__setattr__(self, "parity", Parity(self.parity))
        except ValueError:
            raise LineCodingError(f"bParityType = {self.parity!r} is not 0..4 (none, odd, even, mark, space)") from None
        try:
            object.__setattr__(self, "stop_bits", StopBits(self.stop_bits))
        except ValueError:
            raise LineCodingError(f"bCharFormat = {self.stop_bits!r} is not 0..2 (1, 1.5, 2 stop bits)") from None

    def to_bytes(self) -> bytes:
        return _LINE_CODING.pack(self.rate, int(self.stop_bits), int(self.parity), self.data_bits)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> LineCoding:
        """Read the 7-byte structure; raises :class:`LineCodingError` for a wrong size or value."""
        if len(data) != cls.SIZE:
            raise LineCodingError(f"the line coding is 7 bytes, got {len(data)}")
        rate, char_format, parity, data_bits = _LINE_CODING.unpack(bytes(data))
        return cls(rate, data_bits, parity, char_format)

    def __str__(self) -> str:
        return f"{self.rate} {self.data_bits}{_PARITY_LETTERS[self.parity]}{_STOP_TEXT[self.stop_bits]}"


# ---------------------------------------------------------------- notifications


@dataclass(frozen=True)
class Notification:
    """A notification on the interrupt IN endpoint (CDC 1.2 section 6.3): 8-byte header plus data."""

    code: int  # bNotification
    interface: int  # wIndex
    value: int = 0  # wValue
    data: bytes = b""

    HEADER_SIZE: ClassVar[int] = 8

    def __post_init__(self) -> None:
        _u8("Notification", "code", self.code)
        for name in ("interface", "value"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                raise DescriptorError(f"Notification.{name} = {v!r} is not a 16-bit value")
        object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > 0xFFFF:
            raise DescriptorError("Notification data is longer than wLength allows")

    def to_bytes(self) -> bytes:
        head = _NOTIFICATION.pack(NOTIFICATION_REQUEST_TYPE, self.code, self.value, self.interface, len(self.data))
        return head + self.data

    @classmethod
    def serial_state(cls, interface: int, state: int) -> Notification:
        """SERIAL_STATE (PSTN 1.2 section 6.5.4): wValue 0, wLength 2, the UART state bitmap."""
        if isinstance(state, bool) or not isinstance(state, int) or not 0 <= state <= 0xFFFF:
            raise DescriptorError(f"serial state {state!r} is not a 16-bit bitmap")
        return cls(CdcNotification.SERIAL_STATE, interface, 0, state.to_bytes(2, "little"))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Notification:
        data = bytes(data)
        if len(data) < cls.HEADER_SIZE:
            raise DescriptorError(f"a notification has an 8-byte header, got {len(data)} bytes")
        request_type, code, value, index, length = _NOTIFICATION.unpack_from(data)
        if request_type != NOTIFICATION_REQUEST_TYPE:
            raise DescriptorError(f"notification bmRequestType is 0x{request_type:02x}, expected 0xa1")
        if len(data) != cls.HEADER_SIZE + length:
            raise DescriptorError(f"notification wLength is {length} but {len(data) - cls.HEADER_SIZE} data bytes follow")
        return cls(code, index, value, data[cls.HEADER_SIZE :])

    @property
    def state(self) -> SerialState:
        """The UART state bitmap of a SERIAL_STATE notification."""
        if self.code != CdcNotification.SERIAL_STATE or len(self.data) != 2:
            raise DescriptorError("not a SERIAL_STATE notification")
        return SerialState(int.from_bytes(self.data, "little") & 0x7F)
