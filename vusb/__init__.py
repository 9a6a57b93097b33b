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

A class registers what it adds (profile kinds, ``vusb ctl`` commands, fault kinds) in
its ``register(registry)`` function with :class:`Registry`, :class:`Command`, the
profile field reader's :class:`Field`, :class:`Located` and :class:`ProfileContext`,
and the control server's :class:`ControlServer`, :class:`ControlRequest` and
:class:`ControlError` (:mod:`vusb.registry`, docs/device-classes.md).  These names load
their modules when first used, so ``import vusb`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from vusb.control_server import ControlError, ControlRequest, ControlServer
    from vusb.profile_fields import Field, Located, ProfileContext
    from vusb.registry import Command, Registry, load_device_class

__version__ = "0.1.0"

_LAZY = {
    # The registration API: imported when first used (YAML, the control server and the registry stay unloaded).
    "Command": "vusb.registry", "Registry": "vusb.registry", "load_device_class": "vusb.registry",
    "Field": "vusb.profile_fields", "Located": "vusb.profile_fields", "ProfileContext": "vusb.profile_fields",
    "ControlError": "vusb.control_server", "ControlRequest": "vusb.control_server",
    "ControlServer": "vusb.control_server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vusb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "NOT_HANDLED",
    "ArgumentError",
    "ArgumentTypeError",
    "AttachedFunction",
    "BosDescriptor",
    "BuildContext",
    "ClassSpecificDescriptor",
    "Command",
    "Completion",
    "ConfigurationDescriptor",
    "ConnectionClosed",
    "ControlError",
    "ControlRequest",
    "ControlResult",
    "ControlServer",
    "DescriptorError",
    "Device",
    "DeviceBusy",
    "DeviceDefinitionError",
    "DeviceDescriptor",
    "DeviceOptions",
    "Direction",
    "EndpointDescriptor",
    "Field",
    "Forwarded",
    "Function",
    "HarnessError",
    "InterfaceDescriptor",
    "IsoPacket",
    "LimitExceeded",
    "LocalHost",
    "Located",
    "NoSuchDevice",
    "ProfileContext",
    "ProfileError",
    "ProtocolError",
    "Recipient",
    "Registry",
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
    "load_device_class",
    "request",
]
