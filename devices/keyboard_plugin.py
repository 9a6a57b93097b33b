"""The keyboard class's registration: the ``keyboard`` profile kind and the ``vusb ctl`` typing commands."""

from __future__ import annotations

import argparse
from typing import Any

from vusb.devices.keyboard import BOOT_KEYBOARD_REPORT_DESCRIPTOR, Key, KeyboardFunction, Modifier

from vusb.control_server import ControlError, ControlServer, Request, name_list
from vusb.device import Function
from vusb.errors import UsageError
from vusb.profile_fields import Field, Located, ProfileContext
from vusb.registry import Command, Registry

FIELDS: dict[str, Field] = {
    "interface_name": Field("str", False, None, help="iInterface string"),
    "type_on_attach": Field("str", False, None, help="text typed (US layout) each time a host configures the device"),
    "type_delay": Field("float", False, 1.0, low=0, help="seconds between configuration and typing (default 1)"),
}


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    text = o["type_on_attach"].value
    try:
        return KeyboardFunction(interface_name=o["interface_name"].value, type_on_attach=text,
                                type_delay=o["type_delay"].value)
    except UsageError as exc:
        raise ctx.error(o["type_on_attach"].node, o["type_on_attach"].path, str(exc)) from None


# ---------------------------------------------------------------- vusb ctl
_MODIFIER_ALIASES = {"CTRL": "LEFT_CTRL", "SHIFT": "LEFT_SHIFT", "ALT": "LEFT_ALT", "GUI": "LEFT_GUI",
                     "META": "LEFT_GUI", "SUPER": "LEFT_GUI", "ALTGR": "RIGHT_ALT"}
_KEY_ALIASES = {"ESC": "ESCAPE", "RETURN": "ENTER", "DEL": "DELETE", "INS": "INSERT", "PGUP": "PAGE_UP",
                "PGDN": "PAGE_DOWN", "CAPSLOCK": "CAPS_LOCK", "BKSP": "BACKSPACE"}


def parse_keys(keys: object, modifiers: object = None) -> tuple[list[Key], Modifier]:
    """Key and modifier names ("A", "ENTER", "F5", "1", "LEFT_CTRL", "ctrl") to usages and modifier bits."""
    out: list[Key] = []
    mods = Modifier.NONE
    for name in name_list(keys, "keys") + name_list(modifiers, "modifiers"):
        upper = name.upper().replace("-", "_")
        upper = _MODIFIER_ALIASES.get(upper, upper)
        if upper in Modifier.__members__ and upper != "NONE":
            mods |= Modifier[upper]
            continue
        upper = _KEY_ALIASES.get(upper, upper)
        if len(upper) == 1 and upper.isdigit():
            upper = "N" + upper
        if upper in Key.__members__:
            out.append(Key[upper])
            continue
        raise ControlError(f"unknown key {name!r}: use names such as A, N1 or 1, ENTER, F5, LEFT, SPACE, "
                           "or modifiers LEFT_CTRL, RIGHT_SHIFT, ALT (see vusb.devices.keyboard.Key)")
    return out, mods


def _keyboard(ctl: ControlServer, req: Request) -> tuple[str, KeyboardFunction]:
    busid, _, f = ctl.function(req, "keyboard", need_host=True)
    assert isinstance(f, KeyboardFunction)
    return busid, f


async def _type(ctl: ControlServer, req: Request) -> dict[str, Any]:
    text = req.get("text", str, required=True)
    busid, f = _keyboard(ctl, req)
    try:
        await ctl.wait_host(busid, "read the typed keys", req.timeout(), f.type(text))
    except UsageError as exc:
        raise ControlError(str(exc)) from None
    return {"typed": len(text)}


def _keys_command(action: str) -> Command:
    async def run(ctl: ControlServer, req: Request) -> dict[str, Any]:
        keys, mods = parse_keys(req.body.get("keys", req.body.get("key")), req.body.get("modifiers"))
        if not keys and not mods:
            raise ControlError("missing field 'keys': the keys (and modifiers) to " + action)
        busid, f = _keyboard(ctl, req)
        method = {"press": f.press, "release": f.release, "tap": f.tap}[action]
        await ctl.wait_host(busid, "read the key report", req.timeout(), method(*keys, modifiers=mods))
        return {"keys": [k.name for k in keys], "modifiers": [m.name for m in Modifier if m and m in mods]}

    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("keys", nargs="+")

    def request(args: argparse.Namespace, body: dict[str, Any]) -> None:
        body["keys"] = args.keys

    return Command(action, f"{action} keys by name (A, ENTER, F5, LEFT_CTRL...)", run, arguments, request)


def _type_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text")


def _type_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    from vusb.control_cli import unescape

    body["text"] = unescape(args.text)


def register(registry: Registry) -> None:
    registry.add_kind("keyboard", FIELDS, build, "boot keyboard (HID)", docs="devices/hid.md", raw_hid=True)
    registry.add_boot_report(1, "keyboard", BOOT_KEYBOARD_REPORT_DESCRIPTOR, 8)
    registry.name_function(KeyboardFunction, "keyboard")
    registry.add_command(Command("type", "type text (escapes such as \\n are interpreted)", _type, _type_arguments,
                                 _type_request))
    for action in ("press", "release", "tap"):
        registry.add_command(_keys_command(action))
