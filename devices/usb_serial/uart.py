"""The serial port inside a USB-serial chip: line settings, modem lines and the byte FIFOs.

Every chip of this package (FTDI, CP210x, CH340, PL2303) has one :class:`Uart` per
port.  The chip modules turn their vendor requests into calls of the ``host_*``
methods and move bytes between their bulk endpoints and the two FIFOs; the
backends of :mod:`vusb.devices.cdc_acm` (loopback, pty, TCP, answers) serve the
other end, exactly as they serve a CDC ACM port, and Python code uses the same
API as :class:`~vusb.devices.cdc_acm.SerialPort`::

    uart = chip.port                     # or chip.ports[1] on a dual-port chip
    await uart.wait_dtr()                # a program opened /dev/ttyUSB0
    print(uart.line)                     # 115200 8N1 rts-cts (the rate the chip really makes)
    uart.set_cts(False)                  # the host sees CTS drop (TIOCMGET)
    line = await uart.readline()
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from vusb.devices.cdc_acm.backends import BackendSpec, SerialBackend, make_backend
from vusb.devices.cdc_acm.fifo import ByteFifo
from vusb.devices.cdc_acm.spec import ControlLine, LineCoding, Parity, StopBits

from vusb.errors import UsageError
from vusb.urb import Completion, Urb

log = logging.getLogger("vusb.usb_serial")

DEFAULT_BUFFER_SIZE = 1 << 20
"""Bytes each direction may hold before the producer waits (1 MiB), as for CDC ACM."""

T = TypeVar("T")

_PARITY_LETTERS = {Parity.NONE: "N", Parity.ODD: "O", Parity.EVEN: "E", Parity.MARK: "M", Parity.SPACE: "S"}
_STOP_TEXT = {StopBits.ONE: "1", StopBits.ONE_AND_HALF: "1.5", StopBits.TWO: "2"}


class FlowControl(enum.Enum):
    """Handshake the host asked the chip to do on the serial line."""

    NONE = "none"
    RTS_CTS = "rts-cts"
    DTR_DSR = "dtr-dsr"
    XON_XOFF = "xon-xoff"


class ModemStatus(enum.IntFlag):
    """The modem inputs of the chip, set by the device side and read by the host (TIOCMGET)."""

    NONE = 0
    CTS = 0x01  # clear to send
    DSR = 0x02  # data set ready
    RI = 0x04  # ring indicator
    DCD = 0x08  # data carrier detect


@dataclass(frozen=True)
class LineSettings:
    """What the host programmed into the UART.

    ``rate`` is the bit rate the chip really produces from what the host wrote (its
    divisor), not the rate the host asked for: a CP2102 asked for 100000 bps runs
    at 115200, an FT232R asked for 1000000 at exactly 1000000.
    """

    rate: int = 9600
    data_bits: int = 8
    parity: Parity = Parity.NONE
    stop_bits: StopBits = StopBits.ONE
    flow: FlowControl = FlowControl.NONE

    def __str__(self) -> str:
        text = f"{self.rate} {self.data_bits}{_PARITY_LETTERS[self.parity]}{_STOP_TEXT[self.stop_bits]}"
        return text if self.flow == FlowControl.NONE else f"{text} {self.flow.value}"

    def line_coding(self) -> LineCoding:
        """The same settings as a CDC line coding (what backends such as the pty follow)."""
        return LineCoding(max(self.rate, 1), self.data_bits, self.parity, self.stop_bits)


class Change(enum.Enum):
    """What changed, as told to :attr:`Uart.on_change`."""

    LINE = "line"  # the host set rate, framing or flow control
    CONTROL_LINES = "control-lines"  # the host set DTR or RTS
    BREAK = "break"  # the host started or ended a break
    MODEM = "modem"  # the device side set CTS, DSR, RI or DCD


class _Watch(Generic[T]):
    """A value tasks can wait on: the next change, or until a condition holds."""

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

    async def wait(self, predicate: Callable[[T], bool] | None, timeout: float | None) -> T:
        if predicate is None:
            return await asyncio.wait_for(self.next(), timeout)

        async def until() -> T:
            value = self.value
            while not predicate(value):
                value = await self.next()
            return value

        if predicate(self.value):
            return self.value
        return await asyncio.wait_for(until(), timeout)


class Uart:
    """One serial port of a USB-serial chip.

    ``backend`` is what :class:`~vusb.devices.cdc_acm.SerialPort` takes: ``"loopback"``,
    ``"pty"``, a :class:`~vusb.devices.cdc_acm.SerialBackend` instance, or None for
    Python code reading and writing with :meth:`read` and :meth:`write`.

    The modem inputs start as a ready peer shows them: CTS and DSR asserted, DCD and
    RI not (``cts=``, ``dsr=``, ``dcd=``, ``ri=`` change that).
    """

    def __init__(self, backend: BackendSpec = None, *, name: str = "port", buffer_size: int = DEFAULT_BUFFER_SIZE,
                 cts: bool = True, dsr: bool = True, dcd: bool = False, ri: bool = False) -> None:
        self.name = name
        self.from_host = ByteFifo(buffer_size)
        self.to_host = ByteFifo(buffer_size)
        self._line = _Watch(LineSettings())
        self._lines = _Watch(ControlLine.NONE)
        self._breaks = _Watch(False)
        self._modem_watch = _Watch(ModemStatus.NONE)
        self.break_active = False
        self.breaks = 0
        """How many breaks the host started."""
        self.enabled = True
        """False while the host has the UART disabled (CP210x IFC_ENABLE 0)."""
        self.on_change: Callable[[Uart, Change], None] | None = None
        """Called after every change of what :class:`Change` lists."""
        self.on_line_settings: Callable[[LineSettings], None] | None = None
        self.on_control_lines: Callable[[ControlLine], None] | None = None
        self.on_break: Callable[[bool], None] | None = None
        self._modem = ModemStatus.NONE
        for bit, on in ((ModemStatus.CTS, cts), (ModemStatus.DSR, dsr), (ModemStatus.DCD, dcd), (ModemStatus.RI, ri)):
            if on:
                self._modem |= bit
        self._modem_watch.value = self._modem
        self._modem_listeners: list[Callable[[], None]] = []
        self._in_waiter: tuple[Urb, asyncio.Future[Completion]] | None = None
        self._held: tuple[bytes, asyncio.Future[Completion]] | None = None
        self._started = False
        self._closed = False
        self.where = name
        """How log messages name this port (the chip sets it to "device ... port A")."""
        self.in_transform: Callable[[bytes], bytes] | None = None
        self.from_host.add_room_listener(self._release_held)
        self.to_host.add_data_listener(self._feed_in_waiter)
        self.backend: SerialBackend = make_backend(backend)
        self.backend.attach(self)

    def __repr__(self) -> str:
        return f"<Uart {self.name} {self.line} {self.modem_text()}>"

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the backend; done automatically when a host first attaches the chip."""
        if self._closed:
            raise UsageError(f"serial port {self.name} is closed")
        if self._started:
            return
        asyncio.get_running_loop()
        self._started = True
        self.backend.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.backend.close()

    def attached(self, attached: bool) -> None:
        if not attached or self._started or self._closed:
            return
        try:
            self.start()
        except RuntimeError:
            pass  # outside an event loop: started later
        except Exception:
            log.exception("%s: the serial backend %s failed to start", self.where, self.backend.describe())

    def drop_urbs(self) -> None:
        """The endpoints cancelled their URBs (reset, deconfiguration): forget them."""
        self._in_waiter = None
        self._held = None

    def host_gone(self) -> None:
        """The host deconfigured or reset the chip: its outputs fall, a break ends."""
        self.drop_urbs()
        self.host_set_control_lines(ControlLine.NONE, quiet_if_same=True)
        if self.break_active:
            self.host_set_break(False)

    # ------------------------------------------------------------ what the host sets
    @property
    def line(self) -> LineSettings:
        """Rate (as the chip really makes it), framing and flow control the host set."""
        return self._line.value

    @property
    def line_coding(self) -> LineCoding:
        """:attr:`line` as a CDC line coding, for code written for :class:`SerialPort`."""
        return self._line.value.line_coding()

    @property
    def control_lines(self) -> ControlLine:
        return self._lines.value

    @property
    def dtr(self) -> bool:
        return bool(self._lines.value & ControlLine.DTR)

    @property
    def rts(self) -> bool:
        return bool(self._lines.value & ControlLine.RTS)

    def host_set_line(self, **changes: object) -> LineSettings:
        """The chip decoded a request changing these fields of :attr:`line`."""
        new = replace(self._line.value, **changes)  # type: ignore[arg-type]
        if new == self._line.value:
            return new
        log.debug("%s: line %s", self.where, new)
        self._line.publish(new)
        self._tell(self.backend.line_coding_changed, new.line_coding())
        if self.on_line_settings is not None:
            self._tell(self.on_line_settings, new)
        self._changed(Change.LINE)
        return new

    def host_set_control_lines(self, lines: ControlLine, *, quiet_if_same: bool = False) -> None:
        old = self._lines.value
        if lines == old and quiet_if_same:
            return
        self._lines.publish(lines)
        if lines != old:
            log.debug("%s: DTR=%s RTS=%s", self.where, "on" if lines & ControlLine.DTR else "off",
                      "on" if lines & ControlLine.RTS else "off")
        self._tell(self.backend.control_lines_changed, lines)
        if self.on_control_lines is not None:
            self._tell(self.on_control_lines, lines)
        self._changed(Change.CONTROL_LINES)
        self._release_held()

    def host_set_dtr_rts(self, *, dtr: bool | None = None, rts: bool | None = None) -> None:
        lines = self._lines.value
        if dtr is not None:
            lines = (lines | ControlLine.DTR) if dtr else (lines & ~ControlLine.DTR)
        if rts is not None:
            lines = (lines | ControlLine.RTS) if rts else (lines & ~ControlLine.RTS)
        self.host_set_control_lines(lines)

    def host_set_break(self, on: bool) -> None:
        if on == self.break_active:
            return
        self.break_active = on
        if on:
            self.breaks += 1
        log.debug("%s: break %s", self.where, "on" if on else "off")
        self._breaks.publish(on)
        self._tell(self.backend.break_requested, 0xFFFF if on else 0)
        if self.on_break is not None:
            self._tell(self.on_break, on)
        self._changed(Change.BREAK)

    def purge(self, *, to_host: bool, from_host: bool) -> None:
        """The host cleared the chip's buffers: bytes not yet delivered are dropped, as on the chip."""
        if to_host:
            dropped = self.to_host.clear()
            if dropped:
                log.debug("%s: purge dropped %d bytes waiting for the host", self.where, dropped)
        if from_host:
            dropped = self.from_host.clear()
            if dropped:
                log.debug("%s: purge dropped %d bytes from the host", self.where, dropped)

    async def wait_line_settings(self, predicate: Callable[[LineSettings], bool] | None = None,
                                 timeout: float | None = None) -> LineSettings:
        """Wait for the next change of :attr:`line` (or until ``predicate(line)`` holds)."""
        return await self._line.wait(predicate, timeout)

    async def wait_line_coding(self, predicate: Callable[[LineCoding], bool] | None = None,
                               timeout: float | None = None) -> LineCoding:
        """As :meth:`wait_line_settings`, with the settings as a CDC line coding."""
        test = None if predicate is None else (lambda s: predicate(s.line_coding()))
        return (await self._line.wait(test, timeout)).line_coding()

    async def wait_control_lines(self, predicate: Callable[[ControlLine], bool] | None = None,
                                 timeout: float | None = None) -> ControlLine:
        return await self._lines.wait(predicate, timeout)

    async def wait_dtr(self, state: bool = True, timeout: float | None = None) -> None:
        """Wait until DTR is ``state``: Linux raises DTR and RTS when a program opens the tty."""
        await self._lines.wait(lambda lines: bool(lines & ControlLine.DTR) == state, timeout)

    async def wait_rts(self, state: bool = True, timeout: float | None = None) -> None:
        await self._lines.wait(lambda lines: bool(lines & ControlLine.RTS) == state, timeout)

    async def wait_break(self, state: bool = True, timeout: float | None = None) -> None:
        await self._breaks.wait(lambda on: on == state, timeout)

    # ------------------------------------------------------------ what the device sets
    @property
    def modem(self) -> ModemStatus:
        """The modem inputs (CTS, DSR, RI, DCD) the chip reports to the host."""
        return self._modem

    @property
    def cts(self) -> bool:
        return bool(self._modem & ModemStatus.CTS)

    @property
    def dsr(self) -> bool:
        return bool(self._modem & ModemStatus.DSR)

    @property
    def ri(self) -> bool:
        return bool(self._modem & ModemStatus.RI)

    @property
    def dcd(self) -> bool:
        return bool(self._modem & ModemStatus.DCD)

    def set_cts(self, on: bool) -> None:
        self.update_modem(cts=on)

    def set_dsr(self, on: bool) -> None:
        self.update_modem(dsr=on)

    def set_ri(self, on: bool) -> None:
        self.update_modem(ri=on)

    def set_dcd(self, on: bool) -> None:
        self.update_modem(dcd=on)

    def update_modem(self, *, cts: bool | None = None, dsr: bool | None = None, ri: bool | None = None,
                     dcd: bool | None = None) -> None:
        """Change several modem inputs at once (the host is told once)."""
        new = self._modem
        for bit, on in ((ModemStatus.CTS, cts), (ModemStatus.DSR, dsr), (ModemStatus.RI, ri), (ModemStatus.DCD, dcd)):
            if on is not None:
                new = (new | bit) if on else (new & ~bit)
        if new == self._modem:
            return
        self._modem = new
        log.debug("%s: modem inputs %s", self.where, self.modem_text())
        self._modem_watch.publish(new)
        for listener in list(self._modem_listeners):
            try:
                listener()
            except Exception:
                log.exception("%s: modem listener %r failed", self.where, listener)
        self._changed(Change.MODEM)
        self._release_held()

    def update_state(self, *, dcd: bool | None = None, dsr: bool | None = None) -> None:
        """What backends call (the TCP bridge reports its connection as DCD and DSR)."""
        self.update_modem(dcd=dcd, dsr=dsr)

    def add_modem_listener(self, listener: Callable[[], None]) -> None:
        """Chips register here to tell the host about a modem change (status bytes, interrupt packet)."""
        self._modem_listeners.append(listener)

    def modem_text(self) -> str:
        parts = [name for name, on in (("DTR", self.dtr), ("RTS", self.rts), ("CTS", self.cts), ("DSR", self.dsr),
                                       ("RI", self.ri), ("DCD", self.dcd)) if on]
        return "+".join(parts) or "no lines"

    # ------------------------------------------------------------ bulk data
    def _may_send(self) -> bool:
        # With RTS/CTS handshake the chip stops transmitting while CTS is off (DSR likewise for DTR/DSR).
        flow = self._line.value.flow
        if flow == FlowControl.RTS_CTS:
            return self.cts
        if flow == FlowControl.DTR_DSR:
            return self.dsr
        return True

    def bulk_out(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        """Bytes from the host.  With no room (or with the handshake holding it) the URB waits: the host sees NAKs."""
        data = urb.data
        n = len(data)
        if n == 0:
            return Completion(0, b"", 0)
        if self._may_send() and self.from_host.accepts(n):
            self.from_host.put(data)
            return Completion(0, b"", n)
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._held = (bytes(data), waiter)
        return waiter

    def _release_held(self) -> None:
        held = self._held
        if held is None:
            return
        data, waiter = held
        if waiter.done():
            self._held = None
            return
        if not self._may_send() or not self.from_host.accepts(len(data)):
            return
        self._held = None
        waiter.set_result(Completion(0, b"", len(data)))
        self.from_host.put(data)

    def bulk_in_raw(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        """Bytes for the host as they are (CP210x, CH340, PL2303); an IN URB with none waits.

        :attr:`in_transform`, when set, rewrites each piece on its way (CP210x event escapes).
        """
        if len(self.to_host):
            return Completion(0, self._take(urb.length))
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._in_waiter = (urb, waiter)
        return waiter

    def _take(self, n: int) -> bytes:
        data = self.to_host.get(n)
        return data if self.in_transform is None else self.in_transform(data)

    def _feed_in_waiter(self) -> None:
        entry = self._in_waiter
        if entry is None or not len(self.to_host):
            return
        self._in_waiter = None
        urb, waiter = entry
        if waiter.done():
            return
        waiter.set_result(Completion(0, self._take(urb.length)))

    # ------------------------------------------------------------ stream API (as SerialPort)
    def _check_readable(self) -> None:
        if self.backend.reads_host_data:
            raise UsageError(f"the {self.backend.describe()} backend consumes the data from the host; "
                             "read() needs the port made with backend=None")

    async def read(self, n: int = -1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes from the host (all buffered if ``n`` < 0); waits for at least one."""
        self._check_readable()
        if n == 0:
            return b""
        await asyncio.wait_for(self.from_host.wait_data(), timeout)
        return self.from_host.get(n)

    async def readexactly(self, n: int, timeout: float | None = None) -> bytes:
        self._check_readable()

        async def gather() -> bytes:
            parts = bytearray()
            while len(parts) < n:
                await self.from_host.wait_data()
                parts += self.from_host.get(n - len(parts))
            return bytes(parts)

        return await asyncio.wait_for(gather(), timeout)

    async def readline(self, separator: bytes = b"\n", timeout: float | None = None) -> bytes:
        """Bytes up to and including ``separator`` (a line longer than the buffer comes in pieces)."""
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
        """Queue bytes for the host; waits while the buffer is full."""
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

    # ------------------------------------------------------------ helpers
    def _changed(self, what: Change) -> None:
        callback = self.on_change
        if callback is not None:
            try:
                callback(self, what)
            except Exception:
                log.exception("%s: on_change callback %r failed", self.where, callback)

    def _tell(self, callback: Callable[[T], None], value: T) -> None:
        try:
            callback(value)
        except Exception:
            log.exception("%s: callback %r failed", self.where, callback)
