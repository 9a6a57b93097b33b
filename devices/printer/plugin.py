"""The printer class's registration: the ``printer`` profile kind and the ``printer-status`` command."""

from __future__ import annotations

import argparse
from typing import Any

from vusb.devices.printer.function import PrinterFunction
from vusb.devices.printer.profile import FIELDS, build

from vusb.control_server import ControlServer, Request
from vusb.errors import UsageError
from vusb.registry import Command, Registry

STATUS_FIELDS = ("paper_out", "selected", "error")
"""The port status lines ``printer-status`` shows and sets."""


async def _printer_status(ctl: ControlServer, req: Request) -> dict[str, Any]:
    """Set (any of paper_out, selected, error) and report a printer's port status."""
    _, _, f = ctl.function(req, "printer")
    assert isinstance(f, PrinterFunction)
    changes = {key: req.get(key, bool) for key in STATUS_FIELDS}
    if any(v is not None for v in changes.values()):
        f.set_status(**changes)
    return {"paper_out": f.paper_out, "selected": f.selected, "error": f.error,
            "port_status": f"0x{int(f.port_status):02x}", "jobs": len(f.jobs)}


def _status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("fields", nargs="*", metavar="FIELD=VALUE", help="paper_out=, selected=, error= (true/false)")


def _status_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    for item in args.fields:
        name, _, text = item.partition("=")
        value = text.strip().lower()
        if name not in STATUS_FIELDS or value not in ("true", "false"):
            raise UsageError(f"printer-status field {item!r}: paper_out=, selected= or error= with true or false")
        body[name] = value == "true"


def register(registry: Registry) -> None:
    registry.add_kind("printer", FIELDS, build, "USB printer (usblp): saves each job as a file in a job folder",
                      docs="devices/printer.md")
    registry.name_function(PrinterFunction, "printer")
    registry.add_command(Command("printer-status",
                                 "show or set a printer's port status: paper_out=, selected=, error= (true/false)",
                                 _printer_status, _status_arguments, _status_request, timeout=False))
