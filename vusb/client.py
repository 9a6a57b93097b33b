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
from dataclasses import dataclass, field

from vusb.constants import USBIP_PORT, DescriptorType, OpStatus, Request, Speed, Status
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    DeviceDescriptor,
    DeviceQualifierDescriptor,
    LanguageTable,
    StringDescriptor,
)
from vusb.errors import (
    ConnectionClosed,
    DescriptorError,
    DeviceBusy,
    NoSuchDevice,
    ProtocolError,
    RemoteError,
    Stall,
    TransferError,
)
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

DEFAULT_TIMEOUT = 5.0


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


@dataclass
class TransferResult:
    status: int
    data: bytes
    actual_length: int
    iso_packets: tuple[IsoPacket, ...] | None = None
    error_count: int = 0


@dataclass
class DeviceInfo:
    """What enumeration learned about a device."""

    device: DeviceDescriptor
    device_bytes: bytes
    configurations: list[ConfigurationDescriptor] = field(default_factory=list)
    configuration_bytes: list[bytes] = field(default_factory=list)
    languages: tuple[int, ...] = ()
    strings: dict[int, str] = field(default_factory=dict)
    bos: BosDescriptor | None = None
    bos_bytes: bytes | None = None
    qualifier: DeviceQualifierDescriptor | None = None
    speed: int = 0


class RemoteDevice:
    """An imported device: URBs over one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, codec: ClientCodec,
                 exported: ExportedDevice) -> None:
        self._reader = reader
        self._writer = writer
        self._codec = codec
        self.exported = exported
        self.devid = (exported.busnum << 16) | exported.devnum
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
        interval: int = 0,
    ) -> tuple[int, asyncio.Future[SubmitReply]]:
        """Send CMD_SUBMIT; returns its seqnum and a future for the RET_SUBMIT."""
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

    @staticmethod
    def _check(result: TransferResult, what: str) -> TransferResult:
        if result.status == Status.EPIPE:
            raise Stall(f"{what} stalled", result.data)
        if result.status != 0:
            raise TransferError(result.status, f"{what} failed with status {result.status}", result.data)
        return result

    async def control(self, setup: SetupPacket, data: bytes = b"", *, timeout: float | None = DEFAULT_TIMEOUT) -> bytes:
        """A control transfer on EP0; returns the IN data (or b"" for OUT)."""
        direction = 1 if setup.is_in else 0
        if not setup.is_in and len(data) != setup.length:
            setup = SetupPacket(setup.request_type, setup.request, setup.value, setup.index, len(data))
        result = await self._run(0, direction, setup.length if direction else len(data), data, setup, 0, timeout)
        return self._check(result, setup.describe()).data

    async def transfer_in(self, ep: int, length: int, *, timeout: float | None = DEFAULT_TIMEOUT, flags: int = 0) -> bytes:
        """A bulk or interrupt IN transfer; waits (the device NAKs) until data or timeout."""
        result = await self._run(ep, 1, length, b"", None, flags, timeout)
        return self._check(result, f"IN transfer on endpoint 0x{ep | 0x80:02x}").data

    async def transfer_out(self, ep: int, data: bytes, *, timeout: float | None = DEFAULT_TIMEOUT, flags: int = 0) -> int:
        """A bulk or interrupt OUT transfer; returns the bytes the device consumed."""
        result = await self._run(ep, 0, len(data), data, None, flags, timeout)
        return self._check(result, f"OUT transfer on endpoint 0x{ep & 0x0F:02x}").actual_length

    bulk_in = transfer_in
    bulk_out = transfer_out
    interrupt_in = transfer_in
    interrupt_out = transfer_out

    # ------------------------------------------------------------ standard requests
    async def get_descriptor(self, dtype: int, index: int = 0, length: int = 255, lang: int = 0) -> bytes:
        return await self.control(SetupPacket(0x80, Request.GET_DESCRIPTOR, (dtype << 8) | index, lang, length))

    async def set_configuration(self, value: int) -> None:
        await self.control(SetupPacket(0x00, Request.SET_CONFIGURATION, value, 0, 0))

    async def get_configuration(self) -> int:
        return (await self.control(SetupPacket(0x80, Request.GET_CONFIGURATION, 0, 0, 1)))[0]

    async def set_interface(self, interface: int, alternate: int) -> None:
        await self.control(SetupPacket(0x01, Request.SET_INTERFACE, alternate, interface, 0))

    async def get_interface(self, interface: int) -> int:
        return (await self.control(SetupPacket(0x81, Request.GET_INTERFACE, 0, interface, 1)))[0]

    async def get_status(self, recipient: int = 0, index: int = 0) -> int:
        return int.from_bytes(await self.control(SetupPacket(0x80 | recipient, Request.GET_STATUS, 0, index, 2)), "little")

    async def clear_halt(self, address: int) -> None:
        await self.control(SetupPacket(0x02, Request.CLEAR_FEATURE, 0, address, 0))

    async def set_halt(self, address: int) -> None:
        await self.control(SetupPacket(0x02, Request.SET_FEATURE, 0, address, 0))

    async def enumerate(self, *, configure: bool = True, strings: bool = True) -> DeviceInfo:
        """Read descriptors the way Linux does (device, BOS, configurations, strings) and select configuration 1."""
        head = await self.get_descriptor(DescriptorType.DEVICE, 0, 64 if self.exported.speed != 5 else 8)
        raw = await self.get_descriptor(DescriptorType.DEVICE, 0, 18)
        info = DeviceInfo(DeviceDescriptor.parse(raw), raw, speed=self.exported.speed)
        del head
        if info.device.usb_version >= 0x0201:
            bos_head = await self.get_descriptor(DescriptorType.BOS, 0, 5)
            total = int.from_bytes(bos_head[2:4], "little")
            info.bos_bytes = await self.get_descriptor(DescriptorType.BOS, 0, total)
            info.bos = BosDescriptor.parse(info.bos_bytes)
        for i in range(info.device.num_configurations):
            head9 = await self.get_descriptor(DescriptorType.CONFIGURATION, i, 9)
            total = int.from_bytes(head9[2:4], "little")
            full = await self.get_descriptor(DescriptorType.CONFIGURATION, i, total)
            if len(full) != total:
                raise DescriptorError(f"configuration {i}: wTotalLength {total} but {len(full)} bytes returned")
            info.configuration_bytes.append(full)
            info.configurations.append(ConfigurationDescriptor.parse(full, speed=Speed.SUPER if self.exported.speed == 5 else None))
        if self.exported.speed == 3:
            try:
                info.qualifier = DeviceQualifierDescriptor.parse(await self.get_descriptor(DescriptorType.DEVICE_QUALIFIER, 0, 10))
            except Stall:
                info.qualifier = None
        if strings:
            try:
                info.languages = LanguageTable.parse(await self.get_descriptor(DescriptorType.STRING, 0, 255)).languages
            except Stall:
                info.languages = ()
            if info.languages:
                lang = info.languages[0]
                indices = {info.device.manufacturer_index, info.device.product_index, info.device.serial_number_index}
                for config in info.configurations:
                    indices.add(config.name_index)
                    indices.update(i.name_index for i in config.interfaces)
                    indices.update(a.name_index for a in config.associations)
                for index in sorted(indices - {0}):
                    try:
                        info.strings[index] = StringDescriptor.parse(
                            await self.get_descriptor(DescriptorType.STRING, index, 255, lang)).text
                    except Stall:
                        pass
        if configure and info.configurations:
            await self.set_configuration(info.configurations[0].value)
        return info
