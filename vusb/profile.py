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
registered by the device classes (:mod:`vusb.registry`); the format is
documented in ``docs/profiles.md``.

The machinery is split along its seams: the field reader (:mod:`vusb.profile_fields`),
the kind registry (:mod:`vusb.registry`), fault entries (:mod:`vusb.profile_faults`)
and raw-descriptor profiles (:mod:`vusb.profile_raw`); this module reads a whole
profile and keeps the names it always had importable from here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import inspect
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vusb.constants import Speed
from vusb.device import NOT_HANDLED, ControlResult, Device
from vusb.errors import ProfileError, Stall, VusbError
from vusb.profile_faults import (
    FAULT_FIRING_FIELDS,
    FAULT_MATCH_FIELDS,
    FaultSpec,
    fault_fields,
    read_fault,
    read_faults,
)
from vusb.profile_fields import (
    Field,
    Located,
    Node,
    ProfileContext,
    ProfileErrors,
    kind_of,
    read_mapping,
    read_scalar,
    suggest,
)
from vusb.profile_raw import (
    DESCRIPTOR_FIELDS,
    IDENTITY_FIELDS,
    RAW_IDENTITY_FIELDS,
    RawDescriptors,
    read_descriptors,
    read_interfaces,
)
from vusb.registry import FunctionBuilder, Kind, registry
from vusb.registry import register_kind as _register_kind
from vusb.urb import SetupPacket
from vusb.winusb import PlatformSection, read_platform_section

T = TypeVar("T")


def register_kind(name: str, fields: Mapping[str, Field], build: FunctionBuilder, description: str = "",
                  **options: Any) -> None:
    """Deprecated: make a function kind available to profiles at once.

    It still works, with a :class:`DeprecationWarning`.  A device class now registers its
    kinds, commands and fault kinds in its own ``register(registry)`` function, with
    :meth:`vusb.Registry.add_kind` (docs/writing-a-device.md); vusb calls it for built-in
    classes, ``vusb.devices`` entry points and :func:`vusb.load_device_class`.
    """
    warnings.warn("vusb.profile.register_kind is deprecated: register the kind in the class's register(registry) "
                  "function with registry.add_kind (see docs/writing-a-device.md)", DeprecationWarning, stacklevel=2)
    _register_kind(name, fields, build, description, **options)


def kinds() -> dict[str, Kind]:
    """Every function kind profiles can use, by name (built-in classes and ``vusb.devices`` entry points)."""
    return dict(registry().kinds)


def __getattr__(name: str) -> Any:
    if name == "FAULT_FIELDS":  # every registered fault kind's fields (it grows with the device classes)
        return fault_fields()
    raise AttributeError(f"module 'vusb.profile' has no attribute {name!r}")


