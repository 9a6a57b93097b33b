"""Record a device from a capture into a replay profile (``vusb record``).

:func:`record` reads a capture (:mod:`vusb.capture_read`: usbmon pcap/pcapng, a
USB/IP session in TCP, or vusb's own ``--capture`` in either form), picks one device,
and returns a :class:`Recording`: the device's descriptors (as ``vusb clone`` reads
them) and its behaviour:

* ``control``: every class and vendor request (and interface-level GET_DESCRIPTOR) the
  host made, with the device state it came in (configuration, the addressed interface's
  alternate setting) and what the device answered, in recorded order;
* ``transfers``: the conversation on the other endpoints, in order of completion: what
  the host sent on OUT endpoints (and what the device did with it: accepted, stalled,
  took part of it), and what the device returned on IN endpoints, with how long it held
  the URB (``wait``).  What triggered an IN transfer is what precedes it in the list.

:meth:`Recording.to_yaml` writes the profile (docs/record-replay.md): a raw-descriptor
profile whose one function, of kind ``replay``, holds the behaviour.  Payloads longer
than :data:`INLINE_LIMIT` bytes go to a binary file beside the profile and are named
``bin:OFFSET+LENGTH`` (identical payloads are stored once).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from vusb.capture_read import (
    XFER_BULK,
    XFER_CONTROL,
    XFER_INTERRUPT,
    XFER_ISO,
    CaptureReadError,
    Reading,
    Transfer,
    read_capture,
)
from vusb.clone import Clone, _quote, _Seen, clone_from_seen
from vusb.constants import Speed
from vusb.descriptors import ConfigurationDescriptor
from vusb.errors import VusbError
from vusb.urb import SetupPacket

INLINE_LIMIT = 64
"""Payloads up to this many bytes are written in the profile as hex; longer ones go to the data file."""

_STATUS_NAMES = {-32: "stall", -71: "error", -75: "overflow", -108: "shutdown", -104: "reset", -2: "unlinked"}


class RecordError(CaptureReadError):
    """``vusb record`` cannot make a profile: the message names the file and what is missing."""


@dataclass
class Candidate:
    """A device found in a capture."""

    bus: int
    address: int
    vendor_id: int
    product_id: int
    device_class: int
    product: str = ""

    def __str__(self) -> str:
        name = f" {self.product!r}" if self.product else ""
        return f"{self.bus}.{self.address} ({self.vendor_id:04x}:{self.product_id:04x}{name})"


@dataclass
class ControlEntry:
    setup: bytes
    config: int
    alt: int | None
    reply: bytes | None  # IN data; None for OUT
    out: bytes
    status: int
    t: float


@dataclass
class ScriptEntry:
    endpoint: int
    xfer: int
    t: float
    data: bytes  # IN: what the device returned; OUT: what the host sent
    status: int
    actual: int
    length: int
    wait: float
    config: int
    iso: list[tuple[int, int, int]] = field(default_factory=list)
    after_control: int | None = None


@dataclass
class Recording:
    """One device's descriptors and behaviour, read from a capture."""

    file: str
    source: str  # usbmon or usbip
    bus: int
    address: int
    clone: Clone
    control: list[ControlEntry] = field(default_factory=list)
    transfers: list[ScriptEntry] = field(default_factory=list)
    device_class: str = "none"
    warnings: list[str] = field(default_factory=list)

    def interfaces(self) -> list[int]:
        numbers: set[int] = set()
        for raw in self.clone.configurations:
            numbers.update(i.number for i in ConfigurationDescriptor.parse(raw).interfaces)
        return sorted(numbers)

    # ------------------------------------------------------------ output
    def to_yaml(self, data_file: str | None = None) -> tuple[str, bytes]:
        """The profile's text and the data file's bytes (empty when every payload fits inline).

        ``data_file`` is the data file's name as the profile gives it (relative to the profile's folder).
        """
        blob = bytearray()
        offsets: dict[bytes, int] = {}

        def payload(data: bytes) -> str:
            if len(data) <= INLINE_LIMIT or data_file is None:
                return f'"{data.hex(" ")}"'
            at = offsets.get(data)
            if at is None:
                at = offsets[data] = len(blob)
                blob.extend(data)
            return f"bin:{at}+{len(data)}"

        clone_text = self.clone.to_yaml().splitlines()
        out = [f"# Recorded by `vusb record` from {self.file} ({self.source}, bus {self.bus} address {self.address}).",
               "# The descriptors are served byte for byte; the replay function answers the host as the device",
               "# did (docs/record-replay.md)."]
        out += [f"# warning: {w}" for w in self.warnings]
        out += [line for line in clone_text if not line.startswith(("# Cloned by", "# The descriptors are served"))]
        body = ["functions:", "  - kind: replay",
                f"    interface: [{', '.join(str(n) for n in self.interfaces())}]",
                f"    class: {self.device_class}",
                "    unrecorded: stall      # or nearest, or handler (with handler: module:function)",
                "    timing: recorded       # or asap, or on-demand (vusb ctl replay-next)"]
        ctl = ["    control:"]
        for c in self.control:
            setup = SetupPacket.parse(c.setup)
            fields = [f'setup: "{c.setup.hex(" ")}"', f"config: {c.config}"]
            if c.alt:
                fields.append(f"alt: {c.alt}")
            if c.status:
                fields.append(f"status: {_STATUS_NAMES.get(c.status, str(c.status))}")
            elif c.reply is not None:
                fields.append(f"reply: {payload(c.reply)}")
            if c.out:
                fields.append(f"out: {payload(c.out)}")
            ctl.append(f"      - {{{', '.join(fields)}}}  # {setup.describe()}")
        if len(ctl) == 1:
            ctl[0] += " []"
        xfers = ["    transfers:"]
        for s in self.transfers:
            fields = [f"ep: 0x{s.endpoint:02x}", f"t: {s.t:.6f}"]
            fields.append(f"{'in' if s.endpoint & 0x80 else 'out'}: {payload(s.data)}")
            if s.status:
                fields.append(f"status: {_STATUS_NAMES.get(s.status, str(s.status))}")
            if not s.endpoint & 0x80 and s.actual != len(s.data) and not s.status:
                fields.append(f"actual: {s.actual}")
            if s.endpoint & 0x80 and s.wait >= 0.005:
                fields.append(f"wait: {s.wait:.6f}")
            if s.after_control is not None:
                fields.append(f'after: "control[{s.after_control}]"')
            if s.xfer == XFER_ISO:
                fields.append("iso: [" + ", ".join(f"[{off}, {ln}]" for _, off, ln in s.iso) + "]")
            note = _bot_note(s.data) if self.device_class == "storage" else ""
            xfers.append(f"      - {{{', '.join(fields)}}}" + (f"  # {note}" if note else ""))
        if len(xfers) == 1:
            xfers[0] += " []"
        if blob:
            body.insert(3, f"    data_file: {_quote(data_file or '')}")
        return "\n".join(out + body + ctl + xfers) + "\n", bytes(blob)

    def write(self, path: str | Path) -> list[Path]:
        """Write the profile (and its data file beside it when needed); returns the files written."""
        path = Path(path)
        data_name = path.with_suffix(".bin").name if path.suffix else path.name + ".bin"
        text, blob = self.to_yaml(data_name)
        written = [path]
        if blob:
            (path.parent / data_name).write_bytes(blob)
            written.append(path.parent / data_name)
        path.write_text(text, encoding="utf-8")
        return written


