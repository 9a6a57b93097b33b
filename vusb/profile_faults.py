"""The ``faults:`` entries of profiles (and of ``vusb ctl fault-add``), read through the fault kind registry.

The generic kinds (stall, delay, drop, disconnect, short, babble, corrupt-descriptor)
are registered here; device classes add their own (``scsi-failure`` comes with mass
storage) with :meth:`vusb.registry.Registry.add_fault`.  The fields of each kind are
declared once and serve the loader, ``vusb ctl fault-add`` and the JSON Schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vusb.errors import ProfileError, VusbError
from vusb.faults import DESCRIPTOR_TYPES, Babble, CorruptDescriptor, Delay, Disconnect, Drop, Fault, Short, StallRule
from vusb.profile_fields import Field, Located, Node, ProfileContext, kind_of, name_or_number, read_mapping

if TYPE_CHECKING:
    from vusb.registry import Registry

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

GENERIC_FAULT_FIELDS: dict[str, dict[str, Field]] = {
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
}

_GENERIC_RULES: dict[str, type[Fault]] = {
    "stall": StallRule, "delay": Delay, "drop": Drop, "disconnect": Disconnect, "short": Short, "babble": Babble,
    "corrupt-descriptor": CorruptDescriptor,
}


def _corrupt_descriptor(ctx: ProfileContext, values: dict[str, Located], options: dict[str, Any]) -> None:
    options["type"] = name_or_number(ctx, values["type"], DESCRIPTOR_TYPES, "descriptor type")
    if not options["data"]:
        raise ctx.error(values["data"].node, values["data"].path, "expected at least one byte")


def register(registry: Registry) -> None:
    """Register the generic fault kinds (the framework's own; device classes add theirs)."""
    for name, fields in GENERIC_FAULT_FIELDS.items():
        registry.add_fault(name, fields, _GENERIC_RULES[name],
                           prepare=_corrupt_descriptor if name == "corrupt-descriptor" else None)


def fault_fields() -> dict[str, dict[str, Field]]:
    """Every registered fault kind's fields, by kind name."""
    from vusb.registry import registry

    return {name: dict(kind.fields) for name, kind in registry().faults.items()}


@dataclass(frozen=True)
class FaultSpec:
    """One ``faults:`` entry; :meth:`rule` makes a fresh rule (counters at zero) for each device built."""

    kind: str
    options: dict[str, Any]
    node: Node
    path: str

    def rule(self) -> Fault:
        from vusb.registry import registry

        return registry().faults[self.kind].rule(**self.options)


def read_fault(ctx: ProfileContext, item: Node, path: str) -> FaultSpec:
    """One fault entry (a profile's ``faults[i]``, or a ``vusb ctl fault-add`` request) checked field by field."""
    from vusb.registry import registry

    known = registry().faults
    name = kind_of(ctx, item, path, list(known), "fault kind")
    kind = known[name]
    values = read_mapping(ctx, item, path, kind.fields, allow_extra=("kind",))
    options = {k: v.value for k, v in values.items() if v.value is not None}
    if kind.prepare is not None:
        kind.prepare(ctx, values, options)
    try:
        kind.rule(**options)  # values the rule refuses are reported here, at the entry
    except VusbError as exc:
        raise ctx.error(item, path, str(exc)) from exc
    return FaultSpec(name, options, item, path)


def read_faults(ctx: ProfileContext, node: Node) -> list[FaultSpec]:
    """Every entry of a profile's ``faults:``; a collecting context gets each entry's first error."""
    out = []
    for i, item in enumerate(node.value):
        try:
            out.append(read_fault(ctx.first_error_only(), item, f"faults[{i}]"))
        except ProfileError as exc:
            ctx.report(exc)
    return out
