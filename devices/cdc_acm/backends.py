"""Where a serial port's bytes go: the other end of the virtual cable.

A backend moves bytes between the port's two FIFOs (``from_host`` and
``to_host``) and something else, and never drops any: it takes from
``from_host`` only what it can pass on, and puts into ``to_host`` only while
there is room, so a slow side throttles the fast one.

=============  ==============================================================
none           Python code reads and writes (``port.read()``, ``port.write()``)
loopback       everything the host sends comes back to it
pty            a pseudo-terminal on this machine; any program opens its path
tcp            a TCP connection: connect to ``host:port``, or listen on it
=============  ==============================================================

Write your own by subclassing :class:`SerialBackend`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import socket
import termios
import tty
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Protocol, Union

from vusb.devices.cdc_acm.fifo import ByteFifo
from vusb.devices.cdc_acm.spec import ControlLine, LineCoding, Parity, StopBits

from vusb.errors import UsageError

log = logging.getLogger("vusb.cdc_acm")

BackendSpec = Union["SerialBackend", str, None]
"""What a port accepts as its backend: an instance, ``"none"``/None, ``"loopback"`` or ``"pty"``."""

CHUNK = 64 * 1024
"""Most bytes moved in one read or write system call."""


class SerialPortCore(Protocol):
    """What a backend needs of the port it serves: the two FIFOs and the carrier it may report.

    :class:`~vusb.devices.cdc_acm.CdcAcmFunction` is one; the USB-serial chips of
    :mod:`vusb.devices.usb_serial` are others, so every backend serves both.
    """

    from_host: ByteFifo
    to_host: ByteFifo

    def update_state(self, *, dcd: bool | None = None, dsr: bool | None = None) -> None: ...


class SerialBackend:
    """The other end of a serial port.  Subclasses override :meth:`start` and :meth:`close`.

    :meth:`start` is called once, inside the running event loop, when the device is
    first attached (or when the program calls ``port.start()``).  The hooks tell the
    backend what the host set; they run inside request handling and must not block.
    """

    kind: ClassVar[str] = "custom"
    reads_host_data: ClassVar[bool] = True
    """True if the backend consumes the bytes from the host (``port.read()`` is then refused)."""

    def __init__(self) -> None:
        self.port: SerialPortCore | None = None

    def attach(self, port: SerialPortCore) -> None:
        if self.port is not None and self.port is not port:
            raise UsageError(f"this {self.kind} backend already serves another serial port")
        self.port = port

    @property
    def acm(self) -> SerialPortCore:
        if self.port is None:
            raise UsageError(f"the {self.kind} backend is not attached to a serial port")
        return self.port

    def start(self) -> None:
        """Begin moving bytes (called once, in the event loop)."""

    async def close(self) -> None:
        """Stop and release what the backend holds."""

    def line_coding_changed(self, coding: LineCoding) -> None:
        """The host set the line coding (baud rate, framing)."""

    def control_lines_changed(self, lines: ControlLine) -> None:
        """The host set DTR/RTS."""

    def break_requested(self, duration_ms: int) -> None:
        """The host asked for a break (0xFFFF: until a request with 0 ends it)."""

    def describe(self) -> str:
        return self.kind


class NullBackend(SerialBackend):
    """No backend: the program reads what the host sends and writes what it should receive."""

    kind = "none"
    reads_host_data = False


class PumpedBackend(SerialBackend):
    """A backend that moves bytes whenever the host sends data or makes room.

    Subclasses implement :meth:`_move`. Moving bytes calls the listeners again (an IN
    URB takes them at once, a held OUT URB is released): the outer call's loop picks
    that up, so nested calls return at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._busy = False

    def start(self) -> None:
        port = self.acm
        port.from_host.add_data_listener(self._pump)
        port.to_host.add_room_listener(self._pump)
        self._pump()

    async def close(self) -> None:
        if self.port is not None:
            self.port.from_host.remove_listener(self._pump)
            self.port.to_host.remove_listener(self._pump)

    def _pump(self) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            self._move()
        finally:
            self._busy = False

    def _move(self) -> None:
        raise NotImplementedError


class LoopbackBackend(PumpedBackend):
    """Echo: every byte from the host is sent back to it, in order, with backpressure."""

    kind = "loopback"

    def _move(self) -> None:
        src, dst = self.acm.from_host, self.acm.to_host
        while True:
            n = min(len(src), dst.room)
            if n <= 0:
                break
            dst.put(src.get(n))


