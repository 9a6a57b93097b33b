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
from typing import Any, Generic, TypeVar

from vusb.devices.cdc_acm.backends import BackendSpec, SerialBackend, make_backend
from vusb.devices.cdc_acm.fifo import ByteFifo
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
from vusb.errors import DeviceDefinitionError, Stall, UsageError
from vusb.function import request
from vusb.single import Forwarded, SingleFunctionDevice, forward, forward_property
from vusb.urb import Completion, SetupPacket, Urb

log = logging.getLogger("vusb.cdc_acm")

DEFAULT_BUFFER_SIZE = 1 << 20
"""Bytes each direction may hold before the producer waits (1 MiB)."""

T = TypeVar("T")


class _Watch(Generic[T]):
    """A value that tasks can wait on: the next change, or until a condition holds."""

    def __init__(self, value: T) -> None:
        self.value = value
        self._waiters: list[asyncio.Future[T]] = []

    def publish(self, value: T) -> None:
        self.value = value
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(value)

    async def next(self) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            return await fut
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

    async def until(self, predicate: Callable[[T], bool]) -> T:
        value = self.value
        while not predicate(value):
            value = await self.next()
        return value


class CdcAcmFunction(Function):
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
        # Where bytes wait: from the host to the backend, and from the backend to the host.
        self.from_host = ByteFifo(buffer_size)
        self.to_host = ByteFifo(buffer_size)
        # State the host sets.
        self._line_coding = _Watch(line_coding or LineCoding())
        self._lines = _Watch(ControlLine.NONE)
        self._breaks = _Watch(0)
        self.break_active = False
        self.breaks = 0
        """How many breaks the host started (SEND_BREAK with a non-zero duration)."""
        self.comm_features: dict[int, int] = {CommFeature.ABSTRACT_STATE: 0, CommFeature.COUNTRY_SETTING: 0}
        self.on_line_coding: Callable[[LineCoding], None] | None = None
        self.on_control_lines: Callable[[ControlLine], None] | None = None
        self.on_break: Callable[[int], None] | None = None
        # State the device reports (SERIAL_STATE).
        self._state = (SerialState.DCD if dcd else SerialState.NONE) | (SerialState.DSR if dsr else SerialState.NONE)
        self._events = SerialState.NONE
        self._force_notify = False
        self._sent_state = SerialState.NONE
        self._notify_buf = b""
        self._notify_waiter: tuple[Urb, asyncio.Future[Completion]] | None = None
        self._notify_idle: list[asyncio.Future[None]] = []
        self._notify_scheduled = False
        # Endpoint plumbing.
        self._in_waiter: tuple[Urb, asyncio.Future[Completion]] | None = None
        self._held: tuple[bytes, asyncio.Future[Completion]] | None = None
        self._break_timer: asyncio.TimerHandle | None = None
        self.comm_interface = 0
        self.data_interface = 0
        self.notify_address = 0
        self.in_address = 0
        self.out_address = 0
        self._started = False
        self._closed = False
        self.to_host.add_data_listener(self._feed_in_waiter)
        self.from_host.add_room_listener(self._release_held)
        self.backend: SerialBackend = make_backend(backend)
        self.backend.attach(self)

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
        device.endpoint(self.notify_address).handler = self._interrupt_in
        device.endpoint(self.in_address).handler = self._bulk_in
        device.endpoint(self.out_address).handler = self._bulk_out
        device.add_attach_listener(self._attached)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the backend (open its connection, begin pumping); needs a running event loop.

        Done automatically when a host first attaches the device; call it earlier to
        have a TCP bridge listening or connected before then.
        """
        if self._closed:
            raise UsageError("the serial port is closed")
        if self._started:
            return
        asyncio.get_running_loop()  # raises RuntimeError outside a loop, before anything starts
        self._started = True
        self.backend.start()

    async def close(self) -> None:
        """Stop the backend and release what it holds (pty, sockets)."""
        if self._closed:
            return
        self._closed = True
        self._cancel_break_timer()
        await self.backend.close()

    def _attached(self, attached: bool) -> None:
        if not attached or self._started or self._closed:
            return
        try:
            self.start()
        except RuntimeError:
            pass  # attached outside an event loop: start later
        except Exception:
            log.exception("%s: the serial backend %s failed to start", self._where(), self.backend.describe())

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
        # The endpoints have cancelled their URBs; forget the futures that stood for them.
        self._in_waiter = None
        self._held = None
        self._notify_waiter = None
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

    def _set_lines(self, lines: ControlLine, *, requested: bool = True) -> None:
        old = self._lines.value
        if lines == old and not requested:
            return
        self._lines.publish(lines)
        if lines != old:
            log.debug("%s: control lines %s", self._where(), _lines_text(lines))
        self._tell(self.backend.control_lines_changed, lines)
        if self.on_control_lines is not None:
            self._tell(self.on_control_lines, lines)

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

    def _tell(self, callback: Callable[[T], None], value: T) -> None:
        try:
            callback(value)
        except Exception:
            log.exception("%s: callback %r failed", self._where(), callback)

    # ------------------------------------------------------------ state the host set
    @property
    def line_coding(self) -> LineCoding:
        """The line coding the host set last (9600 8N1 until then)."""
        return self._line_coding.value

    @property
    def control_lines(self) -> ControlLine:
        return self._lines.value

    @property
    def dtr(self) -> bool:
        """Data terminal ready: Linux raises it (with RTS) when a program opens the tty."""
        return bool(self._lines.value & ControlLine.DTR)

    @property
    def rts(self) -> bool:
        return bool(self._lines.value & ControlLine.RTS)

    async def wait_control_lines(self, predicate: Callable[[ControlLine], bool] | None = None,
                                 timeout: float | None = None) -> ControlLine:
        """Wait for the next SET_CONTROL_LINE_STATE (or until ``predicate(lines)`` holds); returns the lines."""
        if predicate is None:
            return await asyncio.wait_for(self._lines.next(), timeout)
        if predicate(self._lines.value):
            return self._lines.value
        return await asyncio.wait_for(self._lines.until(predicate), timeout)

    async def wait_dtr(self, state: bool = True, timeout: float | None = None) -> None:
        """Wait until DTR is ``state`` (returns at once if it already is)."""
        await self.wait_control_lines(lambda lines: bool(lines & ControlLine.DTR) == state, timeout)

    async def wait_rts(self, state: bool = True, timeout: float | None = None) -> None:
        await self.wait_control_lines(lambda lines: bool(lines & ControlLine.RTS) == state, timeout)

    async def wait_line_coding(self, predicate: Callable[[LineCoding], bool] | None = None,
                               timeout: float | None = None) -> LineCoding:
        """Wait for the next SET_LINE_CODING (or until ``predicate(coding)`` holds)."""
        if predicate is None:
            return await asyncio.wait_for(self._line_coding.next(), timeout)
        if predicate(self._line_coding.value):
            return self._line_coding.value
        return await asyncio.wait_for(self._line_coding.until(predicate), timeout)

    async def wait_break(self, timeout: float | None = None) -> int:
        """Wait for the next SEND_BREAK; returns its duration in ms (0xFFFF: until cleared, 0: end)."""
        return await asyncio.wait_for(self._breaks.next(), timeout)

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
            self._schedule_notify()

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
        self._schedule_notify()

    def _schedule_notify(self) -> None:
        # Deferred to the next loop turn so that changes made together coalesce.
        if self._notify_scheduled or self._notify_waiter is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._notify_scheduled = True
        loop.call_soon(self._feed_notify_waiter)

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

    def _interrupt_in(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        if self._notification_pending():
            return Completion(0, self._next_notification(urb.length))
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._notify_waiter = (urb, waiter)
        return waiter

    def _feed_notify_waiter(self) -> None:
        self._notify_scheduled = False
        entry = self._notify_waiter
        if entry is None or not self._notification_pending():
            return
        self._notify_waiter = None
        urb, waiter = entry
        if waiter.done():  # the URB was unlinked
            return
        waiter.set_result(Completion(0, self._next_notification(urb.length)))

    def _wake_notify_idle(self) -> None:
        waiters, self._notify_idle = self._notify_idle, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------ bulk data
    def _bulk_out(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        data = urb.data
        n = len(data)
        if n == 0:
            return Completion(0, b"", 0)
        if self.from_host.accepts(n):
            self.from_host.put(data)
            return Completion(0, b"", n)
        # No room: hold the URB (the host sees the endpoint NAK) until the backend catches up.
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._held = (bytes(data), waiter)
        return waiter

    def _release_held(self) -> None:
        held = self._held
        if held is None:
            return
        data, waiter = held
        if waiter.done():  # unlinked or reset meanwhile: the host never saw it accepted
            self._held = None
            return
        if not self.from_host.accepts(len(data)):
            return
        self._held = None
        waiter.set_result(Completion(0, b"", len(data)))
        self.from_host.put(data)

    def _bulk_in(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        if len(self.to_host):
            return Completion(0, self.to_host.get(urb.length))
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_waiter = (urb, waiter)
        return waiter

    def _feed_in_waiter(self) -> None:
        entry = self._in_waiter
        if entry is None:
            return
        self._in_waiter = None
        urb, waiter = entry
        if waiter.done():
            return
        waiter.set_result(Completion(0, self.to_host.get(urb.length)))

    # ------------------------------------------------------------ stream API
    def _check_readable(self) -> None:
        if self.backend.reads_host_data:
            raise UsageError(
                f"the {self.backend.describe()} backend consumes the data from the host; "
                "read() needs the port made with backend=None"
            )

    async def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes from the host (everything buffered if ``n`` < 0); waits for at least one."""
        self._check_readable()
        if n == 0:
            return b""
        await asyncio.wait_for(self.from_host.wait_data(), timeout)
        return self.from_host.get(n)

    async def readexactly(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly ``n`` bytes from the host."""
        self._check_readable()

        async def gather() -> bytes:
            parts = bytearray()
            while len(parts) < n:
                await self.from_host.wait_data()
                parts += self.from_host.get(n - len(parts))
            return bytes(parts)

        return await asyncio.wait_for(gather(), timeout)

    async def readline(self, separator: bytes = b"\n", timeout: float | None = None) -> bytes:
        """Bytes up to and including ``separator``.

        A line longer than the buffer comes back in pieces of the buffer size, so the
        host is never blocked by a reader waiting for a separator that cannot fit.
        """
        self._check_readable()
        if not separator:
            raise UsageError("readline needs a non-empty separator")

        async def line() -> bytes:
            acc = bytearray()
            scanned = 0
            while True:
                idx = acc.find(separator, max(scanned - len(separator) + 1, 0))
                if idx >= 0:
                    end = idx + len(separator)
                    self.from_host.unget(bytes(acc[end:]))
                    return bytes(acc[:end])
                if len(acc) >= self.from_host.limit:
                    return bytes(acc)
                scanned = len(acc)
                await self.from_host.wait_data()
                acc += self.from_host.get(self.from_host.limit - len(acc))

        return await asyncio.wait_for(line(), timeout)

    async def write(self, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
        """Queue bytes for the host; waits while the buffer is full (returns once all are queued)."""
        view = memoryview(bytes(data))

        async def put_all() -> None:
            pos = 0
            while pos < len(view):
                await self.to_host.wait_writable()
                n = min(self.to_host.room, len(view) - pos)
                self.to_host.put(view[pos : pos + n])
                pos += n

        await asyncio.wait_for(put_all(), timeout)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the host has taken every byte queued for it."""
        await asyncio.wait_for(self.to_host.wait_empty(), timeout)


def _lines_text(lines: ControlLine) -> str:
    return f"DTR={'on' if lines & ControlLine.DTR else 'off'} RTS={'on' if lines & ControlLine.RTS else 'off'}"


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
