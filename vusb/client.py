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
from collections.abc import Sequence

from vusb.constants import USBIP_PORT, OpStatus, Status
from vusb.errors import (
    ConnectionClosed,
    DeviceBusy,
    NoSuchDevice,
    ProtocolError,
    RemoteError,
)
from vusb.host import DEFAULT_TIMEOUT, DeviceInfo, TransferResult, UsbHost
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



async def _open(host: str, port: int, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def list_devices(host: str = "127.0.0.1", port: int = USBIP_PORT, timeout: float = DEFAULT_TIMEOUT) -> list[ExportedDevice]:
    """OP_REQ_DEVLIST: the devices a server exports (and that nobody holds)."""
    reader, writer = await _open(host, port, timeout)
    codec = ClientCodec()
    try:
        writer.write(codec.send(DevlistRequest()))
        while True:
            event = codec.next_event()
            if isinstance(event, DevlistReply):
                if event.status != OpStatus.OK:
                    raise RemoteError(event.status, f"{host}:{port} answered the device list with status {event.status}")
                return list(event.devices)
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                raise ConnectionClosed(f"{host}:{port} closed the connection during the device list")
            codec.receive_data(chunk)
    finally:
        writer.close()


class RemoteDevice(UsbHost):
    """An imported device: URBs over one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, codec: ClientCodec,
                 exported: ExportedDevice) -> None:
        self._reader = reader
        self._writer = writer
        self._codec = codec
        self.exported = exported
        self.devid = (exported.busnum << 16) | exported.devnum
        self.speed = exported.speed
        self._seq = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[SubmitReply]] = {}
        self._unlinks: dict[int, asyncio.Future[UnlinkReply]] = {}
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
        self._closed_exc: BaseException | None = None

    @classmethod
    async def open(cls, host: str, busid: str, port: int = USBIP_PORT, timeout: float = DEFAULT_TIMEOUT) -> RemoteDevice:
        """OP_REQ_IMPORT ``busid``; raises :class:`NoSuchDevice` or :class:`DeviceBusy` on refusal."""
        reader, writer = await _open(host, port, timeout)
        codec = ClientCodec()
        try:
            writer.write(codec.send(ImportRequest(busid)))
            while True:
                event = codec.next_event()
                if isinstance(event, ImportReply):
                    break
                chunk = await asyncio.wait_for(reader.read(65536), timeout)
                if not chunk:
                    raise ConnectionClosed(f"{host}:{port} closed the connection during import of {busid}")
                codec.receive_data(chunk)
        except BaseException:
            writer.close()
            raise
        if event.status != OpStatus.OK or event.device is None:
            writer.close()
            if event.status == OpStatus.DEV_BUSY:
                raise DeviceBusy(event.status, f"{busid} on {host}:{port} is in use by another client")
            if event.status == OpStatus.NODEV:
                raise NoSuchDevice(event.status, f"{host}:{port} exports no device {busid}")
            raise RemoteError(event.status, f"{host}:{port} refused to import {busid} (status {event.status})")
        return cls(reader, writer, codec, event.device)

    async def __aenter__(self) -> RemoteDevice:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._writer.close()
        self._reader_task.cancel()
        try:
            await self._reader_task
        except (asyncio.CancelledError, ConnectionClosed, ProtocolError, OSError):
            pass
        try:
            await self._writer.wait_closed()
        except OSError:
            pass

    # ------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        try:
            while True:
                chunk = await self._reader.read(1 << 20)
                if not chunk:
                    raise ConnectionClosed("the server closed the connection")
                self._codec.receive_data(chunk)
                while True:
                    event = self._codec.next_event()
                    if event is NEED_DATA:
                        break
                    if isinstance(event, SubmitReply):
                        fut = self._waiting.pop(event.seqnum, None)
                        if fut is not None and not fut.done():
                            fut.set_result(event)
                    elif isinstance(event, UnlinkReply):
                        ufut = self._unlinks.pop(event.seqnum, None)
                        if ufut is not None and not ufut.done():
                            ufut.set_result(event)
        except (ConnectionClosed, ProtocolError, OSError) as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(ConnectionClosed("connection closed"))
            raise

    def _fail(self, exc: BaseException) -> None:
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
        data: bytes = b"",
        *,
        setup: SetupPacket | None = None,
        flags: int = 0,
        iso_packets: Sequence[IsoPacket] | None = None,
        interval: int | None = None,
    ) -> tuple[int, asyncio.Future[SubmitReply]]:
        """Send CMD_SUBMIT; returns its seqnum and a future for the RET_SUBMIT.

        ``interval`` defaults to what a Linux host would use for the endpoint (see
        :meth:`interval_for`); Linux servers refuse interrupt URBs with interval 0.
        """
        if interval is None:
            interval = 0 if ep & 0x0F == 0 else self.interval_for((ep & 0x0F) | (0x80 if direction else 0))
        if self._closed_exc is not None:
            raise ConnectionClosed(str(self._closed_exc))
        seqnum = next(self._seq)
        fut: asyncio.Future[SubmitReply] = asyncio.get_running_loop().create_future()
        self._waiting[seqnum] = fut
        cmd = SubmitCommand(
            seqnum, self.devid, direction, ep & 0x0F, flags | (0x200 if direction else 0),
            length if direction else len(data), setup.to_bytes() if setup else bytes(8), data,
            iso_packets=tuple(iso_packets) if iso_packets is not None else None, interval=interval,
            number_of_packets=len(iso_packets) if iso_packets is not None else 0,
        )
        self._writer.write(self._codec.send(cmd))
        return seqnum, fut

    async def unlink(self, seqnum: int, timeout: float = DEFAULT_TIMEOUT) -> int:
        """CMD_UNLINK a submitted URB; returns the RET_UNLINK status (-104 if it was cancelled, 0 if it had completed)."""
        useq = next(self._seq)
        fut: asyncio.Future[UnlinkReply] = asyncio.get_running_loop().create_future()
        self._unlinks[useq] = fut
        self._writer.write(self._codec.send(UnlinkCommand(useq, self.devid, seqnum)))
        reply = await asyncio.wait_for(fut, timeout)
        if reply.status == Status.ECONNRESET:
            pending = self._waiting.pop(seqnum, None)
            if pending is not None and not pending.done():
                pending.cancel()
        return reply.status

    async def _run(self, ep: int, direction: int, length: int, data: bytes, setup: SetupPacket | None,
                   flags: int, timeout: float | None) -> TransferResult:
        seqnum, fut = self.submit(ep, direction, length, data, setup=setup, flags=flags)
        try:
            reply = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            await self.unlink(seqnum)
            if fut.done() and not fut.cancelled():
                reply = fut.result()
            else:
                raise
        return TransferResult(reply.status, bytes(reply.data), reply.actual_length, reply.iso_packets, reply.error_count)

