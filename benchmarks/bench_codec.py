"""The URB header codecs: construct declarations against the struct codecs compiled from them.

    python -m benchmarks.bench_codec [--quick]

``vusb.layouts`` declares every layout once with construct; ``compile_fixed`` derives a
``struct.Struct`` from a fixed-size declaration.  This measures, in one process, what each costs per
48-byte header (CMD_SUBMIT parsed, RET_SUBMIT built), and what the sans-IO codec costs per URB end to
end (a CMD_SUBMIT decoded into an event, a RET_SUBMIT header encoded), so the choice on the URB path
rests on figures.  CPU time of this process; nothing else is involved.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks.common import Row, Section, format_table, machine_description, wrap_lines
from vusb import layouts
from vusb.protocol import ClientCodec, ImportReply, Phase, ServerCodec, SubmitCommand, ret_submit_header
from vusb.protocol import ExportedDevice as _Exported

CMD = layouts.CMD_SUBMIT_FAST.pack(1, 7, 0x10001, 1, 1, 0x200, 122880, 0, 0, 0, bytes(8))
RET_FIELDS = {"command": 3, "seqnum": 7, "devid": 0, "direction": 0, "ep": 0, "status": 0, "actual_length": 122880,
              "start_frame": 0, "number_of_packets": 0, "error_count": 0, "padding": bytes(8)}


def per_call_ns(fn: Callable[[], object], iterations: int) -> float:
    """Best of three timings of ``iterations`` calls, in ns per call (the least disturbed by other work)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / iterations)
    return best


def _codec_round(iterations: int) -> Callable[[], object]:
    """One CMD_SUBMIT through ServerCodec (bytes in, event out) plus its RET_SUBMIT header."""
    codec = ServerCodec()
    codec.receive_data(bytes.fromhex("0111 8003 00000000") + b"1-1".ljust(32, b"\0"))
    codec.next_event()
    codec.send(ImportReply(0, _Exported(busid="1-1")))

    def run() -> object:
        codec.receive_data(CMD)
        event = codec.next_event()
        assert isinstance(event, SubmitCommand)
        return ret_submit_header(event.seqnum, 0, 122880)

    return run


def codec_section(iterations: int) -> Section:
    construct_parse = per_call_ns(lambda: layouts.CMD_SUBMIT.parse(CMD), iterations // 10)
    struct_parse = per_call_ns(lambda: layouts.CMD_SUBMIT_FAST.unpack(CMD), iterations)
    construct_build = per_call_ns(lambda: layouts.RET_SUBMIT.build(RET_FIELDS), iterations // 10)
    struct_build = per_call_ns(lambda: ret_submit_header(7, 0, 122880), iterations)
    client = ClientCodec(phase=Phase.URB)
    vectored = per_call_ns(lambda: client.send_vectored(SubmitCommand(7, 0x10001, 1, 1, 0x200, 122880)), iterations)
    codec = per_call_ns(_codec_round(iterations), iterations)
    rows = [
        Row("CMD_SUBMIT parse, construct Struct", f"{construct_parse / 1000:.2f} µs"),
        Row("CMD_SUBMIT parse, compiled struct (compile_fixed)", f"{struct_parse / 1000:.2f} µs",
            ratio=f"x{construct_parse / struct_parse:.0f} faster"),
        Row("RET_SUBMIT build, construct Struct", f"{construct_build / 1000:.2f} µs"),
        Row("RET_SUBMIT build, compiled struct (ret_submit_header)", f"{struct_build / 1000:.2f} µs",
            ratio=f"x{construct_build / struct_build:.0f} faster"),
        Row("ServerCodec: CMD_SUBMIT bytes -> event -> RET_SUBMIT header", f"{codec / 1000:.2f} µs"),
        Row("ClientCodec: CMD_SUBMIT pieces for a vectored write", f"{vectored / 1000:.2f} µs"),
    ]
    return Section("URB header codecs, CPU time per header in one process (best of 3)", rows,
                   ["the URB path uses the compiled structs; construct stays for descriptors and the op phase"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_codec",
                                     description="construct against compiled struct codecs on the URB path.")
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts (smoke test)")
    args = parser.parse_args(argv)
    print("\n".join(wrap_lines([f"machine: {machine_description()}", ""])), flush=True)
    print(format_table([codec_section(200 if args.quick else 100_000)], verdicts=not args.quick), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
