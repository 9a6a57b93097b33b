"""The MIDI interface's registration: the ``midi`` profile kind and the ``midi-send``/``midi-read`` commands."""

from __future__ import annotations

import argparse
from typing import Any

from vusb.devices.midi.function import MidiFunction
from vusb.devices.midi.messages import split_messages
from vusb.devices.midi.profile import DESCRIPTION, FIELDS, build

from vusb.control_server import ControlError, ControlServer, Request
from vusb.errors import UsageError
from vusb.registry import Command, Registry


def _midi(ctl: ControlServer, req: Request) -> tuple[str, MidiFunction]:
    busid, _, f = ctl.function(req, "midi")
    assert isinstance(f, MidiFunction)
    return busid, f


async def _midi_send(ctl: ControlServer, req: Request) -> dict[str, Any]:
    text = req.get("data", str, required=True)
    cable = req.integer("cable", 0)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ControlError(f"field 'data' must be hexadecimal bytes such as '90 3C 7F', not {text!r}") from None
    try:
        messages = split_messages(raw)
    except UsageError as exc:
        raise ControlError(f"field 'data': {exc}") from None
    busid, f = _midi(ctl, req)
    if not 0 <= cable < f.cables:
        raise ControlError(f"the MIDI interface {busid} has cables 0..{f.cables - 1}, not {cable}")
    timeout = req.timeout()
    try:
        await f.send(raw, cable, timeout=timeout)
    except TimeoutError:
        raise ControlError(f"timed out after {timeout:g} s: the host of {busid} is not reading MIDI") from None
    return {"busid": busid, "messages": len(messages), "cable": cable}


async def _midi_read(ctl: ControlServer, req: Request) -> dict[str, Any]:
    busid, f = _midi(ctl, req)
    timeout = req.timeout()
    try:
        first = await f.receive(timeout)
    except TimeoutError:
        raise ControlError(f"no MIDI message from the host of {busid} within {timeout:g} s") from None
    out = [first]
    while not f.received.empty():
        out.append(f.received.get_nowait())
    return {"busid": busid, "messages": [{"cable": m.cable, "data": m.hex(), "type": m.type} for m in out]}


def _send_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="hex MIDI bytes, whole messages, such as '90 3C 7F'")
    p.add_argument("--cable", type=int, help="the cable (port) number, default 0")


def _send_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["data"] = args.data
    if args.cable is not None:
        body["cable"] = args.cable


def _read_format(reply: dict[str, Any]) -> str:
    return "\n".join(f"cable {m['cable']}: {m['data']}" for m in reply.get("messages", []))


def register(registry: Registry) -> None:
    registry.add_kind("midi", FIELDS, build, DESCRIPTION, docs="devices/midi.md")
    registry.name_function(MidiFunction, "midi")
    registry.add_command(Command("midi-send", "send MIDI messages (hex bytes such as '90 3C 7F') to the host",
                                 _midi_send, _send_arguments, _send_request))
    registry.add_command(Command("midi-read", "MIDI messages the host sent (waits for the first)", _midi_read,
                                 format=_read_format))
