"""A test double of a physical device for :mod:`vusb.proxy`: hardware made of a vusb device.

:class:`FakeBackend` plays what libusb plays for real hardware. The "hardware" behind
it is any vusb :class:`~vusb.device.Device` (a keyboard, a disk, your own class), so it
behaves as a device does on a bus: an IN transfer waits (the device NAKs) until the
device has data, a transfer can be cancelled while it waits, a halted endpoint stalls
until its halt is cleared, and :meth:`FakeBackend.unplug` makes every transfer in
flight end with -ENODEV and every later call raise :class:`~vusb.proxy_backend.DeviceGone`,
as libusb reports a device pulled out mid-transfer.  It also keeps what an operating
system would: which interfaces have a kernel driver bound (detached by
:meth:`~FakeBackend.open`, re-attached by :meth:`~FakeBackend.close`) and counters for tests::

    hardware = Keyboard()                    # any vusb Device
    backend = FakeBackend(hardware)
    proxy = ProxyDevice(backend)             # export it with a Server, drive it with RemoteDevice

Transfers are handed to the hardware device in the event loop's thread, as URBs.
"""

from __future__ import annotations

import asyncio
import itertools

from vusb.constants import URB_SHORT_NOT_OK, Recipient, Request, Speed, Status
from vusb.device import Device
from vusb.protocol import IsoPacket
from vusb.proxy_backend import (
    DeviceGone,
    DoneCallback,
    PendingTransfer,
    ProxyBackend,
    ProxyError,
    TransferRequest,
    TransferResult,
)
from vusb.urb import Completion, SetupPacket, Urb, UrbState


class _FakeTransfer(PendingTransfer):
    def __init__(self, backend: FakeBackend, urb: Urb, done: DoneCallback) -> None:
        self.backend = backend
        self.urb = urb
        self.done = done
        self.finished = False

    def cancel(self) -> None:
        if self.finished:
            return
        self.backend.cancelled += 1
        urb = self.urb
        if urb.endpoint is not None and urb.state in (UrbState.QUEUED, UrbState.ACTIVE):
            if not urb.endpoint.unlink(urb):
                return  # it had its answer already: that answer was delivered (libusb: COMPLETED wins)
        else:
            urb.cancel()
        self.finish(TransferResult(Status.ECONNRESET))

    def finish(self, result: TransferResult) -> None:
        if not self.finished:
            self.finished = True
            self.backend._inflight.discard(self)
            self.done(result)