class AnswerRuleError(UsageError):
    """A rule of :class:`AnswerBackend` that cannot be used; ``part`` is "match", "reply" or "unmatched"."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


def _line_bytes(part: str, text: str) -> bytes:
    """Text of a rule as the bytes on the line: one byte per character, U+0000..U+00FF."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise AnswerRuleError(part, f"character {text[exc.start]!r} (U+{ord(text[exc.start]):04X}) at position "
                              f"{exc.start} is not one byte: the serial line carries bytes, so only characters "
                              "U+0000..U+00FF can be used (\\xHH for any byte)") from None


def compile_answer(pattern: str, reply: str) -> tuple[re.Pattern[bytes], bytes]:
    """One answering rule as :class:`AnswerBackend` uses it: a bytes regular expression and its reply template.

    Raises :class:`AnswerRuleError` naming the part that is wrong (characters beyond one byte,
    an invalid expression, a reply template referring to groups the expression lacks).
    """
    try:
        compiled = re.compile(_line_bytes("match", pattern))
    except re.error as exc:
        raise AnswerRuleError("match", f"invalid regular expression: {exc}") from None
    template = _line_bytes("reply", reply)
    try:
        compiled.sub(template, b"")  # parses the reply template against the pattern's groups
    except re.error as exc:
        raise AnswerRuleError("reply", f"invalid reply template: {exc}") from None
    return compiled, template


def compile_unmatched(text: str | None) -> bytes | None:
    """The reply of :class:`AnswerBackend` to a line no rule matches, as bytes (AnswerRuleError if not one byte)."""
    return _line_bytes("unmatched", text) if text is not None else None


class AnswerBackend(PumpedBackend):
    """Answers lines from the host that match patterns, like a scripted modem or instrument.

    Each line (ended by CR or LF) is tried against the rules in order; the first regular
    expression that matches (``re.fullmatch`` on the line without its terminator) sends
    its reply, with ``\\1``-style group references expanded. Lines that match nothing get
    ``unmatched`` if given. With ``echo`` the host's bytes are echoed first, as a modem
    in command mode does. Lines longer than ``max_line`` bytes are discarded.
    """

    kind = "answers"

    def __init__(self, rules: Sequence[tuple[str, str]], *, unmatched: str | None = None, echo: bool = False,
                 max_line: int = 4096) -> None:
        super().__init__()
        self.rules = [compile_answer(pattern, reply) for pattern, reply in rules]
        self.unmatched = compile_unmatched(unmatched)
        self.echo = echo
        self.max_line = max_line
        self._line = bytearray()
        self._out = bytearray()
        self._overlong = False

    def answer(self, line: bytes) -> bytes | None:
        """The reply to one line (without its terminator), or None."""
        for pattern, reply in self.rules:
            match = pattern.fullmatch(line)
            if match is not None:
                return match.expand(reply)
        return self.unmatched

    def _move(self) -> None:
        src, dst = self.acm.from_host, self.acm.to_host
        while True:
            while len(src) and len(self._out) < self.max_line * 4:  # a slow host holds the sender back
                self._consume(src.get(len(src)))
            n = min(len(self._out), dst.room)
            if n <= 0:
                break
            chunk = bytes(self._out[:n])
            del self._out[:n]
            dst.put(chunk)

    def _consume(self, data: bytes) -> None:
        if self.echo:
            self._out += data
        for byte in data:
            if byte in (0x0A, 0x0D):
                if self._line and not self._overlong:
                    reply = self.answer(bytes(self._line))
                    if reply:
                        self._out += reply
                self._line.clear()
                self._overlong = False
            elif len(self._line) < self.max_line:
                self._line.append(byte)
            else:
                self._overlong = True


# ------------------------------------------------------------------ pseudo-terminal

_CSIZE = {5: termios.CS5, 6: termios.CS6, 7: termios.CS7, 8: termios.CS8, 16: termios.CS8}
_CMSPAR = getattr(termios, "CMSPAR", 0)


def _release_pty(master: int, slave: int, link: str | None, path: str) -> None:
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass
    if link is not None:
        try:
            if os.path.islink(link) and os.readlink(link) == path:
                os.unlink(link)
        except OSError:
            pass


def _make_link(link: Path, target: str) -> None:
    if link.exists() and not link.is_symlink():
        raise UsageError(f"{link} exists and is not a symbolic link; refusing to replace it with the pty link")
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, link)


