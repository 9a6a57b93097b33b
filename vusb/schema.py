"""A JSON Schema for profiles, generated from the loader's own field declarations.

The loader (:mod:`vusb.profile`) stays the authority — it also checks what a schema
cannot (value agreement with descriptors, file paths, descriptor contents) — but the
schema lets editors and other languages check profiles. It is published as
``docs/profile.schema.json``; ``vusb schema`` prints it, and a test keeps the
published file equal to what this module generates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vusb.profile import (
    CONTROL_FIELDS,
    DESCRIPTOR_FIELDS,
    IDENTITY_FIELDS,
    RAW_IDENTITY_FIELDS,
    TOP_FIELDS,
    Field,
    kinds,
)
from vusb.profile_faults import fault_fields
from vusb.winusb import PLATFORM_FIELDS, WEBUSB_FIELDS, WINUSB_FIELDS

SCHEMA_ID = "https://vusb.invalid/profile.schema.json"
_INT_TEXT = r"^(0[xX][0-9a-fA-F]+|[0-9]+)$"
_HEX = r"^[0-9a-fA-F\s:]*$"


def _field(spec: Field) -> dict[str, Any]:
    out: dict[str, Any]
    if spec.kind == "int":
        number: dict[str, Any] = {"type": "integer"}
        if spec.low is not None:
            number["minimum"] = spec.low
        if spec.high is not None:
            number["maximum"] = spec.high
        out = {"anyOf": [number, {"type": "string", "pattern": _INT_TEXT}]}
    elif spec.kind == "str":
        out = {"type": ["string", "number"]}
    elif spec.kind == "bool":
        out = {"type": "boolean"}
    elif spec.kind == "float":
        out = {"type": "number"}
        if spec.low is not None:
            out["exclusiveMinimum" if spec.low_open else "minimum"] = spec.low
        if spec.high is not None:
            out["maximum"] = spec.high
    elif spec.kind == "choice":
        out = {"enum": list(spec.choices)}
    elif spec.kind == "hex":
        out = {"type": "string", "pattern": _HEX}
    elif spec.kind == "map":
        out = {"type": "object"}
    elif spec.kind == "list":
        out = {"type": "array"}
    else:
        raise AssertionError(spec.kind)
    if spec.help:
        out["description"] = spec.help
    return out


def _mapping(fields: Mapping[str, Field], *, extra: Mapping[str, Any] | None = None,
             required: list[str] | None = None) -> dict[str, Any]:
    props = {name: _field(spec) for name, spec in fields.items()}
    props.update(extra or {})
    req = required if required is not None else [n for n, s in fields.items() if s.required]
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if req:
        out["required"] = req
    return out


def profile_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a profile."""
    functions = []
    for name, kind in sorted(kinds().items()):
        extra: dict[str, Any] = {
            "kind": {"const": name, "description": kind.description},
            "interface": {"type": "integer", "minimum": 0, "maximum": 255,
                          "description": "raw-descriptor profiles: the interface this function serves"},
        }
        for table, item_fields in kind.tables.items():  # a list field whose items are mappings of known fields
            extra[table] = {"type": "array", "items": _mapping(item_fields),
                            "description": kind.fields[table].help}
        functions.append(_mapping(kind.fields, extra=extra,
                                  required=["kind", *[n for n, s in kind.fields.items() if s.required]]))
    faults = [
        _mapping(fields, extra={"kind": {"const": name}},
                 required=["kind", *[n for n, s in fields.items() if s.required]])
        for name, fields in fault_fields().items()
    ]
    descriptors = _mapping(DESCRIPTOR_FIELDS, extra={
        "configurations": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": _HEX},
                           "description": DESCRIPTOR_FIELDS["configurations"].help},
    })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "vusb device profile",
        "description": "One USB device: its identity and functions, or its descriptor bytes. See docs/profiles.md.",
        "type": "object",
        "properties": {
            "identity": {"anyOf": [_mapping(IDENTITY_FIELDS), _mapping(RAW_IDENTITY_FIELDS, required=[])]},
            "functions": {"type": "array", "items": {"oneOf": functions}},
            "descriptors": descriptors,
            "control": {"type": "array", "items": _mapping(CONTROL_FIELDS),
                        "description": TOP_FIELDS["control"].help},
            "faults": {"type": "array", "items": {"oneOf": faults}, "description": TOP_FIELDS["faults"].help},
            "platform": {**_mapping(PLATFORM_FIELDS, extra={"winusb": _mapping(WINUSB_FIELDS),
                                                            "webusb": _mapping(WEBUSB_FIELDS)}),
                         "minProperties": 1, "description": TOP_FIELDS["platform"].help},
        },
        "additionalProperties": False,
        "anyOf": [
            {"required": ["identity", "functions"],
             "properties": {"identity": _mapping(IDENTITY_FIELDS), "functions": {"minItems": 1}}},
            {"required": ["descriptors"]},
        ],
    }


def schema_json() -> str:
    return json.dumps(profile_schema(), indent=2, sort_keys=True) + "\n"
