"""YAML device profiles.

A profile describes one device: its identity and the functions it is made of::

    identity:
      vendor_id: 0x1209
      product_id: 0x0001
      manufacturer: vusb
      product: Virtual Keyboard
      speed: full
    functions:
      - kind: keyboard

Every error names the file, the line and column, and the field path
(``functions[0].kind``), and says what was expected.  Function kinds are
registered by the device modules (:func:`register_kind`); the format is
documented in ``docs/profiles.md``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vusb.constants import Speed, TransferType
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    DeviceDescriptor,
    DeviceQualifierDescriptor,
    InterfaceDescriptor,
    StringDescriptor,
)
from vusb.device import NOT_HANDLED, ControlResult, Device, Function, StringTable
from vusb.errors import ProfileError, Stall, VusbError
from vusb.faults import DESCRIPTOR_TYPES, SENSE_KEYS, Fault
from vusb.faults import KINDS as FAULT_KINDS
from vusb.urb import SetupPacket

Node = yaml.Node


@dataclass(frozen=True)
class Field:
    """One field of a profile mapping."""

    kind: str  # "int", "str", "bool", "hex", "choice", "float", "map", "list"
    required: bool = False
    default: Any = None
    low: float | None = None
    """Smallest value allowed (int and float fields); ``low_open`` makes it the bound not reached."""
    high: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    low_open: bool = False

    def bounds(self) -> str | None:
        """The allowed range as text ("0..255", ">= 1", "(0, 1]"), or None when there is none."""
        low, high = (None if b is None else f"{b:g}" if isinstance(b, float) else str(b) for b in (self.low, self.high))
        if low is not None and high is not None:
            return f"({low}, {high}]" if self.low_open else f"{low}..{high}"
        if low is not None:
            return f"> {low}" if self.low_open else f">= {low}"
        return f"<= {high}" if high is not None else None

    def in_range(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


@dataclass
class Located:
    """A value with where it came from, for error messages."""

    value: Any
    node: Node
    path: str


class ProfileContext:
    """Where a profile is, for errors and for resolving relative paths."""

    def __init__(self, file: str, base_dir: Path, *, allow_outside_paths: bool = False) -> None:
        self.file = file
        self.base_dir = base_dir
        self.allow_outside_paths = allow_outside_paths
        self.speed: Speed | None = None
        """The device's speed while its functions are built (a kind may check what that speed allows)."""

    def error(self, node: Node | None, path: str, message: str) -> ProfileError:
        line = node.start_mark.line + 1 if node is not None else None
        column = node.start_mark.column + 1 if node is not None else None
        return ProfileError(message, file=self.file, line=line, column=column, field=path or None)

    def resolve(self, value: str, where: Located, *, follow_final: bool = True) -> Path:
        """A path from the profile, relative to its folder, which it may not leave unless allowed.

        A profile from elsewhere must not make the server create, overwrite or expose
        files outside the profile's own folder (disk images, pty links).  Every symbolic
        link on the way is followed, the final name too, so ``disk.img -> ../secret.img``
        is refused.  ``follow_final=False`` is for names the server itself makes a link
        (a pty link points into /dev/pts, and may not exist yet): there only the folders
        are followed.
        """
        p = Path(value)
        full = p if p.is_absolute() else self.base_dir / p
        if not self.allow_outside_paths:
            base = self.base_dir.resolve()
            target = full.resolve() if follow_final else full.parent.resolve() / full.name
            if full.name == ".." or not target.is_relative_to(base):
                shown = f" (it leads to {target})" if target != Path(os.path.normpath(full)) else ""
                raise self.error(where.node, where.path,
                                 f"path {value!r}{shown} leaves the profile's folder {base}; allow it with "
                                 "--allow-outside-paths (load_profile(..., allow_outside_paths=True))")
        return full


