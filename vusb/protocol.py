"""The USB/IP protocol as a sans-IO codec.

Nothing here touches a socket.  A :class:`ServerCodec` is fed the bytes a client
sent (:meth:`~ServerCodec.receive_data`) and hands back whole messages
(:meth:`~ServerCodec.next_event`); messages to send are turned into bytes by
:meth:`~ServerCodec.send`.  :class:`ClientCodec` is the mirror image, used by
:mod:`vusb.client`.  Both follow the wire rules listed in
``docs/protocol.md``: any 0x01xx input version accepted and each op request
answered in the version it came in (usbip 0.1.x clients send 0x0106 and refuse any
other reply version; current ones send 0x0111), busids
compared up to their first NUL, exact-length framing, iso packet descriptors
after the data, and bounded allocation (a header announcing more than the
configured limits raises :class:`~vusb.errors.LimitExceeded` before anything is
buffered for it).
"""

from __future__ import annotations

import enum
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Union

from vusb import layouts
from vusb.constants import USBIP_VERSION, OpStatus, Status
from vusb.errors import ArgumentError, ArgumentTypeError, LimitExceeded, ProtocolError

OP_REQ_DEVLIST: Final = 0x8005
OP_REP_DEVLIST: Final = 0x0005
OP_REQ_IMPORT: Final = 0x8003
OP_REP_IMPORT: Final = 0x0003

CMD_SUBMIT: Final = 1
CMD_UNLINK: Final = 2
RET_SUBMIT: Final = 3
RET_UNLINK: Final = 4

HEADER_SIZE: Final = 48
OP_HEADER_SIZE: Final = 8
DEVICE_RECORD_SIZE: Final = 312
ISO_PACKET_SIZE: Final = 16

_SUBMIT = layouts.CMD_SUBMIT_FAST
_RET_SUBMIT = layouts.RET_SUBMIT_FAST
_UNLINK = layouts.CMD_UNLINK_FAST
_RET_UNLINK = layouts.RET_UNLINK_FAST
_OP = layouts.OP_HEADER_FAST
_ISO = layouts.ISO_PACKET_FAST
_ZERO8 = bytes(8)
_ZERO24 = bytes(24)
_ECONNRESET: Final = int(Status.ECONNRESET)  # RET_UNLINK status of a URB cancelled before it completed


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _NeedData.NEED_DATA
"""Returned by ``next_event()`` when more bytes are needed for a whole message."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a peer may make the codec buffer."""

    max_transfer_length: int = 64 * 1024 * 1024
    max_iso_packets: int = 1024
    max_devices_listed: int = 4096


# ------------------------------------------------------------------ messages


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    interface_class: int
    interface_subclass: int
    interface_protocol: int


@dataclass(frozen=True, slots=True)
class ExportedDevice:
    """The 312-byte device record plus the interface triples of REP_DEVLIST."""

    busid: str
    path: str = ""
    busnum: int = 1
    devnum: int = 1
    speed: int = 2
    vendor_id: int = 0
    product_id: int = 0
    device_version: int = 0
    device_class: int = 0
    device_subclass: int = 0
    device_protocol: int = 0
    configuration_value: int = 0
    num_configurations: int = 1
    interfaces: tuple[InterfaceInfo, ...] = ()
    num_interfaces: int | None = None  # defaults to len(interfaces)

    @property
    def interface_count(self) -> int:
        return len(self.interfaces) if self.num_interfaces is None else self.num_interfaces


@dataclass(frozen=True, slots=True)
class DevlistRequest:
    version: int = USBIP_VERSION


@dataclass(frozen=True, slots=True)
class DevlistReply:
    devices: tuple[ExportedDevice, ...] = ()
    status: int = OpStatus.OK
    version: int | None = None  # None: the version of the request being answered (ServerCodec.op_version)


@dataclass(frozen=True, slots=True)
class ImportRequest:
    busid: str
    version: int = USBIP_VERSION


@dataclass(frozen=True, slots=True)
class ImportReply:
    status: int
    device: ExportedDevice | None = None
    version: int | None = None  # None: the version of the request being answered (ServerCodec.op_version)


@dataclass(frozen=True, slots=True)
class IsoPacket:
    offset: int
    length: int
    actual_length: int = 0
    status: int = 0


