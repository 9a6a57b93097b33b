"""Fuzz target: bytes from a hostile peer fed to the sans-IO codecs.

Input layout: byte 0 picks the codec and phase (its low three bits) and how the
bytes go in (bits 3-4: 0 copied in with ``receive_data``, 1 received in place
with ``get_buffer``/``buffer_updated`` as the event loop does, 2 and 3 the two
alternating chunk by chunk), byte 1 the chunk size the rest is fed in (0 = all
at once; a long stream gets larger chunks, see ``fuzz.read_size``).  Streams
carry payloads from 16 KiB too, which the codecs receive in place into buffers
of their own (or, for a client, into the buffer a URB was submitted with).
Invariant: ``next_event()`` returns messages or
NEED_DATA, or raises :class:`vusb.errors.ProtocolError` (``LimitExceeded``
included), never anything else; the codec never buffers more than it was fed.

Run it: ``python -m fuzz.fuzz_codec -max_total_time=60`` (see docs/robustness.md).
"""

from __future__ import annotations

import random
import sys

from fuzz import BIG_LENGTHS, import_request, instrumented, main, random_stream, read_size, write_in_place

with instrumented():
    from vusb.errors import ProtocolError
    from vusb.protocol import (
        NEED_DATA,
        ClientCodec,
        DevlistReply,
        DevlistRequest,
        ExportedDevice,
        ImportReply,
        ImportRequest,
        Limits,
        Phase,
        ServerCodec,
        SubmitCommand,
        SubmitReply,
        UnlinkCommand,
        UnlinkReply,
    )

MODES = 8
METHODS = ("receive_data", "in place", "alternating, receive_data first", "alternating, in place first")
INTO = 40_000  # the receive buffer of the client's URBs 16 and 17 (mode 7)
RECORD = ExportedDevice(busid="1-1", devnum=1)
SERVER_EVENTS = (DevlistRequest, ImportRequest, SubmitCommand, UnlinkCommand)
CLIENT_EVENTS = (DevlistReply, ImportReply, SubmitReply, UnlinkReply)


class Finding(AssertionError):
    """An invariant of the codec broke."""


def _server(mode: int) -> ServerCodec:
    small = Limits(max_transfer_length=4096, max_iso_packets=8)
    if mode == 0:
        return ServerCodec()
    codec = ServerCodec(
        limits=small if mode == 3 else None,
        is_iso=(lambda ep, d: True) if mode in (2, 3) else (lambda ep, d: ep == 3),
    )
    codec.receive_data(import_request())
    if not isinstance(codec.next_event(), ImportRequest):
        raise Finding("valid import request not decoded")
    codec.send(ImportReply(0, RECORD))
    return codec


def _client(mode: int) -> ClientCodec:
    # Mode 7: limits that let IN data from 16 KiB through, received in place.
    limit = 1 << 17 if mode == 7 else 4096
    codec = ClientCodec(limits=Limits(max_transfer_length=limit, max_iso_packets=8, max_devices_listed=16))
    if mode == 4:
        codec.send(DevlistRequest())
    elif mode == 5:
        codec.send(ImportRequest("1-1"))
    else:
        codec.phase = Phase.URB
        for seq in range(16):  # pending URBs the replies may answer: OUT, IN and iso
            codec.send(SubmitCommand(seq, 1, seq & 1, seq & 3, 0, 0 if seq & 1 else 8, data=b"" if seq & 1 else bytes(8),
                                     iso_packets=() if seq >= 8 else None))
        if mode == 7:  # IN URBs whose data goes straight into the caller's buffer
            for seq in (16, 17):
                codec.send_vectored(SubmitCommand(seq, 1, 1, 1, 0, INTO), into=bytearray(INTO))
        for unlink_seq, target in enumerate((0, 5, 10, 16), start=20):  # their RET_UNLINK -104 ends the target
            codec.send(UnlinkCommand(unlink_seq, 1, target))
    return codec


def TestOneInput(data: bytes) -> None:  # the name atheris expects
    if len(data) < 2:
        return
    mode, method, chunk = data[0] % MODES, (data[0] >> 3) & 3, data[1]
    payload = data[2:]
    codec: ServerCodec | ClientCodec = _server(mode) if mode < 4 else _client(mode)
    allowed = SERVER_EVENTS if isinstance(codec, ServerCodec) else CLIENT_EVENTS
    base = codec._buf.__len__()
    step = read_size(chunk, len(payload))
    fed = 0
    for n, start in enumerate(range(0, len(payload), step)):
        piece = payload[start : start + step]
        try:
            if method == 1 or (method >= 2 and (n + method) % 2 == 1):
                write_in_place(codec, piece)
            else:
                codec.receive_data(piece)
        except Exception as exc:
            raise Finding(f"mode {mode}, {METHODS[method]}: {type(exc).__name__} while receiving: {exc}") from exc
        fed += len(piece)
        try:
            while True:
                event = codec.next_event()
                if event is NEED_DATA:
                    break
                if not isinstance(event, allowed):
                    raise Finding(f"unexpected event {event!r}")
        except ProtocolError:
            return
        except Exception as exc:
            raise Finding(f"mode {mode}, {METHODS[method]}: {type(exc).__name__} escaped the codec: {exc}") from exc
        buffered = len(codec._buf)
        if buffered > fed + base:
            raise Finding(f"mode {mode}, {METHODS[method]}: {buffered} bytes buffered after {fed} fed")


def generate(rng: random.Random) -> bytes:
    mode = rng.randrange(MODES)
    method = rng.randrange(len(METHODS))
    chunk = rng.choice([0, 1, 7, 48, rng.randrange(256)])
    if mode == 0:
        body = (import_request(rng.choice(["1-1", "9-9", ""]), rng.choice([0x0111, 0x0106, 0x0200]))
                if rng.random() < 0.5 else rng.randbytes(rng.randrange(48)))
        body += random_stream(rng, rng.randrange(4))
    elif mode < 4:
        body = random_stream(rng, rng.randrange(1, 12))
    else:
        body = _client_stream(rng, mode)
    return bytes((mode | method << 3, chunk)) + body


def _client_stream(rng: random.Random, mode: int) -> bytes:
    server = ServerCodec()
    if mode == 4:
        out = server.send(DevlistReply(tuple(ExportedDevice(busid=f"1-{i}", devnum=i) for i in range(rng.randrange(4)))))
        if rng.random() < 0.5:
            cut = rng.randrange(len(out))
            out = out[:cut] + rng.randbytes(rng.randrange(8)) + out[cut + 4 :]
        return out
    if mode == 5:
        return server.send(ImportReply(rng.choice([0, 0, 2, 4]), RECORD)) + rng.randbytes(rng.randrange(8))
    parts = []
    for _ in range(rng.randrange(1, 8)):
        seq = rng.randrange(18)
        if rng.random() < 0.6:
            n = rng.choice([0, 4, 8, 9]) if mode != 7 or rng.random() < 0.5 else rng.choice((*BIG_LENGTHS, INTO + 1))
            parts.append(server.send(SubmitReply(seq, rng.choice([0, -32, -104]), n, bytes(n))))
        elif rng.random() < 0.5:
            parts.append(server.send(UnlinkReply(rng.choice([seq, 20 + seq % 4]), rng.choice([-104, -104, 0]))))
        else:
            parts.append(rng.randbytes(rng.randrange(60)))
    return b"".join(parts)


if __name__ == "__main__":
    sys.exit(main(TestOneInput, generate))
