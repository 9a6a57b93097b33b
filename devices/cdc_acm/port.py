"""What every byte-stream port shares: its backend's life, the bulk plumbing and the Python stream API.

A CDC ACM function (:class:`~vusb.devices.cdc_acm.CdcAcmFunction`) and each serial
port of a USB-serial chip (:class:`~vusb.devices.usb_serial.Uart`) are the same thing
seen from Python: two :class:`~vusb.devices.cdc_acm.fifo.ByteFifo` (from the host, to
the host), a backend at the other end, DTR and RTS set by the host, and
``read``/``readline``/``write``/``flush``/``wait_dtr``.  They differ in how the host
sets the line (class requests or vendor requests) and how the device reports its
modem inputs, which stay in their own classes.

* :class:`Watch`: a value tasks wait on (the next change, or until a condition holds);
* :class:`BackendLifecycle`: start the backend on the first attach, close it once,
  and tell callbacks without letting their errors reach the host (the network
  functions use it too);
* :class:`BytePort`: the FIFOs, the bulk endpoints' handlers (an OUT URB waits while
  there is no room: the host sees NAKs; an IN URB waits for bytes), the control lines
  and the stream API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from vusb.devices.cdc_acm.backends import BackendSpec, SerialBackend, make_backend
from vusb.devices.cdc_acm.fifo import ByteFifo
from vusb.devices.cdc_acm.spec import ControlLine

from vusb.errors import UsageError
from vusb.urb import Completion, Urb

log = logging.getLogger("vusb.cdc_acm")

T = TypeVar("T")
S = TypeVar("S", bound="BackendLifecycle")
PortT = TypeVar("PortT", bound="BytePort")
"""``self`` in the members the ready-made devices forward, so ``forward(CdcAcmFunction.read)`` type-checks."""

__all__ = ["BackendLifecycle", "BytePort", "WaitingIn", "Watch"]


class Watch(Generic[T]):
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
        """The next value (``predicate`` None), or the first that satisfies ``predicate`` (at once if this one does)."""
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


class WaitingIn:
    """An IN endpoint handler whose URB waits (the host sees NAKs) until there is something to send.

    ``ready()`` says whether there is; ``take(length)`` returns what one URB of at most
    ``length`` bytes carries.  Call :meth:`feed` whenever ``ready()`` may have turned
    true.  With ``deferred`` the waiting URB is fed on the next turn of the event loop,
    so that what is produced together travels in one transfer (frames in one NTB,
    modem changes in one notification).
    """

    def __init__(self, ready: Callable[[], bool], take: Callable[[int], bytes], *, deferred: bool = False) -> None:
        self._ready = ready
        self._take = take
        self._deferred = deferred
        self._waiter: tuple[Urb, asyncio.Future[Completion]] | None = None
        self._scheduled = False

    @property
    def waiting(self) -> bool:
        """Whether a URB waits."""
        return self._waiter is not None

    def handler(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        """The endpoint's handler."""
        if self._ready():
            return Completion(0, self._take(urb.length))
        waiter: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._waiter = (urb, waiter)
        return waiter

    def drop(self) -> None:
        """The endpoint cancelled its URB (reset, deconfiguration, alternate setting): forget it."""
        self._waiter = None

    def feed(self) -> None:
        """There may be something to send: a waiting URB gets it (now, or on the next loop turn if deferred)."""
        if not self._deferred:
            self._feed_now()
            return
        if self._scheduled or self._waiter is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside the event loop: the next URB takes it
        self._scheduled = True
        loop.call_soon(self._feed_now)

    def _feed_now(self) -> None:
        self._scheduled = False
        entry = self._waiter
        if entry is None or not self._ready():
            return
        self._waiter = None
        urb, waiter = entry
        if not waiter.done():  # done: the URB was unlinked meanwhile
            waiter.set_result(Completion(0, self._take(urb.length)))


class _Backend(Protocol):
    def start(self) -> None: ...
    async def close(self) -> None: ...
    def describe(self) -> str: ...


class BackendLifecycle:
    """Starts :attr:`backend` when a host first attaches (or on :meth:`start`), closes it once.

    A subclass sets :attr:`backend` and names itself for messages with :meth:`_where`
    (log lines) and :meth:`_noun` (errors); it extends :meth:`_release` to free more
    than the backend on close.
    """

    backend: _Backend
    _started = False
    _closed = False

    def _where(self) -> str:
        return type(self).__name__

    def _noun(self) -> str:
        return "the port"

    def start(self: S) -> None:
        """Start the backend; needs a running event loop (done automatically when a host first attaches)."""
        if self._closed:
            raise UsageError(f"{self._noun()} is closed")
        if self._started:
            return
        asyncio.get_running_loop()  # raises RuntimeError outside a loop, before anything starts
        self._started = True
        self.backend.start()

    async def close(self: S) -> None:
        """Stop the backend and release what it holds."""
        if self._closed:
            return
        self._closed = True
        await self._release()

    async def _release(self) -> None:
        await self.backend.close()

    def _attached(self, attached: bool) -> None:
        """The device's attach listener: the first attach starts the backend."""
        if not attached or self._started or self._closed:
            return
        try:
            self.start()
        except RuntimeError:
            pass  # attached outside an event loop: started later
        except Exception:
            log.exception("%s: the %s backend failed to start", self._where(), self.backend.describe())

    def _tell(self, callback: Callable[[T], None], value: T) -> None:
        """Call a user's or backend's callback; what it raises is logged, never sent to the host."""
        try:
            callback(value)
        except Exception:
            log.exception("%s: callback %r failed", self._where(), callback)


