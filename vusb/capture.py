"""Write the server's traffic as a pcap file Wireshark decodes, in one of two forms.

``usbip`` (the default): each connection becomes a TCP stream in a pcap of link type RAW
(IPv4 packets): a handshake, every USB/IP message in a segment of its own with running
sequence numbers, and a closing FIN.  Wireshark's USB/IP dissector follows it
(``tshark -r cap.pcap -d tcp.port==3240,usbip``).  The segments are synthesized from
what the server read and wrote, so the file shows exactly the USB/IP bytes exchanged,
whatever TCP did underneath.  A message is split only where it exceeds what one IPv4
packet carries (65,495 bytes of payload).

``usbmon``: the URBs themselves, as Linux's usbmon records them on a machine with the
hardware (link type USB_LINUX_MMAPPED, 220: a 64-byte header per submission and per
completion, iso packet descriptors, then the data).  It is the format ``tcpdump -i
usbmon0`` and Wireshark write, so one capture format serves both what a user records on
real hardware and what vusb serves; ``vusb clone --from pcap`` reads either.

Writing is synchronous and buffered; a capture costs a copy of every payload, so it
is off unless asked for (``vusb serve --capture FILE [--capture-format usbmon]``).
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
import time
from collections.abc import Sequence
from typing import BinaryIO

LINKTYPE_RAW = 101
LINKTYPE_USB_LINUX_MMAPPED = 220
FORMATS = ("usbip", "usbmon")
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_MAX_SEGMENT = 65535 - 20 - 20

SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def _checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


_OP_HEADER = struct.Struct("!HHI")  # version, code, status
_URB_HEADER = struct.Struct("!IIIII")  # command, seqnum, devid, direction, ep
OP_REQ_IMPORT = 0x8003
OP_REQ_DEVLIST = 0x8005
CMD_SUBMIT = 1
CMD_UNLINK = 2
URB_HEADER_SIZE = 48


def _client_message_size(buf: bytes | bytearray, start: int, imported: bool) -> int | None:
    """The size of the client's message at the start of ``buf``, or None when more bytes are needed.

    Before the import the client sends op requests (OP_REQ_IMPORT carries a 32-byte busid);
    after it, CMD_SUBMIT (48 bytes, then OUT data and iso packet descriptors) and CMD_UNLINK.
    Anything else is passed on as it came (the server closes such a connection anyway).
    """
    available = len(buf) - start
    if not imported:
        if available < 8:
            return None
        _, code, _ = _OP_HEADER.unpack_from(buf, start)
        return 8 + 32 if code == OP_REQ_IMPORT else 8
    if available < URB_HEADER_SIZE:
        return None
    command, _, _, direction, _ = _URB_HEADER.unpack_from(buf, start)
    if command != CMD_SUBMIT:
        return URB_HEADER_SIZE
    length, _, packets = struct.unpack_from("!iii", buf, start + 24)
    size = URB_HEADER_SIZE + (max(length, 0) if direction == 0 else 0)
    if 0 < packets <= 1024:
        size += 16 * packets
    return size


class Stream:
    """One connection's two directions of sequence numbers.

    The server hands over its replies message by message (:meth:`server_message`); what
    the client sent arrives as the socket delivered it and is cut into messages here, so
    every USB/IP message is one segment of the capture.
    """

    def __init__(self, capture: Capture, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.capture = capture
        self.client = (self._v4(client[0]), client[1])
        self.server = (self._v4(server[0]), server[1])
        self.client_seq = 1000
        self.server_seq = 5000
        self.closed = False
        self.imported = False  # set by the server once an import succeeded: URB messages follow
        self._pending = bytearray()  # the client's bytes not yet making a whole message
        self._segment(True, SYN, b"")
        self.client_seq += 1
        self._segment(False, SYN | ACK, b"")
        self.server_seq += 1
        self._segment(True, ACK, b"")

    @staticmethod
    def _v4(host: str) -> bytes:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return bytes([127, 0, 0, 1])
        if isinstance(addr, ipaddress.IPv6Address):
            mapped = addr.ipv4_mapped
            return mapped.packed if mapped is not None else bytes([127, 0, 0, 1])
        return addr.packed

    def client_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes the client sent, as they were read: written out one message per segment."""
        pending = self._pending
        pending += data
        start = 0
        while True:
            size = _client_message_size(pending, start, self.imported)
            if size is None or start + size > len(pending):
                break
            self._data(True, bytes(pending[start : start + size]))
            start += size
            if not self.imported and size == 8 + 32:
                break  # the import's reply decides how what follows is cut
        del pending[:start]

    def server_message(self, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """One whole message from the server (a header and the views of its data)."""
        self._data(False, b"".join(parts))
        if self._pending and self.imported:
            self.client_data(b"")  # messages that waited for the import's reply

    def close(self) -> None:
        if self.closed:
            return
        if self._pending:  # a message cut short by the close: kept as it came
            self._data(True, bytes(self._pending))
            self._pending.clear()
        self.closed = True
        self._segment(False, FIN | ACK, b"")
        self.server_seq += 1
        self._segment(True, FIN | ACK, b"")
        self.client_seq += 1
        self._segment(False, ACK, b"")

    def _data(self, from_client: bool, data: bytes | bytearray | memoryview) -> None:
        if self.closed or not data:
            return
        view = memoryview(data)
        for start in range(0, len(view), _MAX_SEGMENT):
            chunk = bytes(view[start : start + _MAX_SEGMENT])
            self._segment(from_client, PSH | ACK, chunk)
            if from_client:
                self.client_seq = (self.client_seq + len(chunk)) & 0xFFFFFFFF
            else:
                self.server_seq = (self.server_seq + len(chunk)) & 0xFFFFFFFF

    def _segment(self, from_client: bool, flags: int, payload: bytes) -> None:
        (src, sport), (dst, dport) = (self.client, self.server) if from_client else (self.server, self.client)
        seq, ack = (self.client_seq, self.server_seq) if from_client else (self.server_seq, self.client_seq)
        tcp = _TCP.pack(sport, dport, seq, ack if flags & ACK else 0, 5 << 4, flags, 65535, 0, 0)
        total = 20 + len(tcp) + len(payload)
        ip = _IPV4.pack(0x45, 0, total, next(self.capture.ip_ids) & 0xFFFF, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + _checksum(ip).to_bytes(2, "big") + ip[12:]
        self.capture.write_packet(ip + tcp + payload)


class Capture:
    """A pcap file: one TCP stream per USB/IP connection, or (``format="usbmon"``) the URBs themselves."""

    def __init__(self, path: str, format: str = "usbip") -> None:
        if format not in FORMATS:
            raise ValueError(f"capture format {format!r}: choose one of {', '.join(FORMATS)}")
        self.path = path
        self.format = format
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        linktype = LINKTYPE_USB_LINUX_MMAPPED if format == "usbmon" else LINKTYPE_RAW
        self._file.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 0x40000, linktype))
        self.ip_ids = itertools.count(1)
        self._urb_ids = itertools.count(1)

    @property
    def usbmon(self) -> bool:
        return self.format == "usbmon"

    def urb_id(self) -> int:
        """A fresh URB tag for the usbmon form (usbmon shows the kernel's URB address there)."""
        return next(self._urb_ids) << 8

    def stream(self, client: tuple[str, int], server: tuple[str, int]) -> Stream:
        return Stream(self, client, server)

    def write_packet(self, packet: bytes) -> None:
        now = time.time()
        sec = int(now)
        self._file.write(_RECORD.pack(sec, int((now - sec) * 1e6), len(packet), len(packet)))
        self._file.write(packet)

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


