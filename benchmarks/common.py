"""Shared pieces of the vusb benchmarks: machine limits, a server in its own process,
a minimal raw USB/IP client, and the result table.

Everything here measures; nothing asserts.  Figures are printed beside the machine's
own limit measured in the same run (plain loopback TCP between two Python processes),
because on a shared 2-core machine absolute numbers move from run to run.

Conventions: 1 MB = 10**6 bytes; latencies are wall-clock round trips measured by the
client with ``time.perf_counter_ns``; p50/p99 are nearest-rank percentiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import importlib.metadata
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import pstats
import re
import socket
import struct
import sys
import tempfile
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vusb.constants import TransferType
from vusb.descriptors import InterfaceDescriptor
from vusb.device import BuildContext, Device, Function
from vusb.protocol import NEED_DATA, ClientCodec, ImportReply, ImportRequest
from vusb.urb import Completion, SetupPacket, Urb

HOST = "127.0.0.1"
MB = 1_000_000
HEADER = 48
SUBMIT_HEADER = struct.Struct(">IIIIIIiiii8s")  # CMD_SUBMIT header (USB/IP, big endian)
_RET = struct.Struct(">IIIIIiiiii8s")  # RET_SUBMIT header
_PING = struct.Struct(">I44x")  # 48-byte ping-pong message carrying a sequence number
USBIP_DIR_IN = 0x200  # URB_DIR_IN transfer flag, as Linux sets it on IN URBs
SMALL_PAYLOAD = 4096  # IN payloads up to this size are always copied out of the raw client's small buffer

DeviceFactory = Callable[[], Device]


# ------------------------------------------------------------------ configuration

BUSY_POLL = 50e-6  # seconds: the busy-polling rows (vusb serve --busy-poll 50)


@dataclass(frozen=True)
class BenchConfig:
    """How long each measurement runs (in total, over all rounds).

    A measurement and the machine limit it is compared with are taken in ``rounds`` alternating
    slices (limit, subject, limit, subject, ...) so that both see the same machine: on a shared
    virtual machine the loopback round trip alone moves by a factor of three within a minute.
    ``quick_config()`` is for smoke tests: it proves the code paths only.
    """

    rtt_iterations: int = 20_000
    rtt_warmup: int = 2_000
    async_rtt_iterations: int = 5_000
    rate_seconds: float = 1.5
    in_flight: int = 64
    copy_seconds: float = 1.5
    memory_counts: tuple[int, ...] = (1, 10, 100)
    storage_seconds: float = 1.0
    storage_disk_bytes: int = 64 * 1024 * 1024
    rounds: int = 5
    quick: bool = False

    @classmethod
    def quick_config(cls) -> BenchConfig:
        return cls(rtt_iterations=50, rtt_warmup=10, async_rtt_iterations=20, rate_seconds=0.05, in_flight=8,
                   copy_seconds=0.05, memory_counts=(1, 3), storage_seconds=0.05,
                   storage_disk_bytes=4 * 1024 * 1024, rounds=2, quick=True)


# ------------------------------------------------------------------ statistics and the table


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100.0 * len(sorted_values))))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True)
class Latency:
    p50_us: float
    p99_us: float
    samples: int
    round_p50s: tuple[float, ...] = ()

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int], rounds: Sequence[Sequence[int]] = ()) -> Latency:
        """Percentiles of all samples; ``rounds`` (the samples of each slice) adds the spread of the slices' p50s."""
        ordered = sorted(samples_ns)
        spread = tuple(percentile(sorted(r), 50) / 1000.0 for r in rounds if r) if len(rounds) > 1 else ()
        return cls(percentile(ordered, 50) / 1000.0, percentile(ordered, 99) / 1000.0, len(ordered), spread)

    def __str__(self) -> str:
        text = f"p50 {self.p50_us:.1f} µs  p99 {self.p99_us:.1f} µs"
        if self.round_p50s:
            text += f"  (p50 by round {min(self.round_p50s):.0f}-{max(self.round_p50s):.0f})"
        return text


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    name: str
    result: str
    limit: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


#: The widest line the report prints: it must read in a terminal of 100 columns.
TABLE_WIDTH = 100


