"""The DFU class's registration: the ``dfu`` profile kind."""

from __future__ import annotations

from vusb.devices.dfu.profile import FIELDS, build

from vusb.registry import Registry


def register(registry: Registry) -> None:
    registry.add_kind("dfu", FIELDS, build, "DFU 1.1 bootloader (DFU mode): dfu-util downloads into a file",
                      docs="devices/dfu.md")
