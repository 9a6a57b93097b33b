"""``vusb ctl``: the command-line client of the control channel.

Its commands come from the same registry the server's do (:mod:`vusb.registry`): the
generic ones (list, unplug, plug, fault-*) and those of each device class.
``vusb ctl`` alone lists them; ``vusb ctl COMMAND --help`` shows a command's arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vusb.control_client import ControlClient
from vusb.control_server import DEFAULT_TIMEOUT, default_socket_path
from vusb.errors import UsageError
from vusb.profile_faults import fault_fields
from vusb.registry import Command, registry

_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "0": "\0", "e": "\x1b", "b": "\b", "a": "\a",
                   "f": "\f", "v": "\v", "'": "'", '"': '"'}


def unescape(text: str) -> str:
    """Interpret backslash escapes (\\n \\r \\t \\e \\\\ \\xHH \\uHHHH) as a shell user means them."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(nxt)
        digits = text[i + 2 : i + 2 + width] if width else ""
        if width and len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
            out.append(chr(int(digits, 16)))
            i += 2 + width
            continue
        raise UsageError(f"unknown escape {text[i:i + 2]!r} at position {i} (use \\n \\r \\t \\e \\\\ \\xHH \\uHHHH)")
    return "".join(out)



_GENERIC: list[tuple[str, str, dict[str, bool]]] = [
    ("unplug", "stop exporting (disconnects its client)", {"function": False, "timeout": False}),
    ("plug", "export again", {"function": False, "timeout": False}),
    ("fault-add", "add a fault rule: KIND FIELD=VALUE... (docs/faults.md)", {"function": False, "timeout": False}),
    ("fault-list", "the fault rules and how often they fired", {"function": False, "timeout": False}),
    ("fault-clear", "remove every fault rule, or the one at INDEX", {"function": False, "timeout": False}),
]


def commands() -> list[tuple[str, str]]:
    """Every ``vusb ctl`` command with its one-line help, in the order ``vusb ctl`` lists them."""
    return [("list", "the served devices"), *((c.name, c.help) for c in registry().commands.values()),
            *((name, help_text) for name, help_text, _ in _GENERIC)]


def _ctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vusb ctl", description="drive the devices of a running `vusb serve`")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, *, busid: bool = True, function: bool = True,
                timeout: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if busid:
            p.add_argument("busid")
        if function:
            p.add_argument("--function", type=int, metavar="N", help="which function of a composite device")
        if timeout:
            p.add_argument("--timeout", type=float, metavar="SECONDS", help="how long to wait for the host")
        return p

    command("list", "the served devices", busid=False, function=False, timeout=False)
    for spec in registry().commands.values():
        p = command(spec.name, spec.help, busid=spec.busid, function=spec.function, timeout=spec.timeout)
        if spec.arguments is not None:
            spec.arguments(p)
    for name, help_text, flags in _GENERIC:
        p = command(name, help_text, **flags)
        if name == "fault-add":
            p.add_argument("kind", help=", ".join(fault_fields()))
            p.add_argument("fields", nargs="*", metavar="FIELD=VALUE", help="e.g. endpoint=0x81 count=1")
        elif name == "fault-clear":
            p.add_argument("index", type=int, nargs="?")
    return parser


def build_request(argv: Sequence[str]) -> tuple[dict[str, Any], bool]:
    """``vusb ctl`` arguments to a request object (and whether to print raw JSON)."""
    parser = _ctl_parser()
    as_json = "--json" in argv
    args = parser.parse_args([a for a in argv if a != "--json"])
    body: dict[str, Any] = {"cmd": args.cmd}
    for key in ("busid", "function", "timeout"):
        value = getattr(args, key, None)
        if value is not None:
            body[key] = value
    spec: Command | None = registry().commands.get(args.cmd)
    if spec is not None and spec.request is not None:
        spec.request(args, body)
    elif args.cmd == "fault-add":
        body["fault"] = {"kind": args.kind, **dict(_field_value(item) for item in args.fields)}
    elif args.cmd == "fault-clear" and args.index is not None:
        body["index"] = args.index
    return body, as_json


def _field_value(item: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` of ``vusb ctl fault-add``: integers (0x hex too), numbers, true/false, else text."""
    name, sep, text = item.partition("=")
    if not sep or not name:
        raise UsageError(f"fault field {item!r} is not FIELD=VALUE (for example endpoint=0x81)")
    if name == "data":
        return name, text  # hexadecimal bytes stay text
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return name, lowered == "true"
    for convert in (lambda t: int(t, 0), float):
        try:
            return name, convert(text)
        except ValueError:
            pass
    return name, text



def format_reply(body: dict[str, Any], reply: dict[str, Any]) -> str:
    """The text ``vusb ctl`` prints for a successful reply."""
    spec = registry().commands.get(body["cmd"])
    if spec is not None and spec.format is not None:
        return spec.format(reply)
    if body["cmd"] == "list":
        lines = []
        for d in reply.get("devices", []):
            state = ("attached" if d["attached"] else "free") if d["plugged"] else "unplugged"
            kinds = ", ".join(f"{f['index']}:{f['kind']}" for f in d["functions"])
            lines.append(f"{d['busid']}  {d['vendor_id']}:{d['product_id']} {d['product'] or '':28s} {state:9s} "
                         f"functions {kinds}")
            for f in d["functions"]:
                for lun in f.get("luns", []):
                    lines.append(f"      lun {lun['lun']}: {lun['medium'] or 'no medium'}")
        return "\n".join(lines) if lines else "no devices"
    if body["cmd"] == "fault-list":
        lines = [f"{f['index']}: {f['rule']}  matched {f['matched']} fired {f['fired']}"
                 + (" (spent)" if f["exhausted"] else "") for f in reply.get("faults", [])]
        return "\n".join(lines) if lines else "no fault rules"
    details = {k: v for k, v in reply.items() if k not in ("id", "ok")}
    return "ok" + "".join(f" {k}={v}" for k, v in details.items())


def command_list() -> str:
    """What ``vusb ctl`` alone prints: every command with its help."""
    known = commands()
    width = max(len(name) for name, _ in known)
    lines = ["usage: vusb ctl [--socket PATH | --port PORT] [--json] COMMAND ARGS...", "", "commands:"]
    lines += [f"  {name:{width}s}  {help_text}" for name, help_text in known]
    lines += ["", "`vusb ctl COMMAND --help` shows a command's arguments; docs/control.md has examples."]
    return "\n".join(lines)


def ctl_main(socket_path: str | None, port: int, argv: Sequence[str]) -> int:
    """``vusb ctl``: send one request, print the result; 0 on success, 1 on an error reply, 2 if unreachable."""
    if not [a for a in argv if a != "--json"]:
        print(command_list())
        return 0
    body, as_json = build_request(argv)
    path = Path(socket_path) if socket_path else default_socket_path(port)
    timeout = float(body.get("timeout", DEFAULT_TIMEOUT)) + 30.0
    try:
        with ControlClient(path, timeout=timeout) as client:
            reply = client.request(body)
    except FileNotFoundError:
        print(f"vusb ctl: error: no control socket at {path} (is `vusb serve` running"
              f"{'' if socket_path else f' on port {port}'}?)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"vusb ctl: error: control socket {path}: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(reply))
    if not reply.get("ok"):
        print(f"vusb ctl: error: {reply.get('error', 'failed')}", file=sys.stderr)
        return 1
    if not as_json:
        text = format_reply(body, reply)
        spec = registry().commands.get(body["cmd"])
        if spec is not None and spec.raw_output:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            print(text)
    return 0