@dataclass(slots=True)
class SubmitCommand:
    seqnum: int
    devid: int
    direction: int  # 0 OUT, 1 IN
    ep: int
    transfer_flags: int
    transfer_buffer_length: int
    setup: bytes = _ZERO8
    data: bytes | memoryview = b""
    start_frame: int = 0
    number_of_packets: int = 0
    interval: int = 0
    iso_packets: tuple[IsoPacket, ...] | None = None

    @property
    def is_in(self) -> bool:
        return self.direction == 1


@dataclass(slots=True)
class SubmitReply:
    seqnum: int
    status: int = 0
    actual_length: int = 0
    data: bytes | memoryview = b""
    start_frame: int = 0
    number_of_packets: int = 0
    error_count: int = 0
    iso_packets: tuple[IsoPacket, ...] | None = None
    # Echoed header fields; Linux servers send zeros here.
    devid: int = 0
    direction: int = 0
    ep: int = 0


@dataclass(frozen=True, slots=True)
class UnlinkCommand:
    seqnum: int
    devid: int
    unlink_seqnum: int
    direction: int = 0
    ep: int = 0


@dataclass(frozen=True, slots=True)
class UnlinkReply:
    seqnum: int
    status: int


ServerEvent = Union[DevlistRequest, ImportRequest, SubmitCommand, UnlinkCommand]
ClientEvent = Union[DevlistReply, ImportReply, SubmitReply, UnlinkReply]


# ------------------------------------------------------------------ helpers


def _cstr(raw: bytes) -> str:
    """Decode a fixed-size C string, up to the first NUL (garbage after it is ignored)."""
    end = raw.find(b"\x00")
    return (raw if end < 0 else raw[:end]).decode("ascii", errors="replace")


def _fixed(text: str, size: int, what: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) >= size:
        raise ArgumentError(f"{what} {text!r} is longer than {size - 1} bytes")
    return raw.ljust(size, b"\x00")


def encode_device_record(dev: ExportedDevice) -> bytes:
    if not (0 <= dev.busnum <= 255 and 0 <= dev.devnum <= 255):
        raise ArgumentError("busnum and devnum must fit in 8 bits (Linux packs them into devid)")
    out: bytes = layouts.DEVICE_RECORD.build(
        {
            "path": _fixed(dev.path, 256, "path"),
            "busid": _fixed(dev.busid, 32, "busid"),
            "busnum": dev.busnum,
            "devnum": dev.devnum,
            "speed": dev.speed,
            "idVendor": dev.vendor_id,
            "idProduct": dev.product_id,
            "bcdDevice": dev.device_version,
            "bDeviceClass": dev.device_class,
            "bDeviceSubClass": dev.device_subclass,
            "bDeviceProtocol": dev.device_protocol,
            "bConfigurationValue": dev.configuration_value,
            "bNumConfigurations": dev.num_configurations,
            "bNumInterfaces": dev.interface_count,
        }
    )
    return out


def decode_device_record(raw: bytes, interfaces: tuple[InterfaceInfo, ...] = ()) -> ExportedDevice:
    p = layouts.DEVICE_RECORD.parse(raw)
    return ExportedDevice(
        busid=_cstr(p.busid), path=_cstr(p.path), busnum=p.busnum, devnum=p.devnum, speed=p.speed,
        vendor_id=p.idVendor, product_id=p.idProduct, device_version=p.bcdDevice,
        device_class=p.bDeviceClass, device_subclass=p.bDeviceSubClass, device_protocol=p.bDeviceProtocol,
        configuration_value=p.bConfigurationValue, num_configurations=p.bNumConfigurations,
        interfaces=interfaces, num_interfaces=p.bNumInterfaces,
    )


def _encode_interfaces(dev: ExportedDevice) -> bytes:
    return b"".join(
        bytes((i.interface_class, i.interface_subclass, i.interface_protocol, 0)) for i in dev.interfaces
    )


def _encode_iso(packets: tuple[IsoPacket, ...]) -> bytes:
    return b"".join(_ISO.pack(p.offset, p.length, p.actual_length, p.status) for p in packets)


def _decode_iso(raw: bytes | memoryview, count: int) -> tuple[IsoPacket, ...]:
    return tuple(IsoPacket(*_ISO.unpack_from(raw, i * ISO_PACKET_SIZE)) for i in range(count))


_READ_SIZE: Final = 64 * 1024
"""Room offered to the socket for headers and small messages (``get_buffer``)."""
_MIN_ROOM: Final = 16 * 1024
_DIRECT_MIN: Final = 16 * 1024
"""Payloads from this size are received in place, into a buffer of their own, and handed out as views."""
_FIRST_FILL: Final = 32 * 1024
"""A fresh payload buffer starts this big (or twice what has arrived) and doubles as data comes."""
_SPARE_REFS: Final = 3  # the spare's references while nobody else holds it: attribute, local, getrefcount's argument