_SCSI = {0x00: "TEST UNIT READY", 0x03: "REQUEST SENSE", 0x12: "INQUIRY", 0x1A: "MODE SENSE(6)", 0x1B: "START STOP UNIT",
         0x1E: "PREVENT ALLOW MEDIUM REMOVAL", 0x23: "READ FORMAT CAPACITIES", 0x25: "READ CAPACITY(10)",
         0x35: "SYNCHRONIZE CACHE(10)", 0x5A: "MODE SENSE(10)", 0x9E: "READ CAPACITY(16)", 0xA0: "REPORT LUNS",
         0x08: "READ(6)", 0x28: "READ(10)", 0xA8: "READ(12)", 0x88: "READ(16)", 0x0A: "WRITE(6)", 0x2A: "WRITE(10)",
         0xAA: "WRITE(12)", 0x8A: "WRITE(16)"}


def _bot_note(data: bytes) -> str:
    """A Bulk-Only wrapper in words, for the reader of a storage recording."""
    if len(data) == 31 and data[:4] == b"USBC" and data[14] & 0x1F:
        tag = struct.unpack_from("<I", data, 4)[0]
        cdb = data[15:15 + (data[14] & 0x1F)]
        name = _SCSI.get(cdb[0], f"operation 0x{cdb[0]:02x}")
        extra = ""
        if cdb[0] in (0x28, 0x2A) and len(cdb) >= 10:
            extra = f" LBA {struct.unpack_from('>I', cdb, 2)[0]}, {struct.unpack_from('>H', cdb, 7)[0]} block(s)"
        return f"CBW tag {tag}: LUN {data[13] & 0x0F} {name}{extra}"
    if len(data) == 13 and data[:4] == b"USBS":
        tag, residue, status = struct.unpack_from("<IIB", data, 4)
        return f"CSW tag {tag}: status {status}" + (f", residue {residue}" if residue else "")
    return ""


