"""Benchmarks of the vusb USB/IP server; prints a table of figures beside the machine's own limits.

    python -m benchmarks.bench_server            # full run (about 30 s)
    python -m benchmarks.bench_server --profile  # also profile the server's hot paths (cProfile)
    python -m benchmarks.bench_server --quick    # tiny counts: proves the scripts work, figures mean nothing

What is measured (each server runs in its own process, on an ephemeral loopback port):

- control round trip at queue depth 1: GET_DESCRIPTOR(DEVICE, 18) to a served Keyboard, from a raw
  blocking-socket client in another process (no event loop on the client side), server on uvloop and
  on asyncio's own loop; then the same with the library's asyncio client for reference;
- small bulk URBs per second with many in flight (a benchmark-only device whose bulk IN always has
  8 bytes ready and whose bulk OUT consumes everything);
- server memory per idle exported device (RSS delta and tracemalloc, 1/10/100 keyboards);
- the URB header codecs: construct against the compiled struct codecs (benchmarks.bench_codec);
- mass-storage throughput (benchmarks.bench_storage) when vusb.devices.storage exists, beside the same
  command pattern between two plain Python processes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks.common import (
    BENCH_IN_EP,
    BENCH_OUT_EP,
    BENCH_PAYLOAD,
    BUSY_POLL,
    HEADER,
    HOST,
    SUBMIT_HEADER,
    USBIP_DIR_IN,
    BenchConfig,
    CpuMeter,
    CpuUse,
    DeviceFactory,
    Latency,
    MachineLimits,
    RawClient,
    Row,
    Section,
    ServerProcess,
    Tally,
    bench_device,
    echo_peer,
    format_table,
    keyboard_device,
    load_average,
    machine_description,
    one_cpu,
    ping_pong_batch,
    pinned,
    pipelined,
    profile_report,
    qd1_round_trips,
    server_memory,
    verdict,
    wrap_lines,
)
from vusb.urb import SetupPacket

GET_DEVICE_DESCRIPTOR = SetupPacket(0x80, 6, 0x0100, 0, 18)
SET_CONFIGURATION_1 = SetupPacket(0x00, 9, 1, 0, 0)
RTT_TARGET_US = 40.0
MEMORY_TARGET_KIB = 200.0
IN_LENGTH = 64  # transfer_buffer_length of the small bulk IN URBs (the device answers with 8 bytes)


def loop_name(use_uvloop: bool) -> str:
    return "uvloop" if use_uvloop else "asyncio"


def slices(total: int, rounds: int) -> int:
    return max(1, total // max(1, rounds))


# ------------------------------------------------------------------ control round trip


def open_control_client(port: int, busid: str = "1-1") -> RawClient:
    client = RawClient(port, busid)
    if len(client.control(GET_DEVICE_DESCRIPTOR)) != 18:
        client.close()
        raise RuntimeError("GET_DESCRIPTOR(DEVICE, 18) did not return 18 bytes")
    return client


def raw_control_samples(client: RawClient, iterations: int, warmup: int) -> list[int]:
    """GET_DESCRIPTOR(DEVICE, 18) at queue depth 1 from a blocking socket; round trips in ns."""
    setup = GET_DEVICE_DESCRIPTOR.to_bytes()
    devid = client.devid
    pack = SUBMIT_HEADER.pack

    def request(i: int) -> bytes:
        return pack(1, i + 100, devid, 1, 0, USBIP_DIR_IN, 18, 0, 0, 0, setup)

    samples = qd1_round_trips(client.sock, request, HEADER + 18, iterations, warmup)
    client.control(GET_DEVICE_DESCRIPTOR)  # still in step after the run
    return samples


def control_rtt_raw(port: int, cfg: BenchConfig) -> Latency:
    """One uninterleaved measurement (for profiles and tests)."""
    with open_control_client(port) as client:
        return Latency.from_ns(raw_control_samples(client, cfg.rtt_iterations, cfg.rtt_warmup))


async def _control_rtt_async(port: int, busid: str, iterations: int, warmup: int) -> list[int]:
    from vusb.client import RemoteDevice

    clock = time.perf_counter_ns
    samples: list[int] = []
    async with await RemoteDevice.open(HOST, busid, port=port) as dev:
        for i in range(warmup + iterations):
            t0 = clock()
            data = await dev.get_descriptor(1, 0, 18)
            t1 = clock()
            if len(data) != 18:
                raise RuntimeError("GET_DESCRIPTOR(DEVICE, 18) did not return 18 bytes")
            if i >= warmup:
                samples.append(t1 - t0)
    return samples


def library_control_samples(port: int, busid: str, iterations: int, warmup: int, client_uvloop: bool) -> list[int]:
    """The same request through :class:`vusb.client.RemoteDevice` (a fresh connection and event loop)."""
    from vusb.server import run

    samples: list[int] = run(_control_rtt_async(port, busid, iterations, warmup), use_uvloop=client_uvloop)
    return samples


def _rtt_row(name: str, rounds: list[list[int]], floor: Latency, target: bool) -> Row:
    lat = Latency.from_ns([x for r in rounds for x in r], rounds)
    return Row(
        name, str(lat), f"p50 {floor.p50_us:.1f} µs  p99 {floor.p99_us:.1f} µs", f"x{lat.p50_us / floor.p50_us:.1f} p50",
        f"p50 < {RTT_TARGET_US:.0f} µs" if target else "",
        verdict(lat.p50_us < RTT_TARGET_US) if target else "",
    )


def control_section(cfg: BenchConfig, limits: MachineLimits) -> Section:
    """Control round trips interleaved with the TCP ping-pong floor (fills the ping-pong limits).

    The main set runs with the client, the server and the echo peer pinned to one CPU: on a small
    virtual machine a cross-CPU wake-up alone costs 20-100 µs depending on what the other CPU is
    doing, which swamps the server's own cost; on one CPU the round trip is the CPU time of both
    sides plus two context switches, which is stable.  One unpinned pair shows the scheduler's choice.
    """
    rounds = cfg.rounds
    per, warm = slices(cfg.rtt_iterations, rounds), cfg.rtt_warmup // rounds
    aper, awarm = slices(cfg.async_rtt_iterations, rounds), max(1, cfg.async_rtt_iterations // rounds // 10)
    cpu = one_cpu()
    where = f"pinned to CPU {min(cpu)}" if cpu is not None else "not pinned (no CPU affinity here)"
    limits.pinned_cpu = where
    raw: dict[bool, list[list[int]]] = {True: [], False: []}
    library: dict[bool, list[list[int]]] = {False: [], True: []}
    free: list[list[int]] = []
    polling: list[list[int]] = []
    with contextlib.ExitStack() as stack:
        echo = stack.enter_context(echo_peer(HEADER, HEADER, cpu))
        free_echo = stack.enter_context(echo_peer(HEADER, HEADER))
        servers = {uv: stack.enter_context(ServerProcess(keyboard_device, count=2, use_uvloop=uv, cpus=cpu))
                   for uv in (True, False)}
        free_server = stack.enter_context(ServerProcess(keyboard_device))
        polling_server = stack.enter_context(ServerProcess(keyboard_device, busy_poll=BUSY_POLL))
        clients = {uv: stack.enter_context(open_control_client(servers[uv].port, "1-1")) for uv in (True, False)}
        free_client = stack.enter_context(open_control_client(free_server.port, "1-1"))
        polling_client = stack.enter_context(open_control_client(polling_server.port, "1-1"))
        loops = {uv: server.loop for uv, server in servers.items()}
        free_loop = free_server.loop
        for _ in range(rounds):
            with pinned(cpu):
                limits.ping_pong_rounds.append(qd1_round_trips(echo, ping_pong_batch_one, HEADER, per, warm))
                for uv in (True, False):
                    raw[uv].append(raw_control_samples(clients[uv], per, warm))
                for client_uv in (False, True):
                    library[client_uv].append(
                        library_control_samples(servers[True].port, "1-2", aper, awarm, client_uv))
            limits.free_ping_pong_rounds.append(qd1_round_trips(free_echo, ping_pong_batch_one, HEADER, per, warm))
            free.append(raw_control_samples(free_client, per, warm))
            polling.append(raw_control_samples(polling_client, per, warm))
    section = Section("control round trip, GET_DESCRIPTOR(DEVICE,18) to a Keyboard, queue depth 1")
    floor = limits.ping_pong
    for uv in (True, False):
        section.rows.append(_rtt_row(f"raw client, server on {loops[uv]}, {where}", raw[uv], floor, True))
    for client_uv in (False, True):
        section.rows.append(_rtt_row(f"library client ({loop_name(client_uv)} loop), server on {loops[True]}, {where}",
                                     library[client_uv], floor, False))
    section.rows.append(_rtt_row(f"raw client, server on {free_loop}, not pinned", free, limits.free_ping_pong, True))
    section.rows.append(_rtt_row(f"raw client, server on {free_loop} busy-polling {BUSY_POLL * 1e6:.0f} µs, not pinned",
                                 polling, limits.free_ping_pong, True))
    section.notes.append("raw client: blocking socket, TCP_NODELAY, hand-packed CMD_SUBMIT, in its own process; the "
                         "limit is the same client against a plain TCP echo process placed the same way")
    section.notes.append("busy-polling: vusb serve --busy-poll 50 (Server(busy_poll=50e-6)): after each reply the server "
                         "polls instead of sleeping, so the next request finds its CPU awake")
    return section


def ping_pong_batch_one(i: int) -> bytes:
    return ping_pong_batch(i, 1)


# ------------------------------------------------------------------ small URBs, many in flight


class RateClient:
    """A raw client that configures the benchmark device and keeps many small bulk URBs in flight."""

    def __init__(self, port: int, busid: str = "1-1") -> None:
        self.raw = RawClient(port, busid)
        self.raw.control(SET_CONFIGURATION_1)
        status, data = self.raw.transfer(BENCH_IN_EP & 0x0F, 1, IN_LENGTH)
        if status != 0 or len(data) != BENCH_PAYLOAD:
            raise RuntimeError(f"bulk IN sanity check failed: status {status}, {len(data)} bytes")
        status, _ = self.raw.transfer(BENCH_OUT_EP, 0, BENCH_PAYLOAD, data=bytes(BENCH_PAYLOAD))
        if status != 0:
            raise RuntimeError(f"bulk OUT sanity check failed: status {status}")
        self.seq = 1000

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> RateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, direction: int, in_flight: int, seconds: float) -> tuple[int, float]:
        """(URBs completed, seconds) keeping ``in_flight`` outstanding for ``seconds``."""
        devid = self.raw.devid
        pack = SUBMIT_HEADER.pack
        zero_setup = bytes(8)
        base = self.seq
        if direction == 1:
            reply_size = HEADER + BENCH_PAYLOAD
            ep = BENCH_IN_EP & 0x0F

            def batch(first: int, count: int) -> bytes:
                return b"".join(pack(1, s, devid, 1, ep, USBIP_DIR_IN, IN_LENGTH, 0, 0, 0, zero_setup)
                                for s in range(base + first, base + first + count))
        else:
            reply_size = HEADER
            body = bytes(BENCH_PAYLOAD)

            def batch(first: int, count: int) -> bytes:
                return b"".join(pack(1, s, devid, 0, BENCH_OUT_EP, 0, len(body), 0, 0, 0, zero_setup) + body
                                for s in range(base + first, base + first + count))

        done, elapsed = pipelined(self.raw.sock, batch, reply_size, in_flight, seconds, status_offset=20)
        self.seq = (base + done + in_flight + 1) & 0x7FFFFFFF
        return done, elapsed


def urb_rate_raw(port: int, cfg: BenchConfig, direction: int, server_pid: int | None = None) -> tuple[float, CpuUse]:
    """One uninterleaved measurement (for profiles and tests): URBs per second and CPU use."""
    tally = Tally()
    with RateClient(port) as client:
        meter = CpuMeter(server_pid)
        done, elapsed = client.run(direction, cfg.in_flight, cfg.rate_seconds)
        meter.add_to(tally, done, elapsed)
    return tally.rate, tally.cpu


def urb_section(cfg: BenchConfig, limits: MachineLimits) -> Section:
    """URB rates interleaved with a pipelined TCP echo (fills ``limits.pipelined``)."""
    limits.in_flight = cfg.in_flight
    chunk = cfg.rate_seconds / cfg.rounds
    tallies = {(uv, d): Tally() for uv in (True, False) for d in (1, 0)}
    with contextlib.ExitStack() as stack:
        echo = stack.enter_context(echo_peer(HEADER, HEADER + BENCH_PAYLOAD))
        servers = {uv: stack.enter_context(ServerProcess(bench_device, use_uvloop=uv)) for uv in (True, False)}
        clients = {uv: stack.enter_context(RateClient(servers[uv].port)) for uv in (True, False)}
        loops = {uv: server.loop for uv, server in servers.items()}
        for _ in range(cfg.rounds):
            done, elapsed = pipelined(echo, ping_pong_batch, HEADER + BENCH_PAYLOAD, cfg.in_flight, chunk)
            limits.pipelined.units += done
            limits.pipelined.seconds += elapsed
            for (uv, direction), tally in tallies.items():
                meter = CpuMeter(servers[uv].pid)
                done, elapsed = clients[uv].run(direction, cfg.in_flight, chunk)
                meter.add_to(tally, done, elapsed)
    section = Section(f"small bulk URBs ({BENCH_PAYLOAD} B), {cfg.in_flight} in flight, raw pipelining client")
    limit = f"{limits.pipelined_rate:,.0f} msg/s"
    for (uv, direction), tally in tallies.items():
        label = "bulk IN" if direction == 1 else "bulk OUT"
        per_urb = 1e6 * tally.server_cpu / tally.units if tally.units else float("nan")
        section.rows.append(Row(f"{label}, server on {loops[uv]}",
                                f"{tally.rate:,.0f} URB/s ({tally.cpu}; srv {per_urb:.0f} µs CPU/URB)", limit,
                                f"{100 * tally.rate / limits.pipelined_rate:.0f}%"))
    section.notes.append("limit: the same client against a plain TCP echo process answering each 48-byte request; "
                         "CPU: server and client CPU seconds per wall second (100% = one core)")
    return section


# ------------------------------------------------------------------ memory


def memory_section(cfg: BenchConfig) -> Section:
    section = Section("server memory per idle exported Keyboard (fresh server process, uvloop)")
    rss, final_rss = server_memory(keyboard_device, cfg.memory_counts, use_tracemalloc=False)
    traced, _ = server_memory(keyboard_device, cfg.memory_counts, use_tracemalloc=True)
    largest = cfg.memory_counts[-1]
    for (count, rss_delta), (_, traced_delta) in zip(rss, traced, strict=True):
        per_rss = rss_delta / count / 1024
        per_traced = traced_delta / count / 1024
        judged = count == largest
        section.rows.append(Row(
            f"{count} device(s)",
            f"RSS +{rss_delta / 1024:,.0f} KiB ({per_rss:.1f} KiB/dev); traced {per_traced:.1f} KiB/dev",
            f"server RSS {final_rss / 1024 / 1024:.1f} MiB" if judged else "",
            "",
            f"< {MEMORY_TARGET_KIB:.0f} KiB/dev" if judged else "",
            verdict(max(per_rss, per_traced) < MEMORY_TARGET_KIB) if judged else "",
        ))
    section.notes.append("RSS moves in pages and malloc arenas, so small counts are coarse; tracemalloc counts "
                         "Python allocations exactly (judged on the larger of the two, at the largest count)")
    return section


# ------------------------------------------------------------------ profiles


def profile_hot_paths(cfg: BenchConfig, top: int, storage: bool = True) -> list[str]:
    """cProfile inside the server process (uvloop) while the control and small-URB benchmarks run."""
    out: list[str] = []
    runs: tuple[tuple[str, DeviceFactory, Callable[[int], str]], ...] = (
        ("control round trip (raw client, QD1)", keyboard_device, lambda port: str(control_rtt_raw(port, cfg))),
        ("bulk IN URBs, many in flight", bench_device, lambda port: f"{urb_rate_raw(port, cfg, 1)[0]:,.0f} URB/s"),
        ("bulk OUT URBs, many in flight", bench_device, lambda port: f"{urb_rate_raw(port, cfg, 0)[0]:,.0f} URB/s"),
    )
    for title, factory, action in runs:
        server = ServerProcess(factory, use_uvloop=True, profile=True)
        try:
            with server:
                figure = action(server.port)
            stats = server.profile_stats()
            out.append(f"--- server profile: {title} ({figure}, under cProfile) ---")
            out.extend(profile_report(stats, top) if stats is not None else ["(no profile data)"])
        finally:
            server.discard_profile()
    if storage:
        from benchmarks.bench_storage import profile_storage

        out.extend(profile_storage(cfg, top))
    return out


# ------------------------------------------------------------------ the whole suite


def progress(what: str) -> None:
    """Say on stderr what runs now (the table goes to stdout at the end)."""
    print(f"vusb bench: {what}...", file=sys.stderr, flush=True)


def run_all(cfg: BenchConfig, *, storage: bool = True, profile: bool = False, top: int = 15) -> str:
    """Run every benchmark and return the report (table, machine, notes, optional profiles)."""
    started = time.perf_counter()
    header = [f"vusb benchmarks{' (--quick: figures are meaningless)' if cfg.quick else ''}",
              f"machine: {machine_description()}"]
    limits = MachineLimits()
    progress("control round trips")
    sections = [control_section(cfg, limits)]
    progress("small URBs")
    sections.append(urb_section(cfg, limits))
    progress("server memory")
    sections.append(memory_section(cfg))
    from benchmarks.bench_codec import codec_section

    progress("URB header codecs")
    sections.append(codec_section(200 if cfg.quick else 100_000))
    if storage:
        from benchmarks.bench_storage import storage_section

        progress("mass storage")
        try:
            storage_rows, storage_floor = storage_section(cfg, limits)  # measures the TCP copy between its slices
            sections += [storage_floor, storage_rows]
        except (RuntimeError, TypeError, ValueError, OSError) as exc:  # vusb.devices.storage is young: report, go on
            sections.append(Section("mass storage", [Row("mass storage", "failed", verdict="n/a")],
                                    [f"{type(exc).__name__}: {exc}"]))
    if not limits.copy.seconds:
        for _ in range(cfg.rounds):
            limits.measure_copy(cfg.copy_seconds / cfg.rounds)
    sections.insert(0, limits.section())
    header.append(f"load at the end: {load_average()}")
    lines = [*header, "", format_table(sections, verdicts=not cfg.quick)]
    if profile:
        progress("profiles")
        lines += ["", *profile_hot_paths(cfg, top, storage)]
    lines += ["", f"total {time.perf_counter() - started:.1f} s; 1 MB = 10^6 bytes; "
                  "p50/p99 are nearest-rank percentiles of client-side round trips"]
    return "\n".join(wrap_lines("\n".join(lines).splitlines()))


def parse_args(argv: Sequence[str] | None, prog: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Benchmark the vusb USB/IP server: control round trips, URB rates, server memory, "
        "URB header codecs and mass storage, each beside the machine's own limit measured in the same run "
        "(about 60 s). The table goes to standard output, progress to standard error.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny iteration counts: proves the benchmarks run; prints figures without targets or "
                        "PASS/MISS, since they mean nothing")
    parser.add_argument("--profile", action="store_true", help="also profile the server's hot paths with cProfile")
    parser.add_argument("--top", type=int, default=15, help="functions listed per profile (default 15)")
    parser.add_argument("--no-storage", action="store_true", help="skip the mass-storage benchmark")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.bench_server") -> int:
    args = parse_args(argv, prog)
    cfg = BenchConfig.quick_config() if args.quick else BenchConfig()
    print(run_all(cfg, storage=not args.no_storage, profile=args.profile, top=args.top), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