class _Buffer:
    """The bytes received and not yet consumed.

    Two places: a reusable bytearray holding unread bytes (headers, small messages),
    and at most one payload being *filled* in place.  A codec that meets a header
    announcing a large payload calls :meth:`start_fill`: the payload's bytes already
    here move into its own buffer and the following ones are received straight into
    it (:meth:`writable`/:meth:`commit`, or copied there by :meth:`feed`).  A fresh
    payload buffer grows with what arrives (a header alone never allocates what it
    announces); the last one is kept and reused for the next payload once nobody
    holds a view of it any more (CPython's reference count says so).
    """

    __slots__ = ("_buf", "_end", "_fill", "_got", "_need", "_pos", "_spare")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # unread bytes are _buf[_pos:_end]
        self._end = 0
        self._fill: bytearray | memoryview | None = None  # the payload being received, _got of _need bytes
        self._got = 0
        self._need = 0
        self._spare: bytearray | None = None

    def __len__(self) -> int:
        """Bytes held: unread plus those of the payload being filled."""
        return self._end - self._pos + self._got

    @property
    def unread(self) -> int:
        """Unread bytes outside the payload being filled."""
        return self._end - self._pos

    # ------------------------------------------------------------ unread bytes
    def _room(self, n: int) -> None:
        """Make room for ``n`` more bytes after the unread ones (compacting or growing the array)."""
        if self._pos == self._end:
            self._pos = self._end = 0
        buf = self._buf
        if len(buf) - self._end >= n:
            return
        unread = self._end - self._pos
        if len(buf) >= unread + n:
            with memoryview(buf) as view:  # overlapping move (memmove)
                view[:unread] = view[self._pos : self._end]
        else:
            grown = bytearray(max(unread + n, 2 * len(buf)))
            with memoryview(grown) as dst, memoryview(buf) as src:
                dst[:unread] = src[self._pos : self._end]
            self._buf = grown
        self._pos, self._end = 0, unread

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Copy received bytes in (into the payload being filled first)."""
        with memoryview(data) as raw:
            view = raw.cast("B") if raw.format != "B" or raw.ndim != 1 else raw
            if self._fill is not None and self._got < self._need:
                k = min(len(view), self._need - self._got)
                self._grow(self._got + k)
                with memoryview(self._fill) as fill:
                    fill[self._got : self._got + k] = view[:k]
                self._got += k
                view = view[k:]
            n = len(view)
            if n:
                self._room(n)
                with memoryview(self._buf) as dst:
                    dst[self._end : self._end + n] = view
                self._end += n

    def writable(self) -> memoryview:
        """Where the next received bytes go, for ``recv_into``-style reads; then :meth:`commit`."""
        if self._fill is not None and self._got < self._need:
            self._grow(self._got + 1)
            # Never past the payload: a reused spare can be longer, and what follows is the next header.
            return memoryview(self._fill)[self._got : self._need]
        if len(self._buf) < _READ_SIZE:
            self._room(_READ_SIZE - self._end + self._pos)
        else:
            self._room(_MIN_ROOM)
        return memoryview(self._buf)[self._end :]

    def commit(self, n: int) -> None:
        """``n`` bytes were written at the start of the last :meth:`writable` buffer."""
        if self._fill is not None and self._got < self._need:
            room = min(len(self._fill), self._need) - self._got
            if not 0 <= n <= room:
                raise ArgumentError(f"{n} bytes reported in a {room}-byte buffer")
            self._got += n
        else:
            if not 0 <= n <= len(self._buf) - self._end:
                raise ArgumentError(f"{n} bytes reported in a {len(self._buf) - self._end}-byte buffer")
            self._end += n

    def peek(self, n: int) -> memoryview:
        return memoryview(self._buf)[self._pos : self._pos + n]

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        """The unread bytes at the front read with ``layout`` (the caller checked they are there)."""
        return layout.unpack_from(self._buf, self._pos)

    def take(self, n: int) -> bytes:
        with memoryview(self._buf) as view:  # one copy, not two
            out = bytes(view[self._pos : self._pos + n])
        self._pos += n
        return out

    def skip(self, n: int) -> None:
        self._pos += n

    # ------------------------------------------------------------ payloads received in place
    @property
    def filling(self) -> bool:
        """A payload is being received and is not complete yet."""
        return self._fill is not None and self._got < self._need

    def start_fill(self, need: int, into: memoryview | None = None) -> None:
        """Receive the next ``need`` bytes in place: into ``into`` (the caller's buffer, at least ``need``
        bytes), or into a buffer of the codec's own; bytes already unread move there now."""
        if into is not None:
            self._fill = into
        else:
            spare = self._spare
            if spare is not None and len(spare) >= need and sys.getrefcount(spare) <= _SPARE_REFS:
                self._fill = spare
            else:
                self._spare = None
                del spare
                self._fill = bytearray(min(need, max(_FIRST_FILL, 2 * self.unread)))
        self._need = need
        self._got = 0
        k = min(self.unread, need)
        if k:
            with memoryview(self._fill) as fill, memoryview(self._buf) as src:
                fill[:k] = src[self._pos : self._pos + k]
            self._pos += k
            self._got = k

    def _grow(self, size: int) -> None:
        """Let the payload buffer hold at least ``size`` bytes (doubling, never past the payload)."""
        fill = self._fill
        assert fill is not None
        if len(fill) >= size:
            return
        assert isinstance(fill, bytearray)  # the caller's buffers are whole from the start
        grown = bytearray(min(self._need, max(size, 2 * len(fill))))
        with memoryview(grown) as dst, memoryview(fill) as src:
            dst[: self._got] = src[: self._got]
        self._fill = grown

    def finish_fill(self) -> memoryview:
        """The completed payload: a read-only view of the codec's buffer, or the view of the caller's."""
        fill, need = self._fill, self._need
        assert fill is not None and self._got == need
        self._fill, self._got, self._need = None, 0, 0
        if isinstance(fill, bytearray):
            self._spare = fill
            with memoryview(fill) as whole:
                return whole[:need].toreadonly()
        return fill[:need]