TOP_FIELDS: dict[str, Field] = {
    "identity": Field("map", False),
    "functions": Field("list", False),
    "descriptors": Field("map", False),
    "control": Field("list", False, help="canned answers to class and vendor control requests"),
    "faults": Field("list", False, help="fault rules: make the device misbehave on purpose (docs/faults.md)"),
    "platform": Field("map", False, help="WinUSB (Microsoft OS 2.0) and WebUSB descriptors (docs/winusb-webusb.md)"),
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
        entry = _attempt(ctx, functools.partial(_read_canned, ctx.first_error_only(), item, f"control[{i}]"))
        if entry is not None:
            entries.append(entry)
    return entries


def _read_canned(ctx: ProfileContext, item: Node, path: str) -> CannedRequest:
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
    return CannedRequest(rtype, o["request"].value, o["value"].value, o["index"].value,
                         reply if reply is not None else (b"" if is_in and not stall else None), stall)


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
    notes: list[str] = dataclasses.field(default_factory=list)
    """Things worth telling that are not errors (an old kind spelling); ``vusb check`` prints them."""
    platform: PlatformSection | None = None
    """The ``platform:`` section: WinUSB and WebUSB descriptors added to every built device."""

    def build(self, *, dry_run: bool = False) -> Device:
        """A fresh device; ``dry_run`` checks everything but creates or changes no file (the device is for a check)."""
        device = self._build(self.context.checking() if dry_run else self.context)
        if self.platform is not None:
            try:
                self.platform.apply(device)
            except VusbError as exc:
                device.close_unstarted()
                raise self.context.error(self.platform.node, self.platform.path, str(exc)) from exc
        if self.control:
            device.vendor_handler = canned_handler(self.control)
        for spec in self.faults:
            try:
                device.faults.add(spec.rule())
            except VusbError as exc:
                device.close_unstarted()
                raise self.context.error(spec.node, spec.path, str(exc)) from exc
        return device

    def _build(self, ctx: ProfileContext) -> Device:
        if self.descriptors is not None:
            return self.descriptors.build(self, ctx)
        built = []
        for kind, options in self.functions:
            try:
                built.append(kind.build(ctx, options))
            except ProfileError:
                raise
            except VusbError as exc:
                raise ctx.error(next(iter(options.values())).node if options else None,
                                         f"functions ({kind.name})", str(exc)) from exc
        ident = dict(self.identity)
        speed = Speed.parse(ident.pop("speed"))
        try:
            if self.platform is not None and speed != Speed.SUPER:
                ident["usb_version"] = 0x0210  # hosts ask for the BOS (where the platform capabilities are)
            return Device(*built, speed=speed, **{k: v for k, v in ident.items() if v is not None})
        except VusbError as exc:
            raise ProfileError(str(exc), file=self.file) from exc

    @property
    def name(self) -> str:
        return str(self.identity.get("product") or Path(self.file).stem)


@dataclass(frozen=True)
class BuiltinProfile:
    """A profile shipped with vusb (package ``vusb.profiles``), served by name: ``vusb serve keyboard``."""

    name: str
    path: Path
    description: str


def _description(text: str) -> str:
    """A profile's one-line description: its first comment line, up to the first full stop."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        words = stripped.lstrip("#").strip()
        if words:
            return words.split(". ")[0].rstrip(".:")
    return ""


def builtin_profiles() -> dict[str, BuiltinProfile]:
    """The profiles shipped with vusb, by name (the file name without ``.yaml``), sorted."""
    root = importlib.resources.files("vusb.profiles")
    out: dict[str, BuiltinProfile] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml") and entry.is_file():
            name = entry.name[: -len(".yaml")]
            out[name] = BuiltinProfile(name, Path(str(entry)), _description(entry.read_text(encoding="utf-8")))
    return out


def is_profile_name(spec: str | Path) -> bool:
    """Whether ``spec`` names a built-in profile rather than a file: no '/', no '.yaml', and no such file."""
    text = str(spec)
    return "/" not in text and os.sep not in text and not text.endswith((".yaml", ".yml")) and not Path(text).exists()


def find_builtin_profile(name: str) -> BuiltinProfile:
    """The built-in profile ``name``; an unknown name is a :class:`ProfileError` listing the known ones."""
    known = builtin_profiles()
    found = known.get(name)
    if found is None:
        raise ProfileError(f"no built-in profile {name!r} and no such file; built-in profiles: {', '.join(known)} "
                           f"(`vusb profiles` describes them){suggest(name, known)}", file=name)
    return found


def load_profile(path: str | Path, *, allow_outside_paths: bool = False, data_dir: str | Path | None = None,
                 all_errors: bool = False) -> Profile:
    """Read and check a profile file, or a built-in profile by name; raises :class:`ProfileError` naming what is wrong.

    ``path`` is a file, or the name of a built-in profile (``"keyboard"``: no '/', no
    ``.yaml`` and no file of that name; see :func:`builtin_profiles`).  Files a profile
    names (disk images, pty links) are relative to ``data_dir``: by default the
    profile's own folder for a file, and the current folder for a built-in profile
    (never the installed package).  ``all_errors``: report every error of the file at once
    (see :func:`parse_profile`).
    """
    if is_profile_name(path):
        builtin = find_builtin_profile(str(path))
        text = builtin.path.read_text(encoding="utf-8")
        base = Path(data_dir) if data_dir is not None else Path.cwd()
        return parse_profile(text, str(builtin.path), base.resolve(), allow_outside_paths=allow_outside_paths,
                             all_errors=all_errors)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read the profile: {exc.strerror or exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"the profile is not UTF-8 text: {exc.reason} at byte {exc.start}", file=str(path)) from exc
    base_dir = Path(data_dir).resolve() if data_dir is not None else path.resolve().parent
    return parse_profile(text, str(path), base_dir, allow_outside_paths=allow_outside_paths, all_errors=all_errors)


def _attempt(ctx: ProfileContext, read: Callable[[], T]) -> T | None:
    """``read()``, or None after reporting its error (raised at once unless the context collects errors)."""
    try:
        return read()
    except ProfileError as exc:
        ctx.report(exc)
        return None


def parse_profile(text: str, file: str = "<profile>", base_dir: Path | None = None, *,
                  allow_outside_paths: bool = False, all_errors: bool = False) -> Profile:
    """Read and check a profile's text; ``base_dir`` is its data folder (default: the current folder).

    The first error is raised as a :class:`ProfileError`; with ``all_errors`` (``vusb check``)
    reading goes on past errors and every one is raised together as a
    :class:`~vusb.profile_fields.ProfileErrors`.
    """
    ctx = ProfileContext(file, base_dir or Path.cwd(), allow_outside_paths=allow_outside_paths, collect=all_errors)
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
    if not isinstance(root, yaml.MappingNode):
        read_mapping(ctx, root, "", TOP_FIELDS)  # raises: a profile is a mapping
    top = read_mapping(ctx, root, "", TOP_FIELDS)
    raw_node = top["descriptors"].value
    for key in ("identity", "functions"):
        if raw_node is None and top[key].value is None:
            ctx.report(ctx.error(root, key, f"required field {key!r} is missing"))
    ident_node = top["identity"].value
    descriptors: RawDescriptors | None = None
    identity: dict[str, Any] = {}
    if raw_node is not None:
        ident_values = (_attempt(ctx, lambda: read_mapping(ctx, ident_node, "identity", RAW_IDENTITY_FIELDS))
                        if ident_node is not None else {}) or {}
        descriptors = _attempt(ctx, lambda: read_descriptors(ctx, raw_node, ident_values))
        identity = {k: v.value for k, v in ident_values.items()}
        if descriptors is not None:
            identity["speed"] = descriptors.speed.name.lower()
            for key, value in descriptors.identity().items():
                if identity.get(key) is None:
                    identity[key] = value
    elif ident_node is not None:
        ident_values = _attempt(ctx, lambda: read_mapping(ctx, ident_node, "identity", IDENTITY_FIELDS)) or {}
        identity = {k: v.value for k, v in ident_values.items()}
    funcs_node = top["functions"].value
    if funcs_node is None:
        funcs_node = yaml.SequenceNode("tag:yaml.org,2002:seq", [])
    elif not funcs_node.value and raw_node is None:
        ctx.report(ctx.error(funcs_node, "functions", "at least one function is needed (for example '- kind: keyboard')"))
    known = registry()
    functions = []
    notes: list[str] = []
    for i, fnode in enumerate(funcs_node.value):
        fpath = f"functions[{i}]"
        name = _attempt(ctx, functools.partial(kind_of, ctx, fnode, fpath, sorted(known.kinds), "kind",
                                               aliases=known.aliases))
        if name is None:
            continue
        if name in known.aliases:
            new_name = known.aliases[name]
            note = f"{file}: field '{fpath}.kind': kind {name!r} is spelt {new_name!r} now; the old spelling " \
                   "will go away"
            warnings.warn(note, DeprecationWarning, stacklevel=2)
            notes.append(note)
            name = new_name
        kind = known.kinds[name]
        before = ctx.error_count
        if raw_node is not None:
            raw = descriptors
            numbers = (_attempt(ctx, functools.partial(read_interfaces, ctx, fnode, fpath, raw))
                       if raw is not None else None)
            options = read_mapping(ctx, fnode, fpath, kind.fields, allow_extra=("kind", "interface"))
            if descriptors is not None and numbers is not None and ctx.error_count == before:
                descriptors.attach.append(numbers)
        else:
            options = read_mapping(ctx, fnode, fpath, kind.fields, allow_extra=("kind",))
        if ctx.error_count == before:
            functions.append((kind, options))
    control_node = top["control"].value
    control = _read_control(ctx, control_node) if control_node is not None else []
    faults_node = top["faults"].value
    faults = read_faults(ctx, faults_node) if faults_node is not None else []
    platform_node = top["platform"].value
    platform = _attempt(ctx, lambda: read_platform_section(ctx, platform_node)) if platform_node is not None else None
    profile = Profile(file, identity, functions, ctx, descriptors, control, faults, notes, platform)
    if ctx.errors is not None:
        if raw_node is None:
            for kind, options in functions:  # each function on its own first, to report each one's error
                built = _attempt(ctx, functools.partial(kind.build, ctx.checking(), options))
                result = built.close() if built is not None else None
                if inspect.iscoroutine(result):
                    result.close()
        if ctx.errors:
            raise ProfileErrors(ctx.errors)
        ctx.errors = None  # from here on (serving), errors are raised again
    # Build once now, as a dry run, so that every definition error shows up at load time with the
    # file named, while loading (and so `vusb check`) creates and changes nothing; the trial
    # device is closed at once so it holds no file open.
    profile.build(dry_run=True).close_unstarted()
    return profile


def load_device(path: str | Path) -> Device:
    """Load a profile and make its device."""
    return load_profile(path).build()



__all__ = [
    "CONTROL_FIELDS", "DESCRIPTOR_FIELDS", "FAULT_FIRING_FIELDS", "FAULT_MATCH_FIELDS", "IDENTITY_FIELDS",
    "RAW_IDENTITY_FIELDS", "TOP_FIELDS", "BuiltinProfile", "CannedRequest", "FaultSpec", "Field", "FunctionBuilder",
    "Kind", "Located", "Node", "Profile", "ProfileContext", "ProfileErrors", "RawDescriptors", "builtin_profiles", "canned_handler",
    "find_builtin_profile", "is_profile_name", "kind_of", "kinds", "load_device", "load_profile", "parse_profile",
    "read_fault", "read_faults", "read_mapping", "read_scalar", "register_kind", "suggest",
]