class PtyBackend(SerialBackend):
    """A pseudo-terminal on the server's machine: the USB host's tty and this one are the two ends of a cable.

    Bytes from the USB host are written to the pty master and come out of
    :attr:`path` (``/dev/pts/N``); bytes any program writes to :attr:`path` go to
    the USB host.  The slave is in raw mode (no echo, no line editing).  With
    ``link`` a symbolic link to the slave is made (and removed on close), so
    programs can use a fixed name.  The line coding the host sets is copied to the
    pty's termios (``stty -F PATH`` shows the host's baud rate and framing) unless
    ``follow_line_coding`` is False.

    The pty is opened at once; the backend keeps the slave open so that nothing is
    lost while no program has it open (the kernel buffers a few KiB, then the USB
    host's writes wait).
    """

    kind = "pty"

    def __init__(self, link: str | os.PathLike[str] | None = None, *, follow_line_coding: bool = True) -> None:
        super().__init__()
        self.follow_line_coding = follow_line_coding
        master, slave = os.openpty()
        try:
            tty.setraw(slave, termios.TCSANOW)
            os.set_blocking(master, False)
            self.path = os.ttyname(slave)
            self.link = Path(link) if link is not None else None
            if self.link is not None:
                _make_link(self.link, self.path)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self.master = master
        self.slave = slave
        self._finalizer = weakref.finalize(self, _release_pty, master, slave,
                                           str(self.link) if self.link is not None else None, self.path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._write_blocked = False
        self._writing = False
        self._closed = False

    def describe(self) -> str:
        return f"pty {self.path}" + (f" (link {self.link})" if self.link is not None else "")

    def start(self) -> None:
        port = self.acm
        self._loop = asyncio.get_running_loop()
        port.from_host.add_data_listener(self._write_out)
        port.to_host.add_room_listener(self._resume_reading)
        log.info("serial port %s", self.describe())
        self._resume_reading()
        self._write_out()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.master)
            self._loop.remove_writer(self.master)
        if self.port is not None:
            self.port.from_host.remove_listener(self._write_out)
            self.port.to_host.remove_listener(self._resume_reading)
        self._finalizer()

    # -- pty -> USB host
    def _resume_reading(self) -> None:
        if self._reading or self._closed or self._loop is None or self.acm.to_host.room <= 0:
            return
        self._reading = True
        self._loop.add_reader(self.master, self._on_readable)

    def _pause_reading(self) -> None:
        if self._reading and self._loop is not None:
            self._reading = False
            self._loop.remove_reader(self.master)

    def _on_readable(self) -> None:
        fifo = self.acm.to_host
        room = fifo.room
        if room <= 0:
            self._pause_reading()
            return
        try:
            data = os.read(self.master, min(room, CHUNK))
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: cannot happen while we hold it, but do not spin
                self._pause_reading()
                return
            raise
        if data:
            fifo.put(data)
        if fifo.room <= 0:
            self._pause_reading()

    # -- USB host -> pty
    def _write_out(self) -> None:
        if self._writing or self._write_blocked or self._closed or self._loop is None:
            return
        self._writing = True
        try:
            fifo = self.acm.from_host
            while True:
                chunk = fifo.peek()
                if not chunk:
                    break
                try:
                    n = os.write(self.master, chunk[:CHUNK])
                except BlockingIOError:
                    self._write_blocked = True
                    self._loop.add_writer(self.master, self._on_writable)
                    break
                fifo.skip(n)
        finally:
            self._writing = False

    def _on_writable(self) -> None:
        if self._loop is not None:
            self._loop.remove_writer(self.master)
        self._write_blocked = False
        self._write_out()

    # -- line settings
    def line_coding_changed(self, coding: LineCoding) -> None:
        if not self.follow_line_coding or self._closed:
            return
        try:
            attrs = termios.tcgetattr(self.slave)
        except termios.error:
            return
        cflag = attrs[2] & ~(termios.CSIZE | termios.PARENB | termios.PARODD | _CMSPAR | termios.CSTOPB)
        cflag |= _CSIZE[coding.data_bits]
        if coding.parity != Parity.NONE:
            cflag |= termios.PARENB
            if coding.parity in (Parity.ODD, Parity.MARK):
                cflag |= termios.PARODD
            if coding.parity in (Parity.MARK, Parity.SPACE):
                cflag |= _CMSPAR
        if coding.stop_bits != StopBits.ONE:
            cflag |= termios.CSTOPB
        attrs[2] = cflag
        speed = getattr(termios, f"B{coding.rate}", None)
        if isinstance(speed, int):
            attrs[4] = attrs[5] = speed
        try:
            termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        except termios.error as exc:
            log.debug("pty %s: cannot apply line coding %s: %s", self.path, coding, exc)


# ------------------------------------------------------------------ TCP bridge