class FakeBackend(ProxyBackend):
    """A physical device for tests: ``hardware`` answers the transfers (see the module docstring).

    ``configured``: the device is in its first configuration when opened, as an operating
    system leaves a device it enumerated (False: unconfigured).  ``bus``/``address``:
    how it is named, as on a real bus.
    """

    def __init__(self, hardware: Device, *, bus: int = 1, address: int = 2, configured: bool = True) -> None:
        d = hardware.descriptor
        self.hardware = hardware
        self.bus = bus
        self.address = address
        self.description = f"bus {bus} device {address} ({d.vendor_id:04x}:{d.product_id:04x}, fake)"
        self.speed = Speed(hardware.speed)
        self.device_descriptor = d.to_bytes()
        self.configurations = [c.to_bytes() for c in hardware.configurations]
        self.bos = hardware.bos.to_bytes() if hardware.bos is not None else None
        self.configure_on_open = configured
        self.kernel_driver: dict[int, bool] = {i.number: True for i in hardware.configurations[0].interfaces}
        """Interface number -> whether a kernel driver is bound to it (open() detaches, close() re-attaches)."""
        self.opened = False
        self.gone = False
        self.submitted = 0
        """Transfers started."""
        self.cancelled = 0
        """Transfers cancelled while in flight (the proxy's UNLINKs)."""
        self.halts_cleared: list[int] = []
        """Endpoints whose halt was cleared through clear_halt(), in order."""
        self.calls: list[tuple[str, int, int]] = []
        """The state-changing calls in order: ("set_configuration", value, 0), ("set_interface", itf, alt),
        ("clear_halt", endpoint, 0)."""
        self._inflight: set[_FakeTransfer] = set()
        self._seq = itertools.count(1)

    # ------------------------------------------------------------ the operating system's side
    def active_configuration(self) -> int:
        return self.hardware.configuration_value

    def open(self) -> None:
        if self.gone:
            raise DeviceGone(f"{self.description} was unplugged")
        if self.opened:
            raise ProxyError(f"{self.description} is already open")
        self.opened = True
        for number in self.kernel_driver:
            self.kernel_driver[number] = False
        self.hardware.attach()
        if self.configure_on_open:
            self._standard(Request.SET_CONFIGURATION, self.hardware.configurations[0].value, 0, Recipient.DEVICE)

    def close(self) -> None:
        if not self.opened:
            return
        self.opened = False
        for transfer in list(self._inflight):
            transfer.cancel()
        if self.hardware.attached:
            self.hardware.detach()
        if not self.gone:
            for number in self.kernel_driver:
                self.kernel_driver[number] = True

    # ------------------------------------------------------------ what the tests do to the hardware
    def unplug(self) -> None:
        """The device is pulled out: transfers in flight end with -ENODEV, later calls raise DeviceGone."""
        if self.gone:
            return
        self.gone = True
        for transfer in list(self._inflight):
            transfer.urb.cancel()
            transfer.finish(TransferResult(Status.ENODEV))
        if self.hardware.attached:
            self.hardware.detach()

    @property
    def in_flight(self) -> int:
        """Transfers submitted and not finished."""
        return len(self._inflight)

    # ------------------------------------------------------------ transfers
    def submit(self, request: TransferRequest, done: DoneCallback) -> PendingTransfer:
        self._check()
        self.submitted += 1
        setup = request.setup
        direction = 1 if request.is_in else 0
        iso = None
        if request.iso_lengths is not None:
            offsets = itertools.accumulate((0, *request.iso_lengths))
            iso = tuple(IsoPacket(off, n) for off, n in zip(offsets, request.iso_lengths, strict=False))
        urb = Urb(next(self._seq), request.endpoint & 0x0F, direction,
                  request.length if direction else len(request.data),
                  flags=URB_SHORT_NOT_OK if request.short_not_ok else 0, setup=setup, data=request.data,
                  iso_packets=iso)
        transfer = _FakeTransfer(self, urb, done)
        urb._sink = lambda u, c: transfer.finish(self._result(u, c))
        self._inflight.add(transfer)
        self.hardware.submit(urb)
        return transfer

    @staticmethod
    def _result(urb: Urb, c: Completion) -> TransferResult:
        data = bytes(c.data)
        if c.iso_packets is not None:
            return TransferResult(c.status, data, sum(p.actual_length for p in c.iso_packets),
                                  tuple((p.actual_length, p.status) for p in c.iso_packets))
        if urb.direction == 1:
            return TransferResult(c.status, data, len(data))
        return TransferResult(c.status, b"", len(urb.data) if c.actual_length is None else c.actual_length)

    def _check(self) -> None:
        if self.gone:
            raise DeviceGone(f"{self.description} was unplugged")
        if not self.opened:
            raise ProxyError(f"{self.description} is not open")

    def _standard(self, request: int, value: int, index: int, recipient: int) -> None:
        """A standard OUT request to the hardware, answered at once (its standard requests are synchronous)."""
        results: list[Completion] = []
        urb = Urb(next(self._seq), 0, 0, 0, setup=SetupPacket(recipient, request, value, index, 0),
                  sink=lambda _u, c: results.append(c))
        self.hardware.submit(urb)
        if not results or results[0].status != 0:
            status = results[0].status if results else "no answer"
            raise ProxyError(f"{self.description}: {Request(request).name} {value} failed ({status})")

    async def set_configuration(self, value: int) -> None:
        self._check()
        self.calls.append(("set_configuration", value, 0))
        self._standard(Request.SET_CONFIGURATION, value, 0, Recipient.DEVICE)

    async def set_interface(self, interface: int, alternate: int) -> None:
        self._check()
        self.calls.append(("set_interface", interface, alternate))
        self._standard(Request.SET_INTERFACE, alternate, interface, Recipient.INTERFACE)

    async def clear_halt(self, endpoint: int) -> None:
        self._check()
        self.calls.append(("clear_halt", endpoint, 0))
        self.halts_cleared.append(endpoint)
        self._standard(Request.CLEAR_FEATURE, 0, endpoint, Recipient.ENDPOINT)

    async def settle(self) -> None:
        """Let the hardware's pending callbacks run (a few loop turns)."""
        for _ in range(3):
            await asyncio.sleep(0)


__all__ = ["FakeBackend"]
