"""Coverage-guided fuzz targets for vusb, with a seeded random fallback.

Each target module (``fuzz.fuzz_codec``, ``fuzz.fuzz_server``) defines
``TestOneInput(data: bytes) -> None``, which raises only when an invariant breaks,
and ``generate(rng) -> bytes``, which builds one structured input (valid USB/IP
messages with mutated fields, truncations and random bytes).  ``main()`` runs a
target under atheris (libFuzzer) when it is installed and falls back to a seeded
random loop over ``generate`` otherwise; both understand the libFuzzer flags
``-runs=N``, ``-max_total_time=S``, ``-seed=N`` and ``-artifact_prefix=DIR/``.
Pass ``-atheris=0`` to force the fallback.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Target = Callable[[bytes], None]
Generator = Callable[[random.Random], bytes]

# ------------------------------------------------------------------ wire templates (hand-packed, as a client sends them)

SUBMIT_HEAD = struct.Struct(">IIIIIIiiii8s")
UNLINK_HEAD = struct.Struct(">IIIIII24s")
ISO_DESC = struct.Struct(">IIIi")

SETUPS = [
    bytes.fromhex("8006000100001200"),  # GET_DESCRIPTOR device
    bytes.fromhex("800602000000ff00"),  # GET_DESCRIPTOR configuration
    bytes.fromhex("8006000300000400"),  # GET_DESCRIPTOR string 0
    bytes.fromhex("0009010000000000"),  # SET_CONFIGURATION 1
    bytes.fromhex("0009000000000000"),  # SET_CONFIGURATION 0
    bytes.fromhex("8008000000000100"),  # GET_CONFIGURATION
    bytes.fromhex("0b01000000000000"),  # SET_INTERFACE 0 alt 0
    bytes.fromhex("0201000081000000"),  # CLEAR_FEATURE(HALT) ep 0x81
    bytes.fromhex("0203000081000000"),  # SET_FEATURE(HALT) ep 0x81
    bytes.fromhex("a101000100000800"),  # HID GET_REPORT input
    bytes.fromhex("2109000200000100"),  # HID SET_REPORT output, 1 byte
    bytes.fromhex("210a000000000000"),  # HID SET_IDLE
    bytes.fromhex("8106002200004000"),  # GET_DESCRIPTOR HID report
    bytes.fromhex("4042000000000400"),  # vendor OUT (unhandled)
]


def import_request(busid: str = "1-1", version: int = 0x0111) -> bytes:
    return struct.pack(">HHI", version, 0x8003, 0) + busid.encode().ljust(32, b"\0")


def submit(seqnum: int, ep: int, direction: int, length: int, setup: bytes = bytes(8), data: bytes = b"",
           *, flags: int = 0, npackets: int = 0, interval: int = 0, devid: int = 0x10001) -> bytes:
    return SUBMIT_HEAD.pack(1, seqnum, devid, direction, ep, flags, length, 0, npackets, interval, setup) + data


def unlink(seqnum: int, target: int) -> bytes:
    return UNLINK_HEAD.pack(2, seqnum, 0x10001, 0, 0, target, bytes(24))


BIG_LENGTHS = (16 * 1024, 16 * 1024 + 1, 40_000, 64 * 1024 + 7)
"""OUT payloads of these lengths are received in place (from 16 KiB: see ``vusb.protocol._DIRECT_MIN``)."""
MAX_READS = 4096
"""A long stream is delivered in longer reads, so one input never needs more reads than this."""


class Receiver(Protocol):
    """What the event loop drives on a ``BufferedProtocol``: the codecs and the server's ``Connection``."""

    def get_buffer(self, sizehint: int) -> memoryview: ...

    def buffer_updated(self, nbytes: int) -> None: ...


def write_in_place(receiver: Receiver, data: bytes | memoryview, stop: Callable[[], bool] = lambda: False) -> None:
    """Deliver ``data`` as the event loop does to a ``BufferedProtocol``: copied into the view ``get_buffer``
    offers (as much as fits), then ``buffer_updated``; until all is delivered or ``stop()`` says so."""
    pos = 0
    while pos < len(data) and not stop():
        view = receiver.get_buffer(-1)
        n = min(len(view), len(data) - pos)
        if n <= 0:
            raise AssertionError(f"get_buffer() offered an empty buffer with {len(data) - pos} bytes still to come")
        view[:n] = data[pos : pos + n]
        del view  # the event loop keeps no view either: a view kept pins the payload buffer
        receiver.buffer_updated(n)
        pos += n