# ================================================================== reading

def _candidates(reading: Reading) -> dict[tuple[int, int], Candidate]:
    found: dict[tuple[int, int], Candidate] = {}
    for key, transfers in reading.transfers.items():
        if key[1] == 0:
            continue
        device = b""
        strings: dict[int, bytes] = {}
        for t in transfers:
            if t.setup is None or t.status or t.setup[0] != 0x80 or t.setup[1] != 0x06:
                continue
            if t.setup[3] == 0x01 and len(t.data) > len(device):
                device = t.data
            elif t.setup[3] == 0x03:
                strings[t.setup[2]] = t.data
        if len(device) < 18:
            continue
        vid, pid = struct.unpack_from("<HH", device, 8)
        product = strings.get(device[15], b"")
        text = product[2:product[0] if product else 0].decode("utf-16-le", errors="replace") if len(product) > 2 else ""
        found[key] = Candidate(key[0], key[1], vid, pid, device[4], text)
    return found


def choose(reading: Reading, vid_pid: str | None = None, device: str | None = None) -> tuple[int, int]:
    """The (bus, address) the options pick; without options, the one device that is not a hub."""
    file = reading.file
    found = _candidates(reading)
    listing = ", ".join(str(c) for _, c in sorted(found.items())) or "none"
    if vid_pid is not None:
        try:
            v_text, p_text = vid_pid.split(":")
            vid, pid = int(v_text, 16), int(p_text, 16)
        except ValueError:
            raise RecordError(f"{file}: --vid-pid {vid_pid!r}: expected VVVV:PPPP in hexadecimal") from None
        keys = [k for k, c in found.items() if (c.vendor_id, c.product_id) == (vid, pid)]
        if not keys:
            raise RecordError(f"{file}: no device {vid:04x}:{pid:04x} in the capture; devices that returned a "
                              f"device descriptor (bus.address): {listing}")
        if len(keys) > 1:
            raise RecordError(f"{file}: several devices are {vid:04x}:{pid:04x}; choose one with --device "
                              f"BUS.ADDR: {', '.join(str(found[k]) for k in sorted(keys))}")
        return keys[0]
    if device is not None:
        try:
            b_text, a_text = device.replace(":", ".").split(".")
            key = (int(b_text), int(a_text))
        except ValueError:
            raise RecordError(f"{file}: --device {device!r}: expected BUS.ADDR such as 1.3") from None
        if key not in found:
            raise RecordError(f"{file}: no device at bus {key[0]} address {key[1]} returned a device descriptor; "
                              f"devices in the capture (bus.address): {listing}")
        return key
    devices = {k: c for k, c in found.items() if c.device_class != 0x09}
    if len(devices) == 1:
        return next(iter(devices))
    if not devices:
        raise RecordError(f"{file}: no device returned a full device descriptor in the capture (start the capture "
                          "before the device is plugged in or attached)"
                          + (f"; only hubs: {listing}" if found else ""))
    raise RecordError(f"{file}: the capture holds {len(devices)} devices; choose one with --vid-pid VVVV:PPPP or "
                      f"--device BUS.ADDR: {', '.join(str(c) for _, c in sorted(devices.items()))}")


