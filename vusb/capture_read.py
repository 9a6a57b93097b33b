"""Read captures back: pcap and pcapng files, usbmon records, and USB/IP streams inside TCP.

One reader for everything that consumes captures (``vusb clone --from pcap`` and
``vusb record``):

* :func:`read_packets` gives every packet of a pcap or pcapng file with its link type,
  byte order and time;
* :func:`usbmon_transfers` pairs usbmon submissions and completions (link types 189
  USB_LINUX and 220 USB_LINUX_MMAPPED) into :class:`Transfer` objects;
* :func:`usbip_transfers` finds USB/IP connections (TCP port 3240, or any TCP stream
  that starts with a USB/IP request) in packets of link type Ethernet, loopback, Linux
  cooked or raw IP, reassembles each direction by sequence number, and pairs
  CMD_SUBMIT with RET_SUBMIT into the same :class:`Transfer` objects.

So a recording of real hardware (``tcpdump -i usbmon1``), a Wireshark capture of a
USB/IP session and vusb's own ``--capture`` in either form all become one list of
transfers per device.  Every error is a :class:`CaptureReadError` naming the file and
what is missing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vusb.errors import VusbError

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_USB_LINUX = 189
LINKTYPE_USB_LINUX_MMAPPED = 220
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

USBMON_HEADER_SIZE = {LINKTYPE_USB_LINUX: 48, LINKTYPE_USB_LINUX_MMAPPED: 64}
IP_LINKTYPES = (LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4,
                LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2)
USBIP_PORT = 3240

#: usbmon's transfer type numbers (not the endpoint descriptor's)
XFER_ISO, XFER_INTERRUPT, XFER_CONTROL, XFER_BULK = 0, 1, 2, 3
XFER_NAMES = {XFER_ISO: "iso", XFER_INTERRUPT: "interrupt", XFER_CONTROL: "control", XFER_BULK: "bulk"}


class CaptureReadError(VusbError):
    """A capture cannot be read: the message names the file and what is missing or wrong."""


def error(file: str, message: str) -> CaptureReadError:
    return CaptureReadError(f"{file}: {message}")


@dataclass(frozen=True)
class Packet:
    """One captured packet: its link type, bytes, the file's byte order and its time (seconds)."""

    linktype: int
    data: bytes
    order: str
    time: float


# ================================================================== pcap / pcapng

def read_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise error(str(path), f"cannot read: {exc.strerror or exc}") from exc


def read_packets(file: str, data: bytes) -> list[Packet]:
    """Every packet of a pcap or pcapng file (``file`` names it in errors)."""
    if len(data) < 4:
        raise error(file, "too short to be a pcap or pcapng file")
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        return _pcapng(file, data)
    formats = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
               b"\xa1\xb2\xc3\xd4": (">", 1e-6), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
    found = formats.get(magic)
    if found is None:
        raise error(file, f"not a pcap or pcapng file (starts with {magic.hex(' ')})")
    order, unit = found
    if len(data) < 24:
        raise error(file, "the pcap header is cut short (24 bytes expected)")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    packets = []
    pos = 24
    while pos < len(data):
        if pos + 16 > len(data):
            raise error(file, f"packet record header at byte {pos} is cut short (a truncated capture: "
                        f"{len(data) - pos} of 16 bytes)")
        sec, frac, incl = struct.unpack_from(order + "III", data, pos)
        if pos + 16 + incl > len(data):
            raise error(file, f"packet at byte {pos} claims {incl} bytes but the file ends first (a truncated "
                        f"capture: {len(data) - pos - 16} bytes are left)")
        packets.append(Packet(linktype, data[pos + 16:pos + 16 + incl], order, sec + frac * unit))
        pos += 16 + incl
    return packets