# ------------------------------------------------------------------ server side


@dataclass(frozen=True, slots=True)
class _SubmitHead:
    """A parsed CMD_SUBMIT header waiting for its payload."""

    seqnum: int
    devid: int
    direction: int
    ep: int
    flags: int
    length: int
    setup: bytes
    start_frame: int
    npackets: int
    interval: int
    iso: bool


class Phase(enum.Enum):
    OP = "op"
    URB = "urb"
    CLOSED = "closed"


def _never_iso(ep: int, direction: int) -> bool:
    """The default ``is_iso``: no endpoint is isochronous (the codec then skips the call)."""
    return False


class ServerCodec:
    """Server side of one USB/IP connection.

    ``is_iso(ep, direction)`` tells the codec which endpoints are isochronous: only
    their submits carry packet descriptors (``number_of_packets`` is garbage on
    other URBs from some clients and is ignored).
    """

    def __init__(self, limits: Limits | None = None, is_iso: Callable[[int, int], bool] | None = None) -> None:
        self.limits = limits or Limits()
        self.phase = Phase.OP
        self.is_iso = is_iso or _never_iso
        self._buf = _Buffer()
        self._submit: _SubmitHead | None = None  # a CMD_SUBMIT whose large payload is being received
        self.op_version = USBIP_VERSION
        """The version of the last op request received: its reply carries the same one (usbip 0.1.x
        clients send 0x0106 and reject a reply in any other version, current clients send 0x0111)."""

    # --- input
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the client (copied in)."""
        self._buf.feed(data)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Zero-copy input: a buffer to receive the next bytes into, then :meth:`buffer_updated`.

        While a large OUT payload is arriving this is that payload's own buffer, which the
        CMD_SUBMIT event then carries as a read-only view: no copy between the socket and
        the device.  ``sizehint`` is ignored (the codec knows what it expects).
        """
        return self._buf.writable()

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were received at the start of the last :meth:`get_buffer` buffer."""
        self._buf.commit(nbytes)

    def receive_buffer(self) -> tuple[Callable[[], memoryview], Callable[[int], None]]:
        """:meth:`get_buffer` and :meth:`buffer_updated` as two callables, one call less each (the server's
        receive path calls them for every read)."""
        return self._buf.writable, self._buf.commit

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events (a parsed header waiting for its payload included)."""
        return len(self._buf) + (HEADER_SIZE if self._submit is not None else 0)

    def next_event(self) -> ServerEvent | _NeedData:
        if self.phase is Phase.URB:
            return self._next_urb()
        if self.phase is Phase.CLOSED:
            if self._buf.unread:
                raise ProtocolError(f"{self._buf.unread} bytes received after the operation ended")
            return NEED_DATA
        return self._next_op()

    def _next_op(self) -> ServerEvent | _NeedData:
        buf = self._buf
        if buf.unread < OP_HEADER_SIZE:
            return NEED_DATA
        version, code, _status = _OP.unpack(buf.peek(OP_HEADER_SIZE))
        if version == 0 and code in (CMD_SUBMIT, CMD_UNLINK):
            name = "CMD_SUBMIT" if code == CMD_SUBMIT else "CMD_UNLINK"
            raise ProtocolError(f"{name} received before a successful OP_REQ_IMPORT")
        if version >> 8 != 0x01:
            raise ProtocolError(f"op header has version 0x{version:04x}; USB/IP versions are 0x01xx")
        if code == OP_REQ_DEVLIST:
            buf.skip(OP_HEADER_SIZE)
            self.phase = Phase.CLOSED
            self.op_version = version
            return DevlistRequest(version)
        if code == OP_REQ_IMPORT:
            if buf.unread < OP_HEADER_SIZE + 32:
                return NEED_DATA
            buf.skip(OP_HEADER_SIZE)
            busid = _cstr(buf.take(32))
            self.op_version = version
            return ImportRequest(busid, version)
        raise ProtocolError(f"unknown op code 0x{code:04x} (expected REQ_DEVLIST 0x8005 or REQ_IMPORT 0x8003)")

    def _next_urb(self) -> ServerEvent | _NeedData:
        buf = self._buf
        if self._submit is not None:
            return self._finish_submit(self._submit)
        if buf.unread < HEADER_SIZE:
            return NEED_DATA
        # One unpack for the common case; any 48 bytes read as a CMD_SUBMIT header.
        (command, seqnum, devid, direction, ep, flags, length, start_frame, npackets, interval,
         setup) = buf.unpack(_SUBMIT)
        if command == CMD_SUBMIT:
            if direction > 1:
                raise ProtocolError(f"CMD_SUBMIT seqnum {seqnum}: direction {direction} is neither 0 (OUT) nor 1 (IN)")
            if ep > 15:
                raise ProtocolError(f"CMD_SUBMIT seqnum {seqnum}: endpoint number {ep} is above 15")
            if length < 0:
                raise ProtocolError(f"CMD_SUBMIT seqnum {seqnum}: negative transfer_buffer_length {length}")
            if length > self.limits.max_transfer_length:
                raise LimitExceeded(
                    f"CMD_SUBMIT seqnum {seqnum}: transfer_buffer_length {length} exceeds the limit of "
                    f"{self.limits.max_transfer_length} bytes"
                )
            is_iso = self.is_iso
            iso = is_iso is not _never_iso and is_iso(ep, direction)
            if iso:
                if not 0 <= npackets <= self.limits.max_iso_packets:
                    raise LimitExceeded(
                        f"CMD_SUBMIT seqnum {seqnum}: number_of_packets {npackets} is outside 0..{self.limits.max_iso_packets}"
                    )
            else:
                npackets = 0
            payload = length if direction == 0 else 0
            if payload >= _DIRECT_MIN:  # received in place: see get_buffer
                buf.skip(HEADER_SIZE)
                buf.start_fill(payload)
                self._submit = _SubmitHead(seqnum, devid, direction, ep, flags, length, bytes(setup), start_frame,
                                           npackets, interval, iso)
                return self._finish_submit(self._submit)
            total = HEADER_SIZE + payload + npackets * ISO_PACKET_SIZE
            if buf.unread < total:
                return NEED_DATA
            buf.skip(HEADER_SIZE)
            data = buf.take(payload) if payload else b""
            packets = self._iso_packets(seqnum, length, npackets) if iso else None
            return SubmitCommand(seqnum, devid, direction, ep, flags, length, setup, data,
                                 start_frame, npackets, interval, packets)
        if command == CMD_UNLINK:
            _, seqnum, devid, direction, ep, unlink_seqnum, _pad = buf.unpack(_UNLINK)
            buf.skip(HEADER_SIZE)
            return UnlinkCommand(seqnum, devid, unlink_seqnum, direction, ep)
        raise ProtocolError(f"unknown URB command 0x{command:08x} (expected CMD_SUBMIT 1 or CMD_UNLINK 2)")

    def _finish_submit(self, h: _SubmitHead) -> SubmitCommand | _NeedData:
        """The CMD_SUBMIT whose payload is received in place, once the payload and its iso descriptors are here."""
        buf = self._buf
        if buf.filling or buf.unread < h.npackets * ISO_PACKET_SIZE:
            return NEED_DATA
        self._submit = None
        data = buf.finish_fill()
        packets = self._iso_packets(h.seqnum, h.length, h.npackets) if h.iso else None
        return SubmitCommand(h.seqnum, h.devid, h.direction, h.ep, h.flags, h.length, h.setup, data,
                             h.start_frame, h.npackets, h.interval, packets)

    def _iso_packets(self, seqnum: int, length: int, npackets: int) -> tuple[IsoPacket, ...]:
        packets = _decode_iso(self._buf.take(npackets * ISO_PACKET_SIZE), npackets)
        for p in packets:
            if p.offset + p.length > length:
                raise ProtocolError(
                    f"CMD_SUBMIT seqnum {seqnum}: iso packet at offset {p.offset} length {p.length} "
                    f"overruns the {length}-byte buffer"
                )
        return packets

    # --- output
    def send(self, event: ClientEvent) -> bytes:
        if isinstance(event, SubmitReply):
            return encode_ret_submit(event)
        if isinstance(event, UnlinkReply):
            return _RET_UNLINK.pack(RET_UNLINK, event.seqnum, 0, 0, 0, event.status, _ZERO24)
        if isinstance(event, ImportReply):
            if self.phase != Phase.OP:
                raise ProtocolError("REP_IMPORT sent outside the op phase")
            head = _OP.pack(self.op_version if event.version is None else event.version, OP_REP_IMPORT, event.status)
            if event.status != OpStatus.OK or event.device is None:
                self.phase = Phase.CLOSED
                return head
            self.phase = Phase.URB
            return head + encode_device_record(event.device)
        if isinstance(event, DevlistReply):
            version = self.op_version if event.version is None else event.version
            parts = [_OP.pack(version, OP_REP_DEVLIST, event.status), len(event.devices).to_bytes(4, "big")]
            for dev in event.devices:
                parts.append(encode_device_record(dev))
                parts.append(_encode_interfaces(dev))
            self.phase = Phase.CLOSED
            return b"".join(parts)
        raise ArgumentTypeError(f"cannot send {type(event).__name__} from a server")


