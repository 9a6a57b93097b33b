"""Fuzz target: bytes from a hostile client fed to a server :class:`~vusb.server.Connection`.

No sockets: the connection gets a fake transport and the bytes reach it as the
event loop delivers them to a ``BufferedProtocol`` (copied into the buffer
``get_buffer`` offers, then ``buffer_updated``: a large OUT payload goes straight
into its own buffer), in chunks, on one asyncio loop that runs between chunks so
endpoint completions happen too.  Input layout: byte 0 holds flags (bit 0: start
with a valid import; bit 1: import the mouse 1-2 instead of the keyboard 1-1;
bit 2: then SET_CONFIGURATION 1; bit 3: the keyboard sends a report between
chunks), byte 1 the chunk size (0 = all at once; a long stream gets larger chunks,
see ``fuzz.read_size``), the rest is the client's stream.

Invariants: no exception escapes ``get_buffer``/``buffer_updated``/``connection_lost`` and
nothing is logged at ERROR (the server's "internal error" path); nothing is
written after the transport was closed; the transport is closed at most once by
the connection; after ``connection_lost`` the server holds no connection, no
device is attached or held and no endpoint has a pending URB; no task is left over.

Run it: ``python -m fuzz.fuzz_server -max_total_time=60`` (see docs/robustness.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from typing import Any

from fuzz import SETUPS, import_request, instrumented, main, random_stream, read_size, submit, write_in_place

with instrumented():
    from vusb.devices import Keyboard, Mouse
    from vusb.server import Connection, Server


class Finding(AssertionError):
    """An invariant of the server broke."""


class FakeTransport(asyncio.Transport):
    """Enough of a transport for :class:`Connection`: records writes and closes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.close_calls = 0
        self.closed = False
        self.paused = False
        self.writes_after_close = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("fuzz", 1)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            self.writes_after_close += 1
        self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.close_calls += 1
        self.closed = True

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_reading(self) -> bool:
        return not self.paused and not self.closed


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_LOOP = asyncio.new_event_loop()
_ERRORS = _ErrorLog()
logging.getLogger("vusb").addHandler(_ERRORS)
logging.getLogger("vusb").propagate = False  # warnings about hostile input are expected: keep them quiet
logging.getLogger("devices").addHandler(_ERRORS)
KEYBOARD, MOUSE = Keyboard(), Mouse()
SERVER = Server([KEYBOARD, MOUSE], port=0)


def _check_released() -> None:
    if SERVER.connections:
        raise Finding(f"{len(SERVER.connections)} connection(s) left in server.connections")
    for export in SERVER.exports:
        device = export.device
        if export.connection is not None:
            raise Finding(f"{export.busid} still held after connection_lost")
        if device.attached:
            raise Finding(f"{export.busid} still attached after connection_lost")
        for address in (0x00, 0x81, 0x01):
            try:
                ep = device.endpoint(address)
            except Exception:  # noqa: BLE001 (the mouse has no OUT endpoint)
                continue
            if ep.pending:
                raise Finding(f"{export.busid} endpoint 0x{address:02x} has {ep.pending} pending URB(s)")


async def _one(data: bytes) -> None:
    flags, chunk = data[0], data[1]
    stream = data[2:]
    if flags & 1:
        prefix = import_request("1-2" if flags & 2 else "1-1")
        if flags & 4:
            prefix += submit(0x7FFF0000, 0, 0, 0, SETUPS[3])
        stream = prefix + stream
    transport = FakeTransport()
    conn = Connection(SERVER)
    conn.connection_made(transport)
    step = read_size(chunk, len(stream))
    try:
        for start in range(0, len(stream), step):
            if transport.closed:
                break  # a real transport stops reading once closed
            write_in_place(conn, stream[start : start + step], stop=lambda: transport.closed)
            if flags & 8 and KEYBOARD.attached:
                KEYBOARD.keyboard.send_report(bytes([0, 0, start & 0x7F, 0, 0, 0, 0, 0]))
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        if transport.close_calls > 1:
            raise Finding(f"transport closed {transport.close_calls} times")
        if conn._closing and not transport.closed:
            raise Finding("connection is closing but its transport is open")
        if transport.writes_after_close:
            raise Finding(f"{transport.writes_after_close} write(s) after the transport was closed")
    finally:
        conn.connection_lost(None)
    for _ in range(3):
        await asyncio.sleep(0)
    _check_released()
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() if t is not current]
    if leftover:
        raise Finding(f"tasks left running after the connection went away: {leftover}")


def TestOneInput(data: bytes) -> None:  # the name atheris expects
    if len(data) < 2:
        return
    _ERRORS.records.clear()
    try:
        _LOOP.run_until_complete(_one(data))
    except Finding:
        raise
    except Exception as exc:
        raise Finding(f"{type(exc).__name__} escaped the server: {exc}") from exc
    if _ERRORS.records:
        record = _ERRORS.records[0]
        raise Finding(f"logged at {record.levelname}: {record.getMessage()}\n{record.exc_text or ''}")


def generate(rng: random.Random) -> bytes:
    flags = rng.choice([1, 5, 7, 13, 13, 15, 5 | 8, rng.randrange(16)])
    chunk = rng.choice([0, 0, 1, 48, 56, rng.randrange(256)])
    return bytes((flags, chunk)) + random_stream(rng, rng.randrange(1, 16))


if __name__ == "__main__":
    sys.exit(main(TestOneInput, generate))
