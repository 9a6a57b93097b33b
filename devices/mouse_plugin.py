"""The mouse class's registration: the ``mouse`` profile kind and the ``vusb ctl`` pointer commands."""

from __future__ import annotations

import argparse
from typing import Any

from vusb.devices.mouse import ALL_BUTTONS, BOOT_MOUSE_REPORT_DESCRIPTOR, Button, MouseFunction

from vusb.control_server import ControlError, ControlServer, Request, name_list
from vusb.device import Function
from vusb.profile_fields import Field, Located, ProfileContext
from vusb.registry import Command, Registry

FIELDS: dict[str, Field] = {"interface_name": Field("str", False, None, help="iInterface string")}


def build(ctx: ProfileContext, o: dict[str, Located]) -> Function:
    return MouseFunction(interface_name=o["interface_name"].value)


def parse_buttons(value: object, default: Button) -> Button:
    """Button names (LEFT, RIGHT, MIDDLE, BACK, FORWARD) to button bits; none given: ``default``."""
    names = name_list(value, "buttons")
    if not names:
        return default
    buttons = Button.NONE
    for name in names:
        upper = name.upper()
        if upper not in Button.__members__ or upper == "NONE":
            raise ControlError(f"unknown mouse button {name!r}: use LEFT, RIGHT, MIDDLE, BACK or FORWARD")
        buttons |= Button[upper]
    return buttons


def _mouse(ctl: ControlServer, req: Request) -> tuple[str, MouseFunction]:
    busid, _, f = ctl.function(req, "mouse", need_host=True)
    assert isinstance(f, MouseFunction)
    return busid, f


async def _move(ctl: ControlServer, req: Request) -> dict[str, Any]:
    dx, dy = req.integer("dx", 0), req.integer("dy", 0)
    busid, f = _mouse(ctl, req)
    await ctl.wait_host(busid, "read the mouse report", req.timeout(), f.move(dx, dy))
    return {"dx": dx, "dy": dy}


async def _scroll(ctl: ControlServer, req: Request) -> dict[str, Any]:
    amount = req.integer("amount")
    busid, f = _mouse(ctl, req)
    await ctl.wait_host(busid, "read the mouse report", req.timeout(), f.scroll(amount))
    return {"amount": amount}


def _buttons_command(name: str) -> Command:
    action = name.replace("-button", "")

    async def run(ctl: ControlServer, req: Request) -> dict[str, Any]:
        default = ALL_BUTTONS if action == "release" else Button.LEFT
        buttons = parse_buttons(req.body.get("buttons", req.body.get("button")), default)
        busid, f = _mouse(ctl, req)
        method = {"click": f.click, "press": f.press, "release": f.release}[action]
        await ctl.wait_host(busid, "read the mouse report", req.timeout(), method(buttons))
        return {"buttons": [b.name for b in Button if b and b in buttons]}

    def arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("buttons", nargs="*")

    def request(args: argparse.Namespace, body: dict[str, Any]) -> None:
        if args.buttons:
            body["buttons"] = args.buttons

    return Command(name, f"{action} mouse buttons (LEFT, RIGHT, MIDDLE...)", run, arguments, request)


def _move_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dx", type=int)
    p.add_argument("dy", type=int)


def _move_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["dx"], body["dy"] = args.dx, args.dy


def _scroll_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("amount", type=int)


def _scroll_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["amount"] = args.amount


def register(registry: Registry) -> None:
    registry.add_kind("mouse", FIELDS, build, "boot mouse with wheel (HID)", docs="devices/hid.md", raw_hid=True)
    registry.add_boot_report(2, "mouse", BOOT_MOUSE_REPORT_DESCRIPTOR, 4)
    registry.name_function(MouseFunction, "mouse")
    registry.add_command(Command("move", "move the mouse", _move, _move_arguments, _move_request))
    registry.add_command(Command("scroll", "turn the wheel (positive: away from the user)", _scroll,
                                 _scroll_arguments, _scroll_request))
    for name in ("click", "press-button", "release-button"):
        registry.add_command(_buttons_command(name))
