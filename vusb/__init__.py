"""vusb: virtual USB devices in Python, served over USB/IP to real kernels.

The pieces, bottom up:

- :mod:`vusb.descriptors` — descriptors as immutable, self-validating values;
- :mod:`vusb.function` — :class:`Function`, the base of every device class, and :func:`request`;
- :mod:`vusb.build` — :class:`BuildContext`, what a function declares itself with;
- :mod:`vusb.device` — the device model (state, routing); :mod:`vusb.standard` its chapter 9 requests;
- :mod:`vusb.single` — :class:`SingleFunctionDevice`, a device of one function with its API;
- :mod:`vusb.errors` — the one exception hierarchy (every error is a :class:`VusbError`);
- :mod:`vusb.endpoint` — per-endpoint URB queues;
- :mod:`vusb.protocol` — the sans-IO USB/IP codec;
- :mod:`vusb.server` / :mod:`vusb.client` — asyncio server and client;
- :mod:`vusb.profile` — YAML profiles;
- :mod:`vusb.harness` — a real Linux kernel under QEMU for tests.

Everything a device class or a program needs is importable from here (``__all__``);
the ready classes are in :mod:`vusb.devices`.  docs/writing-a-device.md shows the
authoring API at work.
"""

from vusb.constants import Direction, Recipient, RequestType, Speed, Status, TransferType
from vusb.descriptors import (
    BosDescriptor,
    ClassSpecificDescriptor,
    ConfigurationDescriptor,
    DeviceDescriptor,
    EndpointDescriptor,
    InterfaceDescriptor,
    Remaining,
    StringDescriptor,
)
from vusb.device import AttachedFunction, BuildContext, Device, Function, StringTable
from vusb.errors import (
    ArgumentError,
    ArgumentTypeError,
    ConnectionClosed,
    DescriptorError,
    DeviceBusy,
    DeviceDefinitionError,
    HarnessError,
    LimitExceeded,
    NoSuchDevice,
    ProfileError,
    ProtocolError,
    RemoteError,
    Stall,
    TransferError,
    TransferTimeout,
    UsageError,
    VusbError,
)
from vusb.function import NOT_HANDLED, ControlResult, RequestKey, request
from vusb.protocol import IsoPacket
from vusb.server import Server
from vusb.single import DeviceOptions, Forwarded, SingleFunctionDevice, forward, forward_property
from vusb.testing import LocalHost
from vusb.urb import Completion, SetupPacket, Urb

__version__ = "0.1.0"

__all__ = [
    "NOT_HANDLED",
    "ArgumentError",
    "ArgumentTypeError",
    "AttachedFunction",
    "BosDescriptor",
    "BuildContext",
    "ClassSpecificDescriptor",
    "Completion",
    "ConfigurationDescriptor",
    "ConnectionClosed",
    "ControlResult",
    "DescriptorError",
    "Device",
    "DeviceBusy",
    "DeviceDefinitionError",
    "DeviceDescriptor",
    "DeviceOptions",
    "Direction",
    "EndpointDescriptor",
    "Forwarded",
    "Function",
    "HarnessError",
    "InterfaceDescriptor",
    "IsoPacket",
    "LimitExceeded",
    "LocalHost",
    "NoSuchDevice",
    "ProfileError",
    "ProtocolError",
    "Recipient",
    "Remaining",
    "RemoteError",
    "RequestKey",
    "RequestType",
    "Server",
    "SetupPacket",
    "SingleFunctionDevice",
    "Speed",
    "Stall",
    "Status",
    "StringDescriptor",
    "StringTable",
    "TransferError",
    "TransferTimeout",
    "TransferType",
    "Urb",
    "UsageError",
    "VusbError",
    "forward",
    "forward_property",
    "request",
]
