"""Test doubles for users' own tests: drive a device without sockets or a kernel.

:class:`LocalHost` plays the host side in-process: it attaches to a
:class:`~vusb.device.Device`, submits URBs straight into its endpoint queues and
offers the same request API as the USB/IP client (``enumerate``, ``control``,
``transfer_in``, ``transfer_out``, ``unlink``...)::

    async with LocalHost(Keyboard()) as host:
        await host.enumerate()
        task = asyncio.create_task(host.device.type("a"))
        assert await host.transfer_in(0x81, 8) == bytes([0, 0, 4, 0, 0, 0, 0, 0])
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from vusb.device import Device
from vusb.host import DEFAULT_TIMEOUT, TransferResult, UsbHost
from vusb.protocol import IsoPacket
from vusb.urb import Completion, FileData, SetupPacket, Urb


class LocalHost(UsbHost):
    """An in-process host attached to one device."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.speed = int(device.speed)
        self._seq = itertools.count(1)
        self._pending: dict[int, tuple[Urb, asyncio.Future[Completion]]] = {}
        self.completions: list[tuple[Urb, Completion]] = []
        """Every completion in order (for tests that check ordering)."""

    async def __aenter__(self) -> LocalHost:
        self.attach()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> None:
        self.device.attach()

    def detach(self) -> None:
        for _, fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        self._pending.clear()
        if self.device.attached:
            self.device.detach()

    def _sink(self, urb: Urb, result: Completion) -> None:
        if isinstance(result.data, FileData):  # read now, as a server sends it now: the file may change or close
            result = dataclasses.replace(result, data=bytes(result.data))
        self.completions.append((urb, result))
        entry = self._pending.pop(urb.seqnum, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(result)

    def submit(
        self,
        ep: int,
        direction: int,
        length: int,
        data: bytes = b"",
        *,
        setup: SetupPacket | None = None,
        flags: int = 0,
        iso_packets: tuple[IsoPacket, ...] | None = None,
    ) -> tuple[Urb, asyncio.Future[Completion]]:
        """Submit a URB; returns it and a future for its completion."""
        seqnum = next(self._seq)
        urb = Urb(seqnum, ep & 0x0F, direction, length if direction else len(data), flags=flags, setup=setup,
                  data=data, iso_packets=iso_packets, sink=self._sink)
        fut: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending[seqnum] = (urb, fut)
        self.device.submit(urb)
        return urb, fut

    def unlink_urb(self, urb: Urb) -> bool:
        """Cancel a pending URB as CMD_UNLINK would; True if it was still pending."""
        cancelled = urb.endpoint.unlink(urb) if urb.endpoint is not None else False
        if cancelled:
            entry = self._pending.pop(urb.seqnum, None)
            if entry is not None and not entry[1].done():
                entry[1].cancel()
        return cancelled

    async def _run(self, ep: int, direction: int, length: int, data: bytes, setup: SetupPacket | None,
                   flags: int, timeout: float | None) -> TransferResult:
        urb, fut = self.submit(ep, direction, length, data, setup=setup, flags=flags)
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            self.unlink_urb(urb)
            raise
        payload = bytes(result.data)
        actual = len(payload) if direction else (len(data) if result.actual_length is None else result.actual_length)
        return TransferResult(result.status, payload, actual, result.iso_packets, result.error_count)


__all__ = ["DEFAULT_TIMEOUT", "LocalHost"]
