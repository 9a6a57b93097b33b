"""A bounded byte FIFO joining the USB side of a serial port to its backend.

Each direction of a port is one :class:`ByteFifo`.  The producer checks
:attr:`ByteFifo.room` (or awaits :meth:`ByteFifo.wait_writable`) before it puts,
so the buffer stays bounded and nothing is ever dropped: a producer that cannot
put simply waits, which is how backpressure travels from a slow consumer back to
the USB host (whose bulk OUT URB is then held) or to a backend (which stops
reading its pty or socket).

Both waits and synchronous listeners are offered: listeners let the endpoint
handlers and the pty backend move data without a task per chunk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from vusb.errors import UsageError

log = logging.getLogger("vusb.cdc_acm")

Listener = Callable[[], None]


class ByteFifo:
    """Bytes in order, at most about ``limit`` of them (one put may overshoot into an empty FIFO)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise UsageError(f"a FIFO needs room for at least one byte, not {limit}")
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._data_waiters: list[asyncio.Future[None]] = []
        self._room_waiters: list[asyncio.Future[None]] = []
        self._data_listeners: list[Listener] = []
        self._room_listeners: list[Listener] = []
        self.total_in = 0
        """Bytes ever put (for statistics)."""
        self.total_out = 0
        """Bytes ever taken."""

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"<ByteFifo {self._size}/{self.limit} bytes>"

    @property
    def room(self) -> int:
        """Bytes that can be put without going over the limit."""
        return max(self.limit - self._size, 0)

    def accepts(self, n: int) -> bool:
        """True if ``n`` bytes may be put now: they fit, or the FIFO is empty."""
        return self._size == 0 or self._size + n <= self.limit

    # ------------------------------------------------------------ listeners
    def add_data_listener(self, listener: Listener) -> None:
        """Call ``listener()`` each time bytes are put."""
        self._data_listeners.append(listener)

    def add_room_listener(self, listener: Listener) -> None:
        """Call ``listener()`` each time bytes are taken (room was freed)."""
        self._room_listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        for group in (self._data_listeners, self._room_listeners):
            while listener in group:
                group.remove(listener)

    # ------------------------------------------------------------ producer side
    def put(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes (the caller has checked :meth:`accepts` or :attr:`room`)."""
        if not data:
            return
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._size += len(chunk)
        self.total_in += len(chunk)
        _wake(self._data_waiters)
        _call(self._data_listeners)

    async def wait_writable(self) -> None:
        """Wait until there is room for at least one byte."""
        while self._size >= self.limit:
            await _wait(self._room_waiters)

    async def wait_empty(self) -> None:
        """Wait until the consumer has taken everything."""
        while self._size:
            await _wait(self._room_waiters)

    # ------------------------------------------------------------ consumer side
    def get(self, n: int = -1) -> bytes:
        """Take up to ``n`` bytes (all of them if ``n`` is negative); b"" if empty."""
        if n < 0 or n >= self._size:
            n = self._size
        if n == 0:
            return b""
        first = self._chunks[0]
        if len(first) == n:
            self._chunks.popleft()
            out = first
        elif len(first) > n:
            self._chunks[0] = first[n:]
            out = first[:n]
        else:
            parts = []
            need = n
            while need:
                chunk = self._chunks[0]
                if len(chunk) <= need:
                    parts.append(self._chunks.popleft())
                    need -= len(chunk)
                else:
                    parts.append(chunk[:need])
                    self._chunks[0] = chunk[need:]
                    need = 0
            out = b"".join(parts)
        self._taken(n)
        return out

    def peek(self) -> bytes:
        """The first queued chunk without taking it (b"" if empty)."""
        return self._chunks[0] if self._chunks else b""

    def skip(self, n: int) -> None:
        """Drop the first ``n`` bytes, as :meth:`get` without building them."""
        n = min(n, self._size)
        left = n
        while left:
            chunk = self._chunks[0]
            if len(chunk) <= left:
                self._chunks.popleft()
                left -= len(chunk)
            else:
                self._chunks[0] = chunk[left:]
                left = 0
        if n:
            self._taken(n)

    def unget(self, data: bytes) -> None:
        """Put bytes back at the front (a reader that took more than it wanted)."""
        if data:
            self._chunks.appendleft(bytes(data))
            self._size += len(data)
            self.total_out -= len(data)

    def clear(self) -> int:
        """Drop everything queued; returns how many bytes were dropped."""
        n = self._size
        self._chunks.clear()
        self._size = 0
        if n:
            self._taken(n)
        return n

    async def wait_data(self) -> None:
        """Wait until at least one byte is queued."""
        while not self._size:
            await _wait(self._data_waiters)

    def _taken(self, n: int) -> None:
        self._size -= n
        self.total_out += n
        _wake(self._room_waiters)
        _call(self._room_listeners)


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    if waiters:
        pending = waiters[:]
        waiters.clear()
        for fut in pending:
            if not fut.done():
                fut.set_result(None)


async def _wait(waiters: list[asyncio.Future[None]]) -> None:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(fut)
    try:
        await fut
    finally:
        if fut in waiters:
            waiters.remove(fut)


def _call(listeners: list[Listener]) -> None:
    for listener in tuple(listeners):
        try:
            listener()
        except Exception:
            log.exception("serial FIFO listener %r failed", listener)
