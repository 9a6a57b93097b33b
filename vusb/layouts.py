"""Every binary layout of vusb, declared once with ``construct``.

Descriptor layouts are little-endian (USB); USB/IP layouts are big-endian
(network order) except the 8 raw setup bytes they carry.  Descriptors are built and
parsed straight from these declarations.  The URB hot path needs tens of thousands
of headers a second, so :func:`compile_fixed` turns a fixed-size declaration into an
equivalent :class:`struct.Struct` (same declaration, derived format): the layout is
still written only here, and ``tests/test_layouts.py`` checks both readings agree.
"""

from __future__ import annotations

import struct
from typing import Any

from construct import (  # type: ignore[import-untyped]
    Array,
    Bytes,
    Int8ub,
    Int8ul,
    Int16ub,
    Int16ul,
    Int32sb,
    Int32ub,
    Int32ul,
    Padding,
    Struct,
    this,
)

from vusb.errors import ArgumentTypeError

# ---------------------------------------------------------------- USB descriptors
# Bodies after bLength/bDescriptorType, unless the declaration names those.

DEVICE = Struct(
    "bcdUSB" / Int16ul,
    "bDeviceClass" / Int8ul,
    "bDeviceSubClass" / Int8ul,
    "bDeviceProtocol" / Int8ul,
    "bMaxPacketSize0" / Int8ul,
    "idVendor" / Int16ul,
    "idProduct" / Int16ul,
    "bcdDevice" / Int16ul,
    "iManufacturer" / Int8ul,
    "iProduct" / Int8ul,
    "iSerialNumber" / Int8ul,
    "bNumConfigurations" / Int8ul,
)

DEVICE_QUALIFIER = Struct(
    "bcdUSB" / Int16ul,
    "bDeviceClass" / Int8ul,
    "bDeviceSubClass" / Int8ul,
    "bDeviceProtocol" / Int8ul,
    "bMaxPacketSize0" / Int8ul,
    "bNumConfigurations" / Int8ul,
    "bReserved" / Padding(1),
)

CONFIGURATION = Struct(
    "bLength" / Int8ul,
    "bDescriptorType" / Int8ul,
    "wTotalLength" / Int16ul,
    "bNumInterfaces" / Int8ul,
    "bConfigurationValue" / Int8ul,
    "iConfiguration" / Int8ul,
    "bmAttributes" / Int8ul,
    "bMaxPower" / Int8ul,
)

INTERFACE = Struct(
    "bInterfaceNumber" / Int8ul,
    "bAlternateSetting" / Int8ul,
    "bNumEndpoints" / Int8ul,
    "bInterfaceClass" / Int8ul,
    "bInterfaceSubClass" / Int8ul,
    "bInterfaceProtocol" / Int8ul,
    "iInterface" / Int8ul,
)

ENDPOINT = Struct(
    "bEndpointAddress" / Int8ul,
    "bmAttributes" / Int8ul,
    "wMaxPacketSize" / Int16ul,
    "bInterval" / Int8ul,
)

SS_ENDPOINT_COMPANION = Struct(
    "bMaxBurst" / Int8ul,
    "bmAttributes" / Int8ul,
    "wBytesPerInterval" / Int16ul,
)

INTERFACE_ASSOCIATION = Struct(
    "bFirstInterface" / Int8ul,
    "bInterfaceCount" / Int8ul,
    "bFunctionClass" / Int8ul,
    "bFunctionSubClass" / Int8ul,
    "bFunctionProtocol" / Int8ul,
    "iFunction" / Int8ul,
)

HID = Struct(
    "bcdHID" / Int16ul,
    "bCountryCode" / Int8ul,
    "bNumDescriptors" / Int8ul,
    "descriptors" / Array(this.bNumDescriptors, Struct("bDescriptorType" / Int8ul, "wDescriptorLength" / Int16ul)),
)

BOS = Struct(
    "bLength" / Int8ul,
    "bDescriptorType" / Int8ul,
    "wTotalLength" / Int16ul,
    "bNumDeviceCaps" / Int8ul,
)

USB2_EXTENSION = Struct(
    "bDevCapabilityType" / Int8ul,
    "bmAttributes" / Int32ul,
)

SUPERSPEED_CAPABILITY = Struct(
    "bDevCapabilityType" / Int8ul,
    "bmAttributes" / Int8ul,
    "wSpeedsSupported" / Int16ul,
    "bFunctionalitySupport" / Int8ul,
    "bU1DevExitLat" / Int8ul,
    "wU2DevExitLat" / Int16ul,
)

SETUP = Struct(
    "bmRequestType" / Int8ul,
    "bRequest" / Int8ul,
    "wValue" / Int16ul,
    "wIndex" / Int16ul,
    "wLength" / Int16ul,
)

# ---------------------------------------------------------------- USB/IP op phase

OP_HEADER = Struct(
    "version" / Int16ub,
    "code" / Int16ub,
    "status" / Int32ub,
)