# ------------------------------------------------------------------ the usbmon form

#: struct mon_bin_hdr of linux/drivers/usb/mon/mon_bin.c, as pcap's USB_LINUX_MMAPPED carries it (host order).
USBMON_HEADER = struct.Struct("<QBBBBHbbqiiII8siiII")
USBMON_ISO_DESCRIPTOR = struct.Struct("<iIII")  # status, offset, length, padding
EINPROGRESS = -115
#: usbmon's transfer types: isochronous, interrupt, control, bulk
USBMON_XFER_TYPE = {1: 0, 3: 1, 0: 2, 2: 3}  # from the endpoint descriptor's bmAttributes & 3


def usbmon_event(
    capture: Capture,
    *,
    urb_id: int,
    submit: bool,
    transfer_type: int,
    endpoint: int,
    devnum: int,
    busnum: int,
    status: int,
    length: int,
    data: bytes | bytearray | memoryview,
    setup: bytes | None = None,
    interval: int = 0,
    start_frame: int = 0,
    flags: int = 0,
    iso_packets: Sequence[tuple[int, int, int]] = (),
    error_count: int = 0,
) -> None:
    """Write one usbmon record: a submission (``submit``) or a completion of one URB.

    ``transfer_type`` is the endpoint descriptor's (0 control, 1 iso, 2 bulk, 3 interrupt);
    ``endpoint`` carries 0x80 for IN; ``data`` is what went with this event (OUT data on
    submission, IN data on completion); ``iso_packets`` are (status, offset, length).
    """
    flag_setup = 0 if setup is not None else ord("-")
    if data:
        flag_data = 0
    elif submit:
        flag_data = ord("<") if endpoint & 0x80 else 0
    else:
        flag_data = ord(">") if not endpoint & 0x80 else 0
    xfer = USBMON_XFER_TYPE[transfer_type & 3]
    head = setup if setup is not None else (
        struct.pack("<ii", error_count, len(iso_packets)) if xfer == 0 else bytes(8))
    now = time.time()
    sec = int(now)
    descriptors = b"".join(USBMON_ISO_DESCRIPTOR.pack(st, off, ln, 0) for st, off, ln in iso_packets)
    header = USBMON_HEADER.pack(
        urb_id, ord("S") if submit else ord("C"), xfer, endpoint, devnum, busnum, flag_setup, flag_data,
        sec, int((now - sec) * 1e6), EINPROGRESS if submit else status, length, len(data), head,
        interval, start_frame, flags, len(iso_packets),
    )
    capture.write_packet(header + descriptors + bytes(data))
