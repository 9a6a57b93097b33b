"""The HID class's registration: the ``hid`` profile kind, and the HID function of raw-descriptor profiles."""

from __future__ import annotations

import yaml
from vusb.devices.hid import HidFunction

from vusb.device import Function
from vusb.profile_fields import Field, Located, ProfileContext
from vusb.registry import Registry

INTERFACE_NAME = Field("str", False, None, help="iInterface string")

FIELDS: dict[str, Field] = {
    "report_descriptor": Field("hex", True, help="the HID report descriptor as hex bytes"),
    "input_size": Field("int", False, 8, 1, 1024, help="bytes in one input report"),
    "out_endpoint": Field("bool", False, False, help="add an interrupt OUT endpoint for output reports"),
    "features": Field("map", False, None, help="initial feature reports: report id -> hex bytes"),
    "interface_name": INTERFACE_NAME,
    "subclass": Field("int", False, 0, 0, 1),
    "protocol": Field("int", False, 0, 0, 2),
}


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    features = {}
    fnode = o["features"]
    if fnode.value is not None:
        for key_node, value_node in fnode.value.value:
            try:
                report_id = int(str(key_node.value), 0)
            except ValueError:
                raise ctx.error(key_node, f"{fnode.path}.{key_node.value}", "feature report ids are integers 0..255") from None
            if not 0 <= report_id <= 255:
                raise ctx.error(key_node, f"{fnode.path}.{key_node.value}", "feature report ids are integers 0..255")
            if not isinstance(value_node, yaml.ScalarNode):
                raise ctx.error(value_node, f"{fnode.path}.{report_id}", "expected hexadecimal bytes")
            try:
                features[report_id] = bytes.fromhex(str(value_node.value).replace(" ", ""))
            except ValueError:
                raise ctx.error(value_node, f"{fnode.path}.{report_id}", "expected hexadecimal bytes such as '01 00'") from None
    return HidFunction(
        o["report_descriptor"].value,
        input_size=o["input_size"].value,
        out_endpoint=o["out_endpoint"].value,
        features=features,
        interface_name=o["interface_name"].value,
        subclass=o["subclass"].value,
        protocol=o["protocol"].value,
    )


def raw_hid_function(report_descriptor: bytes, *, input_size: int, subclass: int, protocol: int) -> Function:
    """The function serving a raw-descriptor profile's HID interface that no kind claims."""
    return HidFunction(report_descriptor, input_size=input_size, subclass=subclass, protocol=protocol)


def register(registry: Registry) -> None:
    registry.add_kind("hid", FIELDS, build, "generic HID device with any report descriptor", docs="devices/hid.md",
                      raw_hid=True)
    registry.name_function(HidFunction, "hid")
    registry.hid_function = raw_hid_function
