"""Clone a real device into a raw-descriptor profile (``vusb clone``).

Three sources are understood:

* ``lsusb -v`` text (:func:`from_lsusb`): the fields are turned back into bytes;
* a sysfs device folder or its binary ``descriptors`` file (:func:`from_sysfs`);
* a usbmon capture in pcap or pcapng (:func:`from_pcap`): the GET_DESCRIPTOR replies
  of one device address.

Each gives a :class:`Clone`; :meth:`Clone.to_yaml` writes the profile described in
``docs/profiles.md`` (section "Raw descriptors") and ``docs/clone.md``.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from vusb.capture_read import (
    USBMON_HEADER_SIZE,
    CaptureReadError,
    read_packets,
)
from vusb.constants import Speed
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    DeviceCapability,
    DeviceDescriptor,
    SuperSpeedCapability,
    Usb2Extension,
)
from vusb.errors import VusbError
from vusb.profile_raw import boot_report_default, declared_report_length

DEFAULT_LANGUAGE = 0x0409


class CloneError(VusbError):
    """An input to ``vusb clone`` is wrong: the message names the file (and line) and what was wrong."""


def _error(file: str, message: str, line: int | None = None) -> CloneError:
    return CloneError(f"{file}:{line}: {message}" if line is not None else f"{file}: {message}")


@dataclass
class Clone:
    """Descriptor bytes of a device, as read from some source."""

    source: str
    kind: str
    device: bytes
    configurations: list[bytes]
    bos: bytes | None = None
    qualifier: bytes | None = None
    strings: dict[int, dict[int, str]] = field(default_factory=dict)  # language -> index -> text
    speed: Speed | None = None
    speed_note: str = ""
    reports: dict[int, bytes] = field(default_factory=dict)  # HID interface -> report descriptor
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ derived
    @property
    def descriptor(self) -> DeviceDescriptor:
        return DeviceDescriptor.parse(self.device)

    def string(self, index: int) -> str | None:
        if not index or not self.strings:
            return None
        return next(iter(self.strings.values())).get(index)

    def finish(self) -> Clone:
        """Guess what the source did not say (speed, a BOS for bcdUSB >= 2.01) and note it."""
        desc = self.descriptor
        if self.speed is None:
            self.speed, self.speed_note = guess_speed(desc, self.configurations, self.qualifier is not None)
        if self.bos is None and desc.usb_version >= 0x0201:
            caps: list[DeviceCapability] = [Usb2Extension(0)]
            if self.speed == Speed.SUPER:
                caps.append(SuperSpeedCapability())
            self.bos = BosDescriptor(tuple(caps)).to_bytes()
            self.notes.append(f"bcdUSB is {desc.usb_version >> 8:x}.{desc.usb_version & 0xFF:02x} but the source has no "
                              "BOS descriptor: a minimal one was made up (hosts ask for it)")
        return self

    # ------------------------------------------------------------ output
    def to_yaml(self) -> str:
        desc = self.descriptor
        out = [f"# Cloned by `vusb clone --from {self.kind}` from {self.source}",
               "# The descriptors are served byte for byte; see docs/clone.md."]
        out += [f"# note: {n}" for n in self.notes]
        out += ["identity:", f"  vendor_id: 0x{desc.vendor_id:04x}", f"  product_id: 0x{desc.product_id:04x}",
                f"  device_version: 0x{desc.device_version:04x}"]
        for key, index in (("manufacturer", desc.manufacturer_index), ("product", desc.product_index),
                           ("serial_number", desc.serial_number_index)):
            text = self.string(index)
            if text is not None:
                out.append(f"  {key}: {_quote(text)}")
        speed = (self.speed or Speed.FULL).name.lower()
        out.append(f"  speed: {speed}" + (f"  # {self.speed_note}" if self.speed_note else ""))
        out += ["descriptors:", f"  device: {_hex_inline(self.device)}", "  configurations:"]
        for raw in self.configurations:
            out += ["    - >-", *_hex_block(raw, 6)]
        if self.bos is not None:
            out += ["  bos: >-", *_hex_block(self.bos, 4)]
        if self.qualifier is not None:
            out.append(f"  qualifier: {_hex_inline(self.qualifier)}")
        if any(self.strings.values()):
            out.append("  strings:")
            for lang, entries in self.strings.items():
                if not entries:
                    continue
                out.append(f"    0x{lang:04x}:")
                out += [f"      {index}: {_quote(text)}" for index, text in sorted(entries.items())]
        if self.reports:
            out.append("  report_descriptors:")
            for number, report in sorted(self.reports.items()):
                out += [f"    {number}: >-", *_hex_block(report, 6)]
        fix = self._needs_length_fix()
        if fix:
            out.append("  # " + "; ".join(fix))
            out.append("  # usbhid reads wDescriptorLength bytes; set false to serve the source bytes unchanged")
        out.append(f"  fix_report_lengths: {'true' if fix else 'false'}")
        return "\n".join(out) + "\n"

    def _needs_length_fix(self) -> list[str]:
        """HID boot interfaces without a report descriptor whose default does not fit wDescriptorLength."""
        reasons = []
        seen: set[int] = set()
        for raw in self.configurations:
            try:
                config = ConfigurationDescriptor.parse(raw)
            except VusbError:
                continue
            for itf in config.interfaces:
                if itf.interface_class != 0x03 or itf.number in self.reports or itf.number in seen:
                    continue
                seen.add(itf.number)
                default = boot_report_default(itf)
                declared = declared_report_length([raw], itf.number)
                if default is not None and declared is not None and declared != len(default[1]):
                    reasons.append(f"interface {itf.number}: no report descriptor in the source; the boot "
                                   f"{default[0]} default ({len(default[1])} bytes) is served and wDescriptorLength "
                                   f"{declared} is rewritten")
        return reasons


def _quote(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def _hex_inline(data: bytes) -> str:
    return f'"{data.hex(" ")}"'


def _hex_block(data: bytes, indent: int) -> list[str]:
    return [" " * indent + data[i:i + 16].hex(" ") for i in range(0, len(data), 16)] or [" " * indent + '""']


def guess_speed(device: DeviceDescriptor, configurations: list[bytes], qualifier: bool) -> tuple[Speed, str]:
    """The speed a device most likely ran at, from its descriptors, and a note saying it is a guess."""
    if device.max_packet_size0 == 9 or device.usb_version >= 0x0300:
        return Speed.SUPER, "guessed from bcdUSB / bMaxPacketSize0"
    sizes: list[tuple[int, int]] = []  # (transfer type, wMaxPacketSize)
    for raw in configurations:
        pos = raw[0] if raw else 0
        while pos + 7 <= len(raw) and raw[pos] >= 2:
            if raw[pos + 1] == 0x05:
                sizes.append((raw[pos + 3] & 3, int.from_bytes(raw[pos + 4:pos + 6], "little")))
            pos += raw[pos]
    if device.max_packet_size0 == 64 and (qualifier or any(t == 2 and s == 512 for t, s in sizes)
                                          or any(s > 1023 for _, s in sizes)):
        return Speed.HIGH, "guessed from the descriptors (give --speed if wrong)"
    if device.max_packet_size0 == 8 and sizes and all(t == 3 and s <= 8 for t, s in sizes):
        return Speed.LOW, "guessed from the descriptors (give --speed if wrong)"
    return Speed.FULL, "guessed from the descriptors (give --speed if wrong)"


def _split_configurations(file: str, data: bytes, count: int, what: str) -> list[bytes]:
    configs: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 9:
            raise _error(file, f"{len(data) - pos} stray bytes at offset {pos} of {what}; expected a configuration descriptor")
        if data[pos + 1] != 0x02 or data[pos] < 9:
            raise _error(file, f"byte {pos} of {what}: expected a configuration descriptor (09 02 ...), "
                         f"found {data[pos:pos + 2].hex(' ')}")
        total = int.from_bytes(data[pos + 2:pos + 4], "little")
        if total < 9 or pos + total > len(data):
            raise _error(file, f"configuration {len(configs)} at byte {pos}: wTotalLength {total} but "
                         f"{len(data) - pos} bytes are left")
        configs.append(data[pos:pos + total])
        pos += total
    if len(configs) != count:
        raise _error(file, f"bNumConfigurations is {count} but {len(configs)} configuration(s) follow")
    return configs


def _device(file: str, data: bytes) -> DeviceDescriptor:
    if len(data) < 18 or data[0] != 18 or data[1] != 0x01:
        raise _error(file, f"expected an 18-byte device descriptor (12 01 ...) first, found {data[:2].hex(' ') or 'nothing'}")
    try:
        return DeviceDescriptor.parse(data[:18])
    except VusbError as exc:
        raise _error(file, str(exc)) from exc


# ================================================================== sysfs

SYSFS_SPEEDS = {"1.5": Speed.LOW, "12": Speed.FULL, "480": Speed.HIGH}


def from_sysfs(path: str | Path) -> Clone:
    """A sysfs device folder (``/sys/bus/usb/devices/1-2``) or just its ``descriptors`` file."""
    path = Path(path)
    folder = path if path.is_dir() else None
    file = path / "descriptors" if folder is not None else path
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _error(str(file), f"cannot read: {exc.strerror or exc}") from exc
    desc = _device(str(file), data)
    clone = Clone(str(path), "sysfs", data[:18], _split_configurations(str(file), data[18:], desc.num_configurations,
                                                                    "the configurations"))
    if folder is not None:
        speed_text = _read_text(folder / "speed")
        if speed_text is not None:
            clone.speed = SYSFS_SPEEDS.get(speed_text, Speed.SUPER if speed_text.isdigit() and int(speed_text) >= 5000
                                           else None)
            if clone.speed is None:
                raise _error(str(folder / "speed"), f"unknown speed {speed_text!r}; expected 1.5, 12, 480 or 5000 and up")
        strings = {}
        for name, index in (("manufacturer", desc.manufacturer_index), ("product", desc.product_index),
                            ("serial", desc.serial_number_index)):
            text = _read_text(folder / name)
            if text is not None and index:
                strings[index] = text
        if strings:
            clone.strings = {DEFAULT_LANGUAGE: strings}
        clone.notes.append("sysfs has only the manufacturer, product and serial strings (as language 0x0409); "
                           "other string requests stall")
    return clone.finish()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").rstrip("\n")
    except OSError:
        return None


# ================================================================== pcap / pcapng with usbmon headers

_USBMON_HEADER = USBMON_HEADER_SIZE  # link type -> usbmon header size (48 for 189, 64 for 220)


def _pcap_packets(file: str, data: bytes) -> list[tuple[int, bytes, str]]:
    """(link type, packet bytes, byte order) of every packet in a pcap or pcapng file (:mod:`vusb.capture_read`)."""
    try:
        return [(p.linktype, p.data, p.order) for p in read_packets(file, data)]
    except CaptureReadError as exc:
        raise CloneError(str(exc)) from exc


@dataclass
class _Seen:
    """The longest reply to each GET_DESCRIPTOR of one device in a capture."""

    device: bytes = b""
    configurations: dict[int, bytes] = field(default_factory=dict)
    strings: dict[tuple[int, int], bytes] = field(default_factory=dict)
    bos: bytes = b""
    qualifier: bytes = b""

    def note(self, setup: bytes, reply: bytes) -> None:
        """Keep `reply` to the GET_DESCRIPTOR `setup` if it is the longest of its kind so far."""
        dtype, index = setup[3], setup[2]
        lang = int.from_bytes(setup[4:6], "little")
        if dtype == 0x01 and len(reply) > len(self.device):
            self.device = reply
        elif dtype == 0x02 and len(reply) > len(self.configurations.get(index, b"")):
            self.configurations[index] = reply
        elif dtype == 0x03 and len(reply) > len(self.strings.get((index, lang), b"")):
            self.strings[(index, lang)] = reply
        elif dtype == 0x0F and len(reply) > len(self.bos):
            self.bos = reply
        elif dtype == 0x06 and len(reply) > len(self.qualifier):
            self.qualifier = reply


def from_pcap(path: str | Path, address: str | int | None = None) -> Clone:
    """The descriptors one device returned in a usbmon capture (pcap or pcapng)."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _error(file, f"cannot read: {exc.strerror or exc}") from exc
    packets = _pcap_packets(file, data)
    if not packets:
        raise _error(file, "the capture holds no packets")
    bad = {lt for lt, _, _ in packets if lt not in _USBMON_HEADER}
    if bad:
        raise _error(file, f"link type {sorted(bad)[0]} is not usbmon; expected 220 (LINKTYPE_USB_LINUX_MMAPPED) "
                     "or 189 (LINKTYPE_USB_LINUX), as captured on a usbmonN interface")
    pending: dict[int, bytes] = {}
    devices: dict[tuple[int, int], _Seen] = {}
    for linktype, pkt, order in packets:
        hlen = _USBMON_HEADER[linktype]
        if len(pkt) < hlen:
            continue
        urb_id = struct.unpack_from(order + "Q", pkt, 0)[0]
        kind, xfer, epnum, devnum = pkt[8], pkt[9], pkt[10], pkt[11]
        busnum = struct.unpack_from(order + "H", pkt, 12)[0]
        status, _, len_cap = struct.unpack_from(order + "iII", pkt, 28)
        if xfer != 2 or epnum & 0x7F:
            continue
        if kind == ord("S"):
            if pkt[14] == 0:  # flag_setup 0: the setup packet is present
                setup = pkt[40:48]
                if setup[0] == 0x80 and setup[1] == 0x06:
                    pending[urb_id] = setup
            continue
        if kind != ord("C"):
            continue
        setup_or_none = pending.pop(urb_id, None)
        if setup_or_none is None or status != 0:
            continue
        setup = setup_or_none
        reply = pkt[hlen:hlen + len_cap]
        devices.setdefault((busnum, devnum), _Seen()).note(setup, reply)
    complete = {k: v for k, v in devices.items() if len(v.device) >= 18 and k[1] != 0}
    names = ", ".join(f"{b}:{d}" for b, d in sorted(complete)) or "none"
    if address is None:
        if len(complete) != 1:
            raise _error(file, f"{'several devices' if complete else 'no device'} returned a full device descriptor "
                         f"(bus:address {names}); choose one with --address")
        key = next(iter(complete))
    else:
        text = str(address)
        bus_text, _, dev_text = text.rpartition(":")
        try:
            dev = int(dev_text)
            bus = int(bus_text) if bus_text else None
        except ValueError:
            raise _error(file, f"--address {text!r}: expected N or BUS:N") from None
        matches = [k for k in devices if k[1] == dev and (bus is None or k[0] == bus)]
        if len(matches) != 1:
            raise _error(file, f"address {text} {'is ambiguous' if matches else 'returned no descriptors'}; "
                         f"devices with a device descriptor (bus:address): {names}")
        key = matches[0]
    return clone_from_seen(file, f"{file} (bus {key[0]} address {key[1]})", devices[key])


