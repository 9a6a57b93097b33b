"""A local control channel: scripts in any language drive the devices a server exports.

While ``vusb serve`` runs, a user-only Unix domain socket takes JSON lines, one request
and one reply per line (the protocol and its safeguards: :mod:`vusb.control_server`).

The control channel is split along its seams: the server (:mod:`vusb.control_server`),
the client (:mod:`vusb.control_client`) and ``vusb ctl`` (:mod:`vusb.control_cli`);
device classes add their commands through :mod:`vusb.registry`.  This module keeps
every name importable from where it always was.  The protocol and every command are
described in docs/control.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from vusb.control_cli import build_request, command_list, commands, ctl_main, format_reply, unescape
from vusb.control_client import ControlClient
from vusb.control_server import (
    DEFAULT_TIMEOUT,
    MAX_LINE,
    ControlError,
    ControlRequest,
    ControlServer,
    Request,
    check_private_dir,
    default_socket_path,
    fault_from_fields,
    function_kind,
    name_list,
    prepare_socket_path,
)

_Request = Request

_CLASS_HELPERS = {"parse_keys": "vusb.devices.keyboard_plugin", "parse_buttons": "vusb.devices.mouse_plugin"}


def __getattr__(name: str) -> Any:
    """Helpers of device classes' commands, imported only when asked for (the framework imports no class)."""
    if name in _CLASS_HELPERS:
        return getattr(importlib.import_module(_CLASS_HELPERS[name]), name)
    raise AttributeError(f"module 'vusb.control' has no attribute {name!r}")


__all__ = [
    "DEFAULT_TIMEOUT", "MAX_LINE", "ControlClient", "ControlError", "ControlRequest", "ControlServer", "Request",
    "build_request", "check_private_dir", "command_list", "commands", "ctl_main", "default_socket_path",
    "fault_from_fields", "format_reply", "function_kind", "name_list", "prepare_socket_path", "unescape",
]