def format_table(sections: Sequence[Section], *, verdicts: bool = True, width: int = TABLE_WIDTH) -> str:
    """The result table, no wider than ``width`` columns.

    ``verdicts=False`` (``--quick``: the figures mean nothing) leaves out the target and
    PASS/MISS columns. When the columns do not fit side by side, each row is printed as
    its name followed by its figures on indented lines.
    """
    headers: tuple[str, ...] = ("benchmark", "result", "machine limit (same run)", "vs limit", "target", "")
    keep = len(headers) if verdicts else 4

    def cells(r: Row) -> tuple[str, ...]:
        return (r.name, r.result, r.limit, r.ratio, r.target, r.verdict)[:keep]

    rows = [r for s in sections for r in s.rows]
    widths = [len(h) for h in headers[:keep]]
    for r in rows:
        for i, cell in enumerate(cells(r)):
            widths[i] = max(widths[i], len(cell))

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    side_by_side = sum(widths) + 2 * (len(widths) - 1) <= width
    out = [line(headers[:keep]), line(["-" * w for w in widths])] if side_by_side else []
    for s in sections:
        out.append(f"[{s.title}]")
        for r in s.rows:
            if side_by_side:
                out.append(line(cells(r)))
                continue
            out.extend(_wrap(r.name, width, "  "))
            figures = [("result", r.result), ("machine limit", r.limit), ("vs limit", r.ratio)]
            if verdicts:
                figures.append(("target", f"{r.target} {r.verdict}".strip()))
            for label, value in figures:
                if value:
                    out.extend(_wrap(f"{label}: {value}", width, "      "))
        for note in s.notes:
            out.extend(_wrap(f"note: {note}", width, "    ", "          "))
    return "\n".join(out)


def _wrap(text: str, width: int, indent: str, subsequent: str | None = None) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=subsequent or indent + "  ",
                         break_on_hyphens=False) or [indent.rstrip()]


def wrap_lines(lines: Sequence[str], width: int = TABLE_WIDTH) -> list[str]:
    """Lines as they are, those wider than ``width`` wrapped with a hanging indent."""
    out: list[str] = []
    for text in lines:
        if len(text) <= width:
            out.append(text)
        else:
            lead = text[:len(text) - len(text.lstrip())]
            out.extend(textwrap.wrap(text, width, initial_indent="", subsequent_indent=lead + "    ",
                                     break_on_hyphens=False))
    return out


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):
        return "unknown"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for text in fh:
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    load = f" load avg {load_average()}"
    try:
        uv = f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        uv = "uvloop not installed"
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPU(s),{load}; "
            f"Python {platform.python_version()} ({platform.python_implementation()}), {uv}")


# ------------------------------------------------------------------ processes


def mp_context() -> multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext:
    """fork where available (children start in milliseconds and inherit the imports), spawn otherwise."""
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def allowed_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on, or None where affinity is not supported."""
    getter = getattr(os, "sched_getaffinity", None)
    return frozenset(getter(0)) if getter is not None else None


def set_affinity(cpus: frozenset[int] | None) -> None:
    """Pin this process to ``cpus`` (None: leave it alone)."""
    setter = getattr(os, "sched_setaffinity", None)
    if cpus is not None and setter is not None:
        setter(0, cpus)


def one_cpu() -> frozenset[int] | None:
    """A single CPU to pin a client and its peer to, or None if pinning is impossible or pointless."""
    cpus = allowed_cpus()
    if cpus is None or len(cpus) < 2:
        return None
    return frozenset({max(cpus)})


@contextlib.contextmanager
def pinned(cpus: frozenset[int] | None) -> Iterator[None]:
    """Run the block with this process pinned to ``cpus``, then restore its affinity."""
    before = allowed_cpus()
    set_affinity(cpus)
    try:
        yield
    finally:
        if cpus is not None:
            set_affinity(before)


def current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of another process (Linux /proc); NaN when unknown."""
    if pid is None:
        return float("nan")
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds per wall second spent by the server and the client during a measurement."""

    server: float
    client: float

    def __str__(self) -> str:
        if math.isnan(self.server):  # no /proc
            return f"CPU cli {self.client:.0%}"
        return f"CPU srv {self.server:.0%} cli {self.client:.0%}"


@dataclass
class Tally:
    """Work done over one or more timed slices: units (bytes, URBs...), wall seconds, CPU seconds."""

    units: float = 0.0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu(self) -> CpuUse:
        wall = self.seconds or float("nan")
        return CpuUse(self.server_cpu / wall, self.client_cpu / wall)


class CpuMeter:
    """Measures the CPU use of a server process and of this (client) process over an interval."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid
        self._server = process_cpu_seconds(server_pid)
        self._client = time.process_time()

    def add_to(self, tally: Tally, units: float, seconds: float) -> None:
        """Credit ``units`` of work done in ``seconds`` of wall time, with the CPU used since the meter started."""
        tally.units += units
        tally.seconds += seconds
        tally.server_cpu += process_cpu_seconds(self.pid) - self._server
        tally.client_cpu += time.process_time() - self._client


