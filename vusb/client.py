"""A pure-Python USB/IP client (asyncio), over :class:`vusb.protocol.ClientCodec`.

It lists and imports devices from any USB/IP server (vusb's or Linux usbipd) and
runs control, bulk, interrupt and isochronous transfers, with unlink::

    devices = await list_devices("127.0.0.1")
    async with await RemoteDevice.open("127.0.0.1", "1-1") as dev:
        info = await dev.enumerate()
        report = await dev.transfer_in(0x81, 8)
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable, Sequence
from typing import Union, cast

from vusb.constants import USBIP_PORT, OpStatus, Status
from vusb.errors import (
    ConnectionClosed,
    DeviceBusy,
    NetworkError,
    NoSuchDevice,
    ProtocolError,
    RemoteError,
    TransferTimeout,
)
from vusb.host import DEFAULT_TIMEOUT, DeviceInfo, TransferResult, UsbHost
from vusb.net import check_port, connect_error, host_port
from vusb.protocol import (
    NEED_DATA,
    ClientCodec,
    DevlistReply,
    DevlistRequest,
    ExportedDevice,
    ImportReply,
    ImportRequest,
    IsoPacket,
    SubmitCommand,
    SubmitReply,
    UnlinkCommand,
    UnlinkReply,
)
from vusb.urb import SetupPacket

__all__ = ["DeviceInfo", "RemoteDevice", "TransferResult", "list_devices"]

Event = Union[DevlistReply, ImportReply, SubmitReply, UnlinkReply]


class _Expired(TimeoutError):
    """A transfer timed out; ``late`` is the future that receives its RET_SUBMIT if that still comes."""

    def __init__(self, late: asyncio.Future[SubmitReply]) -> None:
        super().__init__()
        self.late = late


class _Link(asyncio.BufferedProtocol):
    """One connection to a server: the event loop receives straight into the codec's buffers (IN data of
    a URB submitted with a buffer lands in that buffer), and every decoded reply goes to ``on_event``."""

    def __init__(self, codec: ClientCodec) -> None:
        self.codec = codec
        self.transport: asyncio.Transport | None = None
        self.on_event: Callable[[Event], None] = self._queue_event
        self.on_close: Callable[[BaseException], None] | None = None
        self.closed: BaseException | None = None
        self._events: list[Event] = []
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports offer the same methods
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.codec.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        codec = self.codec
        codec.buffer_updated(nbytes)
        try:
            while True:
                event = codec.next_event()
                if event is NEED_DATA:
                    return
                self.on_event(event)
        except ProtocolError as exc:
            self._lost(exc)
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool:
        self._lost(ConnectionClosed("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(ConnectionClosed(f"the connection was lost: {exc}") if exc is not None
                   else ConnectionClosed("the server closed the connection"))

    def _lost(self, exc: BaseException) -> None:
        if self.closed is None:
            self.closed = exc
            if self.on_close is not None:
                self.on_close(exc)
            self._wake()

    # --- the op phase: one request, one reply
    def _queue_event(self, event: Event) -> None:
        self._events.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_reply(self, what: str, timeout: float) -> Event:
        """The next op-phase reply; ConnectionClosed if the server hangs up first."""
        async with asyncio.timeout(timeout):
            while not self._events:
                if self.closed is not None:
                    raise ConnectionClosed(f"{what}: {self.closed}")
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
        return self._events.pop(0)


async def _open(host: str, port: int, timeout: float) -> _Link:
    check_port(port)
    loop = asyncio.get_running_loop()
    link = _Link(ClientCodec())
    try:
        await asyncio.wait_for(loop.create_connection(lambda: link, host, port), timeout)
    except TimeoutError:
        raise NetworkError(f"no answer from {host_port(host, port)} within {timeout} s "
                           "(a firewall dropping packets, or the wrong address?)") from None
    except OSError as exc:
        raise connect_error(exc, host, port) from None
    return link


async def list_devices(host: str = "127.0.0.1", port: int = USBIP_PORT, timeout: float = DEFAULT_TIMEOUT) -> list[ExportedDevice]:
    """OP_REQ_DEVLIST: the devices a server exports (and that nobody holds)."""
    link = await _open(host, port, timeout)
    assert link.transport is not None
    try:
        link.transport.write(link.codec.send(DevlistRequest()))
        event = await link.next_reply(f"{host}:{port} closed the connection during the device list", timeout)
        if not isinstance(event, DevlistReply):
            raise ProtocolError(f"{host}:{port} answered the device list with {type(event).__name__}")
        if event.status != OpStatus.OK:
            raise RemoteError(event.status, f"{host}:{port} answered the device list with status {event.status}")
        return list(event.devices)
    finally:
        link.transport.close()


class RemoteDevice(UsbHost):
    """An imported device: URBs over one connection.

    Transfers cost one future and one timer each, and IN data is received without
    copies: :meth:`transfer_in_into` lands it in the caller's buffer, and
    :meth:`transfer_in` copies it once, into the ``bytes`` it returns.
    """

    def __init__(self, link: _Link, exported: ExportedDevice) -> None:
        assert link.transport is not None
        self._link = link
        self._transport = link.transport
        self._codec = link.codec
        self.exported = exported
        self.devid = (exported.busnum << 16) | exported.devnum
        self.speed = exported.speed
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[SubmitReply]] = {}
        self._unlinks: dict[int, asyncio.Future[UnlinkReply]] = {}
        self._closed_exc: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        link.on_event = self._deliver
        link.on_close = self._fail
        if link.closed is not None:
            self._fail(link.closed)

    @classmethod
    async def open(cls, host: str, busid: str, port: int = USBIP_PORT, timeout: float = DEFAULT_TIMEOUT) -> RemoteDevice:
        """OP_REQ_IMPORT ``busid``; raises :class:`NoSuchDevice` or :class:`DeviceBusy` on refusal."""
        link = await _open(host, port, timeout)
        assert link.transport is not None
        try:
            link.transport.write(link.codec.send(ImportRequest(busid)))
            event = await link.next_reply(f"{host}:{port} closed the connection during import of {busid}", timeout)
            if not isinstance(event, ImportReply):
                raise ProtocolError(f"{host}:{port} answered the import with {type(event).__name__}")
        except BaseException:
            link.transport.close()
            raise
        if event.status != OpStatus.OK or event.device is None:
            link.transport.close()
            if event.status == OpStatus.DEV_BUSY:
                raise DeviceBusy(event.status, f"{busid} on {host}:{port} is in use by another client")
            if event.status == OpStatus.NODEV:
                raise NoSuchDevice(event.status, f"{host}:{port} exports no device {busid}")
            raise RemoteError(event.status, f"{host}:{port} refused to import {busid} (status {event.status})")
        return cls(link, event.device)

    async def __aenter__(self) -> RemoteDevice:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._transport.close()
        self._fail(ConnectionClosed("connection closed"))
        await asyncio.sleep(0)  # let the transport finish closing

    # ------------------------------------------------------------ replies
    def _deliver(self, event: Event) -> None:
        if isinstance(event, SubmitReply):
            fut = self._waiting.pop(event.seqnum, None)
            if fut is not None and not fut.done():
                fut.set_result(event)
        elif isinstance(event, UnlinkReply):
            ufut = self._unlinks.pop(event.seqnum, None)
            if ufut is not None and not ufut.done():
                ufut.set_result(event)

    def _fail(self, exc: BaseException) -> None:
        if self._closed_exc is None:
            self._closed_exc = exc
        for fut in list(self._waiting.values()) + list(self._unlinks.values()):
            if not fut.done():
                fut.set_exception(ConnectionClosed(str(exc)) if not isinstance(exc, ConnectionClosed) else exc)
        self._waiting.clear()
        self._unlinks.clear()

    # ------------------------------------------------------------ transfers
    def submit(
        self,
        ep: int,
        direction: int,
        length: int,
        data: bytes | bytearray | memoryview = b"",
        *,
        setup: SetupPacket | None = None,
        flags: int = 0,
        iso_packets: Sequence[IsoPacket] | None = None,
        interval: int | None = None,
        into: bytearray | memoryview | None = None,
    ) -> tuple[int, asyncio.Future[SubmitReply]]:
        """Send CMD_SUBMIT; returns its seqnum and a future for the RET_SUBMIT.

        ``interval`` defaults to what a Linux host would use for the endpoint (see
        :meth:`interval_for`); Linux servers refuse interrupt URBs with interval 0.
        ``into`` (IN only): a writable buffer of at least ``length`` bytes that receives the
        IN data; the reply's ``data`` is then a view of it.  OUT ``data`` is sent without a copy, so it
        must not change until the transfer completes.
        """
        if interval is None:
            interval = 0 if ep & 0x0F == 0 else self.interval_for((ep & 0x0F) | (0x80 if direction else 0))
        if self._closed_exc is not None:
            raise ConnectionClosed(str(self._closed_exc))
        seqnum = next(self._seq)
        cmd = SubmitCommand(
            seqnum, self.devid, direction, ep & 0x0F, flags | (0x200 if direction else 0),
            length if direction else len(data), setup.to_bytes() if setup else bytes(8),
            memoryview(data) if isinstance(data, bytearray) else data,
            iso_packets=tuple(iso_packets) if iso_packets is not None else None, interval=interval,
            number_of_packets=len(iso_packets) if iso_packets is not None else 0,
        )
        parts = self._codec.send_vectored(cmd, into=into)  # checks ``into`` before anything is sent
        fut: asyncio.Future[SubmitReply] = self._loop.create_future()
        self._waiting[seqnum] = fut
        self._transport.writelines(parts)
        return seqnum, fut

    async def unlink(self, seqnum: int, timeout: float = DEFAULT_TIMEOUT) -> int:
        """CMD_UNLINK a submitted URB; returns the RET_UNLINK status (-104 if it was cancelled, 0 if it had completed)."""
        if self._closed_exc is not None:
            raise ConnectionClosed(str(self._closed_exc))
        useq = next(self._seq)
        fut: asyncio.Future[UnlinkReply] = self._loop.create_future()
        self._unlinks[useq] = fut
        self._transport.write(self._codec.send(UnlinkCommand(useq, self.devid, seqnum)))
        reply = await asyncio.wait_for(fut, timeout)
        if reply.status == Status.ECONNRESET:
            pending = self._waiting.pop(seqnum, None)
            if pending is not None and not pending.done():
                pending.cancel()
        return reply.status

    def _expire(self, seqnum: int, fut: asyncio.Future[SubmitReply]) -> None:
        """A transfer timed out: its waiter fails now; a reply that still comes goes to a fresh future, which
        the failure carries to :meth:`_reply` (the reply may be delivered before that task runs again)."""
        if not fut.done() and self._waiting.get(seqnum) is fut:
            late: asyncio.Future[SubmitReply] = self._loop.create_future()
            self._waiting[seqnum] = late
            fut.set_exception(_Expired(late))

    async def _reply(self, seqnum: int, fut: asyncio.Future[SubmitReply], timeout: float | None) -> SubmitReply:
        """Wait for a RET_SUBMIT; on timeout unlink the URB, then return its reply if it completed meanwhile."""
        if timeout is None:
            return await fut
        timer = self._loop.call_later(timeout, self._expire, seqnum, fut)
        try:
            return await fut
        except _Expired as expired:
            late = expired.late
            await self.unlink(seqnum)
            if self._waiting.get(seqnum) is late:
                del self._waiting[seqnum]
            if late.done() and not late.cancelled():
                return late.result()
            raise TransferTimeout(f"URB seqnum {seqnum}: no reply within {timeout} s; it was unlinked") from None
        finally:
            timer.cancel()

    async def _run(self, ep: int, direction: int, length: int, data: bytes, setup: SetupPacket | None,
                   flags: int, timeout: float | None) -> TransferResult:
        seqnum, fut = self.submit(ep, direction, length, data, setup=setup, flags=flags)
        reply = await self._reply(seqnum, fut, timeout)
        return TransferResult(reply.status, bytes(reply.data), reply.actual_length, reply.iso_packets, reply.error_count)

    async def transfer_in_into(self, ep: int, buffer: bytearray | memoryview, *, timeout: float | None = DEFAULT_TIMEOUT,
                               flags: int = 0) -> int:
        """A bulk or interrupt IN transfer of up to ``len(buffer)`` bytes received straight into ``buffer``
        (no copy); returns the number of bytes received.  Raises :class:`Stall` / :class:`TransferError`
        like :meth:`transfer_in`."""
        length = memoryview(buffer).nbytes
        seqnum, fut = self.submit(ep, 1, length, flags=flags, into=buffer)
        reply = await self._reply(seqnum, fut, timeout)
        if reply.status != 0:
            self._check(TransferResult(reply.status, bytes(reply.data), reply.actual_length),
                        f"IN transfer on endpoint 0x{ep | 0x80:02x}")
        return len(reply.data)
