"""The ``replay`` profile kind: a recorded device's behaviour (what ``vusb record`` writes).

It attaches to the interfaces of a raw-descriptor profile (``interface: [0, 1]``) and
holds the recording: ``control`` (the recorded control requests and answers) and
``transfers`` (the conversation on the other endpoints).  Payloads are hex strings, or
``bin:OFFSET+LENGTH`` in ``data_file`` (a binary file beside the profile).  The format
is described in docs/record-replay.md.  This module also registers ``vusb ctl
replay-next`` (release recorded IN transfers of an ``on-demand`` replay) and
``vusb ctl replay-status`` (divergences so far).
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from vusb.control_server import ControlError, ControlServer
from vusb.control_server import ControlRequest as Request
from vusb.errors import UsageError, VusbError
from vusb.profile_fields import Field, Located, Node, ProfileContext, read_mapping
from vusb.registry import Command, Registry
from vusb.replay import (
    CLASSES,
    POLICIES,
    STATUS_NAMES,
    TIMINGS,
    RecordedControl,
    RecordedTransfer,
    ReplayFunction,
    load_handler,
)
from vusb.urb import SetupPacket

FIELDS: dict[str, Field] = {
    "class": Field("choice", False, "none", choices=CLASSES,
                   help="class-aware replay: storage (Bulk-Only disk served by LBA), hid, cdc, or none"),
    "unrecorded": Field("choice", False, "stall", choices=POLICIES,
                        help="what answers a request the recording does not hold: stall, nearest, handler"),
    "handler": Field("str", False, None, help="module:function called for unrecorded requests (unrecorded: handler)"),
    "timing": Field("choice", False, "recorded", choices=TIMINGS,
                    help="IN transfers: as recorded (wait as the device did), asap, or on-demand (vusb ctl replay-next)"),
    "data_file": Field("str", False, None, help="binary file beside the profile holding the bin:OFFSET+LENGTH payloads"),
    "control": Field("list", False, None, help="recorded control requests: {setup, config, alt, reply|status, out}"),
    "transfers": Field("list", False, None, help="recorded transfers: {ep, t, in|out, status, actual, wait}"),
}

CONTROL_ENTRY: dict[str, Field] = {
    "setup": Field("hex", True, help="the 8-byte setup packet"),
    "config": Field("int", False, 0, 0, 255, help="the configuration it came in"),
    "alt": Field("int", False, 0, 0, 255, help="the addressed interface's alternate setting"),
    "reply": Field("str", False, None, help="IN data: hex or bin:OFFSET+LENGTH"),
    "out": Field("str", False, None, help="OUT data the host sent"),
    "status": Field("str", False, None, help="stall (or another failure) instead of an answer"),
}

TRANSFER_ENTRY: dict[str, Field] = {
    "ep": Field("int", True, low=1, high=0xFF, help="endpoint address (0x80 set for IN)"),
    "t": Field("float", False, 0.0, 0.0, help="seconds since the recording started"),
    "in": Field("str", False, None, help="data the device returned"),
    "out": Field("str", False, None, help="data the host sent"),
    "status": Field("str", False, None, help="stall (or another failure)"),
    "actual": Field("int", False, None, 0, help="OUT: bytes the device took, when not all"),
    "wait": Field("float", False, 0.0, 0.0, help="IN: seconds the device held the URB before answering"),
    "iso": Field("list", False, None, help="isochronous packets: [offset, length] of each in the data"),
    "after": Field("str", False, None, help="IN: control[N], the control request recorded just before it"),
}


class _Payloads:
    def __init__(self, ctx: ProfileContext, data_file: Located) -> None:
        self.ctx = ctx
        self.where = data_file
        self.blob: bytes | None = None

    def read(self, loc: Located) -> bytes:
        text = str(loc.value).strip()
        if text.startswith("bin:"):
            try:
                offset_text, _, length_text = text[4:].partition("+")
                offset, length = int(offset_text, 0), int(length_text, 0)
            except ValueError:
                raise self.ctx.error(loc.node, loc.path, f"{text!r}: expected bin:OFFSET+LENGTH") from None
            blob = self._blob(loc)
            if offset < 0 or length < 0 or offset + length > len(blob):
                raise self.ctx.error(loc.node, loc.path, f"{text!r} reaches past the end of data_file "
                                     f"({len(blob)} bytes)")
            return blob[offset:offset + length]
        try:
            return bytes.fromhex(text.replace(" ", "").replace(":", "").replace("\n", ""))
        except ValueError:
            raise self.ctx.error(loc.node, loc.path, "expected hexadecimal bytes such as '05 01 09 06' or "
                                 "bin:OFFSET+LENGTH") from None

    def _blob(self, loc: Located) -> bytes:
        if self.blob is None:
            if self.where.value is None:
                raise self.ctx.error(loc.node, loc.path, "bin:OFFSET+LENGTH needs data_file (the binary file beside "
                                     "the profile)")
            path = self.ctx.resolve(str(self.where.value), self.where)
            try:
                self.blob = path.read_bytes()
            except OSError as exc:
                raise self.ctx.error(self.where.node, self.where.path,
                                     f"cannot read {path}: {exc.strerror or exc}") from exc
        return self.blob


def _status(ctx: ProfileContext, loc: Located) -> int:
    if loc.value is None:
        return 0
    text = str(loc.value).strip()
    if text in STATUS_NAMES:
        return int(STATUS_NAMES[text])
    try:
        value = int(text, 0)
    except ValueError:
        raise ctx.error(loc.node, loc.path, f"{text!r}: expected one of {', '.join(STATUS_NAMES)} or a negative "
                        "errno") from None
    if value >= 0:
        raise ctx.error(loc.node, loc.path, f"{value}: a failure status is a negative errno (-32 is a stall)")
    return value


def _items(node: Node | None) -> list[Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def read_control(ctx: ProfileContext, node: Node | None, payloads: _Payloads, path: str) -> list[RecordedControl]:
    out = []
    for i, item in enumerate(_items(node)):
        where = f"{path}[{i}]"
        o = read_mapping(ctx, item, where, CONTROL_ENTRY)
        raw = o["setup"].value
        if len(raw) != 8:
            raise ctx.error(o["setup"].node, o["setup"].path, f"a setup packet is 8 bytes, {len(raw)} given")
        setup = SetupPacket.parse(raw)
        status = _status(ctx, o["status"])
        reply = payloads.read(o["reply"]) if o["reply"].value is not None else None
        if reply is not None and not setup.is_in:
            raise ctx.error(o["reply"].node, o["reply"].path, "a reply is IN data, but this setup packet is OUT "
                            "(bit 7 of bmRequestType clear); give the host's data as out:")
        if reply is not None and status:
            raise ctx.error(o["status"].node, o["status"].path, "give either a reply or a status, not both")
        if setup.is_in and reply is None and not status:
            reply = b""
        out_data = payloads.read(o["out"]) if o["out"].value is not None else b""
        out.append(RecordedControl(setup, o["config"].value, o["alt"].value or None, reply, out_data, status, i))
    return out


def _iso(ctx: ProfileContext, loc: Located, data: bytes) -> tuple[tuple[int, int], ...]:
    packets: list[tuple[int, int]] = []
    offset = 0
    for k, item in enumerate(_items(loc.value)):
        where = f"{loc.path}[{k}]"
        try:
            value = yaml.safe_load(yaml.serialize(item))
            if isinstance(value, int) and not isinstance(value, bool):
                pair = (offset, value)
            elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
                pair = (value[0], value[1])
            else:
                raise ValueError
        except (ValueError, yaml.YAMLError):
            raise ctx.error(item, where, "expected a packet length or [offset, length]") from None
        if pair[0] < 0 or pair[1] < 0:
            raise ctx.error(item, where, "offsets and lengths are not negative")
        packets.append(pair)
        offset = pair[0] + pair[1]
    return tuple(packets)


def _after(ctx: ProfileContext, loc: Located, controls: int) -> int:
    text = str(loc.value).strip()
    if not (text.startswith("control[") and text.endswith("]") and text[8:-1].isdigit()):
        raise ctx.error(loc.node, loc.path, f"{text!r}: expected control[N], an entry of the control list")
    index = int(text[8:-1])
    if index >= controls:
        raise ctx.error(loc.node, loc.path, f"{text}: the control list has {controls} entries")
    return index


def read_transfers(ctx: ProfileContext, node: Node | None, payloads: _Payloads, path: str,
                   controls: int = 0) -> list[RecordedTransfer]:
    out = []
    outs = 0
    for i, item in enumerate(_items(node)):
        where = f"{path}[{i}]"
        o = read_mapping(ctx, item, where, TRANSFER_ENTRY)
        ep = o["ep"].value
        is_in = bool(ep & 0x80)
        key = "in" if is_in else "out"
        wrong = "out" if is_in else "in"
        if o[wrong].value is not None:
            raise ctx.error(o[wrong].node, o[wrong].path, f"endpoint 0x{ep:02x} is {key.upper()}: give {key}:, not "
                            f"{wrong}:")
        data = payloads.read(o[key]) if o[key].value is not None else b""
        status = _status(ctx, o["status"])
        actual = o["actual"].value if o["actual"].value is not None else len(data)
        iso = _iso(ctx, o["iso"], data) if o["iso"].value is not None else None
        after = _after(ctx, o["after"], controls) if o["after"].value is not None else None
        if after is not None and not is_in:
            raise ctx.error(o["after"].node, o["after"].path, "after: is for IN transfers (what triggered them)")
        out.append(RecordedTransfer(ep, data, status, actual, o["wait"].value, i, outs, iso, after))
        if not is_in and iso is None:
            outs += 1
    return out


def build(ctx: ProfileContext, o: dict[str, Located]) -> ReplayFunction:
    payloads = _Payloads(ctx, o["data_file"])
    path = o["control"].path.rsplit(".", 1)[0]
    control = read_control(ctx, o["control"].value, payloads, f"{path}.control")
    transfers = read_transfers(ctx, o["transfers"].value, payloads, f"{path}.transfers", len(control))
    handler = None
    if o["handler"].value is not None:
        try:
            handler = load_handler(str(o["handler"].value))
        except UsageError as exc:
            raise ctx.error(o["handler"].node, o["handler"].path, str(exc)) from exc
    elif o["unrecorded"].value == "handler":
        raise ctx.error(o["unrecorded"].node, o["unrecorded"].path, "unrecorded: handler needs handler: "
                        "module:function")
    options: dict[str, Any] = {"policy": o["unrecorded"].value, "handler": handler, "timing": o["timing"].value,
                               "device_class": o["class"].value}
    try:
        if o["class"].value == "storage":
            from vusb.replay_storage import StorageReplay

            return StorageReplay(control, transfers, **options)
        return ReplayFunction(control, transfers, **options)
    except VusbError as exc:
        raise ctx.error(o["class"].node, path, str(exc)) from exc


# ------------------------------------------------------------------ vusb ctl

async def _next(ctl: ControlServer, req: Request) -> dict[str, Any]:
    _, _, f = ctl.function(req, "replay")
    assert isinstance(f, ReplayFunction)
    count = req.integer("count", 1)
    endpoint = req.get("endpoint", int)
    try:
        left = f.release(count, endpoint)
    except UsageError as exc:
        raise ControlError(str(exc)) from exc
    return {"released": count, "left": left}


async def _status_cmd(ctl: ControlServer, req: Request) -> dict[str, Any]:
    _, _, f = ctl.function(req, "replay")
    assert isinstance(f, ReplayFunction)
    return _describe(f)


def _describe(f: Any) -> dict[str, Any]:
    return {"served": f.served, "divergences": len(f.divergences),
            "pending_in": {f"0x{ep:02x}": n for ep, n in f.pending_in().items()},
            "last_divergence": str(f.divergences[-1]) if f.divergences else None}


def _next_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=1, help="how many recorded IN transfers to let through (default 1)")
    p.add_argument("--endpoint", type=lambda s: int(s, 0), default=None,
                   help="only this IN endpoint (such as 0x81); default: every one")


def _next_request(args: argparse.Namespace, body: dict[str, Any]) -> None:
    body["count"] = args.count
    if args.endpoint is not None:
        body["endpoint"] = args.endpoint


def register(registry: Registry) -> None:
    registry.add_kind("replay", FIELDS, build,
                      "a recorded device's behaviour, replayed (written by vusb record; attaches to raw descriptors)",
                      docs="record-replay.md", raw_any=True)
    registry.name_function(ReplayFunction, "replay", _describe)
    registry.add_command(Command("replay-next", "let recorded IN transfers of an on-demand replay through", _next,
                                 _next_arguments, _next_request, timeout=False))
    registry.add_command(Command("replay-status", "what a replay served and how often it diverged", _status_cmd,
                                 timeout=False))