def _server_child(conn: multiprocessing.connection.Connection, factory: DeviceFactory, count: int,
                  use_uvloop: bool, profile_path: str | None, cpus: frozenset[int] | None,
                  busy_poll: float) -> None:
    from vusb.server import Server, run

    set_affinity(cpus)

    async def main() -> None:
        server = Server([factory() for _ in range(count)], host=HOST, port=0, busy_poll=busy_poll)
        await server.start()
        loop = asyncio.get_running_loop()
        stop: asyncio.Future[None] = loop.create_future()

        def on_stop() -> None:
            if not stop.done():
                stop.set_result(None)

        loop.add_reader(conn.fileno(), on_stop)
        profiler = cProfile.Profile() if profile_path is not None else None
        conn.send(("ready", server.port, type(loop).__module__))
        if profiler is not None:
            profiler.enable()
        await stop
        if profiler is not None and profile_path is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)
        loop.remove_reader(conn.fileno())
        conn.recv()
        await server.close()

    try:
        run(main(), use_uvloop=use_uvloop)
        conn.send(("done",))
    except BaseException as exc:  # report to the parent rather than dying silently
        conn.send(("error", repr(exc)))
        raise


class ServerProcess:
    """A vusb :class:`~vusb.server.Server` in its own process on an ephemeral loopback port, exporting
    ``count`` devices made by ``factory`` (busids 1-1, 1-2, ...)."""

    def __init__(self, factory: DeviceFactory, *, count: int = 1, use_uvloop: bool = True,
                 profile: bool = False, cpus: frozenset[int] | None = None, busy_poll: float = 0.0) -> None:
        self.factory = factory
        self.use_uvloop = use_uvloop
        self.profile_path: str | None = None
        if profile:
            fd, self.profile_path = tempfile.mkstemp(prefix="vusb-bench-", suffix=".prof")
            os.close(fd)
        self.port = 0
        self.loop_module = ""
        ctx = mp_context()
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_server_child,
                                 args=(child_conn, factory, count, use_uvloop, self.profile_path, cpus, busy_poll),
                                 daemon=True)

    def __enter__(self) -> ServerProcess:
        self._proc.start()
        if not self._conn.poll(30):
            self._proc.kill()
            raise RuntimeError("the benchmark server did not start within 30 s")
        msg = self._conn.recv()
        if msg[0] != "ready":
            raise RuntimeError(f"the benchmark server failed to start: {msg}")
        self.port = int(msg[1])
        self.loop_module = str(msg[2])
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(30):
                self._conn.recv()
        except (OSError, EOFError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()

    @property
    def pid(self) -> int | None:
        pid = self._proc.pid
        return None if pid is None else int(pid)

    @property
    def loop(self) -> str:
        """The event loop the server really runs on: "uvloop" or "asyncio"."""
        return "uvloop" if self.loop_module.startswith("uvloop") else "asyncio"

    def profile_stats(self) -> pstats.Stats | None:
        if self.profile_path is None or not os.path.getsize(self.profile_path):
            return None
        return pstats.Stats(self.profile_path)

    def discard_profile(self) -> None:
        if self.profile_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.profile_path)


@contextlib.contextmanager
def child(target: Callable[..., None], *args: object) -> Iterator[multiprocessing.connection.Connection]:
    """Run ``target(conn, *args)`` in a child process; yields the parent's end of the pipe."""
    ctx = mp_context()
    parent, child_end = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child_end, *args), daemon=True)
    proc.start()
    try:
        yield parent
    finally:
        proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()


def _expect(conn: multiprocessing.connection.Connection, what: str, timeout: float = 30.0) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(f"{what}: no answer from the child process within {timeout:.0f} s")
    msg = conn.recv()
    if isinstance(msg, tuple) and msg and msg[0] == "error":
        raise RuntimeError(f"{what}: child failed: {msg[1]}")
    return msg


# ------------------------------------------------------------------ sockets