def clone_from_seen(file: str, where: str, seen: _Seen) -> Clone:
    """A clone from the descriptor replies one device gave in a capture (``where`` names it in errors)."""
    desc = _device(where, seen.device)
    configs = []
    for i in range(desc.num_configurations):
        raw = seen.configurations.get(i)
        if raw is None:
            raise _error(where, f"configuration {i} was not read in the capture")
        total = int.from_bytes(raw[2:4], "little") if len(raw) >= 4 else 0
        if len(raw) < 9 or total > len(raw):
            raise _error(where, f"configuration {i}: only {len(raw)} bytes were captured of wTotalLength {total} "
                         "(start the capture before plugging the device in; check the snap length)")
        configs.append(raw[:total])
    clone = Clone(file, "pcap", seen.device[:18], configs)
    if seen.bos:
        total = int.from_bytes(seen.bos[2:4], "little") if len(seen.bos) >= 4 else 0
        if total <= len(seen.bos):
            clone.bos = seen.bos[:total]
    if len(seen.qualifier) >= 10:
        clone.qualifier = seen.qualifier[:10]
    table = seen.strings.get((0, 0))
    languages = [int.from_bytes(table[i:i + 2], "little") for i in range(2, min(len(table), table[0]) - 1, 2)] if table else []
    strings: dict[int, dict[int, str]] = {lang: {} for lang in languages}
    for (index, lang), raw in sorted(seen.strings.items()):
        if index == 0 or len(raw) < 2 or raw[0] > len(raw) or raw[1] != 0x03:
            continue
        text = raw[2:raw[0] - (raw[0] % 2)].decode("utf-16-le", errors="replace")
        strings.setdefault(lang, {})[index] = text
    clone.strings = {lang: entries for lang, entries in strings.items() if entries}
    return clone.finish()


