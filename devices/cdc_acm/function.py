"""The ACM serial function and the ready-made serial port device.

:class:`CdcAcmFunction` is the two-interface function of PSTN 1.2 (communications
interface with its interrupt notification endpoint, data interface with a bulk
pair); :class:`SerialPort` is a device made of one such function, with the same
plain async API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vusb.devices.cdc_acm.backends import BackendSpec, SerialBackend
from vusb.devices.cdc_acm.port import BytePort, WaitingIn, Watch
from vusb.devices.cdc_acm.spec import (
    ACM_SUBCLASS,
    CDC_CLASS,
    CDC_DATA_CLASS,
    SEND_BREAK_UNTIL_CLEARED,
    AcmCapability,
    AcmDescriptor,
    AcmProtocol,
    CallManagementCapability,
    CallManagementDescriptor,
    CdcRequest,
    CommFeature,
    ControlLine,
    HeaderDescriptor,
    LineCoding,
    LineCodingError,
    Notification,
    SerialState,
    UnionDescriptor,
)

from vusb.constants import Direction, Recipient, RequestType, Speed, TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import NOT_HANDLED, BuildContext, ControlResult, Device, Function
from vusb.errors import DeviceDefinitionError, Stall
from vusb.function import request
from vusb.single import Forwarded, SingleFunctionDevice, forward, forward_property
from vusb.urb import SetupPacket

log = logging.getLogger("vusb.cdc_acm")

DEFAULT_BUFFER_SIZE = 1 << 20
"""Bytes each direction may hold before the producer waits (1 MiB)."""

class CdcAcmFunction(BytePort, Function):
    """A serial port: CDC ACM communications interface plus data interface.

    ``backend`` says where the bytes go: ``"loopback"`` (echo), ``"pty"`` (a
    pseudo-terminal on this machine), a :class:`~vusb.devices.cdc_acm.backends.SerialBackend`
    instance (:class:`~vusb.devices.cdc_acm.backends.TcpBackend`...), or ``None`` / ``"none"``:
    Python code reads and writes with :meth:`read`, :meth:`readline` and :meth:`write`.

    Each direction buffers up to ``buffer_size`` bytes.  When the buffer from the
    host is full its bulk OUT URB is held (the host sees a NAKing endpoint), so no
    byte is ever dropped; bytes for the host wait until its bulk IN URBs take them.
    """

    name: str | None = "CDC ACM"
    function_class: tuple[int, int, int] | None = (CDC_CLASS, ACM_SUBCLASS, AcmProtocol.AT_V250)

    def __init__(
        self,
        backend: BackendSpec = None,
        *,
        protocol: int = AcmProtocol.AT_V250,
        capabilities: int = AcmCapability.LINE | AcmCapability.SEND_BREAK,
        call_management: int = CallManagementCapability.NONE,
        line_coding: LineCoding | None = None,
        dcd: bool = False,
        dsr: bool = False,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        notify_packet_size: int = 16,
        interface_name: str | None = None,
        data_interface_name: str | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= protocol <= 0xFF:
            raise DeviceDefinitionError(f"bInterfaceProtocol {protocol} is not a byte")
        if capabilities & ~0x0F:
            raise DeviceDefinitionError(f"ACM capabilities 0x{capabilities:02x} set reserved bits (only D0..D3)")
        if not 10 <= notify_packet_size <= 64:
            raise DeviceDefinitionError(
                f"notify_packet_size {notify_packet_size}: the notification endpoint needs 10..64 bytes "
                "(a SERIAL_STATE notification is 10 bytes)"
            )
        self.protocol = protocol
        self.function_class = (CDC_CLASS, ACM_SUBCLASS, protocol)
        self.capabilities = AcmCapability(capabilities)
        self.call_management = CallManagementCapability(call_management)
        self.interface_name = interface_name
        self.data_interface_name = data_interface_name
        self.notify_packet_size = notify_packet_size
        if name is not None:
            self.name = name
        # State the host sets.
        self._line_coding = Watch(line_coding or LineCoding())
        self._breaks = Watch(0)
        self.break_active = False
        self.breaks = 0
        """How many breaks the host started (SEND_BREAK with a non-zero duration)."""
        self.comm_features: dict[int, int] = {CommFeature.ABSTRACT_STATE: 0, CommFeature.COUNTRY_SETTING: 0}
        self.on_line_coding: Callable[[LineCoding], None] | None = None
        self.on_break: Callable[[int], None] | None = None
        # State the device reports (SERIAL_STATE).
        self._state = (SerialState.DCD if dcd else SerialState.NONE) | (SerialState.DSR if dsr else SerialState.NONE)
        self._events = SerialState.NONE
        self._force_notify = False
        self._sent_state = SerialState.NONE
        self._notify_buf = b""
        self._notify_idle: list[asyncio.Future[None]] = []
        # Deferred to the next loop turn so that changes made together coalesce into one notification.
        self._notify = WaitingIn(self._notification_pending, self._next_notification, deferred=True)
        self._break_timer: asyncio.TimerHandle | None = None
        self.comm_interface = 0
        self.data_interface = 0
        self.notify_address = 0
        self.in_address = 0
        self.out_address = 0
        # Where bytes wait (from the host to the backend, and back), DTR/RTS, the backend.
        self._init_port(backend, buffer_size)

    # ------------------------------------------------------------ declaration
    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        if ctx.speed == Speed.LOW:
            raise DeviceDefinitionError("a CDC ACM function needs bulk endpoints, which low-speed devices cannot have")
        comm = ctx.interface_number()
        data = ctx.interface_number()
        notify = ctx.endpoint_in(TransferType.INTERRUPT, max_packet_size=self.notify_packet_size)
        bulk_in = ctx.endpoint_in(TransferType.BULK)
        try:  # the usual layout: both data endpoints share a number (0x82 / 0x02)
            bulk_out = ctx.endpoint_out(TransferType.BULK, number=bulk_in.number)
        except DeviceDefinitionError:
            bulk_out = ctx.endpoint_out(TransferType.BULK)
        self.comm_interface, self.data_interface = comm, data
        self.notify_address, self.in_address, self.out_address = notify.address, bulk_in.address, bulk_out.address
        functional = (
            HeaderDescriptor(),
            CallManagementDescriptor(data, self.call_management),
            AcmDescriptor(self.capabilities),
            UnionDescriptor(comm, (data,)),
        )
        return [
            ctx.interface(CDC_CLASS, ACM_SUBCLASS, self.protocol, number=comm, endpoints=(notify,), extra=functional,
                          name=self.interface_name),
            ctx.interface(CDC_DATA_CLASS, number=data, endpoints=(bulk_out, bulk_in), name=self.data_interface_name),
        ]

    def bind(self, device: Device) -> None:
        device.endpoint(self.notify_address).handler = self._notify.handler
        device.endpoint(self.in_address).handler = self._bulk_in
        device.endpoint(self.out_address).handler = self._bulk_out
        device.add_attach_listener(self._attached)

    # ------------------------------------------------------------ lifecycle
    def _noun(self) -> str:
        return "the serial port"

    async def _release(self) -> None:
        self._cancel_break_timer()
        await super()._release()

    def on_configured(self, configured: bool) -> None:
        self._drop_urb_state()
        self._sent_state = SerialState.NONE
        self._events = SerialState.NONE
        self._force_notify = False
        if configured:
            if not self._started and not self._closed:
                self._attached(True)
        else:
            self._set_lines(ControlLine.NONE, requested=False)
            self._end_break()

    def on_reset(self) -> None:
        self._drop_urb_state()
        self._sent_state = SerialState.NONE
        self._events = SerialState.NONE
        self._force_notify = False
        self._set_lines(ControlLine.NONE, requested=False)
        self._end_break()

    def _drop_urb_state(self) -> None:
        self._drop_urbs()
        self._notify.drop()
        self._notify_buf = b""
        self._wake_notify_idle()

    def _where(self) -> str:
        dev = self.device
        return f"{dev.describe()} interface {self.comm_interface}" if dev is not None else "CDC ACM"

    # ------------------------------------------------------------ class requests
    def control(self, setup: SetupPacket, data: bytes) -> ControlResult | Awaitable[ControlResult]:
        """Requests to the communications interface go through the request table; the data interface has none."""
        if (setup.index & 0xFF) != self.comm_interface:
            return NOT_HANDLED
        return super().control(setup, data)

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.SET_LINE_CODING)
    def _set_line_coding_request(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.capabilities & AcmCapability.LINE:
            return NOT_HANDLED
        if setup.length != LineCoding.SIZE or len(data) != LineCoding.SIZE:
            raise Stall(f"SET_LINE_CODING carries 7 bytes, not {len(data)}")
        try:
            coding = LineCoding.parse(data)
        except LineCodingError as exc:
            log.warning("%s: SET_LINE_CODING refused: %s", self._where(), exc)
            raise Stall(str(exc)) from None
        self._set_line_coding(coding)
        return None

    @request(Direction.IN, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.GET_LINE_CODING)
    def _get_line_coding(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.capabilities & AcmCapability.LINE:
            return NOT_HANDLED
        return self.line_coding.to_bytes()

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.SET_CONTROL_LINE_STATE)
    def _set_control_line_state(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.capabilities & AcmCapability.LINE:
            return NOT_HANDLED
        if setup.length != 0:
            raise Stall("SET_CONTROL_LINE_STATE has no data stage")
        self._set_lines(ControlLine(setup.value & 0x03))
        return None

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.SEND_BREAK)
    def _send_break_request(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.capabilities & AcmCapability.SEND_BREAK:
            return NOT_HANDLED
        if setup.length != 0:
            raise Stall("SEND_BREAK has no data stage")
        self._send_break(setup.value)
        return None

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.SET_COMM_FEATURE)
    @request(Direction.IN, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.GET_COMM_FEATURE)
    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.CLEAR_COMM_FEATURE)
    def _comm_feature(self, setup: SetupPacket, data: bytes) -> ControlResult:
        if not self.capabilities & AcmCapability.COMM_FEATURE:
            return NOT_HANDLED
        selector = setup.value
        if selector not in self.comm_features:
            raise Stall(f"unknown communications feature selector {selector}")
        if setup.request == CdcRequest.GET_COMM_FEATURE:
            return self.comm_features[selector].to_bytes(2, "little")
        if setup.request == CdcRequest.SET_COMM_FEATURE and len(data) == 2:
            self.comm_features[selector] = int.from_bytes(data, "little")
            return None
        if setup.request == CdcRequest.CLEAR_COMM_FEATURE and setup.length == 0:
            self.comm_features[selector] = 0
            return None
        raise Stall()

    @request(Direction.OUT, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.SEND_ENCAPSULATED_COMMAND)
    def _send_encapsulated_command(self, setup: SetupPacket, data: bytes) -> ControlResult:
        return None  # required by CDC; no control protocol is spoken over it

    @request(Direction.IN, RequestType.CLASS, Recipient.INTERFACE, CdcRequest.GET_ENCAPSULATED_RESPONSE)
    def _get_encapsulated_response(self, setup: SetupPacket, data: bytes) -> ControlResult:
        return b""  # no response is ever pending

    def _set_line_coding(self, coding: LineCoding) -> None:
        log.debug("%s: line coding %s", self._where(), coding)
        self._line_coding.publish(coding)
        self._tell(self.backend.line_coding_changed, coding)
        if self.on_line_coding is not None:
            self._tell(self.on_line_coding, coding)

    def _send_break(self, duration_ms: int) -> None:
        self._cancel_break_timer()
        if duration_ms == 0:
            self._end_break()
        else:
            if not self.break_active:
                self.breaks += 1
            self.break_active = True
            if duration_ms != SEND_BREAK_UNTIL_CLEARED:
                loop = asyncio.get_running_loop()
                self._break_timer = loop.call_later(duration_ms / 1000, self._end_break)
        self._breaks.publish(duration_ms)
        self._tell(self.backend.break_requested, duration_ms)
        if self.on_break is not None:
            self._tell(self.on_break, duration_ms)

    def _end_break(self) -> None:
        self._break_timer = None
        self.break_active = False

    def _cancel_break_timer(self) -> None:
        if self._break_timer is not None:
            self._break_timer.cancel()
            self._break_timer = None

    # ------------------------------------------------------------ state the host set
    @property
    def line_coding(self) -> LineCoding:
        """The line coding the host set last (9600 8N1 until then)."""
        return self._line_coding.value

    async def wait_line_coding(self, predicate: Callable[[LineCoding], bool] | None = None,
                               timeout: float | None = None) -> LineCoding:
        """Wait for the next SET_LINE_CODING (or until ``predicate(coding)`` holds)."""
        return await self._line_coding.wait(predicate, timeout)

    async def wait_break(self, timeout: float | None = None) -> int:
        """Wait for the next SEND_BREAK; returns its duration in ms (0xFFFF: until cleared, 0: end)."""
        return await self._breaks.wait(None, timeout)

    # ------------------------------------------------------------ SERIAL_STATE notifications
    @property
    def serial_state(self) -> SerialState:
        """The carrier states the device reports (DCD, DSR)."""
        return self._state

    @property
    def dcd(self) -> bool:
        return bool(self._state & SerialState.DCD)

    @property
    def dsr(self) -> bool:
        return bool(self._state & SerialState.DSR)

    def set_dcd(self, on: bool) -> None:
        """Data carrier detect (bRxCarrier): tell the host the line is up or down."""
        self.update_state(dcd=on)

    def set_dsr(self, on: bool) -> None:
        """Data set ready (bTxCarrier)."""
        self.update_state(dsr=on)

    def update_state(self, *, dcd: bool | None = None, dsr: bool | None = None) -> None:
        """Change DCD and/or DSR together (one notification for both).

        Changes made in one go (before the event loop runs again) are reported in a
        single SERIAL_STATE notification.
        """
        new = self._state
        for bit, on in ((SerialState.DCD, dcd), (SerialState.DSR, dsr)):
            if on is not None:
                new = (new | bit) if on else (new & ~bit)
        if new != self._state:
            self._state = new
            self._notify.feed()

    def ring(self) -> None:
        """Report an incoming ring (bRingSignal)."""
        self._raise_events(SerialState.RING)

    def signal_break(self) -> None:
        """Report a break detected on the line (bBreak): Linux delivers it to the tty as a break."""
        self._raise_events(SerialState.BREAK)

    def report_errors(self, *, framing: bool = False, parity: bool = False, overrun: bool = False) -> None:
        """Report line errors (bFraming, bParity, bOverRun)."""
        events = SerialState.NONE
        if framing:
            events |= SerialState.FRAMING
        if parity:
            events |= SerialState.PARITY
        if overrun:
            events |= SerialState.OVERRUN
        if events:
            self._raise_events(events)

    async def wait_notified(self, timeout: float | None = None) -> None:
        """Wait until the host has read every pending SERIAL_STATE notification."""
        async def idle() -> None:
            while self._notification_pending():
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._notify_idle.append(fut)
                await fut
        await asyncio.wait_for(idle(), timeout)

    def _raise_events(self, events: SerialState) -> None:
        self._events |= events
        self._force_notify = True
        self._notify.feed()

    def _notification_pending(self) -> bool:
        if not self.capabilities & AcmCapability.LINE:
            return False
        return bool(self._notify_buf) or self._force_notify or (self._state | self._events) != self._sent_state

    def _next_notification(self, length: int) -> bytes:
        if not self._notify_buf:
            bits = self._state | self._events
            # Events are reported once; the next notification shows them cleared again.
            self._events = SerialState.NONE
            self._force_notify = False
            self._sent_state = bits
            self._notify_buf = Notification.serial_state(self.comm_interface, int(bits)).to_bytes()
        out, self._notify_buf = self._notify_buf[:length], self._notify_buf[length:]
        if not self._notification_pending():
            self._wake_notify_idle()
        return out

    def _wake_notify_idle(self) -> None:
        waiters, self._notify_idle = self._notify_idle, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

class SerialPort(SingleFunctionDevice[CdcAcmFunction]):
    """A USB serial port (CDC ACM), the device a Linux host sees as ``/dev/ttyACM0``.

    ::

        port = SerialPort()                       # Python code is the other end
        line = await port.readline()
        await port.write(b"pong\\r\\n")

        SerialPort(backend="loopback")            # echoes what the host sends
        SerialPort(backend=PtyBackend("/tmp/vusb-tty"))   # any program talks through a pty
        SerialPort(backend=TcpBackend("127.0.0.1", 4000)) # bridge to a TCP service
    """

    def __init__(
        self,
        backend: BackendSpec = None,
        *,
        vendor_id: int = 0x1209,
        product_id: int = 0x0004,
        device_version: int = 0x0100,
        manufacturer: str | None = "vusb",
        product: str | None = "Virtual Serial Port",
        serial_number: str | None = None,
        speed: Speed | str = "full",
        protocol: int = AcmProtocol.AT_V250,
        line_coding: LineCoding | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        interface_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.acm = CdcAcmFunction(backend, protocol=protocol, line_coding=line_coding, buffer_size=buffer_size,
                                  interface_name=interface_name)
        """The ACM function (also :attr:`function`)."""
        super().__init__(self.acm, vendor_id=vendor_id, product_id=product_id, device_version=device_version,
                         manufacturer=manufacturer, product=product, serial_number=serial_number, speed=speed,
                         **kwargs)

    # -- lifecycle
    start = forward(CdcAcmFunction.start)
    close = forward(CdcAcmFunction.close)

    async def __aenter__(self) -> SerialPort:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    backend: Forwarded[SerialBackend] = Forwarded("Where the bytes go (loopback, pty, TCP, or this Python code).")

    # -- data
    read = forward(CdcAcmFunction.read)
    readexactly = forward(CdcAcmFunction.readexactly)
    readline = forward(CdcAcmFunction.readline)
    write = forward(CdcAcmFunction.write)
    flush = forward(CdcAcmFunction.flush)

    # -- what the host set
    line_coding = forward_property(CdcAcmFunction.line_coding)
    control_lines = forward_property(CdcAcmFunction.control_lines)
    dtr = forward_property(CdcAcmFunction.dtr)
    rts = forward_property(CdcAcmFunction.rts)
    break_active: Forwarded[bool] = Forwarded("Whether the host holds a break (SEND_BREAK) on the line.")
    breaks: Forwarded[int] = Forwarded("How many breaks the host started.")
    wait_control_lines = forward(CdcAcmFunction.wait_control_lines)
    wait_dtr = forward(CdcAcmFunction.wait_dtr)
    wait_rts = forward(CdcAcmFunction.wait_rts)
    wait_line_coding = forward(CdcAcmFunction.wait_line_coding)
    wait_break = forward(CdcAcmFunction.wait_break)

    # -- what the device reports
    serial_state = forward_property(CdcAcmFunction.serial_state)
    dcd = forward_property(CdcAcmFunction.dcd)
    dsr = forward_property(CdcAcmFunction.dsr)
    set_dcd = forward(CdcAcmFunction.set_dcd)
    set_dsr = forward(CdcAcmFunction.set_dsr)
    update_state = forward(CdcAcmFunction.update_state)
    ring = forward(CdcAcmFunction.ring)
    signal_break = forward(CdcAcmFunction.signal_break)
    report_errors = forward(CdcAcmFunction.report_errors)
    wait_notified = forward(CdcAcmFunction.wait_notified)