def _seen(transfers: list[Transfer]) -> _Seen:
    seen = _Seen()
    for t in transfers:
        s = t.setup
        if s is None or t.status or s[0] != 0x80 or s[1] != 0x06:
            continue
        seen.note(s, t.data)
    return seen


def _class_of(configs: list[ConfigurationDescriptor]) -> str:
    classes = {(i.interface_class, i.interface_subclass, i.interface_protocol) for c in configs for i in c.interfaces}
    if any(c == 0x08 and p == 0x50 for c, _, p in classes):
        return "storage"
    if classes and all(c == 0x03 for c, _, _ in classes):
        return "hid"
    if any(c in (0x02, 0x0A) for c, _, _ in classes):
        return "cdc"
    return "none"


def speed_from_intervals(transfers: list[Transfer], configurations: list[bytes]) -> Speed | None:
    """The speed the interrupt URBs' intervals say the device ran at, or None if they cannot tell.

    Linux keeps an interrupt URB's interval in the bus's unit, rounded down to a power of
    two: at high speed 2**(bInterval-1) microframes, at full and low speed bInterval frames.
    Where the two differ (bInterval 3, 4 and up), the interval in the capture tells the speed.
    """
    intervals: dict[int, int] = {}
    for raw in configurations:
        for itf in ConfigurationDescriptor.parse(raw).interfaces:
            for ep in itf.endpoints:
                if int(ep.transfer_type) == 3 and ep.interval:
                    intervals.setdefault(ep.address, ep.interval)
    for t in transfers:
        b = intervals.get(t.endpoint)
        if t.xfer != XFER_INTERRUPT or not t.interval or b is None:
            continue
        high = 1 << min(b - 1, 15)
        full = 1 << (b.bit_length() - 1)
        if high == full:
            continue
        if t.interval == high:
            return Speed.HIGH
        if t.interval == full:
            return Speed.FULL
    return None


def _device_saw_it(t: Transfer) -> float:
    """When the device acted on a transfer: a bulk or interrupt OUT's data reaches it after
    the submission, and it may answer on an IN before the OUT's completion is reported
    (QEMU's usb-net answers an ARP request on bulk IN between the request's S and C), so
    OUTs are placed by submission; everything else by completion."""
    if t.endpoint & 0x80 or t.endpoint & 0x7F == 0 or t.xfer == XFER_ISO:
        return t.completed if t.completed is not None else t.submitted
    return float(t.submitted)


