"""The asyncio USB/IP server: a thin layer over :class:`vusb.protocol.ServerCodec`.

Each TCP connection gets a codec and, once it imports a device, carries that
device's URBs.  Everything a client sends that breaks the protocol closes that
connection alone, with a log line naming the problem; the server and the other
connections go on.  USB/IP has no authentication, so the server listens on the
loopback address unless told otherwise, and says so loudly when it is.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from vusb import layouts
from vusb.capture import FORMATS as CAPTURE_FORMATS
from vusb.capture import Capture, Stream, usbmon_event
from vusb.constants import USBIP_PORT, OpStatus, Status
from vusb.device import Device
from vusb.errors import ProtocolError, UsageError
from vusb.net import check_port, listen_error
from vusb.protocol import (
    NEED_DATA,
    DevlistReply,
    DevlistRequest,
    ExportedDevice,
    ImportReply,
    ImportRequest,
    InterfaceInfo,
    Limits,
    ServerCodec,
    SubmitCommand,
    SubmitReply,
    UnlinkCommand,
    UnlinkReply,
    ret_submit_header,
)
from vusb.urb import Completion, FileData, Gather, SetupPacket, Urb

_RET_SUBMIT = layouts.RET_SUBMIT_FAST
_ZERO8 = bytes(8)
_NO_SENDFILE = frozenset((errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP))  # the file, not the socket, says no
_MSG_MORE = getattr(socket, "MSG_MORE", 0)  # Linux: hold the header back for the sendfile data behind it
_GONE = frozenset((errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN))  # the client closed

log = logging.getLogger("vusb.server")

DEFAULT_HOST = "127.0.0.1"
MAX_BUSY_POLL = 0.01  # seconds; longer only burns CPU


@dataclass(frozen=True)
class ServerLimits:
    """Safe defaults for what one client may ask of the server."""

    max_transfer_length: int = 64 * 1024 * 1024
    max_urbs_in_flight: int = 4096
    max_connections: int = 256
    write_buffer_high: int = 8 * 1024 * 1024  # stop reading from a client that does not read its replies

    def codec_limits(self) -> Limits:
        return Limits(max_transfer_length=self.max_transfer_length)


class Export:
    """A device as the server exports it."""

    def __init__(self, device: Device, busid: str, devnum: int) -> None:
        self.device = device
        self.busid = busid
        self.devnum = devnum
        self.connection: Connection | None = None

    def record(self) -> ExportedDevice:
        d = self.device.descriptor
        return ExportedDevice(
            busid=self.busid,
            path=f"/sys/devices/platform/vusb/usb1/{self.busid}",
            busnum=1,
            devnum=self.devnum,
            speed=int(self.device.speed),
            vendor_id=d.vendor_id,
            product_id=d.product_id,
            device_version=d.device_version,
            device_class=d.device_class,
            device_subclass=d.device_subclass,
            device_protocol=d.device_protocol,
            configuration_value=self.device.configuration_value,
            num_configurations=d.num_configurations,
            interfaces=tuple(
                InterfaceInfo(i.interface_class, i.interface_subclass, i.interface_protocol)
                for i in self.device.interfaces()
            ),
        )


#: How long an UNLINK of a seqnum not submitted yet waits for its SUBMIT (vhci sends it
#: right behind) before it is answered as an UNLINK of an unknown URB (status 0).
UNLINK_AHEAD_GRACE = 0.5


def _after(a: int, b: int) -> bool:
    """Seqnum ``a`` comes after ``b`` (u32 serial numbers, as Linux vhci's counter wraps)."""
    return 0 < (a - b) % (1 << 32) < (1 << 31)


class Connection(asyncio.BufferedProtocol):
    """One client connection.

    The event loop receives straight into the codec's buffers (``get_buffer`` /
    ``buffer_updated``): a large OUT payload lands in a buffer of its own and reaches
    the device as a read-only view, with no copy in between.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.codec = ServerCodec(server.limits.codec_limits())
        self.transport: asyncio.Transport | None = None
        self.export: Export | None = None
        self.pending: dict[int, Urb] = {}
        # Linux vhci may send a CMD_UNLINK before the CMD_SUBMIT it cancels (its tx thread
        # drains the unlinks queued while it was sending): target seqnum -> (UNLINK seqnum,
        # the timer that answers it anyway if that SUBMIT never comes).
        self._unlinked_ahead: dict[int, tuple[int, asyncio.TimerHandle]] = {}
        self._last_seqnum: int | None = None  # highest CMD_SUBMIT seqnum seen (modulo 2**32)
        self.peer = "?"
        self._paused = False
        self._closing = False
        self._batch: list[bytes | memoryview] | None = None  # replies gathered during one read
        self._capture: Stream | None = None
        self._lent: memoryview | None = None  # the last get_buffer() view, kept only while capturing
        self._usbmon: Capture | None = None  # the URB-level capture (capture_format="usbmon")
        self._urb_ids: dict[int, int] = {}  # seqnum -> usbmon URB tag, while capturing in that form
        self._max_urbs = server.limits.max_urbs_in_flight
        self._sink = self._complete  # one bound method for every URB, not one per URB
        self._writable, self._commit = self.codec.receive_buffer()  # the codec's get_buffer/buffer_updated
        # The connection's socket, for sendfile(2) of FileData: a socket object on a duplicate of the
        # transport's descriptor (made on first use), or False when the transport has no socket.
        self._direct: socket.socket | bool | None = None

    # ------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but offer the same methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.transport.set_write_buffer_limits(high=self.server.limits.write_buffer_high)
        if not self.server._accept(self):
            return
        capture = self.server.capture
        if capture is not None and capture.usbmon:
            self._usbmon = capture
        elif capture is not None and isinstance(peer, tuple):
            local = transport.get_extra_info("sockname")
            self._capture = capture.stream((peer[0], peer[1]), (local[0], local[1]))
        log.debug("connection from %s", self.peer)

    def get_buffer(self, sizehint: int) -> memoryview:
        view = self._writable()
        if self._capture is not None:
            self._lent = view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        if self._closing:
            return
        self._commit(nbytes)
        if self._capture is not None:
            if self._lent is not None:
                self._capture.client_data(bytes(self._lent[:nbytes]))
            self._lent = None  # a view kept would pin the payload buffer (see protocol._Buffer)
        self._process()

    def _process(self) -> None:
        """Handle every whole message received; the replies they produce leave in one write."""
        codec = self.codec
        self._batch = []
        try:
            while True:
                event = codec.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, SubmitCommand):
                    self._submit(event)
                elif isinstance(event, UnlinkCommand):
                    self._unlink(event)
                elif isinstance(event, ImportRequest):
                    self._import(event)
                elif isinstance(event, DevlistRequest):
                    self._devlist()
                if self._closing:
                    break
        except ProtocolError as exc:
            log.warning("client %s: %s; closing the connection", self.peer, exc)
            self.close()
        except Exception:
            log.exception("client %s: internal error while handling its request; closing the connection", self.peer)
            self.close()
        finally:
            batch, self._batch = self._batch, None
            if batch and self.transport is not None and not self.transport.is_closing():
                self._send(batch)  # one send for every reply this read produced

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if isinstance(self._direct, socket.socket):
            self._direct.close()  # our duplicate of the descriptor; the transport closes its own
        self._direct = False
        for _, timer in self._unlinked_ahead.values():
            timer.cancel()
        self._unlinked_ahead.clear()
        if self._capture is not None:
            self._capture.close()
        self.server._forget(self)
        export = self.export
        if export is not None:
            for urb in self.pending.values():
                urb.cancel()
            self.pending.clear()
            export.connection = None
            self.export = None
            export.device.disconnect_handler = None
            export.device.detach()
            log.info("client %s released %s (%s)", self.peer, export.busid, export.device.describe())

    def pause_writing(self) -> None:
        # The client does not read its replies: stop reading its requests so memory stays bounded.
        if self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and self._paused:
            self._paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------ op phase
    def _devlist(self) -> None:
        records = tuple(e.record() for e in self.server.exports if e.connection is None)
        self._write(self.codec.send(DevlistReply(records)))
        self.close()

    def _import(self, req: ImportRequest) -> None:
        export = self.server.find(req.busid)
        if export is None:
            log.info("client %s asked for unknown busid %r", self.peer, req.busid)
            self._write(self.codec.send(ImportReply(OpStatus.NODEV)))
            self.close()
            return
        if export.connection is not None:
            log.info("client %s asked for %s, which %s holds", self.peer, req.busid, export.connection.peer)
            self._write(self.codec.send(ImportReply(OpStatus.DEV_BUSY)))
            self.close()
            return
        export.connection = self
        self.export = export
        export.device.attach()
        device = export.device
        device.disconnect_handler = self.close  # Device.disconnect(): the device leaves the bus
        if device.iso_addresses:  # which URBs carry iso packet descriptors follows the configuration in use
            self.codec.is_iso = lambda ep, direction: device.is_iso(ep | (0x80 if direction else 0))
        if self._capture is not None:
            self._capture.imported = True
        self._write(self.codec.send(ImportReply(OpStatus.OK, export.record())))
        log.info("client %s imported %s (%s)", self.peer, export.busid, device.describe())

    # ------------------------------------------------------------ URB phase
    def _submit(self, cmd: SubmitCommand) -> None:
        export = self.export
        if export is None:
            raise ProtocolError("CMD_SUBMIT before a successful OP_REQ_IMPORT")
        seqnum = cmd.seqnum
        pending = self.pending
        if seqnum in pending:
            raise ProtocolError(f"CMD_SUBMIT reuses seqnum {seqnum}, which is still pending")
        last = self._last_seqnum
        if last is None or 0 < (seqnum - last) % (1 << 32) < (1 << 31):  # _after(seqnum, last), inlined
            self._last_seqnum = seqnum
        if self._unlinked_ahead and self._unlinked_before(seqnum):
            return
        if len(pending) >= self._max_urbs:
            raise ProtocolError(f"more than {self._max_urbs} URBs in flight (limit max_urbs_in_flight)")
        setup = SetupPacket.parse(cmd.setup) if cmd.ep == 0 else None
        data = cmd.data
        urb = Urb(seqnum, cmd.ep, cmd.direction, cmd.transfer_buffer_length, flags=cmd.transfer_flags,
                  setup=setup, data=data, iso_packets=cmd.iso_packets, interval=cmd.interval,
                  start_frame=cmd.start_frame, sink=self._sink)
        if self._usbmon is not None:
            self._capture_urb(urb, export, data)
        pending[seqnum] = urb
        if setup is not None and not setup.request_type & 0x80 and len(data) < setup.length:
            # A control OUT whose data stage is shorter than wLength: answer as a device would.
            urb.complete(Completion(Status.EPIPE))
            return
        export.device.submit(urb)

    def _complete(self, urb: Urb, result: Completion) -> None:
        if self.pending.pop(urb.seqnum, None) is None or self.transport is None or self._closing:
            return
        if result.iso_packets is None and self._capture is None and self._usbmon is None:
            # The common shapes (no iso descriptors, nothing captured): header and data, no message object.
            batch = self._batch
            parts: tuple[bytes | memoryview, ...]
            data = result.data
            if urb.direction == 1:
                actual = len(data)
                kind = type(data)
                if kind is FileData:
                    self._send_file(urb, result, data)  # type: ignore[arg-type]
                    return
                if actual and kind is not bytes and kind is not memoryview:
                    parts = self._in_parts(urb, result, data, actual)  # a Gather, or a bytearray to copy
                else:
                    header = _RET_SUBMIT.pack(3, urb.seqnum, 0, 0, 0, result.status, actual, 0, 0,
                                              result.error_count, _ZERO8)
                    parts = (header, data) if actual else (header,)  # type: ignore[assignment]
            else:
                actual = urb.length if result.actual_length is None else result.actual_length
                parts = (_RET_SUBMIT.pack(3, urb.seqnum, 0, 0, 0, result.status, actual, 0, 0, result.error_count,
                                          _ZERO8),)
            if batch is not None:
                batch.extend(parts)
            else:
                self._send(parts)
            return
        self._complete_general(urb, result)

    def _in_parts(self, urb: Urb, result: Completion, data: bytes | bytearray | memoryview | Gather | FileData,
                  actual: int) -> tuple[bytes | memoryview, ...]:
        """The RET_SUBMIT of IN data in a Gather, or in a bytearray (copied: the device may change it)."""
        header = ret_submit_header(urb.seqnum, result.status, actual, result.error_count)
        if isinstance(data, Gather):  # scatter-gather: the pieces follow the header, never joined
            pieces = data.pieces
            for piece in pieces:
                if isinstance(piece, bytearray):  # copied: the device may change it after the answer
                    return (header, *(bytes(p) if isinstance(p, bytearray) else p for p in pieces))
            return (header, *pieces)  # type: ignore[arg-type]
        return (header, bytes(data))

    def _send_file(self, urb: Urb, result: Completion, data: FileData) -> None:
        """A RET_SUBMIT whose IN data is a file's: the header, then sendfile(2) from the page cache.

        The data goes straight into the socket only while the transport holds nothing back
        (the replies before it are sent first, so the order stays); what the socket does not
        take at once is read and left to the transport.  A file that cannot be read closes
        the connection: the header promised the bytes, and the host must not get others.
        """
        transport = self.transport
        assert transport is not None
        header = ret_submit_header(urb.seqnum, result.status, data.length, result.error_count)
        batch = self._batch
        if batch:
            self._send(batch)  # the replies this read made before this one leave first
            batch.clear()
        sock = self._direct
        if sock is None:
            sock = self._direct = self._duplicate_socket()
        try:
            if sock is False or transport.get_write_buffer_size():
                self._send((header, bytes(data)))
                return
            assert isinstance(sock, socket.socket)
            try:
                sent = sock.send(header, _MSG_MORE)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(header):
                self._send((header[sent:], bytes(data)))
                return
            out, source = sock.fileno(), data.source.fileno()
            offset, left = data.offset, data.length
            while left:
                try:
                    moved = os.sendfile(out, source, offset, left)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno not in _NO_SENDFILE:
                        raise
                    break  # a file sendfile cannot read (some file systems): read the rest
                if moved == 0:
                    break  # the file ends early: the rest reads as zeros
                offset += moved
                left -= moved
            if left:
                self._send((bytes(FileData(data.source, offset, left)),))
            elif self.server.busy_poll:
                self.server._keep_polling()
        except OSError as exc:
            if exc.errno in _GONE:
                log.debug("client %s went away during a reply: %s", self.peer, exc)
                self.close()
            else:
                self._unreadable(data, exc)

    def _unreadable(self, data: FileData, exc: OSError) -> None:
        log.error("client %s: reading %s for a %d-byte reply failed (%s); closing the connection so that the host "
                  "gets no wrong data", self.peer, data.source.describe(), data.length, exc)
        self.close()

    def _duplicate_socket(self) -> socket.socket | bool:
        """A socket object on a duplicate of the transport's stream socket (``MSG_MORE`` and sendfile need
        one), or False when there is none (a test transport, a pipe)."""
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        try:
            if sock is None or sock.type != socket.SOCK_STREAM or not hasattr(os, "sendfile"):
                return False
            return socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno()))
        except (OSError, AttributeError, ValueError):
            return False

    def _complete_general(self, urb: Urb, result: Completion) -> None:
        """Any completion: iso descriptors, and the capture of each message."""
        data: bytes | memoryview | Gather
        if urb.direction == 1:
            raw = result.data
            if isinstance(raw, FileData):
                try:
                    raw = bytes(raw)
                except OSError as exc:
                    self._unreadable(result.data, exc)  # type: ignore[arg-type]
                    return
            data = raw if not isinstance(raw, bytearray) else bytes(raw)
            actual = len(data)
        else:
            data = b""
            actual = urb.length if result.actual_length is None else result.actual_length
        batch = self._batch
        parts: tuple[bytes | memoryview, ...]
        if result.iso_packets is not None:
            reply = SubmitReply(urb.seqnum, result.status, actual, data if not isinstance(data, Gather) else bytes(data),
                                start_frame=result.start_frame, number_of_packets=len(result.iso_packets),
                                error_count=result.error_count, iso_packets=result.iso_packets)
            parts = (self.codec.send(reply),)
        elif actual and urb.direction == 1:  # header and data leave in one vectored write, data not copied
            header = ret_submit_header(urb.seqnum, result.status, actual, result.error_count)
            if isinstance(data, Gather):  # scatter-gather: the pieces follow the header, never joined
                parts = (header, *(bytes(p) if isinstance(p, bytearray) else p for p in data.pieces))
            else:
                parts = (header, data)
        else:
            parts = (ret_submit_header(urb.seqnum, result.status, actual, result.error_count),)
        if self._capture is not None:
            self._capture.server_message(parts)
        elif self._usbmon is not None:
            self._capture_completion(urb, result, actual, data)
        if batch is not None:
            batch.extend(parts)
        else:
            self._send(parts)

    def _capture_urb(self, urb: Urb, export: Export, out_data: bytes | memoryview) -> None:
        """A submission in the usbmon form of the capture."""
        assert self._usbmon is not None
        address = urb.ep | (0x80 if urb.direction == 1 else 0)
        endpoint = export.device.endpoints.get(address) if urb.ep else None
        urb_id = self._urb_ids[urb.seqnum] = self._usbmon.urb_id()
        usbmon_event(
            self._usbmon, urb_id=urb_id, submit=True,
            transfer_type=int(endpoint.transfer_type) if endpoint is not None else 0,
            endpoint=address, devnum=export.devnum, busnum=1, status=0, length=urb.length,
            data=out_data if urb.direction == 0 else b"",
            setup=urb.setup.to_bytes() if urb.setup is not None else None,
            interval=urb.interval, start_frame=urb.start_frame, flags=urb.flags,
            iso_packets=[(0, p.offset, p.length) for p in urb.iso_packets or ()],
        )

    def _capture_completion(self, urb: Urb, result: Completion, actual: int,
                            data: bytes | memoryview | Gather) -> None:
        """A completion in the usbmon form of the capture."""
        assert self._usbmon is not None
        export = self.export
        urb_id = self._urb_ids.pop(urb.seqnum, None)
        if export is None or urb_id is None:
            return
        address = urb.ep | (0x80 if urb.direction == 1 else 0)
        endpoint = export.device.endpoints.get(address) if urb.ep else None
        usbmon_event(
            self._usbmon, urb_id=urb_id, submit=False,
            transfer_type=int(endpoint.transfer_type) if endpoint is not None else 0,
            endpoint=address, devnum=export.devnum, busnum=1, status=result.status, length=actual,
            data=bytes(data) if isinstance(data, Gather) else data,
            interval=urb.interval, start_frame=urb.start_frame, flags=urb.flags,
            iso_packets=[(p.status, p.offset, p.actual_length) for p in result.iso_packets or ()],
            error_count=result.error_count,
        )

    def _unlink(self, cmd: UnlinkCommand) -> None:
        if self.export is None:
            raise ProtocolError("CMD_UNLINK before a successful OP_REQ_IMPORT")
        urb = self.pending.get(cmd.unlink_seqnum)
        status = 0
        if urb is not None and urb.endpoint is not None and urb.endpoint.unlink(urb):
            del self.pending[cmd.unlink_seqnum]
            status = Status.ECONNRESET
        elif urb is not None and urb.endpoint is None:
            urb.cancel()
            del self.pending[cmd.unlink_seqnum]
            status = Status.ECONNRESET
        elif urb is None and (self._last_seqnum is None or _after(cmd.unlink_seqnum, self._last_seqnum)):
            # The SUBMIT is still on its way (vhci sent the UNLINK first; it may be the connection's
            # first URB, so no SUBMIT seen yet counts as behind too). Answering now would
            # either be ignored by vhci (URB not sent yet there) or give the URB back before
            # its RET_SUBMIT, which detaches the device: answer when the SUBMIT arrives.
            if len(self._unlinked_ahead) >= self.server.limits.max_urbs_in_flight:
                raise ProtocolError(
                    f"more than {self.server.limits.max_urbs_in_flight} CMD_UNLINKs for URBs not submitted yet"
                )
            if cmd.unlink_seqnum not in self._unlinked_ahead:
                timer = asyncio.get_running_loop().call_later(
                    UNLINK_AHEAD_GRACE, self._unlink_ahead_expired, cmd.unlink_seqnum)
                self._unlinked_ahead[cmd.unlink_seqnum] = (cmd.seqnum, timer)
                return
        self._write(self.codec.send(UnlinkReply(cmd.seqnum, status)))

    def _unlinked_before(self, seqnum: int) -> bool:
        """Answer the UNLINKs that came ahead of their SUBMIT, now that SUBMIT ``seqnum`` is here.

        Only now is that URB where vhci looks for it when the RET_UNLINK arrives. The URB
        itself ends unlinked and never runs (True). A target seqnum that SUBMIT ``seqnum``
        has passed will never come: those UNLINKs are answered with status 0.
        """
        ahead = self._unlinked_ahead
        found = ahead.pop(seqnum, None)
        for target in [t for t in ahead if _after(seqnum, t)]:
            unlink_seqnum, timer = ahead.pop(target)
            timer.cancel()
            self._write(self.codec.send(UnlinkReply(unlink_seqnum, 0)))
        if found is None:
            return False
        unlink_seqnum, timer = found
        timer.cancel()
        log.debug("client %s: CMD_SUBMIT seqnum %d was unlinked before it arrived", self.peer, seqnum)
        self._write(self.codec.send(UnlinkReply(unlink_seqnum, Status.ECONNRESET)))
        return True

    def _unlink_ahead_expired(self, target: int) -> None:
        """An UNLINK whose SUBMIT never came is answered anyway: the client waits for it."""
        entry = self._unlinked_ahead.pop(target, None)
        if entry is not None:
            self._write(self.codec.send(UnlinkReply(entry[0], 0)))

    # ------------------------------------------------------------ helpers
    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closing:
            if self._capture is not None:
                self._capture.server_message((data,))
            if self._batch is not None:
                self._batch.append(data)  # keeps replies in order with batched RET_SUBMITs
            else:
                self._send((data,))

    def close(self) -> None:
        if self.transport is not None and not self._closing:
            if self._batch:
                self._send(self._batch)  # replies already due go out before the close
                self._batch.clear()
            self._closing = True
            self.transport.close()
            if self._capture is not None:
                self._capture.close()

    def _send(self, parts: Sequence[bytes | memoryview]) -> None:
        """The one place bytes leave for the client (the capture took each message as it was made)."""
        assert self.transport is not None
        self.transport.writelines(parts)
        if self.server.busy_poll:
            self.server._keep_polling()


class Server:
    """Exports devices over USB/IP.

    ::

        async with Server([keyboard, mouse]) as server:   # busids 1-1 and 1-2
            await server.serve_forever()

    ``host``/``allow_remote``/``allowed_clients``: who may connect (loopback only unless
    told otherwise).  ``limits``: what one client may ask for (:class:`ServerLimits`).
    ``capture``: a pcap file of everything on the wire; ``capture_format`` is ``"usbip"`` (the
    USB/IP messages as TCP streams) or ``"usbmon"`` (the URBs, as Linux's usbmon records them; see
    :mod:`vusb.capture`).  ``busy_poll``: seconds to keep
    polling after each reply instead of sleeping (0, the default, is off; at most
    :data:`MAX_BUSY_POLL`): lower latency on virtual machines for a client that waits for
    each reply, at the cost of that much CPU per reply (docs/benchmarks.md, "Busy polling").
    """

    def __init__(
        self,
        devices: Iterable[Device] = (),
        *,
        host: str = DEFAULT_HOST,
        port: int = USBIP_PORT,
        limits: ServerLimits | None = None,
        allow_remote: bool = False,
        allowed_clients: Iterable[str] | None = None,
        capture: str | None = None,
        busy_poll: float = 0.0,
        capture_format: str = "usbip",
    ) -> None:
        if not 0.0 <= busy_poll <= MAX_BUSY_POLL:
            raise UsageError(f"busy_poll={busy_poll!r} seconds: it must be between 0 (off) and {MAX_BUSY_POLL}")
        self.busy_poll = busy_poll
        """Seconds the event loop keeps polling after each reply instead of sleeping (0: off); see
        :meth:`_keep_polling`."""
        self._poll_until = 0.0
        self._polling = False
        self.host = host
        self.port = check_port(port)
        self.limits = limits or ServerLimits()
        self.exports: list[Export] = []
        self.connections: set[Connection] = set()
        try:
            self.allowed_clients = (
                None if allowed_clients is None
                else [ipaddress.ip_network(c, strict=False) for c in allowed_clients]
            )
        except ValueError as exc:
            raise UsageError(f"allowed client list: {exc}") from None
        if capture_format not in CAPTURE_FORMATS:
            raise UsageError(f"capture_format={capture_format!r}: choose one of {', '.join(CAPTURE_FORMATS)}")
        self.capture: Capture | None = Capture(capture, capture_format) if capture else None
        self._server: asyncio.base_events.Server | None = None
        if not _is_loopback(host) and not allow_remote:
            raise UsageError(
                f"refusing to listen on {host!r}: USB/IP has no authentication; pass allow_remote=True "
                "(--allow-remote on the command line) to expose devices beyond this machine"
            )
        for device in devices:
            self.add(device)

    # ------------------------------------------------------------ devices
    def add(self, device: Device, busid: str | None = None) -> str:
        """Export a device; returns its busid (``1-1``, ``1-2``, ... in order)."""
        if any(e.device is device for e in self.exports):
            raise UsageError(f"device {device.describe()} is already exported")
        used = {e.devnum for e in self.exports}
        devnum = next(n for n in range(1, 256) if n not in used) if len(used) < 255 else None
        if devnum is None:
            raise UsageError("at most 255 devices can be exported by one server")
        if busid is None:
            busid = f"1-{devnum}"
        if self.find(busid) is not None:
            raise UsageError(f"busid {busid} is already exported")
        if len(busid.encode()) > 31:
            raise UsageError(f"busid {busid!r} is longer than 31 bytes")
        self.exports.append(Export(device, busid, devnum))
        device.busid = busid
        return busid

    def remove(self, device_or_busid: Device | str) -> None:
        """Stop exporting a device; a client that holds it is disconnected."""
        for export in self.exports:
            if export.device is device_or_busid or export.busid == device_or_busid:
                self.exports.remove(export)
                if export.connection is not None:
                    export.connection.close()
                    export.connection.connection_lost(None)
                export.device.busid = None
                return
        raise UsageError(f"no exported device {device_or_busid!r}")

    def find(self, busid: str) -> Export | None:
        for export in self.exports:
            if export.busid == busid:
                return export
        return None

    @property
    def devices(self) -> list[Device]:
        return [e.device for e in self.exports]

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._server is not None:
            raise UsageError("server already started")
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: Connection(self), self.host, self.port,
                                                    reuse_address=True)
        except OSError as exc:
            raise listen_error(exc, self.host, self.port) from None
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        if not _is_loopback(self.host):
            log.warning(
                "listening on %s:%d: USB/IP has no authentication or encryption; anyone who can reach this "
                "address can attach the devices", self.host, self.port,
            )
        # debug, not info: `vusb serve` prints its own banner with the same news
        log.debug("serving %d device(s) on %s:%d", len(self.exports), self.host, self.port)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
            conn.connection_lost(None)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.capture is not None:
            self.capture.close()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ busy polling
    def _keep_polling(self) -> None:
        """After a reply, poll the sockets for ``busy_poll`` seconds instead of sleeping.

        A client's next request usually follows a reply within tens of microseconds. A
        process asleep in ``epoll_wait`` needs a wake-up to see it, and on a virtual machine
        waking an idle virtual CPU costs 20-100 µs, more than the server's own work per URB.
        While the loop has a ready callback it polls without blocking, so this one callback,
        re-queued until the deadline, keeps the CPU awake (as Linux's ``busy_read`` does for
        sockets). Off by default: it burns up to ``busy_poll`` of CPU after every reply.
        """
        self._poll_until = time.perf_counter() + self.busy_poll
        if not self._polling:
            self._polling = True
            asyncio.get_running_loop().call_soon(self._spin)

    def _spin(self) -> None:
        if self._server is not None and time.perf_counter() < self._poll_until:
            asyncio.get_running_loop().call_soon(self._spin)
        else:
            self._polling = False

    # ------------------------------------------------------------ connection bookkeeping
    def _accept(self, conn: Connection) -> bool:
        if self.allowed_clients is not None and not self._allowed(conn.peer):
            log.warning("refusing %s: not in the allowed client list", conn.peer)
            conn.close()
            return False
        if len(self.connections) >= self.limits.max_connections:
            log.warning("refusing %s: already %d connections (limit max_connections)", conn.peer, len(self.connections))
            conn.close()
            return False
        self.connections.add(conn)
        return True

    def _forget(self, conn: Connection) -> None:
        self.connections.discard(conn)
        if self.capture is not None:
            self.capture.flush()

    def _allowed(self, peer: str) -> bool:
        host = peer.rsplit(":", 1)[0].strip("[]")
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allowed_clients or ())


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coro: Any, *, use_uvloop: bool = True) -> Any:
    """Run a coroutine on uvloop when available (the CLI's entry point)."""
    with asyncio.Runner(loop_factory=new_event_loop if use_uvloop else None) as runner:
        return runner.run(coro)


async def serve(devices: Sequence[Device], host: str = DEFAULT_HOST, port: int = USBIP_PORT) -> None:
    async with Server(devices, host=host, port=port) as server:
        await server.serve_forever()
