"""Human Interface Device class (Device Class Definition for HID 1.11).

:class:`HidFunction` is one HID interface: the HID class descriptor (section 6.2.1),
the report descriptor (6.2.2), an interrupt IN endpoint for input reports, an
optional interrupt OUT endpoint for output reports, and the class requests of
section 7.2:

=================  ====  ===========================================
GET_REPORT         0x01  current input or feature report
GET_IDLE           0x02  idle rate of a report
GET_PROTOCOL       0x03  0 boot, 1 report
SET_REPORT         0x09  output or feature report from the host
SET_IDLE           0x0A  re-send period in 4 ms units (0: only on change)
SET_PROTOCOL       0x0B  switch boot / report protocol
=================  ====  ===========================================

Input reports wait in the interrupt endpoint's queue until the host polls, as a
real device NAKs until it has something to say.  With a non-zero idle rate the
last report is repeated every idle period.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Any

from vusb.constants import DescriptorType, Direction, Recipient, RequestType, Speed, TransferType
from vusb.descriptors import HidDescriptor, InterfaceDescriptor
from vusb.device import BuildContext, ControlResult, Device, Function
from vusb.errors import Stall, UsageError
from vusb.function import request
from vusb.single import Forwarded, SingleFunctionDevice, forward
from vusb.urb import Completion, SetupPacket, Urb

HID_CLASS = 0x03
OUTPUT_BACKLOG = 1024


class HidRequest(enum.IntEnum):
    GET_REPORT = 0x01
    GET_IDLE = 0x02
    GET_PROTOCOL = 0x03
    SET_REPORT = 0x09
    SET_IDLE = 0x0A
    SET_PROTOCOL = 0x0B


class ReportType(enum.IntEnum):
    INPUT = 1
    OUTPUT = 2
    FEATURE = 3


class Protocol(enum.IntEnum):
    BOOT = 0
    REPORT = 1


class HidSubclass(enum.IntEnum):
    NONE = 0
    BOOT = 1


class HidProtocolCode(enum.IntEnum):
    NONE = 0
    KEYBOARD = 1
    MOUSE = 2


class HidFunction(Function):
    """A HID interface with any report descriptor.

    ``input_size`` is the size of one input report in bytes (report ID included if
    the descriptor uses IDs); it is used for GET_REPORT(input) before anything was
    sent.  Output reports from the host (SET_REPORT or the OUT endpoint) go to
    :attr:`on_output` and to :meth:`read_output`; feature reports live in
    :attr:`features` and can be changed by both sides.
    """

    name = "HID"

    def __init__(
        self,
        report_descriptor: bytes,
        *,
        input_size: int = 8,
        subclass: int = HidSubclass.NONE,
        protocol: int = HidProtocolCode.NONE,
        out_endpoint: bool = False,
        max_packet_size: int | None = None,
        interval: int | None = None,
        country_code: int = 0,
        features: dict[int, bytes] | None = None,
        interface_name: str | None = None,
    ) -> None:
        super().__init__()
        if not report_descriptor:
            raise UsageError("a HID function needs a report descriptor")
        self.report_descriptor = bytes(report_descriptor)
        self.input_size = input_size
        self.subclass = subclass
        self.protocol_code = protocol
        self.use_out_endpoint = out_endpoint
        self.max_packet_size = max_packet_size
        self.interval = interval
        self.country_code = country_code
        self.interface_name = interface_name
        self.features: dict[int, bytes] = dict(features or {})
        self.protocol = Protocol.REPORT
        self.idle: dict[int, int] = {}
        self.last_input: dict[int, bytes] = {}
        self.on_output: Callable[[int, bytes], None] | None = None
        self.on_feature: Callable[[int, bytes], None] | None = None
        self._outputs: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(maxsize=OUTPUT_BACKLOG)
        self._reports: deque[tuple[bytes, asyncio.Future[None] | None]] = deque()
        self._waiter: asyncio.Future[Completion] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.in_address = 0
        self.out_address: int | None = None
        self.interface_number = 0
        self.uses_report_ids = _uses_report_ids(self.report_descriptor)

    # ------------------------------------------------------------ declaration
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        number = ctx.interface_number()
        eps = [ctx.endpoint_in(TransferType.INTERRUPT, max_packet_size=self.max_packet_size, interval=self.interval)]
        if self.use_out_endpoint:
            eps.append(ctx.endpoint_out(TransferType.INTERRUPT, max_packet_size=self.max_packet_size,
                                        interval=self.interval))
        hid = HidDescriptor(len(self.report_descriptor), 0x0111, self.country_code)
        self.interface_number = number
        self.in_address = eps[0].address
        self.out_address = eps[1].address if len(eps) > 1 else None
        return [ctx.interface(HID_CLASS, self.subclass, self.protocol_code, number=number, endpoints=eps,
                              extra=(hid,), name=self.interface_name)]

    def bind(self, device: Device) -> None:
        device.endpoint(self.in_address).handler = self._interrupt_in
        if self.out_address is not None:
            device.endpoint(self.out_address).handler = self._interrupt_out

    @property
    def hid_descriptor(self) -> HidDescriptor:
        return HidDescriptor(len(self.report_descriptor), 0x0111, self.country_code)

    # ------------------------------------------------------------ hooks
    def on_reset(self) -> None:
        self.protocol = Protocol.REPORT
        self.idle.clear()
        self._cancel_timer()
        for _, fut in self._reports:
            if fut is not None and not fut.done():
                fut.set_exception(UsageError("the host detached before reading the report"))
                fut.exception()  # mark retrieved: callers that did not wait must not get warnings
        self._reports.clear()
        self._waiter = None

    def get_descriptor(self, setup: SetupPacket) -> bytes | None:
        if setup.type != RequestType.STANDARD:
            return None
        if (setup.index & 0xFF) != self.interface_number and setup.recipient == 1:
            return None
        if setup.descriptor_type == DescriptorType.HID_REPORT:
            return self.report_descriptor
        if setup.descriptor_type == DescriptorType.HID:
            return self.hid_descriptor.to_bytes()
        return None

    # ------------------------------------------------------------ class requests (section 7.2)
    @request(Direction.IN, RequestType.CLASS, Recipient.INTERFACE, HidRequest.GET_REPORT)
    def _get_report(self, setup: SetupPacket, data: bytes) -> ControlResult:
        report_type, report_id = setup.value >> 8, setup.value & 0xFF
        if report_type == ReportType.INPUT:
            return self.current_input(report_id)
        if report_type == ReportType.FEATURE:
            if report_id not in self.features:
                raise Stall()
            return self.features[report_id]
        raise Stall()

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, HidRequest.SET_REPORT)
    def _set_report(self, setup: SetupPacket, data: bytes) -> ControlResult:
        report_type, report_id = setup.value >> 8, setup.value & 0xFF
        if report_type == ReportType.OUTPUT:
            self._output(report_id, data)
            return None
        if report_type == ReportType.FEATURE:
            self.features[report_id] = data
            if self.on_feature is not None:
                self.on_feature(report_id, data)
            return None
        raise Stall()

    @request(Direction.IN, RequestType.CLASS, Recipient.INTERFACE, HidRequest.GET_IDLE)
    def _get_idle(self, setup: SetupPacket, data: bytes) -> ControlResult:
        return bytes((self.idle.get(setup.value & 0xFF, 0),))

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, HidRequest.SET_IDLE)
    def _set_idle(self, setup: SetupPacket, data: bytes) -> ControlResult:
        duration, report_id = setup.value >> 8, setup.value & 0xFF
        if report_id == 0:
            self.idle.clear()
        self.idle[report_id] = duration
        return None

    @request(Direction.IN, RequestType.CLASS, Recipient.INTERFACE, HidRequest.GET_PROTOCOL)
    def _get_protocol(self, setup: SetupPacket, data: bytes) -> ControlResult:
        return bytes((int(self.protocol),))

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, HidRequest.SET_PROTOCOL)
    def _set_protocol(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if self.subclass != HidSubclass.BOOT or setup.value not in (0, 1):
            raise Stall()
        self.protocol = Protocol(setup.value)
        self.on_protocol(self.protocol)
        return None

    def on_protocol(self, protocol: Protocol) -> None:
        """Boot/report protocol changed (boot devices override to switch report format)."""

    def current_input(self, report_id: int) -> bytes:
        """The report GET_REPORT(input) returns: the last sent, or zeros."""
        report = self.last_input.get(report_id)
        if report is None:
            size = self.input_size
            report = bytes((report_id,)) + bytes(size - 1) if report_id else bytes(size)
        return report

    # ------------------------------------------------------------ input reports
    def send_report(self, report: bytes) -> asyncio.Future[None]:
        """Queue an input report; the future completes when the host has read it."""
        report = bytes(report)
        report_id = report[0] if self.uses_report_ids and report else 0
        self.last_input[report_id] = report
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reports.append((report, fut))
        self._wake()
        return fut

    async def send(self, report: bytes, timeout: float | None = None) -> None:
        """Send an input report and wait until the host has read it."""
        await asyncio.wait_for(self.send_report(report), timeout)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and self._reports:
            self._waiter = None
            self._cancel_timer()
            waiter.set_result(self._pop())

    def _pop(self) -> Completion:
        report, fut = self._reports.popleft()
        if fut is not None and not fut.done():
            fut.set_result(None)
        return Completion(0, report)

    def _interrupt_in(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        if self._reports:
            return self._pop()
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        period = self.idle.get(0, 0)
        if period:
            self._timer = asyncio.get_running_loop().call_later(period * 0.004, self._repeat, waiter)
        return waiter

    def _repeat(self, waiter: asyncio.Future[Completion]) -> None:
        self._timer = None
        if waiter is self._waiter and not waiter.done():
            self._waiter = None
            waiter.set_result(Completion(0, self.current_input(0)))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------ output reports
    def _interrupt_out(self, urb: Urb) -> Completion:
        data = bytes(urb.data)
        report_id = data[0] if self.uses_report_ids and data else 0
        self._output(report_id, data)
        return Completion(0, b"", len(data))

    def _output(self, report_id: int, data: bytes) -> None:
        self.handle_output(report_id, data)
        if self.on_output is not None:
            self.on_output(report_id, data)
        if self._outputs.full():
            self._outputs.get_nowait()  # nobody reads them: keep the newest OUTPUT_BACKLOG reports
        self._outputs.put_nowait((report_id, data))

    def handle_output(self, report_id: int, data: bytes) -> None:
        """Subclasses interpret output reports here (keyboard LEDs)."""

    async def read_output(self, timeout: float | None = None) -> tuple[int, bytes]:
        """Wait for the next output report from the host: (report id, data)."""
        return await asyncio.wait_for(self._outputs.get(), timeout)


def _uses_report_ids(descriptor: bytes) -> bool:
    """True if the report descriptor has a Report ID global item (tag 0x85)."""
    i = 0
    while i < len(descriptor):
        prefix = descriptor[i]
        if prefix == 0xFE:  # long item
            if i + 1 >= len(descriptor):
                break
            i += 3 + descriptor[i + 1]
            continue
        size = (0, 1, 2, 4)[prefix & 3]
        if prefix & 0xFC == 0x84:
            return True
        i += 1 + size
    return False


class HidDevice(SingleFunctionDevice[HidFunction]):
    """A device with one generic HID interface, whose API it offers."""

    def __init__(self, report_descriptor: bytes, *, input_size: int = 8, out_endpoint: bool = False,
                 features: dict[int, bytes] | None = None, vendor_id: int = 0x1209, product_id: int = 0x0003,
                 manufacturer: str | None = "vusb", product: str | None = "HID Device",
                 serial_number: str | None = None, speed: str | int = "full", **kwargs: Any) -> None:
        self.hid = HidFunction(report_descriptor, input_size=input_size, out_endpoint=out_endpoint, features=features)
        """The HID function (also :attr:`function`)."""
        super().__init__(self.hid, vendor_id=vendor_id, product_id=product_id, manufacturer=manufacturer,
                         product=product, serial_number=serial_number,
                         speed=Speed(speed) if isinstance(speed, int) else speed, **kwargs)

    send = forward(HidFunction.send)
    send_report = forward(HidFunction.send_report)
    read_output = forward(HidFunction.read_output)
    features: Forwarded[dict[int, bytes]] = Forwarded("Feature reports by report id; both sides may change them.")
