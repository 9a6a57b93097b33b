"""A small user-space IP host: what the ``endpoint`` backend puts at the other end of the cable.

It has one MAC address, one IPv4 address (default 169.254.77.1/16) and an IPv6 link-local
address made from its MAC (EUI-64), and it answers:

* ARP requests for its IPv4 address, IPv6 neighbour solicitations for its addresses;
* ICMP echo (v4) and ICMPv6 echo;
* UDP echo on port 7 (and silently discards UDP to port 9);
* TCP echo on port 7 and discard on port 9: three-way handshake, sequence and
  acknowledgement numbers, the peer's window and MSS, retransmission after a timeout
  (go-back-N, exponential back-off) and on three duplicate ACKs, FIN both ways, RST for
  segments of unknown connections.

Any other frame goes to ``on_frame`` (when set); without it TCP to another port is reset and
UDP to another port gets ICMP port unreachable, as a real host would answer.

Headers are read and written with :mod:`struct`: they are a handful of fixed fields, parsed
for every frame on the data path, where a general packet library costs more than the USB/IP
transport itself (see docs/devices/network.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("vusb.devices.net.endpoint")

ETH_IPV4, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
BROADCAST = b"\xff" * 6
ECHO_PORT, DISCARD_PORT = 7, 9
ECHO_BUFFER = 256 * 1024
"""Bytes an echo connection holds for the peer before it closes its receive window."""
MAX_CONNECTIONS = 256
RTO_INITIAL, RTO_MAX, MAX_RETRIES = 0.3, 8.0, 10
MASK = 0xFFFF_FFFF


def checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071) of ``data``, as the 16-bit value to store big-endian."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(memoryview(data).cast("H"))  # native order: the one's complement sum is order-independent
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    s = ~s & 0xFFFF
    return int.from_bytes(s.to_bytes(2, "little" if struct.pack("=H", 1) == b"\x01\x00" else "big"), "big")


def _seq_lt(a: int, b: int) -> bool:
    return ((a - b) & MASK) > 0x7FFF_FFFF


def _seq_le(a: int, b: int) -> bool:
    return a == b or _seq_lt(a, b)


def link_local_v6(mac: bytes) -> ipaddress.IPv6Address:
    """fe80::/64 address from a MAC with the modified EUI-64 (RFC 4291 appendix A)."""
    eui = bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui)


def solicited_node(addr: ipaddress.IPv6Address) -> bytes:
    """ff02::1:ffXX:XXXX, the multicast group a neighbour solicitation for ``addr`` goes to."""
    return ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + addr.packed[13:]


@dataclass
class Flow:
    """Addresses of one packet, enough to answer it."""

    peer_mac: bytes
    version: int
    src: bytes
    dst: bytes


@dataclass
class TcpConnection:
    flow: Flow
    sport: int  # the peer's port
    dport: int  # ours
    iss: int
    rcv_nxt: int
    snd_una: int
    snd_nxt: int
    peer_mss: int
    peer_wnd: int = 0
    state: str = "SYN_RCVD"
    unsent: bytearray = field(default_factory=bytearray)  # from snd_una on
    fin_wanted: bool = False
    fin_sent: bool = False
    ack_pending: bool = False
    dup_acks: int = 0
    rto: float = RTO_INITIAL
    retries: int = 0
    timer: asyncio.TimerHandle | None = None
    received: int = 0
    advertised: int = 0

    @property
    def echo(self) -> bool:
        return self.dport == ECHO_PORT

    def window(self) -> int:
        if not self.echo:
            return 0xFFFF
        return max(0, min(0xFFFF, ECHO_BUFFER - len(self.unsent)))


class IpHost:
    """The IP host; ``send`` puts a frame on the wire toward the USB host."""

    def __init__(
        self,
        mac: bytes,
        address: str = "169.254.77.1/16",
        send: Callable[[bytes], object] | None = None,
        *,
        ipv6: str | None = None,
        on_frame: Callable[[bytes], object] | None = None,
    ) -> None:
        self.mac = bytes(mac)
        self.interface = ipaddress.IPv4Interface(address)
        self.ipv4 = self.interface.ip.packed
        self.ipv6_link_local = link_local_v6(self.mac)
        self.ipv6_addresses = {self.ipv6_link_local.packed}
        if ipv6:
            self.ipv6_addresses.add(ipaddress.IPv6Interface(ipv6).ip.packed)
        self._multicast6 = {solicited_node(ipaddress.IPv6Address(a)) for a in self.ipv6_addresses}
        self._multicast6.add(bytes.fromhex("ff020000000000000000000000000001"))
        self.send: Callable[[bytes], object] = send or (lambda frame: None)
        self.on_frame = on_frame
        self.connections: dict[tuple[bytes, int, int], TcpConnection] = {}
        self.counters: dict[str, int] = {}
        self._ack_flush_scheduled = False

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # ------------------------------------------------------------ receive
    def receive(self, frame: bytes) -> None:
        if len(frame) < 14:
            return
        dst = frame[:6]
        if dst != self.mac and not dst[0] & 1:
            self._other(frame)
            return
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        peer = frame[6:12]
        if ethertype == ETH_ARP:
            self._arp(frame, peer)
        elif ethertype == ETH_IPV4:
            self._ipv4(frame, peer)
        elif ethertype == ETH_IPV6:
            self._ipv6(frame, peer)
        else:
            self._other(frame)

    def _other(self, frame: bytes) -> None:
        self._count("other frames")
        if self.on_frame is not None:
            self.on_frame(frame)

    def _arp(self, frame: bytes, peer: bytes) -> None:
        if len(frame) < 42:
            return
        htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
        if (htype, ptype, hlen, plen) != (1, ETH_IPV4, 6, 4):
            return
        sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
        if op == 1 and tpa == self.ipv4:
            self._count("arp replies")
            reply = struct.pack("!HHBBH", 1, ETH_IPV4, 6, 4, 2) + self.mac + self.ipv4 + sha + spa
            self.send(sha + self.mac + struct.pack("!H", ETH_ARP) + reply)
        elif tpa != self.ipv4:
            self._other(frame)

    # ------------------------------------------------------------ IPv4
    def _ipv4(self, frame: bytes, peer: bytes) -> None:
        if len(frame) < 34:
            return
        vihl, _tos, total, _ident, frag, _ttl, proto, _sum = struct.unpack_from("!BBHHHBBH", frame, 14)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20 or total < ihl or 14 + total > len(frame):
            self._count("bad ipv4")
            return
        if checksum(frame[14:14 + ihl]) != 0:
            self._count("bad ipv4 checksum")
            return
        src, dst = frame[26:30], frame[30:34]
        if dst != self.ipv4 or frag & 0x3FFF:
            self._other(frame)  # not ours, or a fragment (this host does not reassemble)
            return
        payload = frame[14 + ihl:14 + total]
        flow = Flow(peer, 4, src, dst)
        if proto == PROTO_ICMP:
            if len(payload) >= 8 and payload[0] == 8 and checksum(payload) == 0:
                self._count("icmp echo")
                body = b"\x00\x00\x00\x00" + payload[4:]
                body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
                self._send_ip(flow, PROTO_ICMP, body)
            else:
                self._other(frame)
        elif proto == PROTO_UDP:
            self._udp(flow, payload, frame)
        elif proto == PROTO_TCP:
            self._tcp(flow, payload, frame)
        else:
            self._other(frame)

    def _pseudo(self, flow: Flow, proto: int, length: int, *, reply: bool = True) -> bytes:
        src, dst = (flow.dst, flow.src) if reply else (flow.src, flow.dst)
        if flow.version == 4:
            return src + dst + struct.pack("!BBH", 0, proto, length)
        return src + dst + struct.pack("!IxxxB", length, proto)

    def _send_ip(self, flow: Flow, proto: int, payload: bytes) -> None:
        """Send ``payload`` back to the peer of ``flow`` (our address as the source)."""
        if flow.version == 4:
            head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                               flow.dst, flow.src)
            head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
            self.send(flow.peer_mac + self.mac + b"\x08\x00" + head + payload)
        else:
            head = struct.pack("!IHBB16s16s", 0x60000000, len(payload), proto, 64, flow.dst, flow.src)
            self.send(flow.peer_mac + self.mac + b"\x86\xdd" + head + payload)

    # ------------------------------------------------------------ IPv6
    def _ipv6(self, frame: bytes, peer: bytes) -> None:
        if len(frame) < 54:
            return
        _vtf, plen, nxt, hop = struct.unpack_from("!IHBB", frame, 14)
        src, dst = frame[22:38], frame[38:54]
        if 54 + plen > len(frame):
            self._count("bad ipv6")
            return
        payload = frame[54:54 + plen]
        if dst not in self.ipv6_addresses and dst not in self._multicast6:
            self._other(frame)
            return
        if nxt == PROTO_ICMPV6:
            if checksum(src + dst + struct.pack("!IxxxB", plen, nxt) + payload) != 0 or len(payload) < 8:
                self._count("bad icmpv6")
                return
            icmp_type = payload[0]
            if icmp_type == 135 and hop == 255 and len(payload) >= 24:  # neighbour solicitation
                target = payload[8:24]
                if target in self.ipv6_addresses:
                    self._count("neighbour advertisements")
                    answer_to = src if src != bytes(16) else bytes.fromhex("ff020000000000000000000000000001")
                    flags = 0x60000000 if src != bytes(16) else 0x20000000  # solicited+override / override
                    body = struct.pack("!BBHI", 136, 0, 0, flags) + target + b"\x02\x01" + self.mac
                    flow = Flow(peer, 6, answer_to, target)
                    body = body[:2] + struct.pack("!H", checksum(self._pseudo(flow, PROTO_ICMPV6, len(body)) + body)) \
                        + body[4:]
                    head = struct.pack("!IHBB16s16s", 0x60000000, len(body), PROTO_ICMPV6, 255, target, answer_to)
                    self.send(peer + self.mac + b"\x86\xdd" + head + body)
                return
            if icmp_type == 128 and dst in self.ipv6_addresses:
                self._count("icmpv6 echo")
                flow = Flow(peer, 6, src, dst)
                body = b"\x81\x00\x00\x00" + payload[4:]
                body = body[:2] + struct.pack("!H", checksum(self._pseudo(flow, PROTO_ICMPV6, len(body)) + body)) \
                    + body[4:]
                self._send_ip(flow, PROTO_ICMPV6, body)
                return
            self._other(frame)
            return
        if dst not in self.ipv6_addresses:
            self._other(frame)
            return
        flow = Flow(peer, 6, src, dst)
        if nxt == PROTO_UDP:
            self._udp(flow, payload, frame)
        elif nxt == PROTO_TCP:
            self._tcp(flow, payload, frame)
        else:
            self._other(frame)

    # ------------------------------------------------------------ UDP
    def _udp(self, flow: Flow, seg: bytes, frame: bytes) -> None:
        if len(seg) < 8:
            return
        sport, dport, length, csum = struct.unpack_from("!HHHH", seg)
        if length < 8 or length > len(seg):
            self._count("bad udp")
            return
        seg = seg[:length]
        if csum and checksum(self._pseudo(flow, PROTO_UDP, length, reply=False) + seg) != 0:
            self._count("bad udp checksum")
            return
        if dport == ECHO_PORT:
            self._count("udp echo")
            body = struct.pack("!HHHH", dport, sport, length, 0) + seg[8:]
            c = checksum(self._pseudo(flow, PROTO_UDP, length) + body) or 0xFFFF
            self._send_ip(flow, PROTO_UDP, body[:6] + struct.pack("!H", c) + body[8:])
        elif dport == DISCARD_PORT:
            self._count("udp discarded")
        elif self.on_frame is not None:
            self._other(frame)
        elif flow.version == 4:
            self._count("icmp unreachable")
            ip_len = (frame[14] & 0x0F) * 4
            quoted = frame[14:14 + ip_len + 8]
            body = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
            body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
            self._send_ip(flow, PROTO_ICMP, body)

    # ------------------------------------------------------------ TCP
    def _tcp(self, flow: Flow, seg: bytes, frame: bytes) -> None:
        if len(seg) < 20:
            return
        sport, dport, seq, ack, off_flags, wnd, _csum, _urg = struct.unpack_from("!HHIIHHHH", seg)
        doff = (off_flags >> 12) * 4
        flags = off_flags & 0x3F
        if doff < 20 or doff > len(seg):
            self._count("bad tcp")
            return
        if checksum(self._pseudo(flow, PROTO_TCP, len(seg), reply=False) + seg) != 0:
            self._count("bad tcp checksum")
            return
        key = (flow.src, sport, dport)
        conn = self.connections.get(key)
        if conn is None:
            if dport not in (ECHO_PORT, DISCARD_PORT) and self.on_frame is not None:
                self._other(frame)
                return
            if flags & RST:
                return
            if flags & SYN and not flags & ACK and dport in (ECHO_PORT, DISCARD_PORT):
                if len(self.connections) >= MAX_CONNECTIONS:
                    self._count("tcp refused: too many connections")
                    return
                mss = 536 if flow.version == 4 else 1220
                opts = seg[20:doff]
                i = 0
                while i < len(opts):
                    kind = opts[i]
                    if kind == 0:
                        break
                    if kind == 1:
                        i += 1
                        continue
                    if i + 1 >= len(opts) or opts[i + 1] < 2:
                        break
                    if kind == 2 and opts[i + 1] == 4 and i + 4 <= len(opts):
                        mss = struct.unpack_from("!H", opts, i + 2)[0]
                    i += opts[i + 1]
                iss = random.getrandbits(32)
                ours = 1460 if flow.version == 4 else 1440
                conn = TcpConnection(flow, sport, dport, iss, (seq + 1) & MASK, iss, (iss + 1) & MASK,
                                     max(64, min(mss, ours)), wnd)
                self.connections[key] = conn
                self._count("tcp connections")
                self._send_syn_ack(conn)
                return
            self._reset_for(flow, sport, dport, seq, ack, flags, len(seg) - doff)
            return
        self._segment(conn, seq, ack, flags, wnd, seg[doff:])

    def _reset_for(self, flow: Flow, sport: int, dport: int, seq: int, ack: int, flags: int, dlen: int) -> None:
        self._count("tcp resets")
        if flags & ACK:
            self._send_tcp_raw(flow, dport, sport, ack, 0, RST, 0)
        else:
            end = (seq + dlen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & MASK
            self._send_tcp_raw(flow, dport, sport, 0, end, RST | ACK, 0)

    def _send_tcp_raw(self, flow: Flow, sport: int, dport: int, seq: int, ack: int, flags: int, wnd: int,
                      data: bytes = b"", options: bytes = b"") -> None:
        doff = 20 + len(options)
        head = struct.pack("!HHIIHHHH", sport, dport, seq, ack, (doff // 4) << 12 | flags, wnd, 0, 0) + options
        seg = head + data
        c = checksum(self._pseudo(flow, PROTO_TCP, len(seg)) + seg)
        self._send_ip(flow, PROTO_TCP, seg[:16] + struct.pack("!H", c) + seg[18:])

    def _send_tcp(self, conn: TcpConnection, seq: int, flags: int, data: bytes = b"", options: bytes = b"") -> None:
        wnd = conn.window()
        conn.advertised = wnd
        conn.ack_pending = False
        self._send_tcp_raw(conn.flow, conn.dport, conn.sport, seq, conn.rcv_nxt, flags, wnd, data, options)

    def _send_syn_ack(self, conn: TcpConnection) -> None:
        mss = 1460 if conn.flow.version == 4 else 1440
        self._send_tcp(conn, conn.iss, SYN | ACK, options=struct.pack("!BBH", 2, 4, mss))
        self._arm(conn)

    def _segment(self, conn: TcpConnection, seq: int, ack: int, flags: int, wnd: int, data: bytes) -> None:
        if flags & RST:
            self._drop_conn(conn, "reset by peer")
            return
        if flags & SYN:
            if conn.state == "SYN_RCVD" and not flags & ACK:
                self._send_syn_ack(conn)  # our SYN-ACK was lost
            else:
                conn.ack_pending = True
                self._schedule_flush()
            return
        if not flags & ACK:
            return
        # Acknowledgement of what we sent.
        if _seq_lt(conn.snd_una, ack) and _seq_le(ack, conn.snd_nxt):
            acked = (ack - conn.snd_una) & MASK
            if conn.state == "SYN_RCVD":
                acked -= 1  # our SYN
                conn.state = "ESTABLISHED"
            if conn.fin_sent and ack == conn.snd_nxt:
                acked -= 1  # our FIN
            del conn.unsent[:max(acked, 0)]
            conn.snd_una = ack
            conn.rto, conn.retries, conn.dup_acks = RTO_INITIAL, 0, 0
            self._disarm(conn)
            if conn.fin_sent and ack == conn.snd_nxt and conn.state == "LAST_ACK":
                self._drop_conn(conn, None)
                return
            if conn.echo and conn.advertised < conn.peer_mss <= conn.window():
                conn.ack_pending = True  # window update: room for the peer again
        elif ack == conn.snd_una and not data and conn.snd_una != conn.snd_nxt and wnd == conn.peer_wnd:
            conn.dup_acks += 1
            if conn.dup_acks == 3:  # fast retransmit: go back to the first unacknowledged byte
                self._count("tcp fast retransmits")
                conn.snd_nxt = conn.snd_una
        conn.peer_wnd = wnd
        if conn.state == "SYN_RCVD":
            return
        # Data and FIN, in order only.
        end = (seq + len(data)) & MASK
        if data and _seq_lt(seq, conn.rcv_nxt):
            skip = (conn.rcv_nxt - seq) & MASK
            if skip >= len(data):
                data = b""
                conn.ack_pending = True  # a duplicate: acknowledge again
            else:
                data, seq = data[skip:], conn.rcv_nxt
        if data or flags & FIN:
            if seq != conn.rcv_nxt:
                self._count("tcp out of order")
                conn.ack_pending = True
            elif conn.state in ("ESTABLISHED",):
                if data:
                    room = conn.window() if conn.echo else 0xFFFF_FFFF
                    if conn.echo and len(data) > room:
                        data = data[:room]
                        flags &= ~FIN
                    conn.rcv_nxt = (conn.rcv_nxt + len(data)) & MASK
                    conn.received += len(data)
                    if conn.echo:
                        conn.unsent += data
                    self._count("tcp bytes received", len(data))
                if flags & FIN and end == seq + len(data):
                    conn.rcv_nxt = (conn.rcv_nxt + 1) & MASK
                    conn.state = "CLOSE_WAIT"
                    conn.fin_wanted = True
                conn.ack_pending = True
            else:
                conn.ack_pending = True
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._ack_flush_scheduled:
            self._ack_flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:
                self._flush()

    def _flush(self) -> None:
        self._ack_flush_scheduled = False
        for conn in list(self.connections.values()):
            self._push(conn)
            if conn.ack_pending:
                self._send_tcp(conn, conn.snd_nxt, ACK)

    def _push(self, conn: TcpConnection) -> None:
        if conn.state == "SYN_RCVD":
            return
        in_flight = (conn.snd_nxt - conn.snd_una) & MASK
        if conn.fin_sent and conn.snd_nxt != conn.snd_una:
            in_flight -= 1
        window = min(conn.peer_wnd, 0x10000)
        while in_flight < len(conn.unsent) and in_flight < window:
            n = min(conn.peer_mss, len(conn.unsent) - in_flight, window - in_flight)
            chunk = bytes(conn.unsent[in_flight:in_flight + n])
            self._send_tcp(conn, (conn.snd_una + in_flight) & MASK, ACK | PSH, chunk)
            in_flight += n
            conn.snd_nxt = (conn.snd_una + in_flight) & MASK
            self._count("tcp bytes sent", n)
        if conn.fin_wanted and in_flight == len(conn.unsent) and not conn.fin_sent:
            self._send_tcp(conn, conn.snd_nxt, FIN | ACK)
            conn.snd_nxt = (conn.snd_nxt + 1) & MASK
            conn.fin_sent = True
            conn.state = "LAST_ACK"
        if conn.snd_nxt != conn.snd_una or (conn.unsent and conn.peer_wnd == 0):
            self._arm(conn)

    def _arm(self, conn: TcpConnection) -> None:
        if conn.timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        conn.timer = loop.call_later(conn.rto, self._timeout, conn)

    def _disarm(self, conn: TcpConnection) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    def _timeout(self, conn: TcpConnection) -> None:
        conn.timer = None
        if self.connections.get((conn.flow.src, conn.sport, conn.dport)) is not conn:
            return
        conn.retries += 1
        if conn.retries > MAX_RETRIES:
            self._send_tcp(conn, conn.snd_nxt, RST | ACK)
            self._drop_conn(conn, "too many retransmissions")
            return
        conn.rto = min(conn.rto * 2, RTO_MAX)
        self._count("tcp retransmission timeouts")
        if conn.state == "SYN_RCVD":
            self._send_syn_ack(conn)
            return
        conn.snd_nxt = conn.snd_una
        if conn.fin_sent:
            conn.fin_sent = False  # go back before our FIN too: it is sent again after the data
            conn.state = "CLOSE_WAIT"
        if conn.peer_wnd == 0 and conn.unsent:
            # Zero-window probe: one byte beyond the window.
            self._send_tcp(conn, conn.snd_una, ACK, bytes(conn.unsent[:1]))
            conn.snd_nxt = (conn.snd_una + 1) & MASK
            self._arm(conn)
            return
        self._push(conn)

    def _drop_conn(self, conn: TcpConnection, why: str | None) -> None:
        self._disarm(conn)
        self.connections.pop((conn.flow.src, conn.sport, conn.dport), None)
        if why:
            log.info("endpoint: TCP connection from port %d to %d closed: %s", conn.sport, conn.dport, why)

    def close(self) -> None:
        for conn in list(self.connections.values()):
            self._disarm(conn)
        self.connections.clear()