def connect(port: int, host: str = HOST) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def listener() -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, 0))
    srv.listen(1)
    return srv


def send_parts(sock: socket.socket, parts: Sequence[bytes]) -> None:
    """Send several buffers with as few system calls as possible and no concatenation."""
    if not hasattr(sock, "sendmsg"):
        sock.sendall(b"".join(parts))
        return
    views = [memoryview(p) for p in parts if p]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def recv_exact(sock: socket.socket, view: memoryview, size: int) -> None:
    got = 0
    while got < size:
        n = sock.recv_into(view[got:size], size - got)
        if n == 0:
            raise ConnectionError("peer closed the connection")
        got += n


def qd1_round_trips(sock: socket.socket, make_request: Callable[[int], bytes], reply_size: int,
                    iterations: int, warmup: int) -> list[int]:
    """Queue depth 1: send a request, wait for its whole reply, repeat; returns round trips in ns."""
    buf = bytearray(max(reply_size, 64))
    view = memoryview(buf)
    clock = time.perf_counter_ns
    samples: list[int] = []
    send = sock.sendall
    for i in range(warmup + iterations):
        request = make_request(i)
        t0 = clock()
        send(request)
        recv_exact(sock, view, reply_size)
        t1 = clock()
        if i >= warmup:
            samples.append(t1 - t0)
    return samples


def pipelined(sock: socket.socket, make_batch: Callable[[int, int], bytes], reply_size: int, in_flight: int,
              seconds: float, *, status_offset: int | None = None) -> tuple[int, float]:
    """Keep ``in_flight`` fixed-size requests outstanding for ``seconds``; returns (completed, elapsed s).

    ``make_batch(first_seq, count)`` packs ``count`` requests.  Every reply is ``reply_size`` bytes, so
    completions are counted from the byte count; when ``status_offset`` is given, the 32-bit status of
    every reply that starts a received chunk is checked to be 0.
    """
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    seq = 1
    sock.sendall(make_batch(seq, in_flight))
    seq += in_flight
    sent = in_flight
    received = 0
    completed = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    submitting = True
    while completed < sent:
        n = sock.recv_into(view)
        if n == 0:
            raise ConnectionError("peer closed the connection")
        if status_offset is not None and received % reply_size == 0 and n >= status_offset + 4:
            status = int.from_bytes(buf[status_offset:status_offset + 4], "big", signed=True)
            if status != 0:
                raise RuntimeError(f"a pipelined request failed with status {status}")
        received += n
        done = received // reply_size
        fresh = done - completed
        completed = done
        if submitting and fresh:
            if time.perf_counter() >= deadline:
                submitting = False
            else:
                sock.sendall(make_batch(seq, fresh))
                seq += fresh
                sent += fresh
    elapsed = time.perf_counter() - t0
    if received != sent * reply_size:
        raise RuntimeError(f"received {received} bytes for {sent} requests of {reply_size}-byte replies")
    return completed, elapsed


# ------------------------------------------------------------------ machine limits (plain TCP, two processes)


def _copy_sender(conn: multiprocessing.connection.Connection, port: int, seconds: float) -> None:
    chunk = bytes(1 << 20)
    sock = connect(port)
    deadline = time.perf_counter() + seconds
    sent = 0
    while time.perf_counter() < deadline:
        sock.sendall(chunk)
        sent += len(chunk)
    sock.close()
    conn.send(("sent", sent))


def tcp_copy(seconds: float) -> tuple[int, float]:
    """Loopback TCP copy: a sender process writes 1 MiB chunks for ``seconds``, this process reads into a
    preallocated buffer.  Returns (bytes, seconds from the first byte to the end of the stream)."""
    srv = listener()
    port = srv.getsockname()[1]
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with child(_copy_sender, port, seconds) as conn:
        sock, _ = srv.accept()
        srv.close()
        total = 0
        n = sock.recv_into(view)
        t0 = time.perf_counter()
        while n:
            total += n
            n = sock.recv_into(view)
        elapsed = time.perf_counter() - t0
        sock.close()
        _expect(conn, "TCP copy sender")
    return total, elapsed