# ================================================================== lsusb -v text


@dataclass
class _Record:
    header: str
    line: int
    fields: list[tuple[str, str, str, int]] = field(default_factory=list)  # name, value, rest, line
    raw: bytes | None = None
    report: list[tuple[str, str, bytes, int]] = field(default_factory=list)  # item type, name, data, line
    report_length: int | None = None


_FIELD = re.compile(r"^(\s*)(\S+)\s+(\S+)\s?(.*)$")
_ITEM = re.compile(r"^\s*Item\((\w+)\s*\):\s*(.+?), data=\s*(?:none|\[\s*((?:0x[0-9a-fA-F]{2}\s*)*)\])")
_HEX_LINE = re.compile(r"^\s*((?:[0-9a-fA-F]{2}\s+)*[0-9a-fA-F]{2})\s*$")

_HID_ITEMS = {
    "main": {"input": 0x8, "output": 0x9, "feature": 0xB, "collection": 0xA, "end collection": 0xC},
    "global": {"usage page": 0x0, "logical minimum": 0x1, "logical maximum": 0x2, "physical minimum": 0x3,
               "physical maximum": 0x4, "unit exponent": 0x5, "unit": 0x6, "report size": 0x7, "report id": 0x8,
               "report count": 0x9, "push": 0xA, "pop": 0xB},
    "local": {"usage": 0x0, "usage minimum": 0x1, "usage maximum": 0x2, "designator index": 0x3,
              "designator minimum": 0x4, "designator maximum": 0x5, "string index": 0x7, "string minimum": 0x8,
              "string maximum": 0x9, "delimiter": 0xA},
}
_ITEM_TYPE = {"main": 0, "global": 1, "local": 2}

