"""The host side of USB, independent of transport.

:class:`UsbHost` gives the request helpers (control transfers, standard requests,
bulk/interrupt transfers, Linux-style enumeration) to anything that can run a
URB: the USB/IP client (:class:`vusb.client.RemoteDevice`) and the in-process
test host (:class:`vusb.testing.LocalHost`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

from vusb.constants import DescriptorType, Request, Speed, Status, TransferType
from vusb.descriptors import (
    BosDescriptor,
    ConfigurationDescriptor,
    DeviceDescriptor,
    DeviceQualifierDescriptor,
    LanguageTable,
    StringDescriptor,
)
from vusb.errors import DescriptorError, Stall, TransferError
from vusb.protocol import IsoPacket
from vusb.urb import SetupPacket

DEFAULT_TIMEOUT = 5.0


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


class UsbHost(abc.ABC):
    """Request helpers over an abstract URB runner."""

    speed: int = 2
    endpoint_intervals: dict[int, int] = {}

    def interval_for(self, address: int) -> int:
        """The URB interval a Linux host uses for an endpoint: (micro)frames from bInterval.

        Linux rejects interrupt and isochronous URBs whose interval is 0, so unknown
        endpoints get 1.
        """
        return self.endpoint_intervals.get(address, 1)

    @abc.abstractmethod
    async def _run(self, ep: int, direction: int, length: int, data: bytes, setup: SetupPacket | None,
                   flags: int, timeout: float | None) -> TransferResult:
        """Run one URB to completion (unlinking it on timeout) and return its result."""

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
        head = await self.get_descriptor(DescriptorType.DEVICE, 0, 64 if self.speed != 5 else 8)
        raw = await self.get_descriptor(DescriptorType.DEVICE, 0, 18)
        info = DeviceInfo(DeviceDescriptor.parse(raw), raw, speed=self.speed)
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
            info.configurations.append(ConfigurationDescriptor.parse(full, speed=Speed.SUPER if self.speed == 5 else None))
        if self.speed == 3:
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
        if info.configurations:
            intervals = {}
            for itf in info.configurations[0].interfaces:
                for ep in itf.endpoints:
                    if ep.transfer_type in (TransferType.INTERRUPT, TransferType.ISOCHRONOUS) and ep.interval:
                        fast = self.speed >= 3 or ep.transfer_type == TransferType.ISOCHRONOUS
                        intervals[ep.address] = 1 << (ep.interval - 1) if fast else ep.interval
            self.endpoint_intervals = intervals
        if configure and info.configurations:
            await self.set_configuration(info.configurations[0].value)
        return info
