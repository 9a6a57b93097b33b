"""USB Device Firmware Upgrade 1.1: request codes, states, status codes, the functional descriptor.

A DFU interface is class 0xFE (application specific), subclass 0x01. In the application's
normal ("runtime") configuration its protocol is 1 and it only takes DFU_DETACH (and may
answer GETSTATUS / GETSTATE); in DFU mode the device is nothing but the DFU interface
(protocol 2) and takes the requests below, all class requests to that interface on EP0.

==========  ====  ===================================================================
DETACH      0x00  OUT, wValue: timeout (ms) within which the host will reset the bus
DNLOAD      0x01  OUT, wValue: block number, data: the block (wLength 0 ends the download)
UPLOAD      0x02  IN, wValue: block number; a block shorter than wLength ends the upload
GETSTATUS   0x03  IN, 6 bytes: bStatus, bwPollTimeout (3 bytes LE, ms), bState, iString
CLRSTATUS   0x04  OUT: from dfuERROR back to dfuIDLE
GETSTATE    0x05  IN, 1 byte: bState, no state change
ABORT       0x06  OUT: back to dfuIDLE from the idle states
==========  ====  ===================================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from construct import Int8ul, Int16ul, Struct  # type: ignore[import-untyped]

from vusb.descriptors import ClassSpecificDescriptor
from vusb.errors import DescriptorError

DFU_CLASS: Final = 0xFE
DFU_SUBCLASS: Final = 0x01
DFU_FUNCTIONAL: Final = 0x21
"""bDescriptorType of the DFU functional descriptor (it follows the interface descriptor)."""
DFU_VERSION: Final = 0x0110
DFUSE_VERSION: Final = 0x011A


class DfuProtocol(enum.IntEnum):
    RUNTIME = 1
    DFU_MODE = 2


class DfuRequest(enum.IntEnum):
    DETACH = 0
    DNLOAD = 1
    UPLOAD = 2
    GETSTATUS = 3
    CLRSTATUS = 4
    GETSTATE = 5
    ABORT = 6


class DfuState(enum.IntEnum):
    APP_IDLE = 0
    APP_DETACH = 1
    DFU_IDLE = 2
    DFU_DNLOAD_SYNC = 3
    DFU_DNBUSY = 4
    DFU_DNLOAD_IDLE = 5
    DFU_MANIFEST_SYNC = 6
    DFU_MANIFEST = 7
    DFU_MANIFEST_WAIT_RESET = 8
    DFU_UPLOAD_IDLE = 9
    DFU_ERROR = 10


class DfuStatus(enum.IntEnum):
    """bStatus of GETSTATUS (DFU 1.1 table 6.2)."""

    OK = 0x00
    ERR_TARGET = 0x01  # file is not targeted for this device
    ERR_FILE = 0x02  # file fails a vendor-specific verification
    ERR_WRITE = 0x03  # device is unable to write memory
    ERR_ERASE = 0x04
    ERR_CHECK_ERASED = 0x05
    ERR_PROG = 0x06
    ERR_VERIFY = 0x07  # programmed memory failed verification
    ERR_ADDRESS = 0x08  # cannot program memory: address out of range
    ERR_NOTDONE = 0x09  # DNLOAD wLength 0, but the device does not think it has all the data
    ERR_FIRMWARE = 0x0A  # firmware corrupt: cannot return to run-time operations
    ERR_VENDOR = 0x0B
    ERR_USBR = 0x0C  # unexpected USB reset
    ERR_POR = 0x0D  # unexpected power-on reset
    ERR_UNKNOWN = 0x0E
    ERR_STALLEDPKT = 0x0F  # device stalled an unexpected request


class DfuAttributes(enum.IntFlag):
    """bmAttributes of the functional descriptor."""

    NONE = 0
    CAN_DNLOAD = 0x01
    CAN_UPLOAD = 0x02
    MANIFESTATION_TOLERANT = 0x04  # can talk to the host after manifestation
    WILL_DETACH = 0x08  # detaches and re-attaches by itself on DFU_DETACH (no bus reset needed)


@dataclass(frozen=True)
class DfuFunctionalDescriptor(ClassSpecificDescriptor):
    """The DFU functional descriptor (DFU 1.1 section 4.1.3): bLength 9, type 0x21, no subtype."""

    attributes: int
    detach_timeout: int
    transfer_size: int
    version: int = DFU_VERSION
    descriptor_type: ClassVar[int] = DFU_FUNCTIONAL
    layout: ClassVar[Any] = Struct(
        "attributes" / Int8ul,  # bmAttributes (DfuAttributes)
        "detach_timeout" / Int16ul,  # wDetachTimeOut, ms
        "transfer_size" / Int16ul,  # wTransferSize, bytes
        "version" / Int16ul,  # bcdDFUVersion
    )

    def __post_init__(self) -> None:
        for name in ("detach_timeout", "transfer_size", "version"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFF:
                raise DescriptorError(f"DFU functional descriptor: {name} {value} does not fit 16 bits")
        super().__post_init__()


def functional_descriptor(attributes: int, detach_timeout: int, transfer_size: int,
                          version: int = DFU_VERSION) -> DfuFunctionalDescriptor:
    """The 9-byte DFU functional descriptor; ``attributes`` keeps its four defined bits."""
    return DfuFunctionalDescriptor(attributes & 0x0F, detach_timeout, transfer_size, version)


def status_bytes(status: int, poll_timeout_ms: int, state: int, string_index: int = 0) -> bytes:
    """The 6-byte GETSTATUS answer."""
    return bytes((status,)) + poll_timeout_ms.to_bytes(3, "little") + bytes((state, string_index))