class TcpBackend(SerialBackend):
    """A TCP bridge: the serial bytes flow over one TCP connection.

    By default it connects to ``host:port`` (and reconnects after
    ``reconnect_delay`` seconds when the connection fails or ends).  With
    ``listen=True`` it listens on ``host:port`` (port 0: any free port, see
    :attr:`bound_port`) and serves one client at a time; further clients are
    refused while one is connected.

    With ``carrier`` (default) the port reports DCD and DSR on while a TCP peer is
    connected, as a modem reports its carrier.
    """

    kind = "tcp"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, listen: bool = False,
                 reconnect_delay: float = 1.0, carrier: bool = True) -> None:
        super().__init__()
        if not 0 <= port <= 0xFFFF:
            raise UsageError(f"TCP port {port} is out of range 0..65535")
        if not listen and port == 0:
            raise UsageError("a TCP bridge that connects needs the port to connect to")
        self.host = host
        self.port_number = port
        self.listen = listen
        self.reconnect_delay = reconnect_delay
        self.carrier = carrier
        self.bound_port: int | None = None
        """The port listened on (after :meth:`start`, with ``listen=True``)."""
        self.connected = False
        self.connections = 0
        """How many TCP connections were served so far."""
        self._task: asyncio.Task[None] | None = None
        self._session: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._connected_waiters: list[asyncio.Future[None]] = []
        self._closed = False

    def describe(self) -> str:
        if self.listen:
            return f"tcp listening on {self.host}:{self.bound_port if self.bound_port is not None else self.port_number}"
        return f"tcp to {self.host}:{self.port_number}"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.listen:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.create_server((self.host, self.port_number), family=family)
            sock.setblocking(False)
            self._sock = sock
            self.bound_port = sock.getsockname()[1]
            self._task = loop.create_task(self._serve_listener(sock))
        else:
            self._task = loop.create_task(self._connect_loop())
        log.info("serial port %s", self.describe())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._task, self._session) if t is not None]
        for task in tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a TCP peer is connected."""
        async def connected() -> None:
            while not self.connected:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._connected_waiters.append(fut)
                await fut
        await asyncio.wait_for(connected(), timeout)

    # -- connection management
    async def _serve_listener(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._on_client, sock=sock)
        await self._server.serve_forever()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._session is not None or self._closed:
            log.info("serial %s: refusing %s, a client is already connected", self.describe(), peer)
            writer.close()
            return
        log.info("serial %s: client %s connected", self.describe(), peer)
        await self._serve(reader, writer)
        log.info("serial %s: client %s left", self.describe(), peer)

    async def _connect_loop(self) -> None:
        failures = 0
        while not self._closed:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port_number)
            except OSError as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "serial %s: cannot connect (%s); retrying every %.1f s", self.describe(),
                        exc.strerror or exc, self.reconnect_delay)
                await asyncio.sleep(self.reconnect_delay)
                continue
            failures = 0
            log.info("serial %s: connected", self.describe())
            await self._serve(reader, writer)
            log.info("serial %s: connection ended", self.describe())
            await asyncio.sleep(self.reconnect_delay)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._session = asyncio.current_task()
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._set_connected(True)
        up = asyncio.ensure_future(self._socket_to_host(reader))
        down = asyncio.ensure_future(self._host_to_socket(writer))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
            down.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass
            self._session = None
            self._set_connected(False)

    def _set_connected(self, on: bool) -> None:
        self.connected = on
        if self.carrier and self.port is not None:
            self.port.update_state(dcd=on, dsr=on)
        if on:
            waiters, self._connected_waiters = self._connected_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def _socket_to_host(self, reader: asyncio.StreamReader) -> None:
        fifo = self.acm.to_host
        while True:
            await fifo.wait_writable()
            data = await reader.read(min(max(fifo.room, 1), CHUNK))
            if not data:
                return
            fifo.put(data)

    async def _host_to_socket(self, writer: asyncio.StreamWriter) -> None:
        fifo = self.acm.from_host
        while True:
            await fifo.wait_data()
            writer.write(fifo.get(CHUNK))
            await writer.drain()


def make_backend(spec: BackendSpec) -> SerialBackend:
    """A backend from what a port was given: an instance, None/"none", "loopback" or "pty"."""
    if isinstance(spec, SerialBackend):
        return spec
    if spec is None or spec == "none":
        return NullBackend()
    if spec == "loopback":
        return LoopbackBackend()
    if spec == "pty":
        return PtyBackend()
    if spec == "tcp":
        raise UsageError("the tcp backend needs an address: pass TcpBackend(host, port) or TcpBackend(host, port, listen=True)")
    raise UsageError(f"unknown serial backend {spec!r}: expected 'none', 'loopback', 'pty' or a SerialBackend")
