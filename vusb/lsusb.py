"""Print descriptors the way ``lsusb -v`` does (used by ``vusb probe`` and ``vusb list``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from vusb.classdesc import format_class_descriptor
from vusb.client import DeviceInfo
from vusb.constants import TransferType
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    Descriptor,
    EndpointDescriptor,
    HidDescriptor,
    InterfaceAssociation,
    InterfaceDescriptor,
    RawDescriptor,
    SuperSpeedCapability,
    Usb2Extension,
)

CLASS_NAMES = {
    0x00: "(Defined at Interface level)", 0x01: "Audio", 0x02: "Communications", 0x03: "Human Interface Device",
    0x05: "Physical Interface Device", 0x06: "Imaging", 0x07: "Printer", 0x08: "Mass Storage", 0x09: "Hub",
    0x0A: "CDC Data", 0x0B: "Chip/SmartCard", 0x0D: "Content Security", 0x0E: "Video", 0x0F: "Personal Healthcare",
    0x10: "Audio/Video", 0xDC: "Diagnostic", 0xE0: "Wireless", 0xEF: "Miscellaneous Device",
    0xFE: "Application Specific Interface", 0xFF: "Vendor Specific Class",
}
SYNC_NAMES = ("None", "Asynchronous", "Adaptive", "Synchronous")
USAGE_NAMES = ("Data", "Feedback", "Implicit feedback Data", "Reserved")
SPEED_NAMES = {1: "1.5M (low)", 2: "12M (full)", 3: "480M (high)", 5: "5000M (super)", 6: "10000M (super-plus)"}
#: USB/IP's speed numbers (Linux enum usb_device_speed) by the name a USB developer uses.
SPEED_WORDS = {0: "unknown", 1: "low", 2: "full", 3: "high", 4: "wireless", 5: "super", 6: "super-plus"}
#: (class, subclass) and (class, subclass, protocol) names, as usb.ids spells the common ones.
SUBCLASS_NAMES = {
    (0x01, 0x01): "Control Device", (0x01, 0x02): "Streaming", (0x01, 0x03): "MIDI Streaming",
    (0x02, 0x02): "Abstract (modem)", (0x02, 0x06): "Ethernet Networking", (0x02, 0x0D): "Network Control Model",
    (0x03, 0x00): "No Subclass", (0x03, 0x01): "Boot Interface Subclass", (0x07, 0x01): "Printer",
    (0x08, 0x06): "SCSI", (0x0E, 0x01): "Video Control", (0x0E, 0x02): "Video Streaming",
    (0x0E, 0x03): "Video Interface Collection", (0xFE, 0x01): "Device Firmware Update",
    (0xEF, 0x02): "Common Class", (0xFF, 0xFF): "Vendor Specific Subclass",
}
PROTOCOL_NAMES = {
    (0x02, 0x02, 0x01): "AT-commands (v.25ter)", (0x03, 0x01, 0x01): "Keyboard", (0x03, 0x01, 0x02): "Mouse",
    (0x07, 0x01, 0x01): "Unidirectional", (0x07, 0x01, 0x02): "Bidirectional",
    (0x07, 0x01, 0x03): "IEEE 1284.4 compatible bidirectional", (0x08, 0x06, 0x50): "Bulk-Only",
    (0x0A, 0x00, 0x01): "Network Transfer Block", (0xEF, 0x02, 0x01): "Interface Association",
    (0xFE, 0x01, 0x01): "Runtime", (0xFE, 0x01, 0x02): "DFU mode", (0xFF, 0xFF, 0xFF): "Vendor Specific Protocol",
}


def class_names(cls: int, subclass: int, protocol: int) -> str:
    """``Human Interface Device / Boot Interface Subclass / Keyboard``: the known parts, as ``usbip list`` shows."""
    parts = [CLASS_NAMES.get(cls, f"class {cls:02x}")]
    if (cls, subclass) in SUBCLASS_NAMES:
        parts.append(SUBCLASS_NAMES[(cls, subclass)])
    if (cls, subclass, protocol) in PROTOCOL_NAMES:
        parts.append(PROTOCOL_NAMES[(cls, subclass, protocol)])
    return " / ".join(parts)


def _bcd(value: int) -> str:
    return f"{value >> 8:x}.{value & 0xFF:02x}"


def _line(indent: int, name: str, value: object, comment: str = "") -> str:
    text = f"{' ' * indent}{name:<20}{value!s:>5}"
    return f"{text} {comment}".rstrip()


def _string(info: DeviceInfo, index: int) -> str:
    return info.strings.get(index, "") if index else ""


def format_device(info: DeviceInfo, busid: str = "", status: int | None = None) -> str:
    """The whole ``lsusb -v`` text; ``status``: the device's GET_STATUS answer, shown as Device Status."""
    d = info.device
    out = [
        f"Bus {busid or '?'}: ID {d.vendor_id:04x}:{d.product_id:04x} {_string(info, d.product_index)}".rstrip(),
        f"Negotiated speed: {SPEED_NAMES.get(info.speed, str(info.speed))}",
        "Device Descriptor:",
        _line(2, "bLength", 18),
        _line(2, "bDescriptorType", 1),
        _line(2, "bcdUSB", _bcd(d.usb_version)),
        _line(2, "bDeviceClass", d.device_class, CLASS_NAMES.get(d.device_class, "")),
        _line(2, "bDeviceSubClass", d.device_subclass),
        _line(2, "bDeviceProtocol", d.device_protocol),
        _line(2, "bMaxPacketSize0", d.max_packet_size0),
        _line(2, "idVendor", f"0x{d.vendor_id:04x}"),
        _line(2, "idProduct", f"0x{d.product_id:04x}"),
        _line(2, "bcdDevice", _bcd(d.device_version)),
        _line(2, "iManufacturer", d.manufacturer_index, _string(info, d.manufacturer_index)),
        _line(2, "iProduct", d.product_index, _string(info, d.product_index)),
        _line(2, "iSerial", d.serial_number_index, _string(info, d.serial_number_index)),
        _line(2, "bNumConfigurations", d.num_configurations),
    ]
    for config, raw in zip(info.configurations, info.configuration_bytes, strict=False):
        out.extend(format_configuration(config, len(raw), info))
    if info.bos is not None:
        out.extend(format_bos(info.bos))
    if info.qualifier is not None:
        q = info.qualifier
        out += [
            "Device Qualifier (for other device speed):",
            _line(2, "bLength", 10),
            _line(2, "bDescriptorType", 6),
            _line(2, "bcdUSB", _bcd(q.usb_version)),
            _line(2, "bDeviceClass", q.device_class, CLASS_NAMES.get(q.device_class, "")),
            _line(2, "bDeviceSubClass", q.device_subclass),
            _line(2, "bDeviceProtocol", q.device_protocol),
            _line(2, "bMaxPacketSize0", q.max_packet_size0),
            _line(2, "bNumConfigurations", q.num_configurations),
        ]
    if status is not None:
        out.append(f"Device Status:     0x{status:04x}")
        out.append("  Self Powered" if status & 1 else "  (Bus Powered)")
        if status & 2:
            out.append("  Remote Wakeup Enabled")
        if status & 4:
            out.append("  U1 Enabled")
        if status & 8:
            out.append("  U2 Enabled")
    return "\n".join(out)