def ret_submit_header(seqnum: int, status: int, actual_length: int, error_count: int = 0) -> bytes:
    """The RET_SUBMIT header of a non-isochronous URB (the server's hot path: no message object)."""
    return _RET_SUBMIT.pack(RET_SUBMIT, seqnum, 0, 0, 0, status, actual_length, 0, 0, error_count, _ZERO8)


def encode_ret_submit(reply: SubmitReply) -> bytes:
    """RET_SUBMIT header, IN data and iso descriptors in one buffer (one write)."""
    npackets = reply.number_of_packets if reply.iso_packets is not None else 0
    head = _RET_SUBMIT.pack(
        RET_SUBMIT, reply.seqnum, reply.devid, reply.direction, reply.ep, reply.status, reply.actual_length,
        reply.start_frame, npackets, reply.error_count, _ZERO8,
    )
    if reply.iso_packets is not None:
        return head + bytes(reply.data) + _encode_iso(reply.iso_packets)
    if reply.data:
        return head + bytes(reply.data)
    return head


# ------------------------------------------------------------------ client side


@dataclass
class _Pending:
    direction: int
    iso: bool
    into: memoryview | None = None  # where the IN data goes (the caller's buffer), if given


@dataclass(frozen=True, slots=True)
class _ReplyHead:
    """A parsed RET_SUBMIT header waiting for its IN data."""

    seqnum: int
    devid: int
    direction: int
    ep: int
    status: int
    actual: int
    start_frame: int
    npackets: int
    errors: int
    nisos: int
    iso: bool


