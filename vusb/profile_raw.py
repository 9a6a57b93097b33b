"""Raw-descriptor profiles: a device given as its descriptor bytes (``descriptors:``), served as they are.

This is what ``vusb clone`` writes (docs/clone.md).  HID interfaces get a function each:
one of a HID kind attached with ``interface:``, else a default one (the boot report
descriptors registered by the HID classes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from vusb.device import Device, Function, StringTable
from vusb.errors import ProfileError, VusbError
from vusb.profile_fields import Field, Located, Node, ProfileContext, hex_node, int_key, read_mapping

if TYPE_CHECKING:
    from vusb.profile import Profile

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



_HID_CLASS = 0x03
_DEFAULT_LANGUAGE = 0x0409


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

    def build(self, profile: Profile, ctx: ProfileContext | None = None) -> Device:
        from vusb.registry import registry

        ctx = ctx or self.context
        self.notes = []
        functions: list[tuple[Any, tuple[int, ...], Node, str]] = []
        others: list[tuple[Function, tuple[int, ...]]] = []
        for (kind, options), (numbers, fnode, fpath) in zip(profile.functions, self.attach, strict=True):
            try:
                func = kind.build(ctx, options)
            except ProfileError:
                raise
            except VusbError as exc:
                raise ctx.error(fnode, fpath, str(exc)) from exc
            if kind.raw_any:  # attaches to whatever interfaces it names (replay): no HID binding
                others.append((func, numbers))
                continue
            if not kind.raw_hid:
                raise ctx.error(fnode, f"{fpath}.kind", f"kind {kind.name!r} cannot be attached to raw descriptors; "
                                "HID kinds can (hid, keyboard, mouse), other interfaces stall class requests")
            functions.append((func, numbers, fnode, fpath))
        claimed = {n for _, numbers, _, _ in functions for n in numbers} | {n for _, numbers in others for n in numbers}
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
            default = boot_report_default(itf)
            if default is None:
                self.notes.append(f"interface {number}: HID without a report descriptor; GET_DESCRIPTOR(REPORT) "
                                  "stalls (give descriptors.report_descriptors)")
                continue
            name, data, size = default
            declared = declared_report_length([raw for raw, _ in self.configuration_bytes], number)
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
        attached: list[tuple[Function, tuple[int, ...]]] = list(others)
        for func, numbers, fnode, fpath in functions:
            _bind_hid(ctx, func, numbers, configurations, fnode, fpath)
            attached.append((func, numbers))
        for number, data, size in auto:
            itf = hid[number]
            in_ep = next((e for e in itf.endpoints if e.is_in), None)
            make_hid = registry().hid_function
            assert make_hid is not None, "the HID class registers the raw-descriptor HID function"
            func = make_hid(data, input_size=size or max(1, (in_ep.max_packet_size & 0x7FF) if in_ep else 8),
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


def boot_report_default(itf: InterfaceDescriptor) -> tuple[str, bytes, int] | None:
    """The default report descriptor of a HID boot interface: (name, descriptor, input report size), or None.

    The HID classes register them (:meth:`vusb.registry.Registry.add_boot_report`): a boot
    keyboard (protocol 1) and a boot mouse (protocol 2).
    """
    if itf.interface_subclass != 1:
        return None
    from vusb.registry import registry

    boot = registry().boot_reports.get(itf.interface_protocol)
    return (boot.name, boot.descriptor, boot.input_size) if boot is not None else None


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


def declared_report_length(configs: Sequence[bytes], number: int) -> int | None:
    """wDescriptorLength of interface ``number``'s report descriptor in the first configuration that gives it."""
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


def read_interfaces(ctx: ProfileContext, fnode: Node, fpath: str, raw: RawDescriptors) -> tuple[tuple[int, ...], Node, str]:
    node = next((v for k, v in fnode.value if k.value == "interface"), None)
    path = f"{fpath}.interface"
    if node is None:
        raise ctx.error(fnode, path, "required field 'interface' is missing: the interface number this function "
                        "answers for in the descriptors")
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    numbers = tuple(int_key(ctx, n, path, 0, 255, "an interface number") for n in items)
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
            index = int_key(ctx, k, f"{where}.{k.value}", 1, 255, "a string index")
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
            lang = int_key(ctx, k, f"{path}.{k.value}", 0, 0xFFFF, "a language id")
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


def read_descriptors(ctx: ProfileContext, node: Node, identity: dict[str, Located]) -> RawDescriptors:
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
    config_bytes = [(hex_node(ctx, n, f"descriptors.configurations[{i}]"), n) for i, n in enumerate(configs_node.value)]
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
            number = int_key(ctx, k, where, 0, 255, "an interface number")
            if number not in hid_numbers:
                raise ctx.error(k, where, f"interface {number} is not a HID interface (HID interfaces: {sorted(hid_numbers)})")
            data = hex_node(ctx, v, where)
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