class BytePort(BackendLifecycle):
    """A serial port's byte path and its Python API; subclasses decide how the host sets the line.

    Call :meth:`_init_port` in ``__init__``: it makes the FIFOs and the backend. The
    host's DTR and RTS live in :attr:`_lines`; a subclass publishes them there.
    """

    backend: SerialBackend

    def _init_port(self, backend: BackendSpec, buffer_size: int) -> None:
        self.from_host = ByteFifo(buffer_size)
        """Bytes the host sent, waiting for the backend or :meth:`read`."""
        self.to_host = ByteFifo(buffer_size)
        """Bytes waiting for the host's bulk IN URBs."""
        self._lines = Watch(ControlLine.NONE)
        self.on_control_lines: Callable[[ControlLine], None] | None = None
        """Called with DTR/RTS each time the host sets them."""
        self._in = WaitingIn(lambda: len(self.to_host) > 0, self._take)
        self._held: tuple[bytes, asyncio.Future[Completion]] | None = None
        self.from_host.add_room_listener(self._release_held)
        self.to_host.add_data_listener(self._in.feed)
        self.backend = make_backend(backend)
        self.backend.attach(self)

    def update_state(self, *, dcd: bool | None = None, dsr: bool | None = None) -> None:
        """Report DCD and/or DSR to the host (what backends call, e.g. the TCP bridge for its connection)."""
        raise NotImplementedError

    def _drop_urbs(self) -> None:
        # The endpoints cancelled their URBs (reset, deconfiguration): forget the futures that stood for them.
        self._in.drop()
        self._held = None

    # ------------------------------------------------------------ control lines the host set
    @property
    def control_lines(self: PortT) -> ControlLine:
        return self._lines.value

    @property
    def dtr(self: PortT) -> bool:
        """Data terminal ready: Linux raises it (with RTS) when a program opens the tty."""
        return bool(self._lines.value & ControlLine.DTR)

    @property
    def rts(self: PortT) -> bool:
        return bool(self._lines.value & ControlLine.RTS)

    def _set_lines(self, lines: ControlLine, *, requested: bool = True) -> bool:
        """The host set DTR/RTS (``requested``), or they fell with the connection; returns False if nothing was told.

        Waiters, the backend and :attr:`on_control_lines` hear of every request, even one
        that repeats the lines; a fall to lines already down is not told.
        """
        old = self._lines.value
        if lines == old and not requested:
            return False
        self._lines.publish(lines)
        if lines != old:
            log.debug("%s: control lines DTR=%s RTS=%s", self._where(), "on" if lines & ControlLine.DTR else "off",
                      "on" if lines & ControlLine.RTS else "off")
        self._tell(self.backend.control_lines_changed, lines)
        if self.on_control_lines is not None:
            self._tell(self.on_control_lines, lines)
        return True

    async def wait_control_lines(self: PortT, predicate: Callable[[ControlLine], bool] | None = None,
                                 timeout: float | None = None) -> ControlLine:
        """Wait for the next change of DTR/RTS (or until ``predicate(lines)`` holds); returns the lines."""
        return await self._lines.wait(predicate, timeout)

    async def wait_dtr(self: PortT, state: bool = True, timeout: float | None = None) -> None:
        """Wait until DTR is ``state`` (returns at once if it already is)."""
        await self._lines.wait(lambda lines: bool(lines & ControlLine.DTR) == state, timeout)

    async def wait_rts(self: PortT, state: bool = True, timeout: float | None = None) -> None:
        await self._lines.wait(lambda lines: bool(lines & ControlLine.RTS) == state, timeout)

    # ------------------------------------------------------------ bulk endpoints
    def _may_send(self) -> bool:
        """Whether bytes from the host may enter the FIFO now (a chip's handshake can hold them)."""
        return True

    def _bulk_out(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        """Bytes from the host.  With no room (or a handshake holding it) the URB waits: the host sees NAKs."""
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
        if waiter.done():  # unlinked or reset meanwhile: the host never saw it accepted
            self._held = None
            return
        if not self._may_send() or not self.from_host.accepts(len(data)):
            return
        self._held = None
        waiter.set_result(Completion(0, b"", len(data)))
        self.from_host.put(data)

    def _bulk_in(self, urb: Urb) -> Completion | asyncio.Future[Completion]:
        """Bytes for the host; an IN URB with none waits."""
        return self._in.handler(urb)

    def _take(self, n: int) -> bytes:
        return self.to_host.get(n)

    # ------------------------------------------------------------ stream API
    def _check_readable(self) -> None:
        if self.backend.reads_host_data:
            raise UsageError(
                f"the {self.backend.describe()} backend consumes the data from the host; "
                "read() needs the port made with backend=None"
            )

    async def read(self: PortT, n: int = -1, timeout: float | None = None) -> bytes:
        """Up to ``n`` bytes from the host (everything buffered if ``n`` < 0); waits for at least one."""
        self._check_readable()
        if n == 0:
            return b""
        await asyncio.wait_for(self.from_host.wait_data(), timeout)
        return self.from_host.get(n)

    async def readexactly(self: PortT, n: int, timeout: float | None = None) -> bytes:
        """Exactly ``n`` bytes from the host."""
        self._check_readable()

        async def gather() -> bytes:
            parts = bytearray()
            while len(parts) < n:
                await self.from_host.wait_data()
                parts += self.from_host.get(n - len(parts))
            return bytes(parts)

        return await asyncio.wait_for(gather(), timeout)

    async def readline(self: PortT, separator: bytes = b"\n", timeout: float | None = None) -> bytes:
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

    async def write(self: PortT, data: bytes | bytearray | memoryview, timeout: float | None = None) -> None:
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

    async def flush(self: PortT, timeout: float | None = None) -> None:
        """Wait until the host has taken every byte queued for it."""
        await asyncio.wait_for(self.to_host.wait_empty(), timeout)
