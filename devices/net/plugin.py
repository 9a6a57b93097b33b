"""The network adapters' registration: the ``ncm``, ``ecm`` and ``rndis`` kinds and ``link``/``speed``/``net-stats``."""

from __future__ import annotations

import argparse
from typing import Any

from vusb.devices.net.function import NetFunction
from vusb.devices.net.profile import FIELDS, build_for
from vusb.devices.net.spec import mac_text

from vusb.control_server import ControlError, ControlServer, Request
from vusb.registry import Command, Registry

MAX_SPEED = 0xFFFF_FFFF * 100
"""The fastest link a host can be told of: RNDIS counts in units of 100 bit/s in 32 bits."""


def _network(ctl: ControlServer, req: Request) -> NetFunction:
    _, _, f = ctl.function(req, "network")
    assert isinstance(f, NetFunction)
    return f


async def _link(ctl: ControlServer, req: Request) -> dict[str, Any]:
    state = req.get("state", str, required=True)
    if state not in ("up", "down"):
        raise ControlError(f"link state {state!r}: give up or down")
    _network(ctl, req).set_link(state == "up")
    return {"link": state}


async def _speed(ctl: ControlServer, req: Request) -> dict[str, Any]:
    bps = req.get("bps", int, required=True)
    if not 0 <= bps <= MAX_SPEED:
        raise ControlError(f"speed {bps}: bits per second, 0..{MAX_SPEED}")
    _network(ctl, req).set_speed(bps)
    return {"speed": bps}


async def _net_stats(ctl: ControlServer, req: Request) -> dict[str, Any]:
    f = _network(ctl, req)
    return {"link": "up" if f.link_up else "down", "speed": f.speed_bps, "mac": mac_text(f.mac),
            "stats": dict(sorted(f.stats.items()))}


def _link_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("state", choices=("up", "down"))


def _link_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["state"] = args.state


def _speed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bps", type=int, help="bits per second")


def _speed_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["bps"] = args.bps


def register(registry: Registry) -> None:
    for kind, description in (("ncm", "USB network adapter, CDC NCM (Linux cdc_ncm)"),
                              ("ecm", "USB network adapter, CDC ECM (Linux cdc_ether)"),
                              ("rndis", "USB network adapter, RNDIS (Windows, Linux rndis_host)")):
        registry.add_kind(kind, FIELDS, build_for(kind), description, docs="devices/network.md")
    registry.name_function(NetFunction, "network")
    registry.add_command(Command("link", "connect or disconnect a network adapter's cable", _link,
                                 _link_arguments, _link_request, timeout=False))
    registry.add_command(Command("speed", "report a network link speed to the host", _speed,
                                 _speed_arguments, _speed_request, timeout=False))
    registry.add_command(Command("net-stats", "a network adapter's counters (frames, bytes, drops by reason)",
                                 _net_stats, timeout=False))
