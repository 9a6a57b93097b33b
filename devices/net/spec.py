"""Values and wire formats of USB network adapters: CDC ECM 1.2, CDC NCM 1.0 and MS-RNDIS.

Functional descriptors (ECM 1.2 section 5.4, NCM 1.0 section 5.2.1), class request codes
(ECM table 6, NCM table 6-2), notifications (ECM section 6.3), NCM transfer blocks (NTB16
and NTB32, NCM section 3) and RNDIS control and data messages (MS-RNDIS section 2.2).

Every parser here takes bytes a host sent and raises :class:`NetFormatError` naming the
field that is wrong; none of them trusts a length or offset it has not checked.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from construct import Int8ul, Int16ul, Int32ul, Struct  # type: ignore[import-untyped]
from vusb.devices.cdc_acm.spec import FunctionalDescriptor, Notification

from vusb.errors import DescriptorError, VusbError

ECM_SUBCLASS = 0x06
NCM_SUBCLASS = 0x0D
NCM_DATA_PROTOCOL = 0x01
"""bInterfaceProtocol of an NCM data interface (NCM 1.0 table 4-4): network transfer blocks."""
RNDIS_CLASS = (0xE0, 0x01, 0x03)
"""Wireless controller / RF / RNDIS: the class triple Windows and rndis_host both match."""

ETH_HEADER = 14
ETH_MIN_FRAME = 14
DEFAULT_MTU = 1500


class NetFormatError(VusbError, ValueError):
    """Bytes from the host that are not a well-formed NTB, RNDIS message or frame."""


class FunctionalSubtype(enum.IntEnum):
    ETHERNET = 0x0F
    NCM = 0x1A


class NetRequest(enum.IntEnum):
    """Class requests of ECM (table 6) and NCM (table 6-2)."""

    SEND_ENCAPSULATED_COMMAND = 0x00
    GET_ENCAPSULATED_RESPONSE = 0x01
    SET_ETHERNET_MULTICAST_FILTERS = 0x40
    SET_ETHERNET_PM_PATTERN_FILTER = 0x41
    GET_ETHERNET_PM_PATTERN_FILTER = 0x42
    SET_ETHERNET_PACKET_FILTER = 0x43
    GET_ETHERNET_STATISTIC = 0x44
    GET_NTB_PARAMETERS = 0x80
    GET_NET_ADDRESS = 0x81
    SET_NET_ADDRESS = 0x82
    GET_NTB_FORMAT = 0x83
    SET_NTB_FORMAT = 0x84
    GET_NTB_INPUT_SIZE = 0x85
    SET_NTB_INPUT_SIZE = 0x86
    GET_MAX_DATAGRAM_SIZE = 0x87
    SET_MAX_DATAGRAM_SIZE = 0x88
    GET_CRC_MODE = 0x89
    SET_CRC_MODE = 0x8A


class NetNotification(enum.IntEnum):
    NETWORK_CONNECTION = 0x00
    RESPONSE_AVAILABLE = 0x01
    CONNECTION_SPEED_CHANGE = 0x2A


class PacketFilter(enum.IntFlag):
    """wValue of SET_ETHERNET_PACKET_FILTER (ECM table 8), same bits as NDIS_PACKET_TYPE_*."""

    NONE = 0
    PROMISCUOUS = 0x01
    ALL_MULTICAST = 0x02
    DIRECTED = 0x04
    BROADCAST = 0x08
    MULTICAST = 0x10


class Statistic(enum.IntEnum):
    """Feature selectors of GET_ETHERNET_STATISTIC (ECM table 9): the ones this adapter counts."""

    XMIT_OK = 1
    RCV_OK = 2
    XMIT_ERROR = 3
    RCV_ERROR = 4
    RCV_NO_BUFFER = 5


class NcmCapability(enum.IntFlag):
    """bmNetworkCapabilities of the NCM functional descriptor (NCM table 5-2)."""

    NONE = 0
    PACKET_FILTER = 0x01
    NET_ADDRESS = 0x02
    ENCAPSULATED = 0x04
    MAX_DATAGRAM_SIZE = 0x08
    CRC_MODE = 0x10
    NTB_INPUT_SIZE_8 = 0x20


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """``"02:00:5e:10:00:01"`` (or with ``-``, or 12 bare hex digits) to 6 bytes."""
    digits = text.replace(":", "").replace("-", "").strip()
    try:
        mac = bytes.fromhex(digits)
    except ValueError:
        raise NetFormatError(f"MAC address {text!r} is not six hexadecimal bytes such as 02:00:5e:10:00:01") from None
    if len(mac) != 6:
        raise NetFormatError(f"MAC address {text!r} has {len(mac)} bytes, not 6")
    if mac[0] & 1:
        raise NetFormatError(f"MAC address {text!r} is a multicast address (bit 0 of the first byte set)")
    return mac


def mac_from_serial(serial: str) -> bytes:
    """A stable, locally administered unicast MAC for a serial number (first byte 0x02 | hash bits)."""
    import hashlib

    digest = hashlib.sha256(b"vusb-net:" + serial.encode()).digest()
    return bytes(((digest[0] & 0xFC) | 0x02,)) + digest[1:6]


# ---------------------------------------------------------------- functional descriptors


@dataclass(frozen=True)
class EthernetDescriptor(FunctionalDescriptor):
    """Ethernet networking functional descriptor (ECM 1.2 section 5.4, table 3)."""

    mac_string_index: int
    statistics: int = 0x1F  # bmEthernetStatistics: which GET_ETHERNET_STATISTIC selectors are counted
    max_segment_size: int = DEFAULT_MTU + ETH_HEADER
    multicast_filters: int = 0
    power_filters: int = 0
    subtype: ClassVar[int | None] = FunctionalSubtype.ETHERNET
    layout: ClassVar[Any] = Struct(
        "mac_string_index" / Int8ul,  # iMACAddress
        "statistics" / Int32ul,  # bmEthernetStatistics
        "max_segment_size" / Int16ul,  # wMaxSegmentSize
        "multicast_filters" / Int16ul,  # wNumberMCFilters
        "power_filters" / Int8ul,  # bNumberPowerFilters
    )

    def __post_init__(self) -> None:
        if not 1 <= self.mac_string_index <= 255:
            raise DescriptorError("EthernetDescriptor needs the iMACAddress string index (1..255)")
        if not 0 <= self.max_segment_size <= 0xFFFF:
            raise DescriptorError(f"wMaxSegmentSize {self.max_segment_size} is not 16-bit")
        super().__post_init__()


@dataclass(frozen=True)
class NcmDescriptor(FunctionalDescriptor):
    """NCM functional descriptor (NCM 1.0 section 5.2.1, table 5-2)."""

    capabilities: int = NcmCapability.PACKET_FILTER | NcmCapability.MAX_DATAGRAM_SIZE
    ncm_version: int = 0x0100
    subtype: ClassVar[int | None] = FunctionalSubtype.NCM
    layout: ClassVar[Any] = Struct("ncm_version" / Int16ul, "capabilities" / Int8ul)  # bcdNcmVersion, bmNetworkCapabilities


def network_connection(interface: int, connected: bool) -> bytes:
    """NETWORK_CONNECTION notification (ECM 6.3.1): wValue 1 connected, 0 disconnected."""
    return Notification(NetNotification.NETWORK_CONNECTION, interface, 1 if connected else 0).to_bytes()


def speed_change(interface: int, down_bps: int, up_bps: int) -> bytes:
    """CONNECTION_SPEED_CHANGE (ECM 6.3.3): 8 data bytes, DLBitRate then ULBitRate."""
    clamp = 0xFFFF_FFFF
    return Notification(NetNotification.CONNECTION_SPEED_CHANGE, interface, 0,
                        struct.pack("<II", min(down_bps, clamp), min(up_bps, clamp))).to_bytes()


# ---------------------------------------------------------------- NCM transfer blocks

NTH16_SIGNATURE = b"NCMH"
NTH32_SIGNATURE = b"ncmh"
NDP16_SIGNATURES = (b"NCM0", b"NCM1")  # NCM1: datagrams carry a CRC (not supported)
NDP32_SIGNATURES = (b"ncm0", b"ncm1")
NTB16 = 0
NTB32 = 1
NTB_FORMAT_NAMES = {NTB16: "NTB16", NTB32: "NTB32"}


@dataclass(frozen=True)
class NtbParameters:
    """The GET_NTB_PARAMETERS structure (NCM 1.0 section 6.2.1, table 6-3), 28 bytes."""

    formats: int = 0x03  # bit 0 NTB16, bit 1 NTB32
    in_max_size: int = 16384
    in_divisor: int = 4
    in_remainder: int = 0
    in_alignment: int = 4
    out_max_size: int = 16384
    out_divisor: int = 4
    out_remainder: int = 0
    out_alignment: int = 4
    out_max_datagrams: int = 0

    SIZE: ClassVar[int] = 28

    def to_bytes(self) -> bytes:
        return struct.pack("<HHIHHHHIHHHH", self.SIZE, self.formats, self.in_max_size, self.in_divisor,
                           self.in_remainder, self.in_alignment, 0, self.out_max_size, self.out_divisor,
                           self.out_remainder, self.out_alignment, self.out_max_datagrams)


def parse_ntb(data: bytes | memoryview, max_size: int, ntb_format: int) -> list[memoryview]:
    """The datagrams of one NTB the host sent, checked against NCM 1.0 section 3.

    ``ntb_format`` is the format the host selected with SET_NTB_FORMAT; a block in the other
    format is refused (the spec has the function discard it).  Raises :class:`NetFormatError`
    naming the bad field.
    """
    view = memoryview(data)
    n = len(view)
    if n > max_size:
        raise NetFormatError(f"NTB of {n} bytes exceeds dwNtbOutMaxSize {max_size}")
    sig = bytes(view[:4])
    if ntb_format == NTB16:
        if sig != NTH16_SIGNATURE:
            raise NetFormatError(f"NTH16 dwSignature is {sig!r}, expected b'NCMH'")
        if n < 12:
            raise NetFormatError(f"NTB16 of {n} bytes is shorter than its 12-byte NTH16")
        header_len, _seq, block_len, ndp = struct.unpack_from("<HHHH", view, 4)
        if header_len != 12:
            raise NetFormatError(f"NTH16 wHeaderLength is {header_len}, expected 12")
        entry_fmt, ndp_fixed, entry_size = "<HH", 8, 4
    else:
        if sig != NTH32_SIGNATURE:
            raise NetFormatError(f"NTH32 dwSignature is {sig!r}, expected b'ncmh'")
        if n < 16:
            raise NetFormatError(f"NTB32 of {n} bytes is shorter than its 16-byte NTH32")
        header_len, _seq, block_len, ndp = struct.unpack_from("<HHII", view, 4)
        if header_len != 16:
            raise NetFormatError(f"NTH32 wHeaderLength is {header_len}, expected 16")
        entry_fmt, ndp_fixed, entry_size = "<II", 16, 8
    # wBlockLength 0 (NTB16 only) means "up to the short packet", i.e. the whole transfer.
    if block_len == 0 and ntb_format == NTB16:
        block_len = n
    if block_len > n:
        raise NetFormatError(f"NTH wBlockLength {block_len} is longer than the {n} bytes received")
    frames: list[memoryview] = []
    seen: set[int] = set()
    while ndp:
        if ndp in seen:
            raise NetFormatError(f"NDP at {ndp} is chained twice (a loop)")
        seen.add(ndp)
        if ndp % 4 or ndp < header_len or ndp + ndp_fixed + 2 * entry_size > block_len:
            raise NetFormatError(f"NDP index {ndp} is misaligned or outside the {block_len}-byte block")
        nsig = bytes(view[ndp:ndp + 4])
        sigs = NDP16_SIGNATURES if ntb_format == NTB16 else NDP32_SIGNATURES
        if nsig == sigs[1]:
            raise NetFormatError(f"NDP signature {nsig!r} asks for CRC mode, which this function does not support")
        if nsig != sigs[0]:
            raise NetFormatError(f"NDP signature {nsig!r} at {ndp}, expected {sigs[0]!r}")
        if ntb_format == NTB16:
            ndp_len, next_ndp = struct.unpack_from("<HH", view, ndp + 4)
            minimum = 16
        else:
            ndp_len, _res, next_ndp = struct.unpack_from("<HHI", view, ndp + 4)
            minimum = 32
        if ndp_len < minimum or ndp_len % 4 or ndp + ndp_len > block_len:
            raise NetFormatError(f"NDP wLength {ndp_len} at {ndp} is invalid (at least {minimum}, "
                                 f"a multiple of 4, inside the block)")
        pos, end = ndp + ndp_fixed, ndp + ndp_len
        while pos + entry_size <= end:
            index, length = struct.unpack_from(entry_fmt, view, pos)
            pos += entry_size
            if index == 0 or length == 0:
                break
            if index < header_len or index + length > block_len:
                raise NetFormatError(f"datagram at {index} of {length} bytes lies outside the {block_len}-byte block")
            frames.append(view[index:index + length])
        else:
            raise NetFormatError(f"NDP at {ndp} has no null terminating entry")
        ndp = next_ndp
    return frames


def build_ntb(frames: list[bytes], ntb_format: int, sequence: int, divisor: int = 4, remainder: int = 0) -> bytes:
    """One NTB carrying ``frames``: NTH, the datagrams (each placed so that its offset is
    ``remainder`` modulo ``divisor``), then one NDP at the end."""
    head = 12 if ntb_format == NTB16 else 16
    out = bytearray(head)
    entries: list[tuple[int, int]] = []
    for frame in frames:
        pad = (remainder - len(out)) % divisor
        out += bytes(pad)
        entries.append((len(out), len(frame)))
        out += frame
    out += bytes((-len(out)) % 4)
    ndp = len(out)
    if ntb_format == NTB16:
        ndp_len = 8 + 4 * (len(entries) + 1)
        out += struct.pack("<4sHH", NDP16_SIGNATURES[0], ndp_len, 0)
        for index, length in entries:
            out += struct.pack("<HH", index, length)
        out += bytes(4)
        struct.pack_into("<4sHHHH", out, 0, NTH16_SIGNATURE, 12, sequence & 0xFFFF, len(out), ndp)
    else:
        ndp_len = 16 + 8 * (len(entries) + 1)
        out += struct.pack("<4sHHII", NDP32_SIGNATURES[0], ndp_len, 0, 0, 0)
        for index, length in entries:
            out += struct.pack("<II", index, length)
        out += bytes(8)
        struct.pack_into("<4sHHII", out, 0, NTH32_SIGNATURE, 16, sequence & 0xFFFF, len(out), ndp)
    return bytes(out)


def ntb_overhead(ntb_format: int, count: int, divisor: int = 4) -> int:
    """Upper bound of the bytes an NTB adds around ``count`` datagrams."""
    if ntb_format == NTB16:
        return 12 + 4 + 8 + 4 * (count + 1) + count * (divisor - 1)
    return 16 + 4 + 16 + 8 * (count + 1) + count * (divisor - 1)


# ---------------------------------------------------------------- RNDIS (MS-RNDIS section 2.2)


class RndisMessage(enum.IntEnum):
    PACKET = 0x00000001
    INITIALIZE = 0x00000002
    HALT = 0x00000003
    QUERY = 0x00000004
    SET = 0x00000005
    RESET = 0x00000006
    INDICATE_STATUS = 0x00000007
    KEEPALIVE = 0x00000008
    INITIALIZE_CMPLT = 0x80000002
    QUERY_CMPLT = 0x80000004
    SET_CMPLT = 0x80000005
    RESET_CMPLT = 0x80000006
    KEEPALIVE_CMPLT = 0x80000008


class RndisStatus(enum.IntEnum):
    SUCCESS = 0x00000000
    FAILURE = 0xC0000001
    INVALID_DATA = 0xC0010015
    NOT_SUPPORTED = 0xC00000BB
    MEDIA_CONNECT = 0x4001000B
    MEDIA_DISCONNECT = 0x4001000C


class Oid(enum.IntEnum):
    """NDIS object identifiers answered by the RNDIS function (what rndis_host and Windows ask)."""

    GEN_SUPPORTED_LIST = 0x00010101
    GEN_HARDWARE_STATUS = 0x00010102
    GEN_MEDIA_SUPPORTED = 0x00010103
    GEN_MEDIA_IN_USE = 0x00010104
    GEN_MAXIMUM_LOOKAHEAD = 0x00010105
    GEN_MAXIMUM_FRAME_SIZE = 0x00010106
    GEN_LINK_SPEED = 0x00010107
    GEN_TRANSMIT_BLOCK_SIZE = 0x0001010A
    GEN_RECEIVE_BLOCK_SIZE = 0x0001010B
    GEN_VENDOR_ID = 0x0001010C
    GEN_VENDOR_DESCRIPTION = 0x0001010D
    GEN_CURRENT_PACKET_FILTER = 0x0001010E
    GEN_CURRENT_LOOKAHEAD = 0x0001010F
    GEN_DRIVER_VERSION = 0x00010110
    GEN_MAXIMUM_TOTAL_SIZE = 0x00010111
    GEN_MAC_OPTIONS = 0x00010113
    GEN_MEDIA_CONNECT_STATUS = 0x00010114
    GEN_MAXIMUM_SEND_PACKETS = 0x00010115
    GEN_VENDOR_DRIVER_VERSION = 0x00010116
    GEN_PHYSICAL_MEDIUM = 0x00010202
    GEN_RNDIS_CONFIG_PARAMETER = 0x0001021B  # set by Windows (registry parameters such as NetworkAddress)
    GEN_XMIT_OK = 0x00020101
    GEN_RCV_OK = 0x00020102
    GEN_XMIT_ERROR = 0x00020103
    GEN_RCV_ERROR = 0x00020104
    GEN_RCV_NO_BUFFER = 0x00020105
    PERMANENT_ADDRESS = 0x01010101
    CURRENT_ADDRESS = 0x01010102
    MULTICAST_LIST = 0x01010103
    MAXIMUM_LIST_SIZE = 0x01010104
    RCV_ERROR_ALIGNMENT = 0x01020101
    XMIT_ONE_COLLISION = 0x01020102
    XMIT_MORE_COLLISIONS = 0x01020103
    PNP_CAPABILITIES = 0xFD010100
    PNP_QUERY_POWER = 0xFD010101
    PNP_SET_POWER = 0xFD010102


PACKET_HEADER = 44
"""Bytes of a REMOTE_NDIS_PACKET_MSG header (MS-RNDIS 2.2.14)."""
_PACKET = struct.Struct("<IIIIIIIIIII")


def build_packet(frame: bytes | memoryview) -> bytes:
    """REMOTE_NDIS_PACKET_MSG carrying one Ethernet frame; DataOffset counts from byte 8."""
    n = len(frame)
    return _PACKET.pack(RndisMessage.PACKET, PACKET_HEADER + n, PACKET_HEADER - 8, n, 0, 0, 0, 0, 0, 0, 0) + bytes(frame)


def parse_packets(data: bytes | memoryview) -> tuple[list[memoryview], str | None]:
    """The frames of the PACKET_MSGs in one bulk transfer, and why the rest was dropped (or None)."""
    view = memoryview(data)
    frames: list[memoryview] = []
    pos, n = 0, len(view)
    while pos < n:
        if n - pos < PACKET_HEADER:
            if not any(view[pos:]):
                break  # padding (a one-byte zero instead of a zero-length packet)
            return frames, f"{n - pos} trailing bytes at {pos} are too short for a PACKET_MSG header"
        mtype, mlen, doff, dlen = struct.unpack_from("<IIII", view, pos)
        if mtype != RndisMessage.PACKET:
            return frames, f"MessageType 0x{mtype:08x} at {pos} on the data channel, expected PACKET_MSG (1)"
        if mlen < PACKET_HEADER or pos + mlen > n:
            return frames, f"MessageLength {mlen} at {pos} is shorter than the header or runs past the {n}-byte transfer"
        start = pos + 8 + doff
        if doff < PACKET_HEADER - 8 or start + dlen > pos + mlen or dlen == 0:
            return frames, f"DataOffset {doff} / DataLength {dlen} at {pos} lie outside the {mlen}-byte message"
        frames.append(view[start:start + dlen])
        pos += mlen
    return frames, None


@dataclass(frozen=True)
class RndisControl:
    """One control message from the host (SEND_ENCAPSULATED_COMMAND), its fixed fields unpacked."""

    kind: int
    request_id: int
    fields: tuple[int, ...]
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> RndisControl:
        if len(data) < 12:
            raise NetFormatError(f"RNDIS control message of {len(data)} bytes is shorter than 12")
        mtype, mlen, rid = struct.unpack_from("<III", data)
        if mlen != len(data):
            raise NetFormatError(f"RNDIS MessageLength {mlen} but {len(data)} bytes were sent")
        if mtype == RndisMessage.INITIALIZE:
            if mlen < 24:
                raise NetFormatError("INITIALIZE_MSG is 24 bytes")
            return cls(mtype, rid, struct.unpack_from("<III", data, 12), b"")
        if mtype in (RndisMessage.QUERY, RndisMessage.SET):
            if mlen < 28:
                raise NetFormatError(f"{RndisMessage(mtype).name}_MSG of {mlen} bytes is shorter than 28")
            oid, blen, boff = struct.unpack_from("<III", data, 12)
            start = 8 + boff
            if blen and (boff < 20 or start + blen > mlen):
                raise NetFormatError(f"InformationBufferOffset {boff} / Length {blen} lie outside the message")
            return cls(mtype, rid, (oid,), bytes(data[start:start + blen]) if blen else b"")
        if mtype in (RndisMessage.HALT, RndisMessage.RESET, RndisMessage.KEEPALIVE):
            return cls(mtype, rid, (), b"")
        raise NetFormatError(f"RNDIS MessageType 0x{mtype:08x} is not a control message a host sends")


def rndis_reply(kind: int, *fields: int, payload: bytes = b"") -> bytes:
    body = struct.pack(f"<{len(fields)}I", *fields) + payload
    return struct.pack("<II", kind, 8 + len(body)) + body


def rndis_query_reply(request_id: int, status: int, payload: bytes) -> bytes:
    # InformationBufferOffset counts from the RequestId field (byte 8): the buffer starts at 24.
    return rndis_reply(RndisMessage.QUERY_CMPLT, request_id, status, len(payload), 16 if payload else 0,
                       payload=payload)


def rndis_indicate(status: int) -> bytes:
    return rndis_reply(RndisMessage.INDICATE_STATUS, status, 0, 0)


RESPONSE_AVAILABLE = struct.pack("<II", 1, 0)
"""The RNDIS interrupt-endpoint notification (MS-RNDIS 2.2.3): ResponseAvailable, reserved."""