_STRING_FIELDS = {"iManufacturer", "iProduct", "iSerial", "iConfiguration", "iInterface", "iFunction"}

# headers that start a descriptor vusb can rebuild, and headers that are only printed information
_KNOWN = ("Device Descriptor", "Configuration Descriptor", "Interface Descriptor", "Endpoint Descriptor",
          "Interface Association", "HID Device Descriptor", "SuperSpeed Endpoint Companion", "CDC Header",
          "CDC ACM", "CDC Union", "CDC Call Management", "Binary Object Store Descriptor",
          "USB 2.0 Extension Device Capability", "SuperSpeed USB Device Capability",
          "Container ID Device Capability", "Device Qualifier (for other device speed)")
_SKIP = ("Device Status", "Report Descriptors", "Hub Descriptor", "Hub Port Status")


def _lsusb_records(file: str, text: str) -> tuple[list[list[_Record]], list[str]]:
    """Split lsusb -v text into devices (their 'Bus ...' lines) and descriptor records."""
    devices: list[list[_Record]] = []
    titles: list[str] = []
    current: _Record | None = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        i += 1
        stripped = line.strip()
        if not stripped or line.startswith("#"):  # '#' lines: notes added by hand to saved output
            continue
        if stripped.startswith("Bus ") and not line.startswith(" "):
            devices.append([])
            titles.append(stripped)
            current = None
            continue
        if not devices:
            if stripped.startswith("Device Descriptor"):
                devices.append([])
                titles.append("")
            else:
                raise _error(file, f"expected lsusb -v output (a 'Bus ... Device ...' line or 'Device Descriptor:'), "
                             f"found {stripped[:40]!r}", lineno)
        records = devices[-1]
        if stripped.startswith("Negotiated speed:"):
            records.append(_Record("Negotiated speed", lineno, [("speed", stripped.split(":", 1)[1].strip(), "", lineno)]))
            current = None
            continue
        if stripped.startswith("** UNRECOGNIZED:"):
            hex_text = stripped.split(":", 1)[1]
            try:
                raw = bytes.fromhex(hex_text)
            except ValueError:
                raise _error(file, "the UNRECOGNIZED descriptor's bytes are not hexadecimal", lineno) from None
            records.append(_Record("raw", lineno, raw=raw))
            current = None
            continue
        m = re.match(r"^Descriptor type 0x([0-9a-fA-F]{2}), (\d+) bytes:$", stripped)
        if m:  # vusb probe prints unknown descriptors this way, bytes on the next line
            hm = _HEX_LINE.match(lines[i]) if i < len(lines) else None
            if hm is None:
                raise _error(file, "expected the descriptor's bytes in hex on the next line", lineno + 1)
            raw = bytes.fromhex(hm.group(1))
            if len(raw) != int(m.group(2)):
                raise _error(file, f"{m.group(2)} bytes announced, {len(raw)} given", lineno + 1)
            records.append(_Record("raw", lineno, raw=raw))
            i += 1
            current = None
            continue
        m = re.match(r"^Device Capability type 0x([0-9a-fA-F]{2}):$", stripped)
        if m:
            hm = _HEX_LINE.match(lines[i]) if i < len(lines) else None
            if hm is None:
                raise _error(file, "expected the capability's bytes in hex on the next line", lineno + 1)
            records.append(_Record("raw", lineno, raw=bytes.fromhex(hm.group(1))))
            i += 1
            current = None
            continue
        m = re.match(r"^Report Descriptor: \(length is (\d+)\)$", stripped)
        if m:
            hid = next((r for r in reversed(records) if r.header == "HID Device Descriptor"), None)
            if hid is not None:
                hid.report_length = int(m.group(1))
            current = hid
            continue
        item = _ITEM.match(line)
        if item and current is not None and current.header == "HID Device Descriptor":
            data = bytes(int(b, 16) for b in (item.group(3) or "").split())
            current.report.append((item.group(1).lower(), item.group(2).strip().lower(), data, lineno))
            continue
        header = stripped[:-1] if stripped.endswith(":") else None
        if header is None and stripped.startswith("Device Status:"):
            header = "Device Status"
        if header is not None:
            if header in _KNOWN or header in _SKIP:
                current = _Record(header, lineno)
                if header in _KNOWN:
                    records.append(current)
                continue
            if current is not None and current.header in _SKIP:
                continue
            raw_bytes = _decoded_bytes(lines, i, len(line) - len(line.lstrip()))
            if raw_bytes is not None:  # a class descriptor vusb probe decoded: its bytes end the block
                records.append(_Record("raw", lineno, raw=raw_bytes))
                current = None
                continue
            raise _error(file, f"cannot rebuild the bytes of {header!r} from lsusb text; clone from sysfs "
                         "(--from sysfs) or a usbmon capture (--from pcap) instead", lineno)
        if current is None or current.header in _SKIP:
            continue
        fm = _FIELD.match(line)
        if fm:
            current.fields.append((fm.group(2), fm.group(3), fm.group(4).strip(), lineno))
    return devices, titles