def _pattern_child(conn: multiprocessing.connection.Connection, port: int, size: int,
                   cpus: frozenset[int] | None) -> None:
    """The device side of :func:`storage_pattern`: answers CBW, data IN and CSW requests with canned bytes."""
    set_affinity(cpus)
    sock = connect(port)
    view = memoryview(bytearray(HEADER + 64))
    head, data, csw = bytes(HEADER), bytes(size), bytes(HEADER + 13)
    try:
        while True:
            recv_exact(sock, view, HEADER + 31)
            sock.sendall(head)
            recv_exact(sock, view, HEADER)
            send_parts(sock, (head, data))
            recv_exact(sock, view, HEADER)
            sock.sendall(csw)
    except (ConnectionError, OSError):
        pass
    sock.close()
    conn.send(("done",))


def storage_pattern(size: int, seconds: float, cpus: frozenset[int] | None = None) -> tuple[int, float]:
    """The message pattern of one mass-storage READ between two plain Python processes, with no vusb in it:
    a 79-byte request and a 48-byte reply (CBW), a 48-byte request and a ``size``-byte reply plus header (data),
    a 48-byte request and a 61-byte reply (CSW), one command at a time, blocking sockets on both sides.
    Returns (data bytes, seconds): the most any USB/IP server in Python can do for this pattern here."""
    srv = listener()
    port = srv.getsockname()[1]
    view = memoryview(bytearray(HEADER + size))
    cbw, request = bytes(HEADER + 31), bytes(HEADER)
    with pinned(cpus), child(_pattern_child, port, size, cpus) as conn:
        sock, _ = srv.accept()
        srv.close()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        commands = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while commands == 0 or time.perf_counter() < deadline:
            sock.sendall(cbw)
            recv_exact(sock, view, HEADER)
            sock.sendall(request)
            recv_exact(sock, view, HEADER + size)
            sock.sendall(request)
            recv_exact(sock, view, HEADER + 13)
            commands += 1
        elapsed = time.perf_counter() - t0
        sock.close()
        _expect(conn, "storage pattern peer")
    return commands * size, elapsed


def _echo_child(conn: multiprocessing.connection.Connection, port: int, request_size: int, reply_size: int,
                cpus: frozenset[int] | None) -> None:
    """Answer every ``request_size``-byte message with ``reply_size`` bytes, batching replies per read."""
    set_affinity(cpus)
    sock = connect(port)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    pending = 0
    replies = [b"", bytes(reply_size)]
    try:
        while True:
            n = sock.recv_into(view)
            if n == 0:
                break
            pending += n
            count, pending = divmod(pending, request_size)
            if count:
                while len(replies) <= count:
                    replies.append(bytes(reply_size * len(replies)))
                sock.sendall(replies[count])
    except OSError:
        pass
    sock.close()
    conn.send(("done",))


@contextlib.contextmanager
def echo_peer(request_size: int, reply_size: int, cpus: frozenset[int] | None = None) -> Iterator[socket.socket]:
    """A plain TCP echo process (optionally pinned to ``cpus``); yields the connected socket."""
    srv = listener()
    port = srv.getsockname()[1]
    with child(_echo_child, port, request_size, reply_size, cpus) as conn:
        sock, _ = srv.accept()
        srv.close()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(10)
        try:
            yield sock
        finally:
            sock.close()
            _expect(conn, "echo peer")


def ping_pong_batch(first: int, count: int) -> bytes:
    return b"".join(_PING.pack(s) for s in range(first, first + count))


@dataclass
class MachineLimits:
    """The machine's own limits, each measured interleaved with the benchmarks compared with it."""

    copy: Tally = field(default_factory=Tally)
    ping_pong_rounds: list[list[int]] = field(default_factory=list)  # client and echo pinned to one CPU
    free_ping_pong_rounds: list[list[int]] = field(default_factory=list)  # placed by the scheduler
    pipelined: Tally = field(default_factory=Tally)
    in_flight: int = 0
    pinned_cpu: str = "one CPU"

    @property
    def copy_mbps(self) -> float:
        return self.copy.rate / MB

    @property
    def ping_pong(self) -> Latency:
        return Latency.from_ns([x for r in self.ping_pong_rounds for x in r], self.ping_pong_rounds)

    @property
    def free_ping_pong(self) -> Latency:
        return Latency.from_ns([x for r in self.free_ping_pong_rounds for x in r], self.free_ping_pong_rounds)

    @property
    def pipelined_rate(self) -> float:
        return self.pipelined.rate

    def measure_copy(self, seconds: float) -> None:
        total, elapsed = tcp_copy(seconds)
        self.copy.units += total
        self.copy.seconds += elapsed

    def section(self) -> Section:
        return Section("machine limit: plain loopback TCP between two Python processes", [
            Row("TCP copy, 1 MiB writes -> preallocated buffer", f"{self.copy_mbps:,.0f} MB/s"),
            Row(f"TCP ping-pong 48 B / 48 B, QD1, {self.pinned_cpu}", str(self.ping_pong)),
            Row("TCP ping-pong 48 B / 48 B, QD1, not pinned", str(self.free_ping_pong)),
            Row(f"TCP pipelined 48 B / 56 B, {self.in_flight} in flight", f"{self.pipelined_rate:,.0f} msg/s"),
        ], ["each limit is measured in slices alternating with the benchmarks compared with it"])