class _AskedStrings(dict[int, str]):
    """The strings table, noting which indices the formatter asked for."""

    def __init__(self, strings: dict[int, str]) -> None:
        super().__init__(strings)
        self.asked: set[int] = set()

    def get(self, key: int, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def referenced_strings(info: DeviceInfo) -> set[int]:
    """String indices the descriptors refer to that enumeration did not read (iTerminal, iMacAddress...)."""
    asked = _AskedStrings(info.strings)
    format_device(dataclasses.replace(info, strings=asked))
    return {i for i in asked.asked if i and i not in info.strings}


def format_configuration(c: ConfigurationDescriptor, total: int, info: DeviceInfo) -> list[str]:
    out = [
        "  Configuration Descriptor:",
        _line(4, "bLength", 9),
        _line(4, "bDescriptorType", 2),
        _line(4, "wTotalLength", f"0x{total:04x}"),
        _line(4, "bNumInterfaces", c.num_interfaces),
        _line(4, "bConfigurationValue", c.value),
        _line(4, "iConfiguration", c.name_index, _string(info, c.name_index)),
        _line(4, "bmAttributes", f"0x{c.attributes:02x}"),
    ]
    out.append("      Self Powered" if c.self_powered else "      (Bus Powered)")
    if c.remote_wakeup:
        out.append("      Remote Wakeup")
    out.append(_line(4, "MaxPower", f"{c.max_power_ma}mA"))
    iads = {a.first_interface: a for a in c.associations}
    for itf in c.interfaces:
        if itf.alternate == 0 and itf.number in iads:
            out.extend(format_iad(iads.pop(itf.number), info))
        out.extend(format_interface(itf, info))
    return out


def format_iad(a: InterfaceAssociation, info: DeviceInfo) -> list[str]:
    return [
        "    Interface Association:",
        _line(6, "bLength", 8),
        _line(6, "bDescriptorType", 11),
        _line(6, "bFirstInterface", a.first_interface),
        _line(6, "bInterfaceCount", a.interface_count),
        _line(6, "bFunctionClass", a.function_class, CLASS_NAMES.get(a.function_class, "")),
        _line(6, "bFunctionSubClass", a.function_subclass),
        _line(6, "bFunctionProtocol", a.function_protocol),
        _line(6, "iFunction", a.name_index, _string(info, a.name_index)),
    ]


def format_interface(i: InterfaceDescriptor, info: DeviceInfo) -> list[str]:
    out = [
        "    Interface Descriptor:",
        _line(6, "bLength", 9 + len(i.trailing)),
        _line(6, "bDescriptorType", 4),
        _line(6, "bInterfaceNumber", i.number),
        _line(6, "bAlternateSetting", i.alternate),
        _line(6, "bNumEndpoints", len(i.endpoints)),
        _line(6, "bInterfaceClass", i.interface_class, CLASS_NAMES.get(i.interface_class, "")),
        _line(6, "bInterfaceSubClass", i.interface_subclass, _subclass_name(i)),
        _line(6, "bInterfaceProtocol", i.interface_protocol, _protocol_name(i)),
        _line(6, "iInterface", i.name_index, _string(info, i.name_index)),
    ]
    triple = (i.interface_class, i.interface_subclass, i.interface_protocol)
    for extra in i.extra:
        out.extend(format_extra(extra, 6, triple, info))
    for ep in i.endpoints:
        out.extend(format_endpoint(ep, triple, info))
    return out


def _subclass_name(i: InterfaceDescriptor) -> str:
    return SUBCLASS_NAMES.get((i.interface_class, i.interface_subclass), "")


def _protocol_name(i: InterfaceDescriptor) -> str:
    return PROTOCOL_NAMES.get((i.interface_class, i.interface_subclass, i.interface_protocol), "")


def format_extra(d: Descriptor, indent: int, interface: tuple[int, int, int] | None = None,
                 info: DeviceInfo | None = None, *, on_endpoint: bool = False) -> list[str]:
    """A descriptor beside the standard ones: HID, a class-specific one decoded by class, else its bytes."""
    pad = " " * indent
    strings = info.strings if info is not None else {}
    if not isinstance(d, HidDescriptor) or (interface is not None and interface[0] != 3):
        decoded = format_class_descriptor(d.to_bytes(), interface, indent, lambda n: strings.get(n, "") or "",
                                          on_endpoint=on_endpoint)
        if decoded is not None:
            return decoded
    if isinstance(d, HidDescriptor):
        lines = [
            f"{pad}HID Device Descriptor:",
            _line(indent + 2, "bLength", len(d.to_bytes())),
            _line(indent + 2, "bDescriptorType", "0x21"),
            _line(indent + 2, "bcdHID", _bcd(d.hid_version)),
            _line(indent + 2, "bCountryCode", d.country_code),
            _line(indent + 2, "bNumDescriptors", 1 + len(d.other)),
            _line(indent + 2, "bDescriptorType", 34, "Report"),
            _line(indent + 2, "wDescriptorLength", d.report_length),
        ]
        return lines
    raw = d.to_bytes()
    kind = raw[1] if isinstance(d, RawDescriptor) else d.descriptor_type
    return [f"{pad}Descriptor type 0x{kind:02x}, {len(raw)} bytes:", f"{pad}  {raw.hex(' ')}"]


def format_endpoint(ep: EndpointDescriptor, interface: tuple[int, int, int] | None = None,
                    info: DeviceInfo | None = None) -> list[str]:
    direction = "IN" if ep.is_in else "OUT"
    size = ep.max_packet_size & 0x7FF
    mult = ((ep.max_packet_size >> 11) & 3) + 1
    out = [
        "      Endpoint Descriptor:",
        _line(8, "bLength", 7 + len(ep.trailing)),
        _line(8, "bDescriptorType", 5),
        _line(8, "bEndpointAddress", f"0x{ep.address:02x}", f"EP {ep.number} {direction}"),
        _line(8, "bmAttributes", ep.attributes),
        f"          Transfer Type            {ep.transfer_type.name.capitalize() if ep.transfer_type != TransferType.ISOCHRONOUS else 'Isochronous'}",
        f"            Synch Type               {SYNC_NAMES[(ep.attributes >> 2) & 3]}",
        f"            Usage Type               {USAGE_NAMES[(ep.attributes >> 4) & 3]}",
        _line(8, "wMaxPacketSize", f"0x{ep.max_packet_size:04x}", f"{mult}x {size} bytes"),
        _line(8, "bInterval", ep.interval),
    ]
    if len(ep.trailing) >= 2:  # audio class endpoints (UAC1) are 9 bytes long
        out += [_line(8, "bRefresh", ep.trailing[0]), _line(8, "bSynchAddress", ep.trailing[1])]
    if ep.companion is not None:
        out += [
            "        SuperSpeed Endpoint Companion:",
            _line(10, "bLength", 6),
            _line(10, "bDescriptorType", 48),
            _line(10, "bMaxBurst", ep.companion.max_burst),
        ]
    for extra in ep.extra:
        out.extend(format_extra(extra, 8, interface, info, on_endpoint=True))
    return out


def format_bos(bos: BosDescriptor) -> list[str]:
    out = [
        "Binary Object Store Descriptor:",
        _line(2, "bLength", 5),
        _line(2, "bDescriptorType", 15),
        _line(2, "wTotalLength", f"0x{len(bos.to_bytes()):04x}"),
        _line(2, "bNumDeviceCaps", len(bos.capabilities)),
    ]
    for cap in bos.capabilities:
        if isinstance(cap, Usb2Extension):
            out += ["  USB 2.0 Extension Device Capability:", _line(4, "bmAttributes", f"0x{cap.attributes:08x}")]
            if cap.attributes & 2:
                out.append("      Link Power Management (LPM) Supported")
        elif isinstance(cap, SuperSpeedCapability):
            out += [
                "  SuperSpeed USB Device Capability:",
                _line(4, "bmAttributes", f"0x{cap.attributes:02x}"),
                _line(4, "wSpeedsSupported", f"0x{cap.speeds_supported:04x}"),
                _line(4, "bFunctionalitySupport", cap.functionality_support),
                _line(4, "bU1DevExitLat", cap.u1_exit_latency, "micro seconds"),
                _line(4, "bU2DevExitLat", f"{cap.u2_exit_latency:4d}", "micro seconds"),
            ]
        else:
            raw = cap.to_bytes()
            out += [f"  Device Capability type 0x{raw[2]:02x}:", f"    {raw.hex(' ')}"]
    return out
