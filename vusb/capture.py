"""Write the server's USB/IP traffic as a pcap file Wireshark decodes.

Each connection becomes a TCP stream in a pcap of link type RAW (IPv4 packets): a
handshake, the bytes each side sent as segments with running sequence numbers, and
a closing FIN.  Wireshark's USB/IP dissector follows it
(``tshark -r cap.pcap -d tcp.port==3240,usbip``).  The segments are synthesized from
what the server read and wrote, so the file shows exactly the USB/IP bytes exchanged,
whatever TCP did underneath.

Writing is synchronous and buffered; a capture costs a copy of every payload, so it
is off unless asked for (``vusb serve --capture FILE``).
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
import time
from typing import BinaryIO

LINKTYPE_RAW = 101
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


class Stream:
    """One connection's two directions of sequence numbers."""

    def __init__(self, capture: Capture, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.capture = capture
        self.client = (self._v4(client[0]), client[1])
        self.server = (self._v4(server[0]), server[1])
        self.client_seq = 1000
        self.server_seq = 5000
        self.closed = False
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
        self._data(True, data)

    def server_data(self, data: bytes | bytearray | memoryview) -> None:
        self._data(False, data)

    def close(self) -> None:
        if self.closed:
            return
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
    """A pcap file with one TCP stream per USB/IP connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, LINKTYPE_RAW))
        self.ip_ids = itertools.count(1)

    def stream(self, client: tuple[str, int], server: tuple[str, int]) -> Stream:
        return Stream(self, client, server)

    def write_packet(self, packet: bytes) -> None:
        now = time.time()
        sec = int(now)
        self._file.write(_RECORD.pack(sec, int((now - sec) * 1e6), len(packet), len(packet)))
        self._file.write(packet)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
