"""The USB-serial chip kinds of YAML profiles: ``ftdi``, ``cp210x``, ``ch340`` and ``pl2303``.

::

    identity:                   # the chip's own identity: the Linux drivers match on it
      vendor_id: 0x0403
      product_id: 0x6001
      device_version: 0x0600    # ftdi_sio tells the chip type from bcdDevice
    functions:
      - kind: ftdi
        chip: ft232r            # or ft2232h (high speed, two ports)
        backend: loopback       # the backend options of kind cdc-acm: loopback, pty, tcp, answers, none

On the dual-port chips (FT2232H, CP2105) the backend options serve the first port;
``second_port`` (loopback or none) says what serves the other.
"""

from __future__ import annotations

import yaml
from vusb.devices.cdc_acm.backends import LoopbackBackend, NullBackend, SerialBackend
from vusb.devices.cdc_acm.profile import BACKEND_FIELDS, backend_from_options
from vusb.devices.cdc_acm.profile import FIELDS as CDC_FIELDS
from vusb.devices.usb_serial.ch341 import Ch340Function
from vusb.devices.usb_serial.cp210x import CHIPS as CP210X_CHIPS
from vusb.devices.usb_serial.cp210x import Cp210xFunction
from vusb.devices.usb_serial.ftdi import CHIPS as FTDI_CHIPS
from vusb.devices.usb_serial.ftdi import FtdiFunction
from vusb.devices.usb_serial.pl2303 import Pl2303Function

from vusb.function import Function
from vusb.profile_fields import Field, Located, ProfileContext
from vusb.registry import FunctionBuilder, register_kind

_BACKEND = {name: CDC_FIELDS[name] for name in BACKEND_FIELDS}
_SECOND = Field("choice", False, "loopback", choices=("loopback", "none"),
                help="dual-port chips: what serves the second port (loopback or none: Python code)")


def _backends(ctx: ProfileContext, o: dict[str, Located], ports: int) -> list[SerialBackend]:
    second = o["second_port"]
    if ports == 1 and isinstance(second.node, yaml.ScalarNode):
        raise ctx.error(second.node, second.path, f"second_port: the {o['chip'].value} has one port")
    first = backend_from_options(ctx, o)
    if ports == 1:
        return [first]
    return [first, LoopbackBackend() if second.value == "loopback" else NullBackend()]


def _ftdi(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    chip = o["chip"].value
    backends = _backends(ctx, o, FTDI_CHIPS[chip].ports)
    return FtdiFunction(chip, list(backends) if len(backends) > 1 else backends[0],
                        buffer_size=o["buffer_size"].value)


def _cp210x(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    chip = o["chip"].value
    backends = _backends(ctx, o, len(CP210X_CHIPS[chip].port_names))
    return Cp210xFunction(chip, list(backends) if len(backends) > 1 else backends[0],
                          buffer_size=o["buffer_size"].value)


def _ch340(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    return Ch340Function(backend_from_options(ctx, o), buffer_size=o["buffer_size"].value)


def _pl2303(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    return Pl2303Function(backend_from_options(ctx, o), buffer_size=o["buffer_size"].value)


CHIP_KINDS: tuple[tuple[str, dict[str, Field], FunctionBuilder, str], ...] = (
    ("ftdi", {"chip": Field("choice", False, "ft232r", choices=tuple(FTDI_CHIPS),
                            help="ft232r (0403:6001, bcdDevice 0x0600, full speed) or ft2232h "
                                 "(0403:6010, bcdDevice 0x0700, high speed, two ports)"),
              **_BACKEND, "second_port": _SECOND},
     _ftdi, "FTDI USB-serial chip (ftdi_sio): FT232R or FT2232H"),
    ("cp210x", {"chip": Field("choice", False, "cp2102", choices=tuple(CP210X_CHIPS),
                              help="cp2102 (10c4:ea60) or cp2105 (10c4:ea70, two ports)"),
                **_BACKEND, "second_port": _SECOND},
     _cp210x, "Silicon Labs CP210x USB-serial chip (cp210x): CP2102 or CP2105"),
    ("ch340", dict(_BACKEND), _ch340, "WCH CH340 USB-serial chip (ch341), 1a86:7523"),
    ("pl2303", dict(_BACKEND), _pl2303, "Prolific PL2303G USB-serial chip (pl2303, HXN type), 067b:23a3"),
)
"""The kinds this class adds: (name, fields, builder, description); registered by :mod:`.plugin`."""

DOCS = "devices/usb-serial.md"


def register_profile_kinds() -> None:
    """Make ``kind: ftdi``, ``cp210x``, ``ch340`` and ``pl2303`` available to profiles (done by the registry anyway)."""
    for name, fields, build, description in CHIP_KINDS:
        register_kind(name, fields, build, description, docs=DOCS)
