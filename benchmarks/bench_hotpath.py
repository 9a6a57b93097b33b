"""The server's own cost per operation, with no sockets: CMD_SUBMIT bytes fed from memory.

A :class:`vusb.server.Connection` gets a transport that only counts what it is given, imports
a served :class:`~vusb.devices.Keyboard` or a memory :class:`~vusb.devices.storage.MassStorage`,
and then receives request bytes the way the event loop hands them over (``get_buffer`` then
``buffer_updated``).  What is timed is everything vusb does for a URB between the bytes
arriving and the reply being handed to the transport: the codec, the device model, the class
handler and the reply's header.  No system call, no wake-up, so the figure is steady on a
shared machine, and it is the part of the server's CPU a compiled hot path can change.

    python -m benchmarks.bench_hotpath [--seconds 1] [--rounds 5]

It prints CPU microseconds per operation (best and median of the rounds) and the file
``vusb.protocol`` came from (a ``.py`` file, or an extension module when compiled).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import vusb.protocol
from benchmarks.bench_server import GET_DEVICE_DESCRIPTOR
from benchmarks.bench_storage import CBW, CBW_SIGNATURE
from benchmarks.common import SUBMIT_HEADER, USBIP_DIR_IN
from vusb.protocol import ClientCodec, ImportRequest
from vusb.server import Connection, Server

SET_CONFIGURATION_1 = bytes([0, 9, 1, 0, 0, 0, 0, 0])


class _CountingTransport(asyncio.Transport):
    """Takes the replies and counts their bytes; never blocks, never closes by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.closed = False

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.sent += len(part)

    def write(self, data: Any) -> None:
        self.sent += len(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connect(device: Any) -> Connection:
    server = Server([device])
    conn = Connection(server)
    conn.connection_made(_CountingTransport())
    _feed(conn, ClientCodec().send(ImportRequest(server.exports[0].busid)))
    _feed(conn, _submit(1, 0, 0, 0, SET_CONFIGURATION_1))
    return conn


def _feed(conn: Connection, data: bytes) -> None:
    view = memoryview(data)
    while view:
        buf = conn.get_buffer(len(view))
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        conn.buffer_updated(n)
        view = view[n:]


def _submit(seqnum: int, ep: int, direction: int, length: int, setup: bytes = bytes(8),
            data: bytes = b"") -> bytes:
    flags = USBIP_DIR_IN if direction else 0
    return SUBMIT_HEADER.pack(1, seqnum, 0, direction, ep, flags, length, 0, 0, 0, setup) + data


def control_ops() -> tuple[str, Callable[[], Connection], Callable[[int], Sequence[bytes]]]:
    from vusb.devices import Keyboard

    def make() -> Connection:
        return _connect(Keyboard(speed="high"))

    setup = GET_DEVICE_DESCRIPTOR.to_bytes()

    def op(seq: int) -> Sequence[bytes]:
        return (_submit(seq, 0, 1, 18, setup),)

    return "control GET_DESCRIPTOR(DEVICE, 18)", make, op


def storage_ops(kib: int) -> tuple[str, Callable[[], Connection], Callable[[int], Sequence[bytes]]]:
    from vusb.devices.storage import MassStorage

    length = kib * 1024
    blocks = length // 512

    def make() -> Connection:
        return _connect(MassStorage(memory=True, size=64 * 1024 * 1024, speed="high"))

    def op(seq: int) -> Sequence[bytes]:
        lba = (seq * blocks) % (64 * 1024 * 1024 // 512 - blocks)
        cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)
        cbw = CBW.pack(CBW_SIGNATURE, seq & 0xFFFFFFFF, length, 0x80, 0, len(cdb), cdb)
        return (_submit(seq * 3, 1, 0, 31, data=cbw),   # CBW on bulk OUT 1
                _submit(seq * 3 + 1, 1, 1, length),      # data on bulk IN 1
                _submit(seq * 3 + 2, 1, 1, 13))          # CSW

    return f"READ(10) {kib} KiB, one command (3 URBs)", make, op


def measure(make: Callable[[], Connection], op: Callable[[int], Sequence[bytes]], seconds: float) -> float:
    """CPU microseconds per operation over about ``seconds``."""
    conn = make()
    seq = 10
    # the requests are built beforehand: only the server's work is timed
    batch = [op(seq + i) for i in range(2000)]
    for messages in batch[:200]:  # warm up
        for message in messages:
            _feed(conn, message)
    conn = make()
    gc.collect()
    done = 0
    start = time.process_time()
    deadline = start + seconds
    while True:
        for messages in batch:
            for message in messages:
                _feed(conn, message)
        done += len(batch)
        conn.pending.clear()
        now = time.process_time()
        if now >= deadline:
            break
        batch = [op(seq + done + i) for i in range(len(batch))]
        start += time.process_time() - now  # building the next requests is not timed
    return (time.process_time() - start) / done * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per round and figure")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny counts: proves the script works")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds = 0.05, 1
    print(f"vusb.protocol from {vusb.protocol.__file__}")
    print(f"{'operation':44} {'best µs':>9} {'median µs':>10}")
    for name, make, op in (control_ops(), storage_ops(120), storage_ops(1024)):
        figures = [measure(make, op, args.seconds) for _ in range(args.rounds)]
        print(f"{name:44} {min(figures):9.2f} {statistics.median(figures):10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