# ------------------------------------------------------------------ a minimal raw USB/IP client


class RawClient:
    """Blocking-socket USB/IP client with no event loop: imports through :class:`ClientCodec`, then
    packs CMD_SUBMIT headers by hand so the client costs as little as possible per URB."""

    def __init__(self, port: int, busid: str = "1-1", host: str = HOST) -> None:
        self.sock = connect(port, host)
        self.sock.settimeout(10)
        codec = ClientCodec()
        self.sock.sendall(codec.send(ImportRequest(busid)))
        while True:
            event = codec.next_event()
            if isinstance(event, ImportReply):
                break
            if event is not NEED_DATA:
                raise RuntimeError(f"unexpected reply to the import: {event!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection during the import")
            codec.receive_data(chunk)
        if event.device is None:
            raise RuntimeError(f"import of {busid} refused with status {event.status}")
        self.devid = (event.device.busnum << 16) | event.device.devnum
        self._small = bytearray(HEADER + SMALL_PAYLOAD)  # headers and small payloads (always copied out)
        self._small_view = memoryview(self._small)
        self._buf = bytearray(1 << 20)  # large payloads
        self._view = memoryview(self._buf)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit_bytes(self, seqnum: int, ep: int, direction: int, length: int, setup: bytes = bytes(8),
                     data: bytes = b"") -> bytes:
        flags = USBIP_DIR_IN if direction else 0
        return SUBMIT_HEADER.pack(1, seqnum, self.devid, direction, ep, flags, length, 0, 0, 0, setup) + data

    def transfer(self, ep: int, direction: int, length: int, setup: bytes = bytes(8),
                 data: bytes = b"", *, into: memoryview | None = None) -> tuple[int, bytes | memoryview]:
        """One URB at queue depth 1; returns (status, IN data).  OUT data goes out with its header in one
        ``sendmsg`` (no concatenation); IN data is received into a reused buffer and copied once, or
        straight into ``into`` (a view of it is returned)."""
        self.seq += 1
        head = self.submit_bytes(self.seq, ep, direction, length if direction else len(data), setup)
        if data:
            send_parts(self.sock, (head, data))
        else:
            self.sock.sendall(head)
        recv_exact(self.sock, self._small_view, HEADER)
        fields = _RET.unpack_from(self._small)
        status, actual = fields[5], fields[6]
        payload: bytes | memoryview = b""
        if direction and into is not None and actual > 0:
            if actual > len(into):
                raise RuntimeError(f"RET_SUBMIT of {actual} bytes for a {len(into)}-byte buffer")
            recv_exact(self.sock, into, actual)
            payload = into[:actual]
        elif direction and 0 < actual <= SMALL_PAYLOAD:
            recv_exact(self.sock, self._small_view, actual)
            payload = bytes(self._small_view[:actual])
        elif direction and actual > 0:
            if actual > len(self._buf):
                self._buf = bytearray(actual)
                self._view = memoryview(self._buf)
            recv_exact(self.sock, self._view, actual)
            payload = bytes(self._view[:actual])
        return status, payload

    def control(self, setup: SetupPacket, data: bytes = b"") -> bytes:
        status, payload = self.transfer(0, 1 if setup.is_in else 0, setup.length, setup.to_bytes(), data)
        if status != 0:
            raise RuntimeError(f"control request {setup.describe()} failed with status {status}")
        return bytes(payload)


# ------------------------------------------------------------------ a benchmark-only device


