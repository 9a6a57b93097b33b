"""Function kinds available in YAML profiles, one builder per device class."""

from __future__ import annotations

from vusb.devices.audio import register_profile_kinds as _register_audio
from vusb.devices.cdc_acm import register_profile_kinds as _register_cdc_acm
from vusb.devices.gadget_zero import register_profile_kinds as _register_gadget_zero
from vusb.devices.hid import HidFunction
from vusb.devices.keyboard import KeyboardFunction
from vusb.devices.midi import register_profile_kinds as _register_midi
from vusb.devices.mouse import MouseFunction
from vusb.devices.storage import register_profile_kinds as _register_storage

from vusb.device import Function
from vusb.errors import UsageError
from vusb.profile import Field, Located, ProfileContext, register_kind


def _keyboard(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    text = o["type_on_attach"].value
    try:
        return KeyboardFunction(interface_name=o["interface_name"].value, type_on_attach=text,
                                type_delay=o["type_delay"].value)
    except UsageError as exc:
        raise ctx.error(o["type_on_attach"].node, o["type_on_attach"].path, str(exc)) from None


def _mouse(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    return MouseFunction(interface_name=o["interface_name"].value)


def _hid(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    features = {}
    fnode = o["features"]
    if fnode.value is not None:
        import yaml

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


NAME = Field("str", False, None, help="iInterface string")

register_kind(
    "keyboard",
    {
        "interface_name": NAME,
        "type_on_attach": Field("str", False, None, help="text typed (US layout) each time a host configures the device"),
        "type_delay": Field("float", False, 1.0, low=0, help="seconds between configuration and typing (default 1)"),
    },
    _keyboard,
    "boot keyboard (HID)",
)
register_kind("mouse", {"interface_name": NAME}, _mouse, "boot mouse with wheel (HID)")
register_kind(
    "hid",
    {
        "report_descriptor": Field("hex", True, help="the HID report descriptor as hex bytes"),
        "input_size": Field("int", False, 8, 1, 1024, help="bytes in one input report"),
        "out_endpoint": Field("bool", False, False, help="add an interrupt OUT endpoint for output reports"),
        "features": Field("map", False, None, help="initial feature reports: report id -> hex bytes"),
        "interface_name": NAME,
        "subclass": Field("int", False, 0, 0, 1),
        "protocol": Field("int", False, 0, 0, 2),
    },
    _hid,
    "generic HID device with any report descriptor",
)

_register_cdc_acm()
_register_storage()
_register_gadget_zero()
_register_audio()
_register_midi()