def _scalar(ctx: ProfileContext, node: Node, path: str, spec: Field) -> Any:
    if spec.kind in ("map", "list"):
        expected = "a mapping" if spec.kind == "map" else "a list"
        ok = isinstance(node, yaml.MappingNode) if spec.kind == "map" else isinstance(node, yaml.SequenceNode)
        if not ok:
            raise ctx.error(node, path, f"expected {expected}")
        return node
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.error(node, path, f"expected a single value ({spec.kind}), found a {'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}")
    value = yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value
    if spec.kind == "int":
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise ctx.error(node, path, f"expected an integer (decimal or 0x hex), got {node.value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(node, path, f"expected an integer (decimal or 0x hex), got {node.value!r}")
        if not spec.in_range(value):
            hex_bounds = (f" (0x{int(spec.low):x}..0x{int(spec.high):x})"
                          if spec.low is not None and spec.high is not None and spec.high > 255 else "")
            raise ctx.error(node, path, f"{value} is out of range {spec.bounds()}{hex_bounds}")
        return value
    if spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(node, path, f"expected a number, got {node.value!r}")
        if not math.isfinite(value):
            raise ctx.error(node, path, f"expected a finite number, got {node.value!r}")
        if not spec.in_range(value):
            raise ctx.error(node, path, f"{value:g} is out of range {spec.bounds()}")
        return float(value)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ctx.error(node, path, f"expected true or false, got {node.value!r}")
        return value
    if spec.kind == "str":
        if value is None:
            raise ctx.error(node, path, "expected a string, got nothing")
        return str(node.value)
    if spec.kind == "choice":
        text = str(node.value)
        if text not in spec.choices:
            raise ctx.error(node, path, f"{text!r} is not one of: {', '.join(spec.choices)}")
        return text
    if spec.kind == "hex":
        text = str(node.value).replace(" ", "").replace(":", "").replace("\n", "")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ctx.error(node, path, "expected hexadecimal bytes such as '05 01 09 06'") from None
    raise AssertionError(spec.kind)


def read_mapping(
    ctx: ProfileContext, node: Node, path: str, fields: Mapping[str, Field], *, allow_extra: Sequence[str] = ()
) -> dict[str, Located]:
    """Check a mapping node against ``fields``: unknown keys, missing keys, types and ranges."""
    if not isinstance(node, yaml.MappingNode):
        raise ctx.error(node, path, "expected a mapping of fields")
    out: dict[str, Located] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        sub = f"{path}.{key}" if path else key
        if key in allow_extra:
            continue
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ctx.error(key_node, sub, f"unknown field {key!r}; expected one of: {known}")
        if key in out:
            raise ctx.error(key_node, sub, f"field {key!r} is given twice")
        out[key] = Located(_scalar(ctx, value_node, sub, fields[key]), value_node, sub)
    for key, spec in fields.items():
        if key not in out:
            if spec.required:
                raise ctx.error(node, f"{path}.{key}" if path else key, f"required field {key!r} is missing")
            out[key] = Located(spec.default, node, f"{path}.{key}" if path else key)
    return out


# ------------------------------------------------------------------ kinds

FunctionBuilder = Callable[[ProfileContext, dict[str, Located]], Function]


@dataclass(frozen=True)
class Kind:
    name: str
    fields: Mapping[str, Field]
    build: FunctionBuilder
    description: str = ""


_KINDS: dict[str, Kind] = {}


def register_kind(name: str, fields: Mapping[str, Field], build: FunctionBuilder, description: str = "") -> None:
    """Make a function kind available to profiles (device modules call this)."""
    _KINDS[name] = Kind(name, dict(fields), build, description)


def kinds() -> dict[str, Kind]:
    _load_builtin_kinds()
    return dict(_KINDS)


def _load_builtin_kinds() -> None:
    import vusb.devices.profile_kinds  # noqa: F401  (registers the shipped kinds)


IDENTITY_FIELDS: dict[str, Field] = {
    "vendor_id": Field("int", True, low=0, high=0xFFFF, help="idVendor"),
    "product_id": Field("int", True, low=0, high=0xFFFF, help="idProduct"),
    "device_version": Field("int", False, 0x0100, 0, 0x9999, help="bcdDevice, binary-coded decimal such as 0x0100"),
    "manufacturer": Field("str", False, None),
    "product": Field("str", False, None),
    "serial_number": Field("str", False, None),
    "speed": Field("choice", False, "full", choices=("low", "full", "high", "super")),
    "max_power_ma": Field("int", False, None, 0, 2040, help="bMaxPower in mA"),
    "self_powered": Field("bool", False, False),
    "remote_wakeup": Field("bool", False, False),
}

TOP_FIELDS: dict[str, Field] = {
    "identity": Field("map", False),
    "functions": Field("list", False),
    "descriptors": Field("map", False),
    "control": Field("list", False, help="canned answers to class and vendor control requests"),
    "faults": Field("list", False, help="fault rules: make the device misbehave on purpose (docs/faults.md)"),
}

CONTROL_FIELDS: dict[str, Field] = {
    "request_type": Field("int", True, low=0x20, high=0xFF,
                          help="bmRequestType: direction | type (class 0x20, vendor 0x40) | recipient"),
    "request": Field("int", True, low=0, high=0xFF, help="bRequest"),
    "value": Field("int", False, None, 0, 0xFFFF, help="wValue to match (any when omitted)"),
    "index": Field("int", False, None, 0, 0xFFFF, help="wIndex to match (any when omitted)"),
    "reply": Field("hex", False, None, help="IN data (cut to wLength)"),
    "stall": Field("bool", False, False, help="answer with a stall"),
}


@dataclass(frozen=True)
class CannedRequest:
    """One ``control:`` entry: a class or vendor request and its answer."""

    request_type: int
    request: int
    value: int | None
    index: int | None
    reply: bytes | None
    stall: bool

    def matches(self, setup: SetupPacket) -> bool:
        return (setup.request_type == self.request_type and setup.request == self.request
                and (self.value is None or setup.value == self.value)
                and (self.index is None or setup.index == self.index))


def _read_control(ctx: ProfileContext, node: Node) -> list[CannedRequest]:
    entries = []
    for i, item in enumerate(node.value):
        path = f"control[{i}]"
        o = read_mapping(ctx, item, path, CONTROL_FIELDS)
        rtype = o["request_type"].value
        if (rtype >> 5) & 3 not in (1, 2):
            raise ctx.error(o["request_type"].node, o["request_type"].path,
                            f"0x{rtype:02x} is not a class (0x20) or vendor (0x40) request; standard requests "
                            "are answered by the device itself")
        is_in = bool(rtype & 0x80)
        reply, stall = o["reply"].value, o["stall"].value
        if reply is not None and not is_in:
            raise ctx.error(o["reply"].node, o["reply"].path,
                            "a reply is IN data, but this request_type is host-to-device (bit 7 clear)")
        if reply is not None and stall:
            raise ctx.error(o["stall"].node, o["stall"].path, "give either a reply or stall: true, not both")
        entries.append(CannedRequest(rtype, o["request"].value, o["value"].value, o["index"].value,
                                     reply if reply is not None else (b"" if is_in and not stall else None), stall))
    return entries


def canned_handler(entries: list[CannedRequest]) -> Callable[[SetupPacket, bytes], ControlResult]:
    """A device-level handler answering class/vendor requests from a profile's ``control:`` list."""

    def handle(setup: SetupPacket, data: bytes) -> ControlResult:
        for entry in entries:
            if entry.matches(setup):
                if entry.stall:
                    raise Stall()
                return entry.reply
        return NOT_HANDLED

    return handle

# ------------------------------------------------------------------ faults

FAULT_FIRING_FIELDS: dict[str, Field] = {
    "count": Field("int", False, None, 1, None, help="fire at most this many times (default: every time)"),
    "after": Field("int", False, 0, 0, None, help="let this many matches pass before firing"),
    "after_bytes": Field("int", False, 0, 0, None, help="let this many bytes pass through matched URBs first"),
    "probability": Field("float", False, 1.0, low=0, high=1, low_open=True,
                         help="fire with this probability, 0 < p <= 1 (default 1)"),
    "seed": Field("int", False, 0, 0, None, help="seed of the random generator of probability (default 0)"),
}

FAULT_MATCH_FIELDS: dict[str, Field] = {
    "endpoint": Field("int", False, None, 0, 0xFF, help="endpoint address (0x81: IN 1, 0x02: OUT 2, 0: control)"),
    "request_type": Field("int", False, None, 0, 0xFF, help="control transfers: bmRequestType to match"),
    "request": Field("int", False, None, 0, 0xFF, help="control transfers: bRequest to match"),
    "value": Field("int", False, None, 0, 0xFFFF, help="control transfers: wValue to match"),
    "index": Field("int", False, None, 0, 0xFFFF, help="control transfers: wIndex to match"),
    "min_length": Field("int", False, 0, 0, None, help="only URBs with a buffer of at least this many bytes"),
    **FAULT_FIRING_FIELDS,
}

FAULT_FIELDS: dict[str, dict[str, Field]] = {
    "stall": {**FAULT_MATCH_FIELDS,
              "halt": Field("bool", False, True, help="bulk/interrupt: stay halted until the host clears it "
                                                      "(default true)")},
    "delay": {**FAULT_MATCH_FIELDS,
              "seconds": Field("float", True, low=0, help="how late the URB is handled")},
    "drop": dict(FAULT_MATCH_FIELDS),
    "disconnect": dict(FAULT_MATCH_FIELDS),
    "short": {**FAULT_MATCH_FIELDS,
              "length": Field("int", True, None, 0, None, help="bytes answered (IN) or consumed (OUT) at most")},
    "babble": dict(FAULT_MATCH_FIELDS),
    "corrupt-descriptor": {
        "type": Field("str", True, help="descriptor type: device, configuration, string, device_qualifier, "
                                        "other_speed_configuration, bos, hid_report, or a number"),
        "index": Field("int", False, None, 0, 0xFF, help="descriptor index (default: any)"),
        "offset": Field("int", True, None, 0, 0xFFFF, help="where the bytes are written"),
        "data": Field("hex", True, help="the bytes written at offset"),
        **FAULT_FIRING_FIELDS,
    },
    "scsi-failure": {
        "sense_key": Field("str", True, help="sense key: a name (MEDIUM_ERROR, NOT_READY, UNIT_ATTENTION...) "
                                             "or a number"),
        "asc": Field("int", False, 0, 0, 0xFF, help="additional sense code"),
        "ascq": Field("int", False, 0, 0, 0xFF, help="additional sense code qualifier"),
        "opcode": Field("int", False, None, 0, 0xFF, help="SCSI operation code to match (0x28: READ(10); "
                                                          "default: any)"),
        "lun": Field("int", False, None, 0, 15, help="logical unit to match (default: any)"),
        "lba": Field("int", False, None, 0, None, help="first block of the failing range (READ/WRITE/VERIFY)"),
        "blocks": Field("int", False, 1, 1, None, help="blocks in the failing range (default 1)"),
        **FAULT_FIRING_FIELDS,
    },
}


@dataclass(frozen=True)
class FaultSpec:
    """One ``faults:`` entry; :meth:`rule` makes a fresh rule (counters at zero) for each device built."""

    kind: str
    options: dict[str, Any]
    node: Node
    path: str

    def rule(self) -> Fault:
        return FAULT_KINDS[self.kind](**self.options)


def _name_or_number(ctx: ProfileContext, loc: Located, names: Mapping[str, int], what: str) -> int | str:
    text = str(loc.value).strip()
    try:
        return int(text, 0)
    except ValueError:
        pass
    if text in names or text.upper() in names:
        return text if text in names else text.upper()
    raise ctx.error(loc.node, loc.path, f"unknown {what} {text!r}; expected one of: {', '.join(names)}, or a number")


def _kind_of(ctx: ProfileContext, item: Node, path: str, names: Sequence[str], what: str) -> str:
    """The ``kind`` of a list entry (a function, a fault), which must be a mapping and name one of ``names``."""
    if not isinstance(item, yaml.MappingNode):
        raise ctx.error(item, path, "expected a mapping with a 'kind' field")
    kind_node = next((v for k, v in item.value if k.value == "kind"), None)
    if kind_node is None:
        raise ctx.error(item, f"{path}.kind", f"required field 'kind' is missing; one of: {', '.join(names)}")
    if not isinstance(kind_node, yaml.ScalarNode):
        raise ctx.error(kind_node, f"{path}.kind", f"expected the name of a {what}; one of: {', '.join(names)}")
    kind = str(kind_node.value)
    if kind not in names:
        raise ctx.error(kind_node, f"{path}.kind", f"unknown {what} {kind!r}; expected one of: {', '.join(names)}")
    return kind


def read_fault(ctx: ProfileContext, item: Node, path: str) -> FaultSpec:
    """One fault entry (a profile's ``faults[i]``, or a ``vusb ctl fault-add`` request) checked field by field."""
    kind = _kind_of(ctx, item, path, list(FAULT_FIELDS), "fault kind")
    values = read_mapping(ctx, item, path, FAULT_FIELDS[kind], allow_extra=("kind",))
    options = {k: v.value for k, v in values.items() if v.value is not None}
    if kind == "corrupt-descriptor":
        options["type"] = _name_or_number(ctx, values["type"], DESCRIPTOR_TYPES, "descriptor type")
        if not options["data"]:
            raise ctx.error(values["data"].node, values["data"].path, "expected at least one byte")
    elif kind == "scsi-failure":
        options["sense_key"] = _name_or_number(ctx, values["sense_key"], SENSE_KEYS, "sense key")
    try:
        FAULT_KINDS[kind](**options)  # values the rule refuses are reported here, at the entry
    except VusbError as exc:
        raise ctx.error(item, path, str(exc)) from exc
    return FaultSpec(kind, options, item, path)


def _read_faults(ctx: ProfileContext, node: Node) -> list[FaultSpec]:
    return [read_fault(ctx, item, f"faults[{i}]") for i, item in enumerate(node.value)]


#: identity fields of a raw-descriptor profile: all optional, and each must agree with the descriptors
RAW_IDENTITY_FIELDS: dict[str, Field] = {
    name: dataclasses.replace(spec, required=False, default=None) for name, spec in IDENTITY_FIELDS.items()
}

DESCRIPTOR_FIELDS: dict[str, Field] = {
    "device": Field("hex", True, help="the 18-byte device descriptor"),
    "configurations": Field("list", True, help="each full configuration descriptor (wTotalLength bytes)"),
    "bos": Field("hex", False, None, help="the BOS descriptor with its capabilities"),
    "qualifier": Field("hex", False, None, help="the device qualifier (high-speed devices)"),
    "strings": Field("map", False, None, help="index -> text, or language id -> {index -> text}"),
    "report_descriptors": Field("map", False, None, help="HID interface number -> report descriptor hex"),
    "fix_report_lengths": Field("bool", False, False,
                                help="rewrite wDescriptorLength in HID descriptors to match the report served"),
}


@dataclass
class Profile:
    """A loaded, checked profile.  :meth:`build` makes a fresh device from it."""

    file: str
    identity: dict[str, Any]
    functions: list[tuple[Kind, dict[str, Located]]]
    context: ProfileContext
    descriptors: RawDescriptors | None = None
    control: list[CannedRequest] = dataclasses.field(default_factory=list)
    faults: list[FaultSpec] = dataclasses.field(default_factory=list)

    def build(self) -> Device:
        device = self._build()
        if self.control:
            device.vendor_handler = canned_handler(self.control)
        for spec in self.faults:
            try:
                device.faults.add(spec.rule())
            except VusbError as exc:
                device.close_unstarted()
                raise self.context.error(spec.node, spec.path, str(exc)) from exc
        return device

    def _build(self) -> Device:
        if self.descriptors is not None:
            return self.descriptors.build(self)
        built = []
        self.context.speed = Speed.parse(self.identity["speed"])
        for kind, options in self.functions:
            try:
                built.append(kind.build(self.context, options))
            except ProfileError:
                raise
            except VusbError as exc:
                raise self.context.error(next(iter(options.values())).node if options else None,
                                         f"functions ({kind.name})", str(exc)) from exc
        ident = dict(self.identity)
        speed = Speed.parse(ident.pop("speed"))
        try:
            return Device(*built, speed=speed, **{k: v for k, v in ident.items() if v is not None})
        except VusbError as exc:
            raise ProfileError(str(exc), file=self.file) from exc

    @property
    def name(self) -> str:
        return str(self.identity.get("product") or Path(self.file).stem)


def load_profile(path: str | Path, *, allow_outside_paths: bool = False) -> Profile:
    """Read and check a profile file; raises :class:`ProfileError` naming what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read the profile: {exc.strerror or exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"the profile is not UTF-8 text: {exc.reason} at byte {exc.start}", file=str(path)) from exc
    return parse_profile(text, str(path), path.resolve().parent, allow_outside_paths=allow_outside_paths)


def parse_profile(text: str, file: str = "<profile>", base_dir: Path | None = None, *,
                  allow_outside_paths: bool = False) -> Profile:
    ctx = ProfileContext(file, base_dir or Path.cwd(), allow_outside_paths=allow_outside_paths)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ProfileError(
            f"invalid YAML: {exc.problem}", file=file,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
        ) from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"invalid YAML: {exc}", file=file) from exc
    if root is None:
        raise ProfileError("the profile is empty; it needs 'identity' and 'functions'", file=file)
    top = read_mapping(ctx, root, "", TOP_FIELDS)
    raw_node = top["descriptors"].value
    for key in ("identity", "functions"):
        if raw_node is None and top[key].value is None:
            raise ctx.error(root, key, f"required field {key!r} is missing")
    ident_node = top["identity"].value
    if raw_node is not None:
        ident_values = read_mapping(ctx, ident_node, "identity", RAW_IDENTITY_FIELDS) if ident_node is not None else {}
        descriptors = _read_descriptors(ctx, raw_node, ident_values)
        identity = {k: v.value for k, v in ident_values.items()}
        identity["speed"] = descriptors.speed.name.lower()
        for key, value in descriptors.identity().items():
            if identity.get(key) is None:
                identity[key] = value
    else:
        descriptors = None
        ident_values = read_mapping(ctx, ident_node, "identity", IDENTITY_FIELDS)
        identity = {k: v.value for k, v in ident_values.items()}
    funcs_node = top["functions"].value
    if funcs_node is None:
        funcs_node = yaml.SequenceNode("tag:yaml.org,2002:seq", [])
    elif not funcs_node.value and descriptors is None:
        raise ctx.error(funcs_node, "functions", "at least one function is needed (for example '- kind: keyboard')")
    available = kinds()
    functions = []
    for i, fnode in enumerate(funcs_node.value):
        fpath = f"functions[{i}]"
        kind = available[_kind_of(ctx, fnode, fpath, sorted(available), "kind")]
        if descriptors is not None:
            descriptors.attach.append(_read_interfaces(ctx, fnode, fpath, descriptors))
            options = read_mapping(ctx, fnode, fpath, kind.fields, allow_extra=("kind", "interface"))
        else:
            options = read_mapping(ctx, fnode, fpath, kind.fields, allow_extra=("kind",))
        functions.append((kind, options))
    control_node = top["control"].value
    control = _read_control(ctx, control_node) if control_node is not None else []
    faults_node = top["faults"].value
    faults = _read_faults(ctx, faults_node) if faults_node is not None else []
    profile = Profile(file, identity, functions, ctx, descriptors, control, faults)
    # Build once now so that every definition error shows up at load time, with the file named;
    # the trial device is closed at once so it holds no file open.
    profile.build().close_unstarted()
    return profile


def load_device(path: str | Path) -> Device:
    """Load a profile and make its device."""
    return load_profile(path).build()


# ------------------------------------------------------------ raw-descriptor profiles

_HID_CLASS = 0x03
_DEFAULT_LANGUAGE = 0x0409


def _int_key(ctx: ProfileContext, node: Node, path: str, low: int, high: int, what: str) -> int:
    try:
        value = int(str(node.value), 0)
    except ValueError:
        raise ctx.error(node, path, f"expected {what} (an integer {low}..{high}), got {node.value!r}") from None
    if not low <= value <= high:
        raise ctx.error(node, path, f"{what} {value} is out of range {low}..{high}")
    return value


def _hex_node(ctx: ProfileContext, node: Node, path: str) -> bytes:
    value: bytes = _scalar(ctx, node, path, Field("hex"))
    return value


@dataclass
class RawDescriptors:
    """The ``descriptors`` section of a profile: bytes served as they are."""

    context: ProfileContext
    node: Node
    speed: Speed
    device_bytes: bytes
    device: DeviceDescriptor
    configuration_bytes: list[tuple[bytes, Node]]
    configurations: list[ConfigurationDescriptor]
    bos: BosDescriptor | None
    qualifier: DeviceQualifierDescriptor | None
    languages: tuple[int, ...]
    strings: dict[int, dict[int, str]]
    reports: dict[int, tuple[bytes, Node]]
    fix_report_lengths: bool
    attach: list[tuple[tuple[int, ...], Node, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def string(self, index: int) -> str | None:
        if not index or not self.languages:
            return None
        return self.strings[self.languages[0]].get(index)

    def identity(self) -> dict[str, Any]:
        d = self.device
        first = self.configurations[0]
        return {
            "vendor_id": d.vendor_id, "product_id": d.product_id, "device_version": d.device_version,
            "manufacturer": self.string(d.manufacturer_index), "product": self.string(d.product_index),
            "serial_number": self.string(d.serial_number_index), "max_power_ma": first.max_power_ma,
            "self_powered": first.self_powered, "remote_wakeup": first.remote_wakeup,
        }

    def hid_interfaces(self) -> dict[int, InterfaceDescriptor]:
        """HID interfaces (alternate 0) of every configuration, by number."""
        out: dict[int, InterfaceDescriptor] = {}
        for config in self.configurations:
            for itf in config.interfaces:
                if itf.interface_class == _HID_CLASS and itf.alternate == 0:
                    out.setdefault(itf.number, itf)
        return out

    def build(self, profile: Profile) -> Device:
        from vusb.devices.hid import HidFunction

        ctx = self.context
        self.notes = []
        functions: list[tuple[HidFunction, tuple[int, ...], Node, str]] = []
        for (kind, options), (numbers, fnode, fpath) in zip(profile.functions, self.attach, strict=True):
            try:
                func = kind.build(ctx, options)
            except ProfileError:
                raise
            except VusbError as exc:
                raise ctx.error(fnode, fpath, str(exc)) from exc
            if not isinstance(func, HidFunction):
                raise ctx.error(fnode, f"{fpath}.kind", f"kind {kind.name!r} cannot be attached to raw descriptors; "
                                "HID kinds can (hid, keyboard, mouse), other interfaces stall class requests")
            functions.append((func, numbers, fnode, fpath))
        claimed = {n for _, numbers, _, _ in functions for n in numbers}
        hid = self.hid_interfaces()
        served: dict[int, tuple[int, Node, str]] = {}  # interface -> (report length, node, path) for the check
        for func, numbers, fnode, fpath in functions:
            served[numbers[0]] = (len(func.report_descriptor), fnode, fpath)
        auto: list[tuple[int, bytes, int]] = []
        for number, itf in sorted(hid.items()):
            if number in claimed:
                continue
            report = self.reports.get(number)
            if report is not None:
                auto.append((number, report[0], 0))
                served[number] = (len(report[0]), report[1], f"descriptors.report_descriptors.{number}")
                continue
            default = _boot_default(itf)
            if default is None:
                self.notes.append(f"interface {number}: HID without a report descriptor; GET_DESCRIPTOR(REPORT) "
                                  "stalls (give descriptors.report_descriptors)")
                continue
            name, data, size = default
            declared = _declared_report_length([raw for raw, _ in self.configuration_bytes], number)
            if declared not in (None, len(data)) and not self.fix_report_lengths:
                self.notes.append(
                    f"interface {number}: the boot {name} default report descriptor is {len(data)} bytes but "
                    f"wDescriptorLength is {declared}; not served (set descriptors.fix_report_lengths: true)")
                continue
            auto.append((number, data, size))
            served[number] = (len(data), self.node, f"descriptors.report_descriptors.{number}")
        config_bytes = []
        for raw, cnode in self.configuration_bytes:
            patched = bytearray(raw)
            for number, (length, node, path) in served.items():
                for offset, declared in _hid_length_offsets(raw, number):
                    if declared == length:
                        continue
                    if not self.fix_report_lengths:
                        raise ctx.error(node, path, f"the report descriptor is {length} bytes but interface {number}'s "
                                        f"HID descriptor says wDescriptorLength {declared}; give a report descriptor "
                                        "of that length or set descriptors.fix_report_lengths: true")
                    patched[offset:offset + 2] = length.to_bytes(2, "little")
            config_bytes.append((bytes(patched), cnode))
        configurations = [_parse_configuration(ctx, raw, cnode, f"descriptors.configurations[{i}]", self.speed)
                          for i, (raw, cnode) in enumerate(config_bytes)]
        attached: list[tuple[Function, tuple[int, ...]]] = []
        for func, numbers, fnode, fpath in functions:
            _bind_hid(ctx, func, numbers, configurations, fnode, fpath)
            attached.append((func, numbers))
        for number, data, size in auto:
            itf = hid[number]
            in_ep = next((e for e in itf.endpoints if e.is_in), None)
            func = HidFunction(data, input_size=size or max(1, (in_ep.max_packet_size & 0x7FF) if in_ep else 8),
                               subclass=itf.interface_subclass, protocol=itf.interface_protocol)
            _bind_hid(ctx, func, (number,), configurations, self.node, f"descriptors.report_descriptors.{number}")
            attached.append((func, (number,)))
        table = StringTable(self.languages or (_DEFAULT_LANGUAGE,))
        for lang, entries in self.strings.items():
            for index, text in entries.items():
                table.set(lang, index, text)
        try:
            return Device.from_descriptors(self.device, configurations, speed=self.speed, strings=table, bos=self.bos,
                                           qualifier=self.qualifier, functions=attached)
        except VusbError as exc:
            raise ctx.error(self.node, "descriptors", str(exc)) from exc


def _boot_default(itf: InterfaceDescriptor) -> tuple[str, bytes, int] | None:
    if itf.interface_subclass != 1:
        return None
    if itf.interface_protocol == 1:
        from vusb.devices.keyboard import BOOT_KEYBOARD_REPORT_DESCRIPTOR

        return "keyboard", BOOT_KEYBOARD_REPORT_DESCRIPTOR, 8
    if itf.interface_protocol == 2:
        from vusb.devices.mouse import BOOT_MOUSE_REPORT_DESCRIPTOR

        return "mouse", BOOT_MOUSE_REPORT_DESCRIPTOR, 4
    return None


def _hid_length_offsets(config: bytes, number: int) -> list[tuple[int, int]]:
    """Where interface ``number``'s HID descriptors give the report length: (offset, wDescriptorLength)."""
    out: list[tuple[int, int]] = []
    current = -1
    pos = config[0] if config else 0
    while pos + 2 <= len(config):
        length, dtype = config[pos], config[pos + 1]
        if length < 2 or pos + length > len(config):
            break
        if dtype == 0x04 and length >= 3:
            current = config[pos + 2]
        elif dtype == 0x21 and current == number and length >= 9:
            for k in range(config[pos + 5]):
                at = pos + 6 + 3 * k
                if at + 3 <= pos + length and config[at] == 0x22:
                    out.append((at + 1, int.from_bytes(config[at + 1:at + 3], "little")))
        pos += length
    return out


def _declared_report_length(configs: Sequence[bytes], number: int) -> int | None:
    for raw in configs:
        found = _hid_length_offsets(raw, number)
        if found:
            return found[0][1]
    return None


def _parse_configuration(ctx: ProfileContext, raw: bytes, node: Node, path: str, speed: Speed) -> ConfigurationDescriptor:
    try:
        config = ConfigurationDescriptor.parse(raw, speed=speed)
    except VusbError as exc:
        raise ctx.error(node, path, str(exc)) from exc
    _same_bytes(ctx, node, path, raw, config.to_bytes(), "configuration")
    return config


def _same_bytes(ctx: ProfileContext, node: Node, path: str, given: bytes, rebuilt: bytes, what: str) -> None:
    if given == rebuilt:
        return
    at = next((i for i, (a, b) in enumerate(zip(given, rebuilt, strict=False)) if a != b), min(len(given), len(rebuilt)))
    raise ctx.error(node, path, f"this {what} cannot be served byte for byte: {len(given)} bytes given, vusb would send "
                    f"{len(rebuilt)}, first difference at byte {at} (check lengths, bmAttributes bit 7 and counts)")


def _bind_hid(ctx: ProfileContext, func: Any, numbers: tuple[int, ...], configurations: Sequence[ConfigurationDescriptor],
              node: Node, path: str) -> None:
    number = numbers[0]
    itfs = [i for c in configurations for i in c.interfaces if i.number == number]
    if not itfs:
        raise ctx.error(node, path, f"interface {number} is not in the configurations")
    itf = itfs[0]
    if itf.interface_class != _HID_CLASS:
        raise ctx.error(node, path, f"interface {number} has class 0x{itf.interface_class:02x}, not HID (0x03)")
    eps = [e for i in itfs for e in i.endpoints if e.transfer_type == TransferType.INTERRUPT]
    in_ep = next((e for e in eps if e.is_in), None)
    if in_ep is None:
        raise ctx.error(node, path, f"interface {number} has no interrupt IN endpoint")
    out_ep = next((e for e in eps if not e.is_in), None)
    func.interface_number = number
    func.in_address = in_ep.address
    func.out_address = out_ep.address if out_ep is not None else None
    func.subclass = itf.interface_subclass
    func.protocol_code = itf.interface_protocol


def _read_interfaces(ctx: ProfileContext, fnode: Node, fpath: str, raw: RawDescriptors) -> tuple[tuple[int, ...], Node, str]:
    node = next((v for k, v in fnode.value if k.value == "interface"), None)
    path = f"{fpath}.interface"
    if node is None:
        raise ctx.error(fnode, path, "required field 'interface' is missing: the interface number this function "
                        "answers for in the descriptors")
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    numbers = tuple(_int_key(ctx, n, path, 0, 255, "an interface number") for n in items)
    if not numbers:
        raise ctx.error(node, path, "expected at least one interface number")
    known = {i.number for c in raw.configurations for i in c.interfaces}
    for n, item in zip(numbers, items, strict=True):
        if n not in known:
            raise ctx.error(item, path, f"interface {n} is not in the configurations (they have {sorted(known)})")
    taken = {x for nums, _, _ in raw.attach for x in nums}
    if taken & set(numbers):
        raise ctx.error(node, path, f"interface {sorted(taken & set(numbers))[0]} already has a function")
    return numbers, fnode, fpath


def _read_strings(ctx: ProfileContext, node: Node | None) -> tuple[tuple[int, ...], dict[int, dict[int, str]]]:
    if node is None:
        return (), {}
    path = "descriptors.strings"
    per_language = [isinstance(v, yaml.MappingNode) for _, v in node.value]
    if any(per_language) and not all(per_language):
        raise ctx.error(node, path, "give either index -> text, or language id -> {index -> text}, not both")

    def entries(mapping: Node, where: str) -> dict[int, str]:
        out: dict[int, str] = {}
        for k, v in mapping.value:
            index = _int_key(ctx, k, f"{where}.{k.value}", 1, 255, "a string index")
            if not isinstance(v, yaml.ScalarNode):
                raise ctx.error(v, f"{where}.{index}", "expected the string's text")
            text = str(v.value)
            try:
                StringDescriptor(text)
            except VusbError as exc:
                raise ctx.error(v, f"{where}.{index}", str(exc)) from exc
            out[index] = text
        return out

    if node.value and all(per_language):
        table = {}
        for k, v in node.value:
            lang = _int_key(ctx, k, f"{path}.{k.value}", 0, 0xFFFF, "a language id")
            table[lang] = entries(v, f"{path}.0x{lang:04x}")
        return tuple(table), table
    return (_DEFAULT_LANGUAGE,), {_DEFAULT_LANGUAGE: entries(node, path)}


def _guess_speed(device: DeviceDescriptor, qualifier: bool) -> Speed:
    if device.max_packet_size0 == 9 or device.usb_version >= 0x0300:
        return Speed.SUPER
    return Speed.HIGH if qualifier else Speed.FULL


_AGREE = {
    "vendor_id": ("idVendor", "descriptors.device"), "product_id": ("idProduct", "descriptors.device"),
    "device_version": ("bcdDevice", "descriptors.device"), "manufacturer": ("iManufacturer", "descriptors.strings"),
    "product": ("iProduct", "descriptors.strings"), "serial_number": ("iSerialNumber", "descriptors.strings"),
    "max_power_ma": ("bMaxPower", "descriptors.configurations[0]"),
    "self_powered": ("bmAttributes", "descriptors.configurations[0]"),
    "remote_wakeup": ("bmAttributes", "descriptors.configurations[0]"),
}


def _show(value: Any) -> str:
    return f"0x{value:04x}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _read_descriptors(ctx: ProfileContext, node: Node, identity: dict[str, Located]) -> RawDescriptors:
    values = read_mapping(ctx, node, "descriptors", DESCRIPTOR_FIELDS)
    dev_loc = values["device"]
    try:
        device = DeviceDescriptor.parse(dev_loc.value)
    except VusbError as exc:
        raise ctx.error(dev_loc.node, dev_loc.path, str(exc)) from exc
    _same_bytes(ctx, dev_loc.node, dev_loc.path, dev_loc.value, device.to_bytes(), "device descriptor")
    qual_loc = values["qualifier"]
    qualifier = None
    if qual_loc.value is not None:
        try:
            qualifier = DeviceQualifierDescriptor.parse(qual_loc.value)
        except VusbError as exc:
            raise ctx.error(qual_loc.node, qual_loc.path, str(exc)) from exc
        _same_bytes(ctx, qual_loc.node, qual_loc.path, qual_loc.value, qualifier.to_bytes(), "device qualifier")
    speed_loc = identity.get("speed")
    speed = Speed.parse(speed_loc.value) if speed_loc is not None and speed_loc.value is not None else (
        _guess_speed(device, qualifier is not None))
    configs_node = values["configurations"].value
    if not configs_node.value:
        raise ctx.error(configs_node, "descriptors.configurations", "at least one configuration is needed")
    config_bytes = [(_hex_node(ctx, n, f"descriptors.configurations[{i}]"), n) for i, n in enumerate(configs_node.value)]
    configurations = [_parse_configuration(ctx, raw, n, f"descriptors.configurations[{i}]", speed)
                      for i, (raw, n) in enumerate(config_bytes)]
    bos_loc = values["bos"]
    bos = None
    if bos_loc.value is not None:
        try:
            bos = BosDescriptor.parse(bos_loc.value)
        except VusbError as exc:
            raise ctx.error(bos_loc.node, bos_loc.path, str(exc)) from exc
        _same_bytes(ctx, bos_loc.node, bos_loc.path, bos_loc.value, bos.to_bytes(), "BOS descriptor")
    languages, strings = _read_strings(ctx, values["strings"].value)
    reports: dict[int, tuple[bytes, Node]] = {}
    rnode = values["report_descriptors"].value
    hid_numbers: set[int] = set()
    for config in configurations:
        hid_numbers.update(i.number for i in config.interfaces if i.interface_class == _HID_CLASS)
    if rnode is not None:
        for k, v in rnode.value:
            where = f"descriptors.report_descriptors.{k.value}"
            number = _int_key(ctx, k, where, 0, 255, "an interface number")
            if number not in hid_numbers:
                raise ctx.error(k, where, f"interface {number} is not a HID interface (HID interfaces: {sorted(hid_numbers)})")
            data = _hex_node(ctx, v, where)
            if not data:
                raise ctx.error(v, where, "the report descriptor is empty")
            reports[number] = (data, v)
    raw = RawDescriptors(ctx, node, speed, dev_loc.value, device, config_bytes, configurations, bos, qualifier,
                         languages, strings, reports, bool(values["fix_report_lengths"].value))
    # identity fields are optional; when given they must say what the descriptors say
    actual = raw.identity()
    for key, loc in identity.items():
        if key == "speed" or loc.value is None:
            continue
        if loc.value != actual[key]:
            field_name, where = _AGREE[key]
            raise ctx.error(loc.node, loc.path, f"{_show(loc.value)} disagrees with {field_name} ({_show(actual[key])}) in "
                            f"{where}; give the same value or leave the field out")
    return raw
