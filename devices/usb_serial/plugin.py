"""The USB-serial chips' registration: the ``ftdi``, ``cp210x``, ``ch340`` and ``pl2303`` profile kinds.

Their functions go by ``serial`` in control requests, so ``vusb ctl serial-write`` and
``serial-read`` (registered by the CDC ACM class) reach them; the request field
``port`` (``--port N``) picks the second port of an FT2232H or CP2105.
"""

from __future__ import annotations

from vusb.devices.usb_serial.chip import SerialChip
from vusb.devices.usb_serial.profile import CHIP_KINDS, DOCS

from vusb.registry import Registry


def register(registry: Registry) -> None:
    for name, fields, build, description in CHIP_KINDS:
        registry.add_kind(name, fields, build, description, docs=DOCS)
    registry.name_function(SerialChip, "serial")