def record(path: str | Path, *, vid_pid: str | None = None, device: str | None = None,
           speed: str | None = None) -> Recording:
    """Read ``path`` and record the device the options pick (see :func:`choose`)."""
    file = str(path)
    reading = read_capture(path)
    key = choose(reading, vid_pid, device)
    transfers = sorted(reading.transfers[key], key=_device_saw_it)
    where = f"{file} (bus {key[0]} address {key[1]})"
    try:
        clone = clone_from_seen(file, where, _seen(transfers))
    except VusbError as exc:
        raise RecordError(str(exc)) from exc
    clone.kind = "record"
    if speed is not None:
        clone.speed, clone.speed_note = Speed.parse(speed), ""
    elif key in reading.speeds:
        clone.speed, clone.speed_note = Speed(reading.speeds[key]), "from the USB/IP import reply"
    else:
        seen = speed_from_intervals(transfers, clone.configurations)
        if seen is not None and not (seen == Speed.FULL and clone.speed == Speed.LOW):
            clone.speed = seen
            clone.speed_note = "from the interrupt URBs' intervals in the capture (give --speed if wrong)"
    configs = [ConfigurationDescriptor.parse(raw) for raw in clone.configurations]
    types: dict[tuple[int, int], int] = {}  # (configuration value, endpoint address) -> usbmon transfer type
    usbmon_type = {0: XFER_CONTROL, 1: XFER_ISO, 2: XFER_BULK, 3: XFER_INTERRUPT}
    for c in configs:
        for itf in c.interfaces:
            for ep in itf.endpoints:
                types.setdefault((c.value, ep.address), usbmon_type[int(ep.transfer_type)])
                types.setdefault((0, ep.address), usbmon_type[int(ep.transfer_type)])
    rec = Recording(file, reading.kind, key[0], key[1], clone, device_class=_class_of(configs))
    rec.warnings.extend(reading.warnings)
    start = min((t.submitted for t in transfers), default=0.0)
    config = 0
    alts: dict[int, int] = {}
    last_done = start
    last_control: int | None = None  # the control entry recorded since the last OUT transfer, if any
    for t in transfers:
        assert t.completed is not None
        if t.endpoint & 0x7F == 0:
            if t.setup is None:
                continue
            setup = SetupPacket.parse(t.setup)
            if setup.request_type == 0x00 and setup.request == 0x09 and not t.status:
                config, alts = setup.value & 0xFF, {}
                continue
            if setup.request_type == 0x01 and setup.request == 0x0B and not t.status:
                alts[setup.index & 0xFF] = setup.value & 0xFF
                continue
            if setup.type == 0 and not (setup.request == 0x06 and setup.recipient != 0):
                continue  # a standard request: the replayed device answers it from its descriptors and state
            alt = alts.get(setup.index & 0xFF) if setup.recipient == 1 else None
            rec.control.append(ControlEntry(t.setup, config, alt, t.data if setup.is_in else None, t.out, t.status,
                                            t.completed - start))
            last_done = t.completed
            if (setup.request_type >> 5) & 3 and not setup.is_in:  # a class or vendor command: it may start data
                last_control = len(rec.control) - 1
            continue
        xfer = t.xfer
        if reading.kind == "usbip" and xfer != XFER_ISO:
            xfer = types.get((config, t.endpoint), types.get((0, t.endpoint), XFER_BULK))
        wait = max(0.0, t.completed - max(t.submitted, last_done)) if t.is_in else 0.0
        rec.transfers.append(ScriptEntry(t.endpoint, xfer, t.completed - start, t.data if t.is_in else t.out,
                                         t.status, t.actual, t.length, wait, config, list(t.iso_packets),
                                         last_control if t.is_in and xfer != XFER_ISO else None))
        if not t.is_in:
            last_done = t.completed
            last_control = None
    never = reading.incomplete.get(key, [])
    if never:
        eps = sorted({t.endpoint for t in never})
        rec.warnings.append(f"{len(never)} URB(s) never completed in the capture (endpoint(s) "
                            f"{', '.join(f'0x{e:02x}' for e in eps)}); recorded up to them")
    return rec


def record_to(path: str | Path, output: str | Path, *, vid_pid: str | None = None, device: str | None = None,
              speed: str | None = None) -> tuple[Recording, list[Path]]:
    """Record ``path`` into the profile ``output`` (and its data file), and check that the profile loads."""
    rec = record(path, vid_pid=vid_pid, device=device, speed=speed)
    written = rec.write(output)
    from vusb.errors import ProfileError
    from vusb.profile import load_profile

    try:
        load_profile(output)
    except ProfileError as exc:
        raise RecordError(f"{path}: the recorded profile {output} does not load: {exc}") from exc
    return rec, written