DEVICE_RECORD = Struct(
    "path" / Bytes(256),
    "busid" / Bytes(32),
    "busnum" / Int32ub,
    "devnum" / Int32ub,
    "speed" / Int32ub,
    "idVendor" / Int16ub,
    "idProduct" / Int16ub,
    "bcdDevice" / Int16ub,
    "bDeviceClass" / Int8ub,
    "bDeviceSubClass" / Int8ub,
    "bDeviceProtocol" / Int8ub,
    "bConfigurationValue" / Int8ub,
    "bNumConfigurations" / Int8ub,
    "bNumInterfaces" / Int8ub,
)

INTERFACE_RECORD = Struct(
    "bInterfaceClass" / Int8ub,
    "bInterfaceSubClass" / Int8ub,
    "bInterfaceProtocol" / Int8ub,
    "padding" / Padding(1),
)

IMPORT_REQUEST_BODY = Struct("busid" / Bytes(32))
DEVLIST_COUNT = Struct("count" / Int32ub)

# ---------------------------------------------------------------- USB/IP URB phase
# 48-byte headers: a 20-byte basic part then a 28-byte command-specific part.

CMD_SUBMIT = Struct(
    "command" / Int32ub,
    "seqnum" / Int32ub,
    "devid" / Int32ub,
    "direction" / Int32ub,
    "ep" / Int32ub,
    "transfer_flags" / Int32ub,
    "transfer_buffer_length" / Int32sb,
    "start_frame" / Int32sb,
    "number_of_packets" / Int32sb,
    "interval" / Int32sb,
    "setup" / Bytes(8),
)

RET_SUBMIT = Struct(
    "command" / Int32ub,
    "seqnum" / Int32ub,
    "devid" / Int32ub,
    "direction" / Int32ub,
    "ep" / Int32ub,
    "status" / Int32sb,
    "actual_length" / Int32sb,
    "start_frame" / Int32sb,
    "number_of_packets" / Int32sb,
    "error_count" / Int32sb,
    "padding" / Bytes(8),
)

CMD_UNLINK = Struct(
    "command" / Int32ub,
    "seqnum" / Int32ub,
    "devid" / Int32ub,
    "direction" / Int32ub,
    "ep" / Int32ub,
    "unlink_seqnum" / Int32ub,
    "padding" / Bytes(24),
)

RET_UNLINK = Struct(
    "command" / Int32ub,
    "seqnum" / Int32ub,
    "devid" / Int32ub,
    "direction" / Int32ub,
    "ep" / Int32ub,
    "status" / Int32sb,
    "padding" / Bytes(24),
)

ISO_PACKET = Struct(
    "offset" / Int32ub,
    "length" / Int32ub,
    "actual_length" / Int32ub,
    "status" / Int32sb,
)

# ---------------------------------------------------------------- derived fast codecs

_FORMATS: dict[Any, str] = {
    Int8ub: "B", Int8ul: "B", Int16ub: "H", Int16ul: "H",
    Int32ub: "I", Int32ul: "I", Int32sb: "i",
}
_BIG = {Int8ub, Int16ub, Int32ub, Int32sb}


def compile_fixed(layout: Any) -> struct.Struct:
    """Derive a :class:`struct.Struct` from a fixed-size construct ``Struct``.

    Only the field kinds used in this module are supported; all integer fields must
    share one byte order.  ``Bytes(n)`` becomes ``ns`` and ``Padding(n)`` becomes
    ``nx`` (padding yields no value, as in construct).
    """
    fmt = []
    orders = set()
    for sub in layout.subcons:
        inner = sub.subcon if hasattr(sub, "subcon") and sub.__class__.__name__ == "Renamed" else sub
        if inner in _FORMATS:
            fmt.append(_FORMATS[inner])
            orders.add(">" if inner in _BIG else "<")
        elif inner.__class__.__name__ == "Bytes":
            fmt.append(f"{inner.length}s")
        elif inner.__class__.__name__ == "Padded":  # Padding(n) is Padded(n, Pass)
            fmt.append(f"{inner.length}x")
        else:
            raise ArgumentTypeError(f"compile_fixed: unsupported field {sub!r}")
    if len(orders) > 1:
        raise ArgumentTypeError("compile_fixed: mixed byte orders")
    return struct.Struct((orders.pop() if orders else ">") + "".join(fmt))


def field_names(layout: Any) -> tuple[str, ...]:
    """Names of the value-carrying fields, in order (padding excluded)."""
    return tuple(
        sub.name for sub in layout.subcons
        if not (sub.__class__.__name__ == "Renamed" and sub.subcon.__class__.__name__ == "Padded")
        and sub.__class__.__name__ != "Padded"
    )


CMD_SUBMIT_FAST = compile_fixed(CMD_SUBMIT)
RET_SUBMIT_FAST = compile_fixed(RET_SUBMIT)
CMD_UNLINK_FAST = compile_fixed(CMD_UNLINK)
RET_UNLINK_FAST = compile_fixed(RET_UNLINK)
SETUP_FAST = compile_fixed(SETUP)
OP_HEADER_FAST = compile_fixed(OP_HEADER)
ISO_PACKET_FAST = compile_fixed(ISO_PACKET)