def _pcapng(file: str, data: bytes) -> list[Packet]:
    packets: list[Packet] = []
    links: list[tuple[int, float]] = []  # link type, time unit
    order = "<"
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise error(file, f"pcapng block at byte {pos} is cut short (a truncated capture)")
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":  # section header: sets the byte order
            bom = data[pos + 8:pos + 12]
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(bom, "")
            if not order:
                raise error(file, f"pcapng section at byte {pos} has a bad byte-order magic {bom.hex(' ')}")
            links = []
        btype, blen = struct.unpack_from(order + "II", data, pos)
        if blen < 12 or blen % 4:
            raise error(file, f"pcapng block at byte {pos} has a bad length {blen}")
        if pos + blen > len(data):
            raise error(file, f"pcapng block at byte {pos} has a bad length {blen}: the file ends first (a truncated "
                        f"capture: {len(data) - pos} bytes are left)")
        body = data[pos + 8:pos + blen - 4]
        if btype == 1:  # interface description
            links.append((struct.unpack_from(order + "H", body, 0)[0], _tsresol(body[8:], order)))
        elif btype == 6:  # enhanced packet
            iface, high, low, cap = struct.unpack_from(order + "IIII", body, 0)
            if iface >= len(links):
                raise error(file, f"packet at byte {pos} names interface {iface}, which was not described")
            linktype, unit = links[iface]
            packets.append(Packet(linktype, body[20:20 + cap], order, ((high << 32) | low) * unit))
        elif btype == 3 and links:  # simple packet: interface 0, captured length from the block
            orig = struct.unpack_from(order + "I", body, 0)[0]
            packets.append(Packet(links[0][0], body[4:4 + min(orig, len(body) - 4)], order, 0.0))
        elif btype == 2:  # obsolete packet block
            iface, _, high, low, cap = struct.unpack_from(order + "HHIII", body, 0)
            if iface < len(links):
                packets.append(Packet(links[iface][0], body[20:20 + cap], order, ((high << 32) | low) * links[iface][1]))
        pos += blen
    return packets


