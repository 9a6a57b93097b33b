"""Mass-storage throughput: sequential SCSI READ(10)/WRITE(10) over USB/IP on loopback.

    python -m benchmarks.bench_storage [--quick]

A :class:`vusb.devices.storage.MassStorage` disk is served by a vusb server in its own process;
this process drives it through the library's asyncio client (:class:`vusb.client.RemoteDevice`,
on uvloop) the way Linux usb-storage does: per command a 31-byte CBW on bulk OUT, one data URB of
the whole transfer length on bulk IN or OUT, then the 13-byte CSW on bulk IN, one command at a time.
Commands move 120 KiB (usb-storage's default max_sectors of 240) or 1 MiB.  The disk is a memory
store or an image file (in the page cache: this measures vusb, not the disk), filled once before
the timed runs.  Figures are data bytes per second (1 MB = 10**6 bytes), beside the loopback TCP
copy rate measured in the same run (in slices alternating with the disk runs).

A second memory disk is driven by the raw blocking client of benchmarks.common (no event loop,
no copies on the client side) as a reference: the difference is what the library client costs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import os
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from benchmarks.common import (
    BUSY_POLL,
    HOST,
    MB,
    BenchConfig,
    CpuMeter,
    MachineLimits,
    RawClient,
    Row,
    Section,
    ServerProcess,
    Tally,
    format_table,
    machine_description,
    one_cpu,
    pinned,
    profile_report,
    storage_pattern,
    verdict,
    wrap_lines,
)
from vusb.client import RemoteDevice
from vusb.constants import DescriptorType, Request, TransferType
from vusb.descriptors import ConfigurationDescriptor
from vusb.device import Device
from vusb.protocol import SubmitReply
from vusb.urb import SetupPacket

CBW = struct.Struct("<IIIBBB16s")  # Bulk-Only Transport 1.0, section 5.1
CSW = struct.Struct("<IIIB")  # section 5.2
CBW_SIGNATURE = 0x43425355
CSW_SIGNATURE = 0x53425355
READ_10 = 0x28
WRITE_10 = 0x2A
TEST_UNIT_READY = 0x00
REQUEST_SENSE = 0x03
READ_CAPACITY_10 = 0x25
KIB = 1024
GET_DESCRIPTOR = int(Request.GET_DESCRIPTOR)
SET_CONFIGURATION = int(Request.SET_CONFIGURATION)
CONFIGURATION_DESCRIPTOR = int(DescriptorType.CONFIGURATION)
SIZES = (120 * KIB, 1024 * KIB)
SMALL_TARGET_MBPS = 400.0
LARGE_TARGET_FRACTION = 0.5
QUEUED_ONE = "memory, a command's URBs queued"
QUEUED_TWO = "memory, 2 commands queued"


def storage_unavailable() -> str | None:
    """Why the storage benchmark cannot run, or None when vusb.devices.storage offers what it needs."""
    try:
        import vusb.devices.storage as storage
    except ImportError as exc:
        return f"vusb.devices.storage cannot be imported ({exc})"
    missing = [name for name in ("MassStorage", "MassStorageFunction") if not hasattr(storage, name)]
    return f"vusb.devices.storage lacks {', '.join(missing)}" if missing else None


def memory_disk(size: int) -> Device:
    from vusb.devices.storage import MassStorage

    disk: Device = MassStorage(memory=True, size=size)
    return disk


#: The image read into Python (a copy) instead of sent by sendfile(2): the reference for the image rows.
IMAGE_COPIED = "image file, zero_copy=False (read, then sent)"


def image_disk(path: str, size: int, zero_copy: bool = True) -> Device:
    from vusb.devices.storage import ImageFile, MassStorage

    disk: Device = MassStorage(ImageFile(path, size, zero_copy=zero_copy))
    return disk


class BulkPipes(Protocol):
    """What Bulk-Only Transport needs from a host: bulk IN into a buffer, bulk OUT (RemoteDevice has them)."""

    async def transfer_in_into(self, ep: int, buffer: memoryview) -> int: ...

    async def transfer_out(self, ep: int, data: bytes) -> int: ...


class RawBulk:
    """Bulk transfers through the blocking :class:`RawClient` behind the async interface of BulkPipes.

    The calls block the event loop, on purpose: nothing else runs, so this measures the server with a
    client that costs almost nothing (a reference for what the library's client adds)."""

    def __init__(self, client: RawClient) -> None:
        self.client = client

    async def transfer_in_into(self, ep: int, buffer: memoryview) -> int:
        """IN data received straight into ``buffer``: the client copies nothing."""
        status, data = self.client.transfer(ep & 0x0F, 1, len(buffer), into=buffer)
        if status != 0:
            raise RuntimeError(f"bulk IN 0x{ep:02x} failed with status {status}")
        return len(data)

    async def transfer_out(self, ep: int, data: bytes) -> int:
        status, _ = self.client.transfer(ep & 0x0F, 0, len(data), data=data)
        if status != 0:
            raise RuntimeError(f"bulk OUT 0x{ep:02x} failed with status {status}")
        return len(data)


class BotHost:
    """The host side of Bulk-Only Transport (queue depth 1) over a :class:`RemoteDevice` or a :class:`RawBulk`."""

    def __init__(self, dev: BulkPipes, ep_in: int, ep_out: int) -> None:
        self.dev = dev
        self.ep_in = ep_in
        self.ep_out = ep_out
        self.tag = 0
        self._data = memoryview(bytearray(max(SIZES)))  # IN data lands here (as the kernel's DMA buffer)
        self._csw = memoryview(bytearray(CSW.size))

    async def command(self, cdb: bytes, length: int = 0, *, data_in: bool = True,
                      data: bytes = b"") -> tuple[int, bytes | memoryview]:
        """One command: CBW, data stage, CSW.  Returns (CSW status, IN data: a view valid until the next command)."""
        self.tag = (self.tag + 1) & 0xFFFFFFFF
        cbw = CBW.pack(CBW_SIGNATURE, self.tag, length, 0x80 if data_in else 0, 0, len(cdb), cdb)
        await self.dev.transfer_out(self.ep_out, cbw)
        payload: bytes | memoryview = b""
        if length and data_in:
            if length > len(self._data):
                self._data = memoryview(bytearray(length))
            payload = self._data[: await self.dev.transfer_in_into(self.ep_in, self._data[:length])]
        elif length:
            await self.dev.transfer_out(self.ep_out, data)
        raw = self._csw[: await self.dev.transfer_in_into(self.ep_in, self._csw)]
        if len(raw) != CSW.size:
            raise RuntimeError(f"CSW of {len(raw)} bytes for tag {self.tag:08x}")
        signature, tag, residue, status = CSW.unpack(raw)
        if signature != CSW_SIGNATURE or tag != self.tag:
            raise RuntimeError(f"bad CSW {raw.hex()} for tag {self.tag:08x}")
        if status == 0 and residue != 0:
            raise RuntimeError(f"command {cdb[0]:02x}h left a residue of {residue} bytes")
        return status, payload

    async def ready(self) -> None:
        """TEST UNIT READY until the unit stops reporting a unit attention (REQUEST SENSE clears it)."""
        for _ in range(5):
            status, _ = await self.command(bytes([TEST_UNIT_READY, 0, 0, 0, 0, 0]))
            if status == 0:
                return
            await self.command(bytes([REQUEST_SENSE, 0, 0, 0, 18, 0]), 18)
        raise RuntimeError("the disk never became ready")

    async def capacity(self) -> tuple[int, int]:
        """(blocks, block size) from READ CAPACITY(10)."""
        status, raw = await self.command(bytes([READ_CAPACITY_10]) + bytes(9), 8)
        if status != 0 or len(raw) != 8:
            raise RuntimeError("READ CAPACITY(10) failed")
        last, block = struct.unpack(">II", raw)
        return last + 1, block

    async def rw10(self, write: bool, lba: int, blocks: int, block_size: int, data: bytes = b"") -> bytes | memoryview:
        cdb = struct.pack(">BBIBHB", WRITE_10 if write else READ_10, 0, lba, 0, blocks, 0)
        status, payload = await self.command(cdb, blocks * block_size, data_in=not write, data=data)
        if status != 0:
            raise RuntimeError(f"{'WRITE' if write else 'READ'}(10) at LBA {lba} x {blocks} failed")
        return payload


class QueuedBotHost:
    """Bulk-Only Transport from a host that keeps its queue full: the three URBs of a command (CBW, data,
    CSW) are submitted together, and the URBs of ``depth`` commands are in flight at once.

    Bulk-Only Transport still runs one command at a time; the device NAKs what comes early (a CBW while
    a command is in progress waits on bulk OUT, IN URBs queue on bulk IN in order). Linux usb-storage does
    not queue (it waits for each URB before it submits the next); this shows what the server delivers
    when it never waits for the client.
    """

    def __init__(self, dev: RemoteDevice, ep_in: int, ep_out: int, depth: int) -> None:
        self.dev = dev
        self.ep_in = ep_in & 0x0F
        self.ep_out = ep_out & 0x0F
        self.depth = depth
        self.tag = 0
        self._data = [memoryview(bytearray(max(SIZES))) for _ in range(depth)]
        self._csw = [memoryview(bytearray(CSW.size)) for _ in range(depth)]

    def issue(self, slot: int, write: bool, lba: int, blocks: int, block_size: int,
              data: bytes) -> tuple[int, int, list[asyncio.Future[SubmitReply]]]:
        """Submit one command's CBW, data and CSW URBs at once; returns (tag, length, their futures)."""
        self.tag = (self.tag + 1) & 0xFFFFFFFF
        length = blocks * block_size
        cdb = struct.pack(">BBIBHB", WRITE_10 if write else READ_10, 0, lba, 0, blocks, 0)
        cbw = CBW.pack(CBW_SIGNATURE, self.tag, length, 0 if write else 0x80, 0, len(cdb), cdb)
        dev = self.dev
        futures = [dev.submit(self.ep_out, 0, len(cbw), cbw)[1]]
        if write:
            futures.append(dev.submit(self.ep_out, 0, length, data)[1])
        else:
            futures.append(dev.submit(self.ep_in, 1, length, into=self._data[slot])[1])
        futures.append(dev.submit(self.ep_in, 1, CSW.size, into=self._csw[slot])[1])
        return self.tag, length, futures

    @staticmethod
    async def finish(tag: int, length: int, futures: Sequence[asyncio.Future[SubmitReply]]) -> None:
        """Wait for one command's URBs; check the data length and the CSW as usb-storage does."""
        replies = [await f for f in futures]
        if any(r.status != 0 for r in replies):
            raise RuntimeError(f"command {tag:08x}: URB statuses {[r.status for r in replies]}")
        if replies[1].actual_length != length:
            raise RuntimeError(f"command {tag:08x}: {replies[1].actual_length} data bytes instead of {length}")
        signature, csw_tag, residue, status = CSW.unpack(replies[2].data)
        if signature != CSW_SIGNATURE or csw_tag != tag or status != 0 or residue != 0:
            raise RuntimeError(f"command {tag:08x}: bad CSW {bytes(replies[2].data).hex()}")


Run = tuple[int, bool]  # (bytes per command, write?)
ALL_RUNS: tuple[Run, ...] = tuple((size, write) for size in SIZES for write in (True, False))


def _label(size: int, write: bool) -> str:
    kib = size // KIB
    return f"{'write' if write else 'read'} {f'{kib // 1024} MiB' if kib >= 1024 else f'{kib} KiB'}/command"


@dataclass
class Disk:
    """A served disk and the host's view of it."""

    name: str
    server: ServerProcess
    bot: BotHost
    blocks: int
    block: int


def _bulk_endpoints(config: ConfigurationDescriptor) -> tuple[int, int]:
    eps = [ep for itf in config.interfaces for ep in itf.endpoints if ep.transfer_type == TransferType.BULK]
    return (next(ep.address for ep in eps if ep.address & 0x80), next(ep.address for ep in eps if not ep.address & 0x80))


async def _library_host(stack: contextlib.AsyncExitStack, server: ServerProcess, busid: str) -> BotHost:
    dev = await stack.enter_async_context(await RemoteDevice.open(HOST, busid, port=server.port))
    info = await dev.enumerate()
    return BotHost(dev, *_bulk_endpoints(info.configurations[0]))


def _raw_host(stack: contextlib.AsyncExitStack, server: ServerProcess, busid: str) -> BotHost:
    client = RawClient(server.port, busid)
    stack.callback(client.close)
    head = client.control(SetupPacket(0x80, GET_DESCRIPTOR, CONFIGURATION_DESCRIPTOR << 8, 0, 9))
    full = client.control(SetupPacket(0x80, GET_DESCRIPTOR, CONFIGURATION_DESCRIPTOR << 8, 0,
                                      int.from_bytes(head[2:4], "little")))
    config = ConfigurationDescriptor.parse(full)
    client.control(SetupPacket(0x00, SET_CONFIGURATION, config.value, 0, 0))
    return BotHost(RawBulk(client), *_bulk_endpoints(config))


async def _prepare(name: str, server: ServerProcess, bot: BotHost, pattern: bytes) -> Disk:
    """Wait until ready, read the capacity and fill the disk once (not timed)."""
    await bot.ready()
    blocks, block = await bot.capacity()
    per = len(pattern) // block
    for lba in range(0, blocks - per + 1, per):  # allocation and page cache out of the timed runs
        await bot.rw10(True, lba, per, block, pattern)
    if await bot.rw10(False, 0, per, block) != pattern:
        raise RuntimeError(f"{name}: the disk did not read back what was written")
    return Disk(name, server, bot, blocks, block)


async def _sequential(disk: Disk, size: int, write: bool, seconds: float, pattern: bytes, tally: Tally) -> None:
    """Sequential READ(10) or WRITE(10) of ``size`` bytes per command for ``seconds``, credited to ``tally``."""
    per = size // disk.block
    data = pattern[:size] if write else b""
    lba = 0
    commands = 0
    meter = CpuMeter(disk.server.pid)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while commands == 0 or time.perf_counter() < deadline:
        if lba + per > disk.blocks:
            lba = 0
        payload = await disk.bot.rw10(write, lba, per, disk.block, data)
        if not write and len(payload) != size:
            raise RuntimeError(f"READ(10) returned {len(payload)} bytes instead of {size}")
        commands += 1
        lba += per
    meter.add_to(tally, commands * size, time.perf_counter() - t0)


async def _queued(disk: Disk, host: QueuedBotHost, size: int, write: bool, seconds: float, pattern: bytes,
                  tally: Tally) -> None:
    """As :func:`_sequential`, with the URBs of ``host.depth`` commands in flight."""
    per = size // disk.block
    data = pattern[:size] if write else b""
    lba = 0
    commands = 0
    inflight: collections.deque[tuple[int, int, list[asyncio.Future[SubmitReply]]]] = collections.deque()
    meter = CpuMeter(disk.server.pid)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    slot = 0
    while True:
        while len(inflight) < host.depth:
            if lba + per > disk.blocks:
                lba = 0
            inflight.append(host.issue(slot, write, lba, per, disk.block, data))
            slot = (slot + 1) % host.depth
            lba += per
        await host.finish(*inflight.popleft())
        commands += 1
        if time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - t0
    meter.add_to(tally, commands * size, elapsed)
    while inflight:  # the rest finish untimed: the next run starts from an idle device
        await host.finish(*inflight.popleft())


@dataclass(frozen=True)
class Target:
    """A disk to measure: its name in the table, its server, the busid, and which client drives it."""

    name: str
    server: ServerProcess
    busid: str = "1-1"
    raw: bool = False
    cpus: frozenset[int] | None = None  # the client runs pinned to these while driving this disk (and the server)
    queued: int = 0  # 0: each URB awaited before the next is sent (usb-storage); N: N commands' URBs queued
    judged: bool = True  # its read rows get a target and a PASS/MISS verdict; False for reference rows


@dataclass
class Floors:
    """The plain-socket storage pattern (:func:`benchmarks.common.storage_pattern`), per size, not pinned and
    pinned to one CPU: measured in the same slices as the TCP copy."""

    free: dict[int, Tally]
    pinned: dict[int, Tally]

    @classmethod
    def empty(cls) -> Floors:
        return cls({size: Tally() for size in SIZES}, {size: Tally() for size in SIZES})

    def measure(self, seconds: float) -> None:
        for size in SIZES:
            for tallies, cpus in ((self.free, None), (self.pinned, one_cpu())):
                units, elapsed = storage_pattern(size, seconds, cpus)
                tallies[size].units += units
                tallies[size].seconds += elapsed


async def _drive(targets: Sequence[Target], cfg: BenchConfig, runs: Sequence[Run],
                 limits: MachineLimits | None, rounds: int,
                 floors: Floors | None = None) -> dict[tuple[str, int, bool], Tally]:
    """Every run on every disk, in ``rounds`` slices; a slice of the TCP copy limit (and of the plain-socket
    storage pattern) opens each round."""
    pattern = os.urandom(max(SIZES))
    tallies = {(t.name, size, write): Tally() for t in targets for size, write in runs}
    async with contextlib.AsyncExitStack() as stack:
        disks = []
        queues: list[QueuedBotHost | None] = []
        for t in targets:
            bot = _raw_host(stack, t.server, t.busid) if t.raw else await _library_host(stack, t.server, t.busid)
            disks.append(await _prepare(t.name, t.server, bot, pattern))
            queues.append(QueuedBotHost(cast(RemoteDevice, bot.dev), bot.ep_in, bot.ep_out, t.queued)
                          if t.queued else None)
        for _ in range(rounds):
            if limits is not None:
                limits.measure_copy(cfg.copy_seconds / rounds)  # blocking on purpose: nothing else runs meanwhile
            if floors is not None:
                floors.measure(cfg.copy_seconds / rounds / 4)
            for t, disk, queue in zip(targets, disks, queues, strict=True):
                with pinned(t.cpus):
                    for size, write in runs:
                        tally = tallies[(disk.name, size, write)]
                        if queue is None:
                            await _sequential(disk, size, write, cfg.storage_seconds / rounds, pattern, tally)
                        else:
                            await _queued(disk, queue, size, write, cfg.storage_seconds / rounds, pattern, tally)
    return tallies


def storage_section(cfg: BenchConfig, limits: MachineLimits) -> tuple[Section, Section]:
    """Mass-storage throughput, interleaved with the TCP copy limit (fills ``limits.copy``); and the same
    command pattern between plain sockets, the floor for any Python server on this machine."""
    from vusb.server import run

    section = Section("mass storage, sequential, CBW/data/CSW per command, library asyncio client (uvloop)")
    floor_section = Section("storage pattern between two plain Python processes (no vusb): the most a Python "
                            "server can do here")
    reason = storage_unavailable()
    if reason is not None:
        for _ in range(cfg.rounds):
            limits.measure_copy(cfg.copy_seconds / cfg.rounds)
        section.rows.append(Row("mass storage", "not measured", "", "", "", "n/a"))
        section.notes.append(reason)
        return section, floor_section
    cpu = one_cpu()
    floors = Floors.empty()
    with tempfile.TemporaryDirectory(prefix="vusb-bench-") as tmp, contextlib.ExitStack() as stack:
        disk = functools.partial(memory_disk, cfg.storage_disk_bytes)
        memory = stack.enter_context(ServerProcess(disk, count=4))
        image = stack.enter_context(ServerProcess(
            functools.partial(image_disk, os.path.join(tmp, "disk.img"), cfg.storage_disk_bytes)))
        image_queued = stack.enter_context(ServerProcess(
            functools.partial(image_disk, os.path.join(tmp, "queued.img"), cfg.storage_disk_bytes)))
        image_copied = stack.enter_context(ServerProcess(
            functools.partial(image_disk, os.path.join(tmp, "copied.img"), cfg.storage_disk_bytes, False)))
        on_asyncio = stack.enter_context(ServerProcess(disk, use_uvloop=False))
        polling = stack.enter_context(ServerProcess(disk, busy_poll=BUSY_POLL))
        targets = [Target("memory", memory), Target("image file", image),
                   Target(IMAGE_COPIED, image_copied, judged=False),
                   Target("memory, server on asyncio", on_asyncio, judged=False),
                   Target("memory, raw client (reference)", memory, "1-2", raw=True, judged=False),
                   Target(f"memory, server busy-polls {BUSY_POLL * 1e6:.0f} µs", polling),
                   Target(QUEUED_ONE, memory, "1-3", queued=1),
                   Target(QUEUED_TWO, memory, "1-4", queued=2),
                   Target("image file, 2 commands queued", image_queued, queued=2)]
        if cpu is not None:
            targets.append(Target("memory, pinned to one CPU", stack.enter_context(ServerProcess(disk, cpus=cpu)),
                                  cpus=cpu))
        tallies: dict[tuple[str, int, bool], Tally] = run(
            _drive(targets, cfg, ALL_RUNS, limits, cfg.rounds, floors), use_uvloop=True)
    judged_names = {t.name for t in targets if t.judged}
    copy = limits.copy_mbps
    for size in SIZES:
        for label, tally in (("not pinned", floors.free[size]), (f"pinned to {_cpu_name(cpu)}", floors.pinned[size])):
            mbps = tally.rate / MB
            floor_section.rows.append(Row(f"{_label(size, False)}, {label}", f"{mbps:,.0f} MB/s",
                                          f"{copy:,.0f} MB/s", f"{100 * mbps / copy:.0f}%"))
    floor_section.notes.append("READ pattern (79/48, 48/48+data, 48/61 bytes), blocking sockets, one command at a "
                               "time; measured in the slices of the TCP copy")
    for (name, size, write), tally in tallies.items():
        mbps = tally.rate / MB
        target, ok = "", ""
        judged = not write and name in judged_names
        if judged and size == max(SIZES):
            target = f">= {LARGE_TARGET_FRACTION:.0%} of TCP copy"
            ok = verdict(mbps >= LARGE_TARGET_FRACTION * copy)
        elif judged:
            target = f">= {SMALL_TARGET_MBPS:.0f} MB/s"
            ok = verdict(mbps >= SMALL_TARGET_MBPS)
        section.rows.append(Row(f"{_label(size, write)}, {name}", f"{mbps:,.0f} MB/s ({tally.cpu})",
                                f"{copy:,.0f} MB/s", f"{100 * mbps / copy:.0f}%", target, ok))
    section.notes.append(f"disk {cfg.storage_disk_bytes // (1024 * 1024)} MiB, filled before timing; the image file "
                         "lives in the page cache; one command in flight, as Linux usb-storage")
    section.notes.append("image file: READs of 32 KiB or more leave by sendfile(2) from the page cache; "
                         "zero_copy=False reads them into Python first (the reference, measured in the same rounds)")
    section.notes.append("raw client (reference): the same commands from a blocking socket with no event loop, to "
                         "separate the server's cost from the library client's; targets are judged on the library client")
    section.notes.append("pinned to one CPU: client and server share one CPU, so no command waits for a cross-CPU "
                         "wake-up (as the control round trip rows); the other rows let the scheduler place them")
    section.notes.append("server busy-polls: Server(busy_poll=...) / vusb serve --busy-poll: after each reply the "
                         "server polls instead of sleeping, so the next request needs no wake-up of its CPU")
    section.notes.append(f"queued: the host submits a command's CBW, data and CSW URBs together ({QUEUED_ONE}), or "
                         "keeps two commands' URBs in flight (the device NAKs the second CBW until the first CSW "
                         "is read); Linux usb-storage does neither, it waits for each URB")
    section.notes.append("IN data lands in the client's buffer (RemoteDevice.transfer_in_into), as a kernel host "
                         "receives it into the URB's buffer")
    return section, floor_section


def _cpu_name(cpus: frozenset[int] | None) -> str:
    return f"CPU {min(cpus)}" if cpus else "one CPU"


def profile_storage(cfg: BenchConfig, top: int = 15) -> list[str]:
    """cProfile of the server serving a memory disk to the raw client: reads of each size, 1 MiB writes."""
    from vusb.server import run

    if storage_unavailable() is not None:
        return []
    out: list[str] = []
    for size, write in ((min(SIZES), False), (max(SIZES), False), (max(SIZES), True)):
        server = ServerProcess(functools.partial(memory_disk, cfg.storage_disk_bytes), profile=True)
        try:
            with server:
                tallies: dict[tuple[str, int, bool], Tally] = run(
                    _drive([Target("memory", server, raw=True)], cfg, [(size, write)], None, 1), use_uvloop=True)
            stats = server.profile_stats()
        finally:
            server.discard_profile()
        mbps = tallies[("memory", size, write)].rate / MB
        out.append(f"--- server profile: mass storage {_label(size, write)}, memory disk, raw client "
                   f"({mbps:,.0f} MB/s, under cProfile; includes filling the disk) ---")
        out.extend(profile_report(stats, top) if stats is not None else ["(no profile data)"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_storage",
                                     description="Benchmark vusb mass storage over USB/IP on loopback.")
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts (smoke test)")
    args = parser.parse_args(argv)
    cfg = BenchConfig.quick_config() if args.quick else BenchConfig()
    limits = MachineLimits()
    print("\n".join(wrap_lines([f"machine: {machine_description()}", ""])), flush=True)
    section, floor = storage_section(cfg, limits)
    copy_only = limits.section()
    copy_only.rows = copy_only.rows[:1]
    print(format_table([copy_only, floor, section], verdicts=not args.quick), flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
