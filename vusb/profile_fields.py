"""The field reader of YAML profiles: typed fields, checked with the file, line, column and path of each value.

A device class declares its profile fields as :class:`Field` values and reads a mapping
node with :func:`read_mapping`; every error it raises through
:meth:`ProfileContext.error` names the file, line and column, and the field path
(``functions[0].kind``).  A misspelled field or kind gets the closest known name
(:func:`suggest`).  Used by the profile loader (:mod:`vusb.profile`), by device
classes' kind builders and by ``vusb ctl fault-add``.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vusb.errors import ProfileError

Node = yaml.Node


def suggest(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'type_delay'?"`` for the closest of ``known`` to a misspelled ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


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


class ProfileErrors(ProfileError):
    """Several errors of one profile (``vusb check`` collects them all); the message has one line each."""

    def __init__(self, errors: Sequence[ProfileError]) -> None:
        first = errors[0]
        super().__init__(first.reason, file=first.file, line=first.line, column=first.column, field=first.field)
        self.errors = list(errors)
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


@dataclass
class Located:
    """A value with where it came from, for error messages."""

    value: Any
    node: Node
    path: str


class ProfileContext:
    """Where a profile is, for errors and for resolving relative paths."""

    def __init__(self, file: str, base_dir: Path, *, allow_outside_paths: bool = False, dry_run: bool = False,
                 collect: bool = False) -> None:
        self.errors: list[ProfileError] | None = [] if collect else None
        """Every error found so far when collecting (``vusb check`` reports them all), else None: raise at once."""
        self.file = file
        self.base_dir = base_dir
        """The data folder: files the profile names (disk images, pty links) are relative to it."""
        self.allow_outside_paths = allow_outside_paths
        self.dry_run = dry_run
        """A check, not a build for serving: kinds check everything but create, open for writing or
        change no file, and make nothing outside the process (no pty link, no connection)."""

    def checking(self) -> ProfileContext:
        """This context for a dry run (:attr:`dry_run`), as ``vusb check`` and the load-time check build."""
        ctx = ProfileContext(self.file, self.base_dir, allow_outside_paths=self.allow_outside_paths, dry_run=True)
        ctx.errors = self.errors
        return ctx

    def first_error_only(self) -> ProfileContext:
        """This context raising at the first error (to read one list entry whose later checks need every field)."""
        return ProfileContext(self.file, self.base_dir, allow_outside_paths=self.allow_outside_paths,
                              dry_run=self.dry_run)

    def report(self, error: ProfileError) -> None:
        """An error: kept to report with the others when collecting, else raised at once."""
        if self.errors is None:
            raise error
        self.errors.append(error)

    @property
    def error_count(self) -> int:
        return len(self.errors) if self.errors is not None else 0

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


def read_scalar(ctx: ProfileContext, node: Node, path: str, spec: Field) -> Any:
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
    failed: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        sub = f"{path}.{key}" if path else key
        if key in allow_extra:
            continue
        try:
            if key not in fields:
                known = ", ".join(sorted(fields))
                raise ctx.error(key_node, sub, f"unknown field {key!r}; expected one of: {known}{suggest(key, fields)}")
            if key in out or key in failed:
                raise ctx.error(key_node, sub, f"field {key!r} is given twice")
            out[key] = Located(read_scalar(ctx, value_node, sub, fields[key]), value_node, sub)
        except ProfileError as exc:
            ctx.report(exc)  # raised unless collecting: then the next field is read
            failed.add(key)
    for key, spec in fields.items():
        if key not in out:
            if spec.required and key not in failed:
                ctx.report(ctx.error(node, f"{path}.{key}" if path else key, f"required field {key!r} is missing"))
            out[key] = Located(spec.default, node, f"{path}.{key}" if path else key)
    return out


def name_or_number(ctx: ProfileContext, loc: Located, names: Mapping[str, int], what: str) -> int | str:
    text = str(loc.value).strip()
    try:
        return int(text, 0)
    except ValueError:
        pass
    if text in names or text.upper() in names:
        return text if text in names else text.upper()
    raise ctx.error(loc.node, loc.path, f"unknown {what} {text!r}; expected one of: {', '.join(names)}, or a number"
                    + suggest(text.upper(), names))


def kind_of(ctx: ProfileContext, item: Node, path: str, names: Sequence[str], what: str,
            aliases: Iterable[str] = ()) -> str:
    """The ``kind`` of a list entry (a function, a fault), which must be a mapping and name one of ``names``.

    ``aliases`` are accepted too (old spellings) without being offered in the error.
    """
    if not isinstance(item, yaml.MappingNode):
        raise ctx.error(item, path, "expected a mapping with a 'kind' field")
    kind_node = next((v for k, v in item.value if k.value == "kind"), None)
    if kind_node is None:
        raise ctx.error(item, f"{path}.kind", f"required field 'kind' is missing; one of: {', '.join(names)}")
    if not isinstance(kind_node, yaml.ScalarNode):
        raise ctx.error(kind_node, f"{path}.kind", f"expected the name of a {what}; one of: {', '.join(names)}")
    kind = str(kind_node.value)
    if kind not in names and kind not in aliases:
        raise ctx.error(kind_node, f"{path}.kind",
                        f"unknown {what} {kind!r}; expected one of: {', '.join(names)}{suggest(kind, names)}")
    return kind


def int_key(ctx: ProfileContext, node: Node, path: str, low: int, high: int, what: str) -> int:
    try:
        value = int(str(node.value), 0)
    except ValueError:
        raise ctx.error(node, path, f"expected {what} (an integer {low}..{high}), got {node.value!r}") from None
    if not low <= value <= high:
        raise ctx.error(node, path, f"{what} {value} is out of range {low}..{high}")
    return value


def hex_node(ctx: ProfileContext, node: Node, path: str) -> bytes:
    value: bytes = read_scalar(ctx, node, path, Field("hex"))
    return value

