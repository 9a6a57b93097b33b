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

import enum
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from vusb.devices.cdc_acm.backends import BackendSpec
from vusb.devices.cdc_acm.port import BytePort, WaitingIn, Watch
from vusb.devices.cdc_acm.spec import ControlLine, LineCoding, Parity, StopBits

log = logging.getLogger("vusb.usb_serial")

DEFAULT_BUFFER_SIZE = 1 << 20
"""Bytes each direction may hold before the producer waits (1 MiB), as for CDC ACM."""

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


class Uart(BytePort):
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
        self._line = Watch(LineSettings())
        self._breaks = Watch(False)
        self._modem_watch = Watch(ModemStatus.NONE)
        self.break_active = False
        self.breaks = 0
        """How many breaks the host started."""
        self.enabled = True
        """False while the host has the UART disabled (CP210x IFC_ENABLE 0)."""
        self.on_change: Callable[[Uart, Change], None] | None = None
        """Called after every change of what :class:`Change` lists."""
        self.on_line_settings: Callable[[LineSettings], None] | None = None
        self.on_break: Callable[[bool], None] | None = None
        self._modem = ModemStatus.NONE
        for bit, on in ((ModemStatus.CTS, cts), (ModemStatus.DSR, dsr), (ModemStatus.DCD, dcd), (ModemStatus.RI, ri)):
            if on:
                self._modem |= bit
        self._modem_watch.value = self._modem
        self._modem_listeners: list[Callable[[], None]] = []
        self.where = name
        """How log messages name this port (the chip sets it to "device ... port A")."""
        self.in_transform: Callable[[bytes], bytes] | None = None
        self._init_port(backend, buffer_size)

    def __repr__(self) -> str:
        return f"<Uart {self.name} {self.line} {self.modem_text()}>"

    # ------------------------------------------------------------ lifecycle
    def _where(self) -> str:
        return self.where

    def _noun(self) -> str:
        return f"serial port {self.name}"

    attached = BytePort._attached
    """The chip's attach listener: the first attach starts the backend."""
    drop_urbs = BytePort._drop_urbs
    """The endpoints cancelled their URBs (reset, deconfiguration): forget them."""

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
        if self._set_lines(lines, requested=not quiet_if_same):
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

    bulk_out = BytePort._bulk_out
    """The bulk OUT handler: bytes from the host (held while the FIFO is full or the handshake stops them)."""
    bulk_in_raw = BytePort._bulk_in
    """The bulk IN handler for chips that send the bytes as they are (CP210x, CH340, PL2303).

    :attr:`in_transform`, when set, rewrites each piece on its way (CP210x event escapes).
    """

    def _take(self, n: int) -> bytes:
        data = self.to_host.get(n)
        return data if self.in_transform is None else self.in_transform(data)

    # ------------------------------------------------------------ helpers
    def _changed(self, what: Change) -> None:
        if self.on_change is not None:
            self._tell(functools.partial(self.on_change, self), what)


class ModemStatusInterrupt(WaitingIn):
    """A chip's interrupt IN endpoint that reports its modem-status word each time it changes (CH340, PL2303).

    ``status()`` is the word as the chip encodes it now, ``packet(status)`` the interrupt
    packet that carries it.  An IN URB gets a packet at once when the word differs from
    the last one sent, and otherwise waits until :meth:`changed` (called on every modem
    change of ``uart``, and by the chip when its own part of the word changes) finds it
    different.
    """

    def __init__(self, uart: Uart, status: Callable[[], int], packet: Callable[[int], bytes]) -> None:
        super().__init__(lambda: status() != self._sent, self._send)
        self._status = status
        self._packet = packet
        self._sent = -1
        uart.add_modem_listener(self.changed)

    def reset(self) -> None:
        """The host reset or (de)configured the chip: its URB is gone, the next one gets the word again."""
        self.drop()
        self._sent = -1

    def changed(self) -> None:
        """The word may have changed: a waiting URB gets it if it did."""
        self.feed()

    def _send(self, length: int) -> bytes:
        self._sent = self._status()
        return self._packet(self._sent)[:length]