def _tsresol(options: bytes, order: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[pos + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        pos += 4 + length + (-length % 4)
    return 1e-6


# ================================================================== transfers

@dataclass
class Transfer:
    """One URB: what the host submitted and how the device completed it."""

    bus: int
    device: int
    xfer: int  # XFER_*
    endpoint: int  # with 0x80 for IN
    submitted: float  # seconds
    length: int  # the URB's buffer length
    setup: bytes | None = None
    out: bytes = b""  # data the host sent
    completed: float | None = None  # None: never completed in the capture
    status: int = 0
    data: bytes = b""  # IN data the device returned
    actual: int = 0
    iso_packets: list[tuple[int, int, int]] = field(default_factory=list)  # (status, offset, length)
    interval: int = 0

    @property
    def is_in(self) -> bool:
        return bool(self.endpoint & 0x80)

    @property
    def done(self) -> bool:
        return self.completed is not None


@dataclass
class Reading:
    """The transfers of a capture, by (bus, device address), in order of completion, and what was noticed."""

    file: str
    kind: str  # "usbmon" or "usbip"
    transfers: dict[tuple[int, int], list[Transfer]] = field(default_factory=dict)
    incomplete: dict[tuple[int, int], list[Transfer]] = field(default_factory=dict)
    speeds: dict[tuple[int, int], int] = field(default_factory=dict)  # USB/IP: the import reply's speed
    warnings: list[str] = field(default_factory=list)


def read_capture(path: str | Path) -> Reading:
    """The transfers of a usbmon capture or of the USB/IP connections in an IP capture."""
    file = str(path)
    packets = read_packets(file, read_file(path))
    if not packets:
        raise error(file, "the capture holds no packets")
    links = {p.linktype for p in packets}
    if links <= set(USBMON_HEADER_SIZE):
        return usbmon_transfers(file, packets)
    if links <= set(IP_LINKTYPES):
        return usbip_transfers(file, packets)
    bad = sorted(links - set(USBMON_HEADER_SIZE) - set(IP_LINKTYPES))
    raise error(file, f"link type {bad[0] if bad else sorted(links)[0]} is neither usbmon (220 USB_LINUX_MMAPPED or "
                "189 USB_LINUX, as `tcpdump -i usbmonN` writes) nor IP carrying USB/IP (Ethernet 1, loopback 0/108, "
                "Linux cooked 113/276, raw IP 101/228/229)")


# ------------------------------------------------------------------ usbmon

def usbmon_transfers(file: str, packets: Iterable[Packet]) -> Reading:
    reading = Reading(file, "usbmon")
    pending: dict[tuple[int, int, int, int], Transfer] = {}
    for n, pkt in enumerate(packets, 1):
        hlen = USBMON_HEADER_SIZE.get(pkt.linktype)
        if hlen is None:
            raise error(file, f"packet {n} has link type {pkt.linktype}, not usbmon")
        raw = pkt.data
        if len(raw) < hlen:
            raise error(file, f"packet {n} is {len(raw)} bytes, shorter than the {hlen}-byte usbmon header "
                        "(was the snap length too small?)")
        o = pkt.order
        urb_id = struct.unpack_from(o + "Q", raw, 0)[0]
        kind, xfer, epnum, devnum = raw[8], raw[9], raw[10], raw[11]
        busnum = struct.unpack_from(o + "H", raw, 12)[0]
        flag_setup, flag_data = raw[14], raw[15]
        sec, usec, status, length, len_cap = struct.unpack_from(o + "qiiII", raw, 16)
        when = sec + usec * 1e-6
        ndesc = 0
        interval = 0
        if hlen == 64:
            interval, _, _, ndesc = struct.unpack_from(o + "iiII", raw, 48)
        payload = raw[hlen:]
        descs: list[tuple[int, int, int]] = []
        if xfer == XFER_ISO and hlen == 64 and ndesc:
            for k in range(min(ndesc, len(payload) // 16)):
                st, off, ln, _ = struct.unpack_from(o + "iIII", payload, 16 * k)
                descs.append((st, off, ln))
            payload = payload[16 * ndesc:]
        payload = payload[:len_cap]
        key = (urb_id, busnum, devnum, epnum)
        if kind == ord("S"):
            t = Transfer(busnum, devnum, xfer, epnum, when, length, interval=interval)
            if xfer == XFER_CONTROL and flag_setup == 0:
                t.setup = raw[40:48]
            if not epnum & 0x80:
                if len_cap < length and xfer != XFER_ISO and flag_data == 0:
                    reading.warnings.append(f"packet {n}: only {len_cap} of {length} OUT bytes captured "
                                            "(snap length too small?)")
                t.out = payload
            if xfer == XFER_ISO:
                t.iso_packets = descs
            pending[key] = t
        elif kind in (ord("C"), ord("E")):
            t_or_none = pending.pop(key, None)
            if t_or_none is None:
                continue  # submitted before the capture started
            t = t_or_none
            t.completed = when
            t.status = status if kind == ord("C") else (status or -71)
            t.actual = length
            if epnum & 0x80:
                t.data = payload
                if len_cap < length and xfer != XFER_ISO:
                    reading.warnings.append(f"packet {n}: only {len_cap} of {length} IN bytes captured "
                                            "(snap length too small?)")
            if xfer == XFER_ISO:
                t.iso_packets = descs
            reading.transfers.setdefault((busnum, devnum), []).append(t)
    for t in pending.values():
        reading.incomplete.setdefault((t.bus, t.device), []).append(t)
    return reading


# ------------------------------------------------------------------ USB/IP in TCP

_OP_REQ_IMPORT, _OP_REP_IMPORT, _OP_REQ_DEVLIST, _OP_REP_DEVLIST = 0x8003, 0x0003, 0x8005, 0x0005
_USBIP_SPEEDS = {1: 1, 2: 2, 3: 3, 5: 5, 6: 5}  # usb_device_speed: low, full, high, wireless, super, super+


def _ip_payload(pkt: Packet) -> bytes | None:
    """The IP packet inside one captured frame, or None if it carries something else."""
    d, lt = pkt.data, pkt.linktype
    if lt == LINKTYPE_ETHERNET:
        if len(d) < 14:
            return None
        etype, pos = struct.unpack_from("!H", d, 12)[0], 14
        while etype in (0x8100, 0x88A8) and len(d) >= pos + 4:  # VLAN tags
            etype, pos = struct.unpack_from("!H", d, pos + 2)[0], pos + 4
        return d[pos:] if etype in (0x0800, 0x86DD) else None
    if lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return d[4:]
    if lt == LINKTYPE_LINUX_SLL:
        return d[16:] if len(d) >= 16 and struct.unpack_from("!H", d, 14)[0] in (0x0800, 0x86DD) else None
    if lt == LINKTYPE_LINUX_SLL2:
        return d[20:] if len(d) >= 20 and struct.unpack_from("!H", d, 0)[0] in (0x0800, 0x86DD) else None
    return d


def _tcp(ip: bytes) -> tuple[tuple[bytes, int, bytes, int], int, int, bytes] | None:
    """(src, sport, dst, dport), sequence number, flags, payload of a TCP segment in an IP packet."""
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ip[9] != 6 or struct.unpack_from("!H", ip, 6)[0] & 0x3FFF:  # not TCP, or a fragment (MF or an offset)
            return None
        src, dst, seg = ip[12:16], ip[16:20], ip[ihl:total or len(ip)]
    elif version == 6 and len(ip) >= 40:
        if ip[6] != 6:
            return None
        plen = struct.unpack_from("!H", ip, 4)[0]
        src, dst, seg = ip[8:24], ip[24:40], ip[40:40 + plen]
    else:
        return None
    if len(seg) < 20:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", seg, 0)
    off = (seg[12] >> 4) * 4
    return (src, sport, dst, dport), seq, seg[13], seg[off:]


def _reassemble(segments: list[tuple[int, int, bytes]]) -> tuple[bytes, int]:
    """One direction's bytes from (seq, flags, payload) segments; returns the bytes and how many were missing."""
    syn = next((seq for seq, flags, _ in segments if flags & 0x02), None)
    data_segs = [(seq, p) for seq, _, p in segments if p]
    if not data_segs:
        return b"", 0
    start = (syn + 1) & 0xFFFFFFFF if syn is not None else data_segs[0][0]
    chunks = sorted((((seq - start) & 0xFFFFFFFF), p) for seq, p in data_segs)
    out = bytearray()
    missing = 0
    for rel, payload in chunks:
        if rel > len(out):
            missing += rel - len(out)
            break
        if rel + len(payload) > len(out):
            out += payload[len(out) - rel:]
    return bytes(out), missing


def usbip_transfers(file: str, packets: Iterable[Packet]) -> Reading:
    reading = Reading(file, "usbip")
    flows: dict[tuple[bytes, int, bytes, int], list[tuple[int, int, bytes]]] = {}
    first: dict[tuple[bytes, int, bytes, int], float] = {}
    times: dict[tuple[bytes, int, bytes, int], list[tuple[int, float]]] = {}
    for pkt in packets:
        ip = _ip_payload(pkt)
        seg = _tcp(ip) if ip is not None else None
        if seg is None:
            continue
        key, seq, flags, payload = seg
        flows.setdefault(key, []).append((seq, flags, payload))
        first.setdefault(key, pkt.time)
        if payload:
            times.setdefault(key, []).append((seq, pkt.time))
    sessions = 0
    for key in sorted(flows, key=lambda k: first[k]):
        src, sport, dst, dport = key
        client = flows[key]
        server = flows.get((dst, dport, src, sport))
        if server is None:
            continue
        cdata, cmiss = _reassemble(client)
        if len(cdata) < 8 or struct.unpack_from("!H", cdata, 0)[0] != 0x0111 or \
                struct.unpack_from("!H", cdata, 2)[0] != _OP_REQ_IMPORT:
            continue  # not a client's import (a device list, the server's side, or not USB/IP)
        sdata, smiss = _reassemble(server)
        sessions += 1
        where = f"USB/IP connection {sessions} (TCP port {sport} -> {dport})"
        if cmiss or smiss:
            reading.warnings.append(f"{where}: {cmiss + smiss} bytes of the stream were not captured; "
                                    "the transfers after the gap are left out")
        _usbip_session(reading, where, cdata, sdata, _clock(client, times.get(key, [])),
                       _clock(server, times.get((dst, dport, src, sport), [])))
    if sessions == 0:
        raise error(file, "no USB/IP import found in the capture: expected a TCP stream that starts with "
                    "OP_REQ_IMPORT (a `usbip attach`), recorded from its start")
    return reading


def _clock(segments: list[tuple[int, int, bytes]], times: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """(offset in the reassembled stream, time) of each segment, to time the messages."""
    syn = next((seq for seq, flags, _ in segments if flags & 0x02), None)
    if not times:
        return []
    start = (syn + 1) & 0xFFFFFFFF if syn is not None else times[0][0]
    return sorted(((seq - start) & 0xFFFFFFFF, t) for seq, t in times)


def _time_at(clock: list[tuple[int, float]], offset: int) -> float:
    best = clock[0][1] if clock else 0.0
    for off, t in clock:
        if off > offset:
            break
        best = t
    return best


def _usbip_session(reading: Reading, where: str, cdata: bytes, sdata: bytes, cclock: list[tuple[int, float]],
                   sclock: list[tuple[int, float]]) -> None:
    file = reading.file
    if len(sdata) < 8 + 312:
        raise error(file, f"{where}: the server's import reply is cut short ({len(sdata)} of 320 bytes)")
    _, code, status = struct.unpack_from("!HHI", sdata, 0)
    if code != _OP_REP_IMPORT or status != 0:
        reading.warnings.append(f"{where}: the import was refused (status {status}); left out")
        return
    busnum, devnum, speed = struct.unpack_from("!III", sdata, 8 + 256 + 32)
    dev_key = (busnum, devnum)
    reading.speeds[dev_key] = _USBIP_SPEEDS.get(speed, 2)
    submits: dict[int, Transfer] = {}
    pos = 8 + 32
    while pos + 48 <= len(cdata):
        command, seqnum, _, direction, ep = struct.unpack_from("!IIIII", cdata, pos)
        if command == 1:
            _, length, _, npackets, interval = struct.unpack_from("!Iiiii", cdata, pos + 20)
            setup = cdata[pos + 40:pos + 48]
            size = 48
            out = b""
            if direction == 0 and length > 0:
                out = cdata[pos + 48:pos + 48 + length]
                size += length
            if 0 < npackets <= 1024:
                size += 16 * npackets
            if pos + size > len(cdata):
                reading.warnings.append(f"{where}: CMD_SUBMIT seqnum {seqnum} is cut short by the end of the capture")
                break
            address = (ep & 0x0F) | (0x80 if direction == 1 else 0)
            xfer = XFER_CONTROL if ep == 0 else XFER_BULK  # refined from the descriptors later
            t = Transfer(busnum, devnum, xfer, address if ep else (0x80 if direction else 0), _time_at(cclock, pos),
                         length, setup=setup if ep == 0 else None, out=out, interval=interval)
            submits[seqnum] = t
            pos += size
        elif command == 2:
            pos += 48
        else:
            reading.warnings.append(f"{where}: unknown command {command} at byte {pos} of the client's stream; "
                                    "the rest is left out")
            break
    done: list[Transfer] = []
    pos = 8 + 312
    while pos + 48 <= len(sdata):
        command, seqnum, _, direction, _ = struct.unpack_from("!IIIII", sdata, pos)
        if command == 3:
            status, actual, _, npackets, _ = struct.unpack_from("!iiiii", sdata, pos + 20)
            t_or_none = submits.get(seqnum)
            size = 48
            is_in = t_or_none.is_in if t_or_none is not None else direction == 1
            if is_in and actual > 0:
                size += actual
            if 0 < npackets <= 1024:
                size += 16 * npackets
            if pos + size > len(sdata):
                reading.warnings.append(f"{where}: RET_SUBMIT seqnum {seqnum} is cut short by the end of the capture")
                break
            if t_or_none is not None:
                t = t_or_none
                del submits[seqnum]
                t.completed = _time_at(sclock, pos)
                t.status = status
                t.actual = max(actual, 0)
                if is_in:
                    t.data = sdata[pos + 48:pos + 48 + max(actual, 0)]
                done.append(t)
            pos += size
        elif command == 4:
            pos += 48
        else:
            reading.warnings.append(f"{where}: unknown reply {command} at byte {pos} of the server's stream; "
                                    "the rest is left out")
            break
    reading.transfers.setdefault(dev_key, []).extend(done)
    if submits:
        reading.incomplete.setdefault(dev_key, []).extend(submits.values())
