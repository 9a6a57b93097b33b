"""USB Printing Device Class 1.1: codes, the port status byte and the IEEE 1284 device ID.

Class requests (Printer class 1.1, section 4.2), sent to the printer interface:

==================  ====  ===================================================================
GET_DEVICE_ID       0x00  IN: the IEEE 1284 device ID, a big-endian u16 length (which counts
                          its own two bytes) then the text. wValue: configuration index;
                          wIndex: interface number in the high byte, alternate setting low
PORT_STATUS         0x01  IN: one byte, the bits of a Centronics status port (below)
SOFT_RESET          0x02  OUT, no data: flush buffers, reset the bulk pipes. The spec says
                          recipient interface; Linux's usblp sends it with recipient "other"
==================  ====  ===================================================================
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from vusb.errors import ArgumentError

PRINTER_CLASS: Final = 0x07
PRINTER_SUBCLASS: Final = 0x01


class PrinterProtocol(enum.IntEnum):
    """bInterfaceProtocol: what the interface's endpoints carry."""

    UNIDIRECTIONAL = 1  # bulk OUT only
    BIDIRECTIONAL = 2  # bulk OUT, and bulk IN for the printer's answers (status, PJL replies)
    IEEE_1284_4 = 3


class PrinterRequest(enum.IntEnum):
    GET_DEVICE_ID = 0x00
    GET_PORT_STATUS = 0x01
    SOFT_RESET = 0x02


class PortStatus(enum.IntFlag):
    """The GET_PORT_STATUS byte. Two bits are active low, as on a parallel port."""

    NONE = 0
    NOT_ERROR = 0x08  # 1: no error
    SELECTED = 0x10  # 1: on line
    PAPER_EMPTY = 0x20  # 1: out of paper

    @classmethod
    def of(cls, *, paper_out: bool, selected: bool, error: bool) -> PortStatus:
        return ((cls.PAPER_EMPTY if paper_out else cls.NONE) | (cls.SELECTED if selected else cls.NONE)
                | (cls.NONE if error else cls.NOT_ERROR))


LINUX_DEVICE_ID_LIMIT: Final = 1023
"""usblp keeps at most this many bytes of a device ID (length prefix included) and cuts the rest."""


class DeviceIdError(ArgumentError):
    """A device ID that a host could not read back as it was meant (also a ValueError)."""


def build_device_id(fields: Mapping[str, str]) -> str:
    """``{"MFG": "vusb", "MDL": "Printer"}`` -> ``"MFG:vusb;MDL:Printer;"`` (IEEE 1284-2000, 7.6).

    Keys and values are printable ASCII; a value cannot hold ``;`` (it ends the field)
    and a key cannot hold ``:`` or ``;``.
    """
    parts = []
    for key, value in fields.items():
        where = f"device ID field {key!r}"
        if not key or not _printable(key) or any(c in key for c in ":;"):
            raise DeviceIdError(f"{where}: a key is printable ASCII without ':' or ';'")
        if not _printable(value) or ";" in value:
            raise DeviceIdError(f"{where}: the value {value!r} must be printable ASCII without ';'")
        parts.append(f"{key}:{value};")
    return "".join(parts)


def parse_device_id(text: str) -> dict[str, str]:
    """The fields of a device ID string (the inverse of :func:`build_device_id`)."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        if part.strip():
            key, _, value = part.partition(":")
            out[key.strip()] = value
    return out


def encode_device_id(text: str) -> bytes:
    """The GET_DEVICE_ID answer: big-endian length (counting itself) and the ASCII text."""
    if not _printable(text):
        raise DeviceIdError(f"device ID {text!r} must be printable ASCII")
    raw = text.encode("ascii")
    if len(raw) + 2 > LINUX_DEVICE_ID_LIMIT:
        raise DeviceIdError(f"device ID of {len(raw)} bytes: Linux's usblp keeps only "
                            f"{LINUX_DEVICE_ID_LIMIT - 2} (the rest would be cut off)")
    return (len(raw) + 2).to_bytes(2, "big") + raw


def _printable(text: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in text)