def read_size(chunk: int, total: int) -> int:
    """Bytes per read for an input's chunk byte (0: everything at once), bounded to :data:`MAX_READS` reads."""
    return max(chunk or total or 1, -(-total // MAX_READS))


def _u32(rng: random.Random) -> int:
    return rng.choice([0, 1, 2, 3, 15, 16, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.getrandbits(32), rng.randrange(64)])


def _i32(rng: random.Random) -> int:
    v = _u32(rng)
    return v - (1 << 32) if v >= 1 << 31 else v


def random_message(rng: random.Random, seqnums: list[int]) -> bytes:
    """One URB-phase message, mostly valid, sometimes with hostile fields."""
    kind = rng.random()
    seq = rng.randrange(1, 64) if rng.random() < 0.9 else _u32(rng)
    if kind < 0.45:
        ep = rng.choice([0, 0, 1, 2, rng.randrange(16)]) if rng.random() < 0.95 else _u32(rng)
        direction = rng.choice([0, 1]) if rng.random() < 0.95 else _u32(rng)
        setup = rng.choice(SETUPS) if rng.random() < 0.8 else rng.randbytes(8)
        size = rng.random()
        length = rng.choice([0, 1, 8, 18, 64, 255]) if size < 0.85 else rng.choice(BIG_LENGTHS) if size < 0.9 else _i32(rng)
        data = (rng.randbytes(length if length in BIG_LENGTHS else max(0, min(length, 300)))
                if direction == 0 else b"")
        seqnums.append(seq)
        npackets = 0 if rng.random() < 0.8 else _i32(rng)
        return submit(seq, ep, direction, length, setup, data, flags=_u32(rng) if rng.random() < 0.1 else 0,
                      npackets=npackets, interval=rng.choice([0, 1, 10]))
    if kind < 0.7:
        target = rng.choice(seqnums) if seqnums and rng.random() < 0.8 else _u32(rng)
        return unlink(seq, target)
    if kind < 0.8:
        return ISO_DESC.pack(_u32(rng), _u32(rng), _u32(rng), _i32(rng))
    if kind < 0.9:
        return struct.pack(">II", _u32(rng), seq) + rng.randbytes(40)
    return rng.randbytes(rng.randrange(0, 64))


def random_stream(rng: random.Random, count: int) -> bytes:
    seqnums: list[int] = []
    parts = [random_message(rng, seqnums) for _ in range(count)]
    if parts and rng.random() < 0.3:
        i = rng.randrange(len(parts))
        parts[i] = parts[i][: rng.randrange(len(parts[i]) + 1)]
    return b"".join(parts)


# ------------------------------------------------------------------ running


@dataclass
class Options:
    runs: int = 0  # 0: unbounded
    max_total_time: float = 0.0  # 0: unbounded
    seed: int = 0
    artifact_prefix: str = "./"
    use_atheris: bool = True


def parse_options(argv: Sequence[str]) -> Options:
    opts = Options()
    for arg in argv[1:]:
        if not arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.lstrip("-").partition("=")
        if key == "runs":
            opts.runs = int(value)
        elif key == "max_total_time":
            opts.max_total_time = float(value)
        elif key == "seed":
            opts.seed = int(value)
        elif key == "artifact_prefix":
            opts.artifact_prefix = value
        elif key == "atheris":
            opts.use_atheris = value not in ("0", "false", "no")
    return opts


def save_artifact(prefix: str, data: bytes) -> str:
    path = f"{prefix}crash-{hashlib.sha1(data).hexdigest()}"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def random_loop(target: Target, generate: Generator, opts: Options) -> int:
    """Feed generated inputs to ``target`` until the bound; 0 if no finding, 1 otherwise."""
    rng = random.Random(opts.seed)
    deadline = time.monotonic() + opts.max_total_time if opts.max_total_time else None
    runs = 0
    while True:
        if opts.runs and runs >= opts.runs:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        if not opts.runs and deadline is None and runs >= 100_000:
            break
        data = generate(rng)
        runs += 1
        try:
            target(data)
        except Exception:  # noqa: BLE001 (any exception is a finding)
            traceback.print_exc()
            path = save_artifact(opts.artifact_prefix, data)
            print(f"FINDING after {runs} runs (seed {opts.seed}); input saved to {path}", file=sys.stderr)
            return 1
    print(f"done: {runs} runs, seed {opts.seed}, no finding", file=sys.stderr)
    return 0


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def atheris_wanted(argv: Sequence[str] | None = None) -> bool:
    return parse_options(sys.argv if argv is None else argv).use_atheris and have_atheris()


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Wrap a target's imports of vusb and devices: atheris instruments them for coverage."""
    if not atheris_wanted():
        return contextlib.nullcontext()
    import atheris

    cm: contextlib.AbstractContextManager[object] = atheris.instrument_imports(include=["vusb", "devices"])
    return cm


def main(target: Target, generate: Generator, argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    opts = parse_options(argv)
    if opts.use_atheris and have_atheris():
        import atheris

        libfuzzer_args = [a for a in argv if not a.startswith("-atheris=")]
        os.makedirs(os.path.dirname(opts.artifact_prefix) or ".", exist_ok=True)
        atheris.Setup(libfuzzer_args, target)
        atheris.Fuzz()  # exits the process: non-zero on a finding
        return 0
    if opts.use_atheris:
        print("atheris is not installed: falling back to the seeded random loop", file=sys.stderr)
    return random_loop(target, generate, opts)