class BenchFunction(Function):
    """A vendor interface whose bulk IN always has ``payload`` ready and whose bulk OUT consumes everything.

    Handlers answer at once (the endpoint's fast path: no task, no future), so a URB's cost is the
    server's own per-URB overhead.
    """

    def __init__(self, payload: bytes = bytes(8)) -> None:
        super().__init__()
        self._in_done = Completion(0, payload)

    def build(self, ctx: BuildContext) -> list[InterfaceDescriptor]:
        self.in_desc = ctx.endpoint(True, TransferType.BULK)
        self.out_desc = ctx.endpoint(False, TransferType.BULK)
        return [InterfaceDescriptor(ctx.interface_number(), 0, 0xFF, 0, 0, endpoints=(self.in_desc, self.out_desc))]

    def bind(self, device: Device) -> None:
        device.endpoint(self.in_desc.address).handler = self._bulk_in
        device.endpoint(self.out_desc.address).handler = self._bulk_out

    def _bulk_in(self, urb: Urb) -> Completion:
        return self._in_done

    def _bulk_out(self, urb: Urb) -> Completion:
        return Completion(0, b"", len(urb.data))


BENCH_PAYLOAD = 8
BENCH_IN_EP = 0x81
BENCH_OUT_EP = 0x01


def bench_device() -> Device:
    """The benchmark device: high speed, one vendor interface, bulk IN 0x81 and bulk OUT 0x01."""
    return Device(BenchFunction(bytes(BENCH_PAYLOAD)), vendor_id=0x1209, product_id=0x0BE0,
                  product="vusb benchmark", speed="high")


def keyboard_device() -> Device:
    from vusb.devices.keyboard import Keyboard

    return Keyboard()


# ------------------------------------------------------------------ profiles


def _short_path(filename: str) -> str:
    """``vusb/server.py``, ``construct/core.py``, ``asyncio/events.py`` rather than absolute paths."""
    idx = filename.find("/site-packages/")
    if idx >= 0:
        return filename[idx + len("/site-packages/"):]
    for marker in ("/vusb/", "/devices/", "/benchmarks/"):
        idx = filename.rfind(marker)
        if idx >= 0:
            return filename[idx + 1:]
    match = re.search(r"/lib/python3\.\d+/(.+)$", filename)
    return match.group(1) if match else filename


def profile_report(stats: pstats.Stats, top: int = 15) -> list[str]:
    """Top functions by own time, with their share of the profiled time.

    cProfile does not see calls into uvloop's C code: their time (``transport.write``, that is the
    ``send`` system call) shows up as own time of the Python function that made them.
    """
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values()) or 1.0
    ordered = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    lines = [f"{'own %':>6} {'cum %':>6} {'calls':>9}  function"]
    for (filename, lineno, func), (_cc, ncalls, tottime, cumtime, _callers) in ordered:
        name = f"{_short_path(filename)}:{lineno}({func})" if lineno else func
        lines.append(f"{100 * tottime / total:6.1f} {100 * cumtime / total:6.1f} {ncalls:9d}  {name}")
    return lines


# ------------------------------------------------------------------ server memory


def _memory_child(conn: multiprocessing.connection.Connection, factory: DeviceFactory, counts: tuple[int, ...],
                  use_tracemalloc: bool, use_uvloop: bool) -> None:
    from vusb.server import Server, run

    async def main() -> list[tuple[int, int]]:
        server = Server([], host=HOST, port=0)
        await server.start()
        warm = factory()  # warm lazy caches (imports, compiled layouts) before the baseline
        server.add(warm)
        server.remove(warm)
        del warm
        gc.collect()
        if use_tracemalloc:
            tracemalloc.start()

        def measure() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0] if use_tracemalloc else current_rss()

        base = measure()
        out = []
        kept: list[Device] = []
        for count in counts:
            while len(kept) < count:
                device = factory()
                server.add(device)
                kept.append(device)
            await asyncio.sleep(0)
            out.append((count, measure() - base))
        if use_tracemalloc:
            tracemalloc.stop()
        await server.close()
        return out

    try:
        result = run(main(), use_uvloop=use_uvloop)
        conn.send(("memory", result, current_rss()))
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        raise


def server_memory(factory: DeviceFactory, counts: tuple[int, ...], *, use_tracemalloc: bool,
                  use_uvloop: bool = True) -> tuple[list[tuple[int, int]], int]:
    """Memory added to a fresh server process by exporting ``counts`` idle devices (cumulative):
    [(devices, bytes)] plus the process's final RSS."""
    with child(_memory_child, factory, counts, use_tracemalloc, use_uvloop) as conn:
        msg = _expect(conn, "server memory", timeout=120)
    return list(msg[1]), int(msg[2])
