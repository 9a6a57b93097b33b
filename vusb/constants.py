"""USB and USB/IP numbers, named once."""

from __future__ import annotations

import enum

from vusb.errors import ArgumentError


class Speed(enum.IntEnum):
    """Device speed as USB/IP reports it (Linux ``enum usb_device_speed``)."""

    LOW = 1
    FULL = 2
    HIGH = 3
    SUPER = 5  # any USB 3 device; Linux tools mishandle 6 (SUPER_PLUS)

    @classmethod
    def parse(cls, value: str | int) -> Speed:
        if isinstance(value, int):
            return cls(value)
        names = {"low": cls.LOW, "full": cls.FULL, "high": cls.HIGH, "super": cls.SUPER}
        try:
            return names[value.lower()]
        except KeyError:
            raise ArgumentError(f"unknown speed {value!r}: expected one of {', '.join(names)}") from None


class DescriptorType(enum.IntEnum):
    DEVICE = 1
    CONFIGURATION = 2
    STRING = 3
    INTERFACE = 4
    ENDPOINT = 5
    DEVICE_QUALIFIER = 6
    OTHER_SPEED_CONFIGURATION = 7
    INTERFACE_POWER = 8
    OTG = 9
    DEBUG = 10
    INTERFACE_ASSOCIATION = 11
    BOS = 15
    DEVICE_CAPABILITY = 16
    HID = 0x21
    HID_REPORT = 0x22
    HID_PHYSICAL = 0x23
    CS_INTERFACE = 0x24
    CS_ENDPOINT = 0x25
    SUPERSPEED_ENDPOINT_COMPANION = 48


class Request(enum.IntEnum):
    """Standard request codes (USB 2.0 table 9-4, USB 3.2 table 9-5)."""

    GET_STATUS = 0
    CLEAR_FEATURE = 1
    SET_FEATURE = 3
    SET_ADDRESS = 5
    GET_DESCRIPTOR = 6
    SET_DESCRIPTOR = 7
    GET_CONFIGURATION = 8
    SET_CONFIGURATION = 9
    GET_INTERFACE = 10
    SET_INTERFACE = 11
    SYNCH_FRAME = 12
    SET_SEL = 48
    SET_ISOCH_DELAY = 49


class Feature(enum.IntEnum):
    ENDPOINT_HALT = 0
    DEVICE_REMOTE_WAKEUP = 1
    TEST_MODE = 2
    FUNCTION_SUSPEND = 0  # interface recipient, USB 3
    U1_ENABLE = 48
    U2_ENABLE = 49
    LTM_ENABLE = 50


class TransferType(enum.IntEnum):
    CONTROL = 0
    ISOCHRONOUS = 1
    BULK = 2
    INTERRUPT = 3


class Direction(enum.IntEnum):
    """Direction of a control request's data stage (bmRequestType bit 7) or of an endpoint."""

    OUT = 0  # host to device
    IN = 1  # device to host


class RequestType(enum.IntEnum):
    STANDARD = 0
    CLASS = 1
    VENDOR = 2
    RESERVED = 3


class Recipient(enum.IntEnum):
    DEVICE = 0
    INTERFACE = 1
    ENDPOINT = 2
    OTHER = 3


class Status(enum.IntEnum):
    """URB status values: negative Linux errno numbers."""

    OK = 0
    ENOENT = -2
    EXDEV = -18
    ENODEV = -19
    EPIPE = -32  # stall
    ETIME = -62
    EPROTO = -71
    EOVERFLOW = -75  # babble
    ECONNRESET = -104  # unlinked
    ESHUTDOWN = -108
    EREMOTEIO = -121  # short IN with URB_SHORT_NOT_OK


class SenseKey(enum.IntEnum):
    """SCSI sense keys (SPC-4 table 47); 0xC is reserved.

    Used by the mass storage devices (vusb.devices.storage.scsi) and by its ScsiFailure fault rule (vusb.devices.storage).
    """

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


class OpStatus(enum.IntEnum):
    """Status field of USB/IP op replies."""

    OK = 0
    NA = 1
    DEV_BUSY = 2
    DEV_ERR = 3
    NODEV = 4
    ERROR = 5


USBIP_VERSION = 0x0111
USBIP_PORT = 3240

URB_SHORT_NOT_OK = 0x0001
URB_ISO_ASAP = 0x0002
URB_ZERO_PACKET = 0x0040
URB_DIR_IN = 0x0200

LANG_EN_US = 0x0409
