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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vusb.constants import Speed
from vusb.device import Device, Function
from vusb.errors import ProfileError, VusbError

Node = yaml.Node


@dataclass(frozen=True)
class Field:
    """One field of a profile mapping."""

    kind: str  # "int", "str", "bool", "hex", "choice", "float", "map", "list"
    required: bool = False
    default: Any = None
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    help: str = ""


@dataclass
class Located:
    """A value with where it came from, for error messages."""

    value: Any
    node: Node
    path: str


class ProfileContext:
    """Where a profile is, for errors and for resolving relative paths."""

    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir

    def error(self, node: Node | None, path: str, message: str) -> ProfileError:
        line = node.start_mark.line + 1 if node is not None else None
        column = node.start_mark.column + 1 if node is not None else None
        return ProfileError(message, file=self.file, line=line, column=column, field=path or None)

    def resolve(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base_dir / p


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
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            raise ctx.error(node, path, f"{value} is out of range {spec.low}..{spec.high}"
                            + (f" (0x{spec.low:x}..0x{spec.high:x})" if spec.high and spec.high > 255 else ""))
        return value
    if spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(node, path, f"expected a number, got {node.value!r}")
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
    import devices.profile_kinds  # noqa: F401  (registers the shipped kinds)


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
    "identity": Field("map", True),
    "functions": Field("list", True),
}


@dataclass
class Profile:
    """A loaded, checked profile.  :meth:`build` makes a fresh device from it."""

    file: str
    identity: dict[str, Any]
    functions: list[tuple[Kind, dict[str, Located]]]
    context: ProfileContext

    def build(self) -> Device:
        built = []
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


def load_profile(path: str | Path) -> Profile:
    """Read and check a profile file; raises :class:`ProfileError` naming what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read the profile: {exc.strerror or exc}", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"the profile is not UTF-8 text: {exc.reason} at byte {exc.start}", file=str(path)) from exc
    return parse_profile(text, str(path), path.resolve().parent)


def parse_profile(text: str, file: str = "<profile>", base_dir: Path | None = None) -> Profile:
    ctx = ProfileContext(file, base_dir or Path.cwd())
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
    ident_values = read_mapping(ctx, top["identity"].value, "identity", IDENTITY_FIELDS)
    identity = {k: v.value for k, v in ident_values.items()}
    funcs_node = top["functions"].value
    if not funcs_node.value:
        raise ctx.error(funcs_node, "functions", "at least one function is needed (for example '- kind: keyboard')")
    available = kinds()
    functions = []
    for i, fnode in enumerate(funcs_node.value):
        fpath = f"functions[{i}]"
        if not isinstance(fnode, yaml.MappingNode):
            raise ctx.error(fnode, fpath, "expected a mapping with a 'kind' field")
        kind_node = next((v for k, v in fnode.value if k.value == "kind"), None)
        if kind_node is None:
            raise ctx.error(fnode, f"{fpath}.kind", f"required field 'kind' is missing; one of: {', '.join(sorted(available))}")
        kind_name = str(kind_node.value)
        kind = available.get(kind_name)
        if kind is None:
            raise ctx.error(kind_node, f"{fpath}.kind", f"unknown kind {kind_name!r}; expected one of: {', '.join(sorted(available))}")
        options = read_mapping(ctx, fnode, fpath, kind.fields, allow_extra=("kind",))
        functions.append((kind, options))
    profile = Profile(file, identity, functions, ctx)
    # Build once now so that every definition error shows up at load time, with the file named;
    # the trial device is closed at once so it holds no file open.
    profile.build().close_unstarted()
    return profile


def load_device(path: str | Path) -> Device:
    """Load a profile and make its device."""
    return load_profile(path).build()


def replace_identity(profile: Profile, **changes: Any) -> Profile:
    return dataclasses.replace(profile, identity={**profile.identity, **changes})
