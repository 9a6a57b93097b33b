"""Gadget Zero's registration: the ``gadget-zero`` profile kind (one configuration, source/sink or loopback)."""

from __future__ import annotations

from vusb.devices.gadget_zero import PROFILE_FIELDS, GadgetZeroFunction

from vusb.device import Function
from vusb.profile_fields import Located, ProfileContext
from vusb.registry import Registry


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    return GadgetZeroFunction(o["mode"].value, pattern=o["pattern"].value, buflen=o["buflen"].value,
                              qlen=o["qlen"].value, interface_name=o["interface_name"].value)


def register(registry: Registry) -> None:
    registry.add_kind("gadget-zero", PROFILE_FIELDS, build,
                      "Linux gadget zero test interface (source/sink or loopback), for the usbtest driver",
                      docs="devices/gadget-zero.md")