@dataclass
class ClientCodec:
    """Client side of one USB/IP connection (used by :mod:`vusb.client`).

    IN data of a URB submitted with ``into`` (see :meth:`send_vectored`) is received
    straight into that buffer when the codec is fed through :meth:`get_buffer` /
    :meth:`buffer_updated`; large IN data without one arrives in a buffer of the
    codec's own.  Either way the RET_SUBMIT event carries a view, not a copy.
    """

    limits: Limits = field(default_factory=Limits)
    phase: Phase = Phase.OP
    _buf: _Buffer = field(default_factory=_Buffer)
    _expect: int | None = None  # op code of the reply we wait for
    _version: int = USBIP_VERSION  # version of the op request sent: the reply must carry the same
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _unlinking: dict[int, int] = field(default_factory=dict)  # CMD_UNLINK seqnum -> the seqnum it cancels
    _reply: _ReplyHead | None = None  # a RET_SUBMIT whose IN data is being received in place

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the server (copied in)."""
        self._buf.feed(data)

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Zero-copy input: a buffer to receive the next bytes into, then :meth:`buffer_updated`."""
        return self._buf.writable()

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were received at the start of the last :meth:`get_buffer` buffer."""
        self._buf.commit(nbytes)

    def send_vectored(self, event: SubmitCommand, *,
                      into: bytearray | memoryview | None = None) -> tuple[bytes | memoryview, ...]:
        """CMD_SUBMIT as separate pieces (header, OUT data, iso descriptors) for one vectored write: the OUT
        data is not copied.  ``into``: a writable buffer of at least ``transfer_buffer_length`` bytes that
        receives the IN data (the RET_SUBMIT then carries a view of it)."""
        if self.phase != Phase.URB:
            raise ProtocolError("CMD_SUBMIT before a successful import")
        target: memoryview | None = None
        if into is not None:
            target = memoryview(into).cast("B")
            if target.readonly:
                raise ArgumentError("the buffer for IN data is read-only")
            if event.direction != 1:
                raise ArgumentError(f"CMD_SUBMIT seqnum {event.seqnum}: a receive buffer is only for IN transfers")
            if len(target) < event.transfer_buffer_length:
                raise ArgumentError(f"CMD_SUBMIT seqnum {event.seqnum}: the {len(target)}-byte buffer is smaller than "
                                 f"transfer_buffer_length {event.transfer_buffer_length}")
        iso = event.iso_packets is not None
        head = _SUBMIT.pack(
            CMD_SUBMIT, event.seqnum, event.devid, event.direction, event.ep, event.transfer_flags,
            event.transfer_buffer_length, event.start_frame,
            len(event.iso_packets) if event.iso_packets is not None else event.number_of_packets,
            event.interval, event.setup,
        )
        self._pending[event.seqnum] = _Pending(event.direction, iso, target)
        parts: tuple[bytes | memoryview, ...] = (head,)
        if event.direction == 0 and len(event.data):
            parts += (event.data,)
        if event.iso_packets is not None and event.iso_packets:
            parts += (_encode_iso(event.iso_packets),)
        return parts

    def send(self, event: DevlistRequest | ImportRequest | SubmitCommand | UnlinkCommand) -> bytes:
        if isinstance(event, DevlistRequest):
            self._expect = OP_REP_DEVLIST
            self._version = event.version
            return _OP.pack(event.version, OP_REQ_DEVLIST, 0)
        if isinstance(event, ImportRequest):
            self._expect = OP_REP_IMPORT
            self._version = event.version
            return _OP.pack(event.version, OP_REQ_IMPORT, 0) + _fixed(event.busid, 32, "busid")
        if isinstance(event, SubmitCommand):
            return b"".join(self.send_vectored(event))
        if isinstance(event, UnlinkCommand):
            self._unlinking[event.seqnum] = event.unlink_seqnum
            return _UNLINK.pack(CMD_UNLINK, event.seqnum, event.devid, event.direction, event.ep, event.unlink_seqnum, _ZERO24)
        raise ArgumentTypeError(f"cannot send {type(event).__name__} from a client")

    def next_event(self) -> ClientEvent | _NeedData:
        buf = self._buf
        if self.phase == Phase.URB:
            if self._reply is not None:
                return self._finish_reply(self._reply)
            if buf.unread < HEADER_SIZE:
                return NEED_DATA
            (command, seqnum, devid, direction, ep, status, actual, start_frame, npackets, errors,
             _pad) = buf.unpack(_RET_SUBMIT)
            if command == RET_SUBMIT:
                pend = self._pending.get(seqnum)
                if pend is None:
                    raise ProtocolError(f"RET_SUBMIT for unknown seqnum {seqnum}")
                if actual < 0 or actual > self.limits.max_transfer_length:
                    raise LimitExceeded(f"RET_SUBMIT seqnum {seqnum}: actual_length {actual} out of bounds")
                payload = actual if pend.direction == 1 else 0
                nisos = npackets if pend.iso and npackets > 0 else 0
                if nisos > self.limits.max_iso_packets:
                    raise LimitExceeded(f"RET_SUBMIT seqnum {seqnum}: {nisos} iso packets")
                if pend.into is not None and payload > len(pend.into):
                    raise ProtocolError(f"RET_SUBMIT seqnum {seqnum}: actual_length {actual} is more than the "
                                        f"{len(pend.into)} bytes asked for")
                if payload and (pend.into is not None or payload >= _DIRECT_MIN):  # received in place
                    buf.skip(HEADER_SIZE)
                    buf.start_fill(payload, pend.into)
                    self._reply = _ReplyHead(seqnum, devid, direction, ep, status, actual, start_frame, npackets,
                                             errors, nisos, pend.iso)
                    return self._finish_reply(self._reply)
                if buf.unread < HEADER_SIZE + payload + nisos * ISO_PACKET_SIZE:
                    return NEED_DATA
                buf.skip(HEADER_SIZE)
                data = buf.take(payload) if payload else b""
                packets = _decode_iso(buf.take(nisos * ISO_PACKET_SIZE), nisos) if pend.iso else None
                del self._pending[seqnum]
                return SubmitReply(seqnum, status, actual, data, start_frame, npackets, errors, packets, devid, direction, ep)
            if command == RET_UNLINK:
                _, seqnum, _devid, _dir, _ep, status, _pad = buf.unpack(_RET_UNLINK)
                buf.skip(HEADER_SIZE)
                self._unlinked(seqnum, status)
                return UnlinkReply(seqnum, status)
            raise ProtocolError(f"unknown URB reply 0x{command:08x}")
        if buf.unread < OP_HEADER_SIZE:
            return NEED_DATA
        version, code, status = _OP.unpack(buf.peek(OP_HEADER_SIZE))
        if version != self._version:
            raise ProtocolError(f"reply version 0x{version:04x}, expected 0x{self._version:04x} (the request's)")
        if code != self._expect:
            raise ProtocolError(f"unexpected op reply 0x{code:04x}")
        if code == OP_REP_IMPORT:
            if status != OpStatus.OK:
                buf.skip(OP_HEADER_SIZE)
                self.phase = Phase.CLOSED
                return ImportReply(status)
            if buf.unread < OP_HEADER_SIZE + DEVICE_RECORD_SIZE:
                return NEED_DATA
            buf.skip(OP_HEADER_SIZE)
            dev = decode_device_record(buf.take(DEVICE_RECORD_SIZE))
            self.phase = Phase.URB
            return ImportReply(status, dev)
        # OP_REP_DEVLIST: header, count, then records each followed by its interfaces
        if buf.unread < OP_HEADER_SIZE + 4:
            return NEED_DATA
        view = buf.peek(buf.unread)
        count = int.from_bytes(view[8:12], "big")
        if count > self.limits.max_devices_listed:
            raise LimitExceeded(f"REP_DEVLIST announces {count} devices")
        pos = 12
        devices = []
        for _ in range(count):
            if len(view) < pos + DEVICE_RECORD_SIZE:
                return NEED_DATA
            nifs = view[pos + DEVICE_RECORD_SIZE - 1]
            if len(view) < pos + DEVICE_RECORD_SIZE + 4 * nifs:
                return NEED_DATA
            ifs = tuple(
                InterfaceInfo(view[p], view[p + 1], view[p + 2])
                for p in range(pos + DEVICE_RECORD_SIZE, pos + DEVICE_RECORD_SIZE + 4 * nifs, 4)
            )
            devices.append(decode_device_record(bytes(view[pos : pos + DEVICE_RECORD_SIZE]), ifs))
            pos += DEVICE_RECORD_SIZE + 4 * nifs
        del view
        buf.skip(pos)
        self.phase = Phase.CLOSED
        return DevlistReply(tuple(devices), status)

    def _unlinked(self, seqnum: int, status: int) -> None:
        """RET_UNLINK ``seqnum`` arrived: a URB it cancelled (-ECONNRESET) gets no RET_SUBMIT, so its pending
        entry goes now (it may hold the caller's receive buffer, which stays exported while it is kept)."""
        target = self._unlinking.pop(seqnum, None)
        if target is not None and status == _ECONNRESET:
            self._pending.pop(target, None)

    def _finish_reply(self, h: _ReplyHead) -> SubmitReply | _NeedData:
        """The RET_SUBMIT whose IN data is received in place, once the data and its iso descriptors are here."""
        buf = self._buf
        if buf.filling or buf.unread < h.nisos * ISO_PACKET_SIZE:
            return NEED_DATA
        self._reply = None
        data = buf.finish_fill()
        packets = _decode_iso(buf.take(h.nisos * ISO_PACKET_SIZE), h.nisos) if h.iso else None
        del self._pending[h.seqnum]
        return SubmitReply(h.seqnum, h.status, h.actual, data, h.start_frame, h.npackets, h.errors, packets,
                           h.devid, h.direction, h.ep)