def _decoded_bytes(lines: list[str], start: int, indent: int) -> bytes | None:
    """The ``raw bytes:`` line that ``vusb probe`` prints at the end of a decoded class descriptor, if the
    block that starts at ``lines[start]`` (indented deeper than ``indent``) has one."""
    for line in lines[start:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            return None
        m = re.match(r"^\s*raw bytes:\s*((?:[0-9a-fA-F]{2}\s*)+)$", line)
        if m:
            return bytes.fromhex(m.group(1))
    return None


class _Fields:
    def __init__(self, file: str, record: _Record) -> None:
        self.file = file
        self.record = record

    def find(self, name: str, nth: int = 0) -> tuple[str, str, int] | None:
        found = [(v, r, ln) for n, v, r, ln in self.record.fields if n == name]
        return found[nth] if nth < len(found) else None

    def int(self, name: str, nth: int = 0, default: int | None = None, *, bcd: bool = False) -> int:
        found = self.find(name, nth)
        if found is None:
            if default is not None:
                return default
            raise _error(self.file, f"{self.record.header}: field {name!r} is missing", self.record.line)
        value, _, line = found
        try:
            if bcd:
                major, _, minor = value.partition(".")
                return (int(major, 16) << 8) | int(minor or "0", 16)
            value = value.removesuffix("mA")
            return int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            raise _error(self.file, f"{name}: expected {'a version such as 2.00' if bcd else 'a number'}, "
                         f"found {value!r}", line) from None

    def text(self, name: str) -> str:
        found = self.find(name)
        return found[1] if found is not None else ""

    def check_length(self, built: bytes) -> bytes:
        length = self.int("bLength", default=len(built))
        if length != len(built):
            found = self.find("bLength")
            raise _error(self.file, f"{self.record.header}: bLength is {length} but lsusb shows the fields of "
                         f"{len(built)} bytes only; clone from sysfs or a capture instead",
                         found[2] if found else self.record.line)
        return built


def _build_record(file: str, rec: _Record, usb3: bool) -> bytes:
    f = _Fields(file, rec)
    h = rec.header
    if rec.raw is not None:
        return rec.raw
    if h == "Interface Descriptor":
        return f.check_length(bytes((9, 4, f.int("bInterfaceNumber"), f.int("bAlternateSetting"),
                                     f.int("bNumEndpoints"), f.int("bInterfaceClass"), f.int("bInterfaceSubClass"),
                                     f.int("bInterfaceProtocol"), f.int("iInterface"))))
    if h == "Endpoint Descriptor":
        body = struct.pack("<BBH B", f.int("bEndpointAddress"), f.int("bmAttributes"), f.int("wMaxPacketSize"),
                           f.int("bInterval"))
        if f.find("bRefresh") is not None:  # audio class endpoints are 9 bytes long
            body += bytes((f.int("bRefresh"), f.int("bSynchAddress")))
        return f.check_length(bytes((2 + len(body), 5)) + body)
    if h == "Interface Association":
        return f.check_length(bytes((8, 11, f.int("bFirstInterface"), f.int("bInterfaceCount"), f.int("bFunctionClass"),
                                     f.int("bFunctionSubClass"), f.int("bFunctionProtocol"), f.int("iFunction"))))
    if h == "HID Device Descriptor":
        count = f.int("bNumDescriptors")
        body = struct.pack("<HBB", f.int("bcdHID", bcd=True), f.int("bCountryCode"), count)
        for k in range(count):
            body += struct.pack("<BH", f.int("bDescriptorType", k + 1), f.int("wDescriptorLength", k))
        return f.check_length(bytes((2 + len(body), 0x21)) + body)
    if h == "SuperSpeed Endpoint Companion":
        attributes = 0
        if f.find("MaxStreams") is not None:
            attributes = max(f.int("MaxStreams"), 1).bit_length() - 1
        elif f.find("Mult") is not None:
            attributes = max(f.int("Mult") - 1, 0)
        return f.check_length(struct.pack("<BBBBH", 6, 48, f.int("bMaxBurst"), attributes,
                                          f.int("wBytesPerInterval", default=0)))
    if h == "CDC Header":
        return f.check_length(struct.pack("<BBBH", 5, 0x24, 0x00, f.int("bcdCDC", bcd=True)))
    if h == "CDC ACM":
        return f.check_length(bytes((4, 0x24, 0x02, f.int("bmCapabilities"))))
    if h == "CDC Call Management":
        return f.check_length(bytes((5, 0x24, 0x01, f.int("bmCapabilities"), f.int("bDataInterface"))))
    if h == "CDC Union":
        found = f.find("bSlaveInterface")
        slaves = [int(x) for x in ((found[0] + " " + found[1]).split() if found else [])]
        return f.check_length(bytes((5 + len(slaves) - 1 if slaves else 4, 0x24, 0x06, f.int("bMasterInterface"),
                                     *slaves)))
    if h == "USB 2.0 Extension Device Capability":
        return f.check_length(struct.pack("<BBBI", 7, 0x10, 2, f.int("bmAttributes")))
    if h == "SuperSpeed USB Device Capability":
        return f.check_length(struct.pack("<BBBBHBBH", 10, 0x10, 3, f.int("bmAttributes"), f.int("wSpeedsSupported"),
                                          f.int("bFunctionalitySupport"), f.int("bU1DevExitLat"),
                                          f.int("bU2DevExitLat")))
    if h == "Container ID Device Capability":
        text = f.text("ContainerID").strip("{}")
        parts = text.split("-")
        try:
            uuid = (int(parts[0], 16).to_bytes(4, "little") + int(parts[1], 16).to_bytes(2, "little")
                    + int(parts[2], 16).to_bytes(2, "little") + bytes.fromhex(parts[3] + parts[4]))
        except (ValueError, IndexError):
            raise _error(file, f"ContainerID {text!r} is not a GUID", rec.line) from None
        return f.check_length(bytes((20, 0x10, 4, f.int("bReserved", default=0))) + uuid)
    raise _error(file, f"cannot rebuild {h!r} from lsusb text", rec.line)


def _report_bytes(file: str, rec: _Record) -> bytes | None:
    out = bytearray()
    for kind, name, data, line in rec.report:
        tag = _HID_ITEMS.get(kind, {}).get(name)
        if tag is None or len(data) not in (0, 1, 2, 4):
            raise _error(file, f"unknown HID report item {kind} {name!r}", line)
        out.append((tag << 4) | (_ITEM_TYPE[kind] << 2) | (3 if len(data) == 4 else len(data)))
        out += data
    if rec.report_length is not None and len(out) != rec.report_length:
        raise _error(file, f"the report descriptor items add up to {len(out)} bytes but lsusb says its length is "
                     f"{rec.report_length}", rec.line)
    return bytes(out) if out else None


def from_lsusb(path: str | Path, address: str | int | None = None, text: str | None = None) -> Clone:
    """A device from ``lsusb -v`` output (or ``vusb probe`` output, which has the same shape)."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise _error(file, f"cannot read: {exc.strerror or exc}") from exc
    devices, titles = _lsusb_records(file, text)
    if not devices:
        raise _error(file, "no device in the text (expected lsusb -v output)")
    chosen = 0
    if address is not None:
        matches = [k for k, t in enumerate(titles) if re.search(rf"\bDevice 0*{int(str(address).split(':')[-1])}\b", t)]
        if len(matches) != 1:
            raise _error(file, f"--address {address}: {'ambiguous' if matches else 'no such device'} in the text")
        chosen = matches[0]
    elif len(devices) > 1:
        raise _error(file, f"the text describes {len(devices)} devices; choose one with --address N "
                     f"(its 'Device N' number): {'; '.join(titles)}")
    records = devices[chosen]
    dev_rec = next((r for r in records if r.header == "Device Descriptor"), None)
    if dev_rec is None:
        raise _error(file, "no 'Device Descriptor:' section")
    f = _Fields(file, dev_rec)
    usb_version = f.int("bcdUSB", bcd=True)
    device = f.check_length(struct.pack(
        "<BBHBBBBHHHBBBB", 18, 1, usb_version, f.int("bDeviceClass"), f.int("bDeviceSubClass"),
        f.int("bDeviceProtocol"), f.int("bMaxPacketSize0"), f.int("idVendor"), f.int("idProduct"),
        f.int("bcdDevice", bcd=True), f.int("iManufacturer"), f.int("iProduct"), f.int("iSerial"),
        f.int("bNumConfigurations")))
    speed: Speed | None = None
    strings: dict[int, str] = {}
    configs: list[bytes] = []
    reports: dict[int, bytes] = {}
    bos_parts: list[bytes] = []
    bos_rec: _Record | None = None
    qualifier = None
    config: tuple[_Record, bytearray] | None = None
    interface = -1

    def close_config() -> None:
        if config is None:
            return
        rec, body = config
        cf = _Fields(file, rec)
        total = 9 + len(body)
        stated = cf.int("wTotalLength")
        if stated != total:
            where = cf.find("wTotalLength")
            raise _error(file, f"the descriptors listed add up to {total} bytes but wTotalLength is {stated}: lsusb "
                         "left some out; clone from sysfs or a capture instead", where[2] if where else rec.line)
        unit = 8 if usb_version >= 0x0300 else 2
        head = struct.pack("<BBHBBBBB", 9, 2, total, cf.int("bNumInterfaces"), cf.int("bConfigurationValue"),
                           cf.int("iConfiguration"), cf.int("bmAttributes"), cf.int("MaxPower") // unit)
        configs.append(cf.check_length(head) + bytes(body))

    for rec in records:
        for name, value, rest, _ in rec.fields:
            if name in _STRING_FIELDS and value.isdigit() and int(value) and rest:
                strings[int(value)] = rest
        h = rec.header
        if h == "Negotiated speed":
            words = rec.fields[0][1].lower()
            speed = next((s for key, s in (("super", Speed.SUPER), ("high", Speed.HIGH), ("full", Speed.FULL),
                                           ("low", Speed.LOW), ("1.5", Speed.LOW), ("480", Speed.HIGH),
                                           ("12m", Speed.FULL), ("5000", Speed.SUPER)) if key in words), None)
        elif h == "Device Descriptor":
            continue
        elif h == "Configuration Descriptor":
            close_config()
            config = (rec, bytearray())
        elif h == "Binary Object Store Descriptor":
            close_config()
            config = None
            bos_rec = rec
        elif h == "Device Qualifier (for other device speed)":
            close_config()
            config = None
            qf = _Fields(file, rec)
            qualifier = qf.check_length(bytes((10, 6)) + struct.pack(
                "<HBBBBBB", qf.int("bcdUSB", bcd=True), qf.int("bDeviceClass"), qf.int("bDeviceSubClass"),
                qf.int("bDeviceProtocol"), qf.int("bMaxPacketSize0"), qf.int("bNumConfigurations"), 0))
        elif config is not None:
            if h == "Interface Descriptor":
                interface = _Fields(file, rec).int("bInterfaceNumber")
            config[1].extend(_build_record(file, rec, usb_version >= 0x0300))
            if h == "HID Device Descriptor":
                report = _report_bytes(file, rec)
                if report is not None:
                    reports.setdefault(interface, report)
        elif bos_rec is not None:
            bos_parts.append(_build_record(file, rec, usb_version >= 0x0300))
        else:
            raise _error(file, f"{h!r} outside a configuration", rec.line)
    close_config()
    clone = Clone(file, "lsusb", device, configs, speed=speed, reports=reports)
    if bos_rec is not None:
        body = b"".join(bos_parts)
        bf = _Fields(file, bos_rec)
        clone.bos = bf.check_length(struct.pack("<BBHB", 5, 0x0F, 5 + len(body), bf.int("bNumDeviceCaps"))) + body
        stated = bf.int("wTotalLength")
        if stated != 5 + len(body):
            raise _error(file, f"the capabilities listed add up to {5 + len(body)} bytes but wTotalLength is {stated}",
                         bos_rec.line)
    clone.qualifier = qualifier
    if strings:
        clone.strings = {DEFAULT_LANGUAGE: strings}
    num = DeviceDescriptor.parse(device).num_configurations
    if len(configs) != num:
        raise _error(file, f"bNumConfigurations is {num} but {len(configs)} configuration(s) are listed", dev_rec.line)
    return clone.finish()


# ================================================================== entry point

SOURCES = ("lsusb", "sysfs", "pcap")


def clone(source: str, path: str | Path, *, address: str | int | None = None, speed: str | None = None) -> Clone:
    """Read a device from ``source`` (lsusb, sysfs or pcap) and check that the profile it makes loads."""
    if source == "lsusb":
        result = from_lsusb(path, address)
    elif source == "sysfs":
        result = from_sysfs(path)
    elif source == "pcap":
        result = from_pcap(path, address)
    else:
        raise CloneError(f"unknown source {source!r}; expected one of: {', '.join(SOURCES)}")
    if speed is not None:
        result.speed, result.speed_note = Speed.parse(speed), ""
    from vusb.errors import ProfileError
    from vusb.profile import parse_profile

    try:
        parse_profile(result.to_yaml(), f"<clone of {path}>")
    except ProfileError as exc:
        raise _error(str(path), f"the cloned descriptors do not make a servable device: {exc.reason}") from exc
    return result
