"""The sans-IO codec: bytes in, messages out; messages in, bytes out. No sockets here."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from vusb.errors import LimitExceeded, ProtocolError
from vusb.protocol import (
    NEED_DATA,
    ClientCodec,
    DevlistReply,
    DevlistRequest,
    ExportedDevice,
    ImportReply,
    ImportRequest,
    InterfaceInfo,
    IsoPacket,
    Limits,
    Phase,
    ServerCodec,
    SubmitCommand,
    SubmitReply,
    UnlinkCommand,
    UnlinkReply,
)

KEYBOARD = ExportedDevice(busid="1-1", path="/sys/devices/platform/vusb/usb1/1-1", busnum=1, devnum=1, speed=2,
                          vendor_id=0x1209, product_id=0x0001, device_version=0x0100,
                          interfaces=(InterfaceInfo(3, 1, 1),))


def imported_server(**kw: object) -> ServerCodec:
    codec = ServerCodec(**kw)  # type: ignore[arg-type]
    codec.receive_data(bytes.fromhex("0111 8003 00000000") + b"1-1".ljust(32, b"\0"))
    assert isinstance(codec.next_event(), ImportRequest)
    codec.send(ImportReply(0, KEYBOARD))
    assert codec.phase == Phase.URB
    return codec


# Requests as the Linux usbip tool sends them (byte for byte, from tools/usb/usbip's layouts).
OP_REQUESTS = [
    ("devlist", "0111 8005 00000000", DevlistRequest(0x0111)),
    ("import", "0111 8003 00000000" + (b"1-1".ljust(32, b"\0")).hex(), ImportRequest("1-1", 0x0111)),
    ("import, garbage after NUL", "0111 8003 00000000" + (b"1-2\0garbage".ljust(32, b"\xff")).hex(),
     ImportRequest("1-2", 0x0111)),
    ("usbip 0.1.x version", "0106 8005 00000000", DevlistRequest(0x0106)),
]


@pytest.mark.parametrize(("case", "wire", "event"), OP_REQUESTS, ids=[c[0] for c in OP_REQUESTS])
def test_op_requests(case: str, wire: str, event: object) -> None:
    codec = ServerCodec()
    codec.receive_data(bytes.fromhex(wire))
    assert codec.next_event() == event


def test_devlist_reply_layout() -> None:
    raw = ServerCodec().send(DevlistReply((KEYBOARD,)))
    assert raw[:12] == bytes.fromhex("0111 0005 00000000 00000001")
    record = raw[12:12 + 312]
    assert record[:len(KEYBOARD.path)] == KEYBOARD.path.encode()
    assert record[256:259] == b"1-1"
    busnum, devnum, speed, vid, pid, bcd = struct.unpack(">IIIHHH", record[288:306])
    assert (busnum, devnum, speed, vid, pid, bcd) == (1, 1, 2, 0x1209, 0x0001, 0x0100)
    assert record[306:312] == bytes([0, 0, 0, 0, 1, 1])  # class/sub/proto, config value, num configs, num interfaces
    assert raw[324:] == bytes([3, 1, 1, 0])


def test_import_reply_and_failure_reply() -> None:
    ok = ServerCodec().send(ImportReply(0, KEYBOARD))
    assert ok[:8] == bytes.fromhex("0111 0003 00000000") and len(ok) == 8 + 312
    assert ServerCodec().send(ImportReply(4)) == bytes.fromhex("0111 0003 00000004")
    assert ServerCodec().send(ImportReply(2)) == bytes.fromhex("0111 0003 00000002")


def test_client_and_server_codecs_agree() -> None:
    client, server = ClientCodec(), ServerCodec()
    server.receive_data(client.send(ImportRequest("1-1")))
    assert server.next_event() == ImportRequest("1-1")
    client.receive_data(server.send(ImportReply(0, KEYBOARD)))
    reply = client.next_event()
    assert isinstance(reply, ImportReply) and reply.device is not None
    assert reply.device.vendor_id == 0x1209 and reply.device.busid == "1-1"
    cases = [
        SubmitCommand(1, 0x10001, 1, 0, 0x200, 18, bytes.fromhex("8006000100001200")),
        SubmitCommand(2, 0x10001, 0, 2, 0, 5, data=b"hello"),
        SubmitCommand(3, 0x10001, 1, 1, 0x200, 8),
    ]
    for cmd in cases:
        server.receive_data(client.send(cmd))
        got = server.next_event()
        assert isinstance(got, SubmitCommand)
        assert (got.seqnum, got.direction, got.ep, got.transfer_buffer_length, bytes(got.data), got.setup) == (
            cmd.seqnum, cmd.direction, cmd.ep, cmd.transfer_buffer_length, bytes(cmd.data), cmd.setup)
    for reply_ in [SubmitReply(1, 0, 18, bytes(range(18))), SubmitReply(2, 0, 5), SubmitReply(3, -32, 0)]:
        client.receive_data(server.send(reply_))
        got_reply = client.next_event()
        assert isinstance(got_reply, SubmitReply)
        assert (got_reply.seqnum, got_reply.status, got_reply.actual_length, bytes(got_reply.data)) == (
            reply_.seqnum, reply_.status, reply_.actual_length, bytes(reply_.data))
    server.receive_data(client.send(UnlinkCommand(9, 0x10001, 3)))
    assert server.next_event() == UnlinkCommand(9, 0x10001, 3)
    client.receive_data(server.send(UnlinkReply(9, -104)))
    assert client.next_event() == UnlinkReply(9, -104)


def test_cmd_submit_exact_bytes() -> None:
    # GET_DESCRIPTOR(DEVICE, 18) as Linux vhci sends it: seqnum 1, devid 0x00010002, IN, ep 0.
    wire = bytes.fromhex(
        "00000001 00000001 00010002 00000001 00000000"
        "00000200 00000012 00000000 00000000 00000000"
        "8006000100001200"
    )
    codec = imported_server()
    codec.receive_data(wire)
    cmd = codec.next_event()
    assert isinstance(cmd, SubmitCommand)
    assert (cmd.seqnum, cmd.devid, cmd.direction, cmd.ep, cmd.transfer_flags, cmd.transfer_buffer_length) == (
        1, 0x00010002, 1, 0, 0x200, 18)
    assert cmd.setup == bytes.fromhex("8006000100001200")


def test_ret_submit_and_ret_unlink_exact_bytes() -> None:
    codec = imported_server()
    assert codec.send(SubmitReply(7, 0, 2, b"\x01\x00")) == bytes.fromhex(
        "00000003 00000007 00000000 00000000 00000000"
        "00000000 00000002 00000000 00000000 00000000 0000000000000000 0100")
    assert codec.send(UnlinkReply(8, -104)) == bytes.fromhex(
        "00000004 00000008 00000000 00000000 00000000 ffffff98" + "00" * 24)


def test_messages_split_at_any_byte_boundary() -> None:
    codec = imported_server()
    wire = ClientCodec(phase=Phase.URB).send(SubmitCommand(5, 1, 0, 2, 0, 300, data=bytes(range(256)) + bytes(44)))
    events = []
    for i in range(len(wire)):
        codec.receive_data(wire[i:i + 1])
        ev = codec.next_event()
        if ev is not NEED_DATA:
            events.append(ev)
    assert len(events) == 1 and isinstance(events[0], SubmitCommand) and events[0].data == bytes(range(256)) + bytes(44)


def test_garbage_number_of_packets_is_ignored_on_non_iso_urbs() -> None:
    codec = imported_server()
    head = struct.pack(">IIIIIIiiii8s", 1, 1, 1, 1, 1, 0x200, 8, 0, -1, 0, bytes(8))
    codec.receive_data(head)
    ev = codec.next_event()
    assert isinstance(ev, SubmitCommand) and ev.iso_packets is None and ev.number_of_packets == 0


def test_iso_packets_follow_the_data() -> None:
    codec = imported_server(is_iso=lambda ep, d: ep == 3)
    packets = (IsoPacket(0, 100), IsoPacket(100, 100))
    wire = ClientCodec(phase=Phase.URB).send(SubmitCommand(1, 1, 0, 3, 0, 200, data=bytes(200), iso_packets=packets))
    codec.receive_data(wire)
    ev = codec.next_event()
    assert isinstance(ev, SubmitCommand) and ev.iso_packets == packets and len(ev.data) == 200


MALFORMED = [
    ("unknown op code", lambda c: c, "0111 1234 00000000", "unknown op code 0x1234"),
    ("bad version", lambda c: c, "0200 8005 00000000", "version 0x0200"),
    ("submit before import", lambda c: c, "00000001 00000001" + "00" * 40, "CMD_SUBMIT received before a successful OP_REQ_IMPORT"),
    ("unlink before import", lambda c: c, "00000002 00000001" + "00" * 40, "CMD_UNLINK received before"),
    ("unknown URB command", lambda c: imported_server(), "00000009" + "00" * 44, "unknown URB command 0x00000009"),
    ("bad direction", lambda c: imported_server(), "00000001 00000001 00000000 00000005" + "00" * 32, "direction 5"),
    ("bad endpoint", lambda c: imported_server(), "00000001 00000001 00000000 00000001 00000010" + "00" * 28,
     "endpoint number 16"),
    ("negative length", lambda c: imported_server(), "00000001 00000001 00000000 00000000 00000001 00000000 ffffffff" + "00" * 20,
     "negative transfer_buffer_length"),
]


@pytest.mark.parametrize(("case", "prepare", "wire", "message"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_raises_protocol_error(case: str, prepare: object, wire: str, message: str) -> None:
    codec = prepare(ServerCodec())  # type: ignore[operator]
    codec.receive_data(bytes.fromhex(wire))
    with pytest.raises(ProtocolError, match=message):
        codec.next_event()


def test_absurd_length_is_refused_before_buffering() -> None:
    codec = imported_server(limits=Limits(max_transfer_length=1 << 20))
    head = struct.pack(">IIIIIIiiii8s", 1, 1, 1, 0, 2, 0, 0x7FFFFFFF, 0, 0, 0, bytes(8))
    codec.receive_data(head)
    with pytest.raises(LimitExceeded, match="exceeds the limit of 1048576 bytes"):
        codec.next_event()
    assert codec.buffered == 48  # nothing was allocated for the announced payload


def test_iso_packet_count_is_bounded() -> None:
    codec = imported_server(is_iso=lambda ep, d: True, limits=Limits(max_iso_packets=8))
    codec.receive_data(struct.pack(">IIIIIIiiii8s", 1, 1, 1, 1, 1, 0, 64, 0, 9, 0, bytes(8)))
    with pytest.raises(LimitExceeded, match="number_of_packets 9"):
        codec.next_event()


# usbip 0.1.x (the userspace tools before Linux 3.x's staging rewrite) sends op version 0x0106 and its
# usbip_recv_op_common() refuses a reply whose version is not its own ("version mismatch"). The exchanges
# below are what its `usbip -l HOST` (OP_REQ_DEVLIST) and `usbip -a HOST BUSID` (OP_REQ_IMPORT) send and
# must get back, byte for byte; current clients send 0x0111 and get 0x0111.
OLD_AND_NEW_OP_EXCHANGES = [
    ("0.1.x devlist", "0106 8005 00000000", DevlistReply((KEYBOARD,)), "0106 0005 00000000 00000001"),
    ("0.1.x import", "0106 8003 00000000" + b"1-1".ljust(32, b"\0").hex(), ImportReply(0, KEYBOARD),
     "0106 0003 00000000"),
    ("0.1.x import of an unknown busid", "0106 8003 00000000" + b"9-9".ljust(32, b"\0").hex(), ImportReply(4),
     "0106 0003 00000004"),
    ("0.1.x import of a busy device", "0106 8003 00000000" + b"1-1".ljust(32, b"\0").hex(), ImportReply(2),
     "0106 0003 00000002"),
    ("current devlist", "0111 8005 00000000", DevlistReply(()), "0111 0005 00000000 00000000"),
    ("current import", "0111 8003 00000000" + b"1-1".ljust(32, b"\0").hex(), ImportReply(0, KEYBOARD),
     "0111 0003 00000000"),
]


@pytest.mark.parametrize(("case", "request_wire", "reply", "reply_head"), OLD_AND_NEW_OP_EXCHANGES,
                         ids=[c[0] for c in OLD_AND_NEW_OP_EXCHANGES])
def test_op_request_is_answered_in_its_own_version(case: str, request_wire: str, reply: DevlistReply | ImportReply,
                                                   reply_head: str) -> None:
    server = ServerCodec()
    server.receive_data(bytes.fromhex(request_wire))
    request = server.next_event()
    assert isinstance(request, (DevlistRequest, ImportRequest))
    assert request.version == int(request_wire[:4], 16)
    raw = server.send(reply)
    head = bytes.fromhex(reply_head)
    assert raw[:len(head)] == head
    if isinstance(reply, ImportReply) and reply.device is not None:
        assert len(raw) == 8 + 312 and raw[8 + 256:8 + 259] == b"1-1"  # the 0.1.x client checks the busid echoed
        assert server.phase == Phase.URB
    else:
        assert server.phase == Phase.CLOSED


def test_old_client_import_then_urbs_as_usual() -> None:
    """After a 0x0106 import the URB phase is the same 48-byte protocol (0.1.x's usbip_header is identical)."""
    client, server = ClientCodec(), ServerCodec()
    server.receive_data(client.send(ImportRequest("1-1", version=0x0106)))
    assert server.next_event() == ImportRequest("1-1", 0x0106)
    client.receive_data(server.send(ImportReply(0, KEYBOARD)))
    reply = client.next_event()
    assert isinstance(reply, ImportReply) and reply.status == 0 and reply.device is not None
    server.receive_data(client.send(SubmitCommand(1, 0x10001, 1, 0, 0, 18, bytes.fromhex("8006000100001200"))))
    got = server.next_event()
    assert isinstance(got, SubmitCommand) and got.setup == bytes.fromhex("8006000100001200")


def test_reply_version_can_be_forced() -> None:
    server = ServerCodec()
    server.receive_data(bytes.fromhex("0106 8005 00000000"))
    server.next_event()
    assert server.send(DevlistReply((), version=0x0111))[:4] == bytes.fromhex("0111 0005")


def test_client_expects_the_version_it_sent() -> None:
    old = ClientCodec()
    old.send(DevlistRequest(0x0106))
    old.receive_data(bytes.fromhex("0111 0005 00000000 00000000"))
    with pytest.raises(ProtocolError, match="reply version 0x0111, expected 0x0106"):
        old.next_event()


def test_client_rejects_wrong_reply_version() -> None:
    client = ClientCodec()
    client.send(DevlistRequest())
    client.receive_data(bytes.fromhex("0110 0005 00000000 00000000"))
    with pytest.raises(ProtocolError, match="reply version 0x0110"):
        client.next_event()


def test_client_rejects_ret_submit_for_unknown_seqnum() -> None:
    client = ClientCodec(phase=Phase.URB)
    client.receive_data(struct.pack(">IIIIIiiiii8s", 3, 42, 0, 0, 0, 0, 0, 0, 0, 0, bytes(8)))
    with pytest.raises(ProtocolError, match="unknown seqnum 42"):
        client.next_event()


def test_client_parses_a_devlist_with_several_devices() -> None:
    client = ClientCodec()
    client.send(DevlistRequest())
    mouse = ExportedDevice(busid="1-2", devnum=2, interfaces=(InterfaceInfo(3, 1, 2),))
    client.receive_data(ServerCodec().send(DevlistReply((KEYBOARD, mouse))))
    reply = client.next_event()
    assert isinstance(reply, DevlistReply)
    assert [d.busid for d in reply.devices] == ["1-1", "1-2"]
    assert reply.devices[1].interfaces == (InterfaceInfo(3, 1, 2),)


# ---------------------------------------------------------------- zero-copy input (get_buffer / buffer_updated)


def receive_in_place(codec: ServerCodec | ClientCodec, wire: bytes, step: int,
                     after_read: Callable[[], None] | None = None) -> None:
    """Deliver ``wire`` the way the event loop does: into the codec's own buffers, ``step`` bytes per read
    (``after_read``, if given, is called after each read, as a protocol handles what it received)."""
    pos = 0
    while pos < len(wire):
        view = codec.get_buffer(-1)
        n = min(step, len(view), len(wire) - pos)
        view[:n] = wire[pos : pos + n]
        del view
        codec.buffer_updated(n)
        pos += n
        if after_read is not None:
            after_read()


def out_submit(seqnum: int, data: bytes, iso: tuple[IsoPacket, ...] | None = None) -> bytes:
    client = ClientCodec(phase=Phase.URB)
    return client.send(SubmitCommand(seqnum, 0x10001, 0, 2, 0, len(data), data=data, iso_packets=iso))


BIG = bytes(range(256)) * 1024  # 256 KiB: received in place
SMALL = b"\x5a" * 1000  # copied out of the receive buffer as bytes

IN_PLACE = [
    # (case, payload, iso packets, bytes per read)
    ("large payload, one read", BIG, None, 1 << 20),
    ("large payload, reads of 1000 bytes", BIG, None, 1000),
    ("large payload, 48-byte reads", BIG[: 20 * 1024], None, 48),
    ("large iso payload with descriptors after it", BIG, (IsoPacket(0, 1024), IsoPacket(1024, 4096)), 7000),
    ("small payload", SMALL, None, 100),
]


@pytest.mark.parametrize(("case", "payload", "iso", "step"), IN_PLACE, ids=[c[0] for c in IN_PLACE])
def test_out_payload_received_in_place_arrives_whole(case: str, payload: bytes, iso: tuple[IsoPacket, ...] | None,
                                                     step: int) -> None:
    codec = imported_server(is_iso=lambda ep, d: iso is not None)
    receive_in_place(codec, out_submit(7, payload, iso) + out_submit(8, b"tail"), step)
    first, second = codec.next_event(), codec.next_event()
    assert isinstance(first, SubmitCommand) and isinstance(second, SubmitCommand)
    assert (first.seqnum, bytes(first.data), first.iso_packets) == (7, payload, iso)
    assert (second.seqnum, second.data) == (8, b"tail")
    assert codec.next_event() is NEED_DATA and codec.buffered == 0
    if len(payload) >= 16 * 1024:  # a view of the codec's payload buffer, which the device may not change
        assert isinstance(first.data, memoryview) and first.data.readonly
    else:
        assert isinstance(first.data, bytes)


def test_payload_buffer_is_reused_only_once_nobody_holds_it() -> None:
    codec = imported_server()
    receive_in_place(codec, out_submit(1, BIG), 65536)
    first = codec.next_event()
    assert isinstance(first, SubmitCommand) and isinstance(first.data, memoryview)
    held = first.data[1000:]  # a device keeps a slice of the data
    del first
    receive_in_place(codec, out_submit(2, BIG[::-1]), 65536)  # still held: a new buffer, the slice unchanged
    second = codec.next_event()
    assert isinstance(second, SubmitCommand) and isinstance(second.data, memoryview)
    assert second.data.obj is not held.obj and bytes(held) == BIG[1000:] and bytes(second.data) == BIG[::-1]
    buffer = id(second.data.obj)  # an id: a reference would hold the buffer
    del second, held
    receive_in_place(codec, out_submit(3, BIG), 65536)  # nothing holds the last one: reused, no allocation
    third = codec.next_event()
    assert isinstance(third, SubmitCommand) and isinstance(third.data, memoryview)
    assert id(third.data.obj) == buffer and bytes(third.data) == BIG


def test_client_receives_in_data_straight_into_the_callers_buffer() -> None:
    server, client = imported_server(), ClientCodec(phase=Phase.URB)
    target = bytearray(4096)
    client.send_vectored(SubmitCommand(5, 1, 1, 1, 0x200, 4096), into=target)
    client.send_vectored(SubmitCommand(6, 1, 1, 1, 0x200, 64))
    wire = server.send(SubmitReply(5, 0, 3000, BIG[:3000])) + server.send(SubmitReply(6, 0, 2, b"ok"))
    receive_in_place(client, wire, 1500)
    first, second = client.next_event(), client.next_event()
    assert isinstance(first, SubmitReply) and isinstance(second, SubmitReply)
    assert isinstance(first.data, memoryview) and first.data.obj is target and len(first.data) == 3000
    assert target[:3000] == BIG[:3000] and second.data == b"ok"


CLIENT_BUFFER_MISUSE = [
    # (case, command, buffer, error)
    ("buffer smaller than the transfer", SubmitCommand(1, 1, 1, 1, 0, 100), bytearray(99), "smaller than"),
    ("buffer for an OUT transfer", SubmitCommand(1, 1, 0, 1, 0, 4, data=b"abcd"), bytearray(4), "only for IN"),
    ("read-only buffer", SubmitCommand(1, 1, 1, 1, 0, 4), memoryview(bytes(4)), "read-only"),
]


@pytest.mark.parametrize(("case", "command", "buffer", "error"), CLIENT_BUFFER_MISUSE,
                         ids=[c[0] for c in CLIENT_BUFFER_MISUSE])
def test_client_refuses_unusable_receive_buffers(case: str, command: SubmitCommand, buffer: bytearray | memoryview,
                                                 error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ClientCodec(phase=Phase.URB).send_vectored(command, into=buffer)


def test_client_refuses_more_in_data_than_its_buffer_holds() -> None:
    client = ClientCodec(phase=Phase.URB)
    client.send_vectored(SubmitCommand(5, 1, 1, 1, 0x200, 8), into=bytearray(8))
    client.receive_data(ServerCodec().send(SubmitReply(5, 0, 9, bytes(9))))
    with pytest.raises(ProtocolError, match="actual_length 9 is more than the 8 bytes asked for"):
        client.next_event()


def test_out_data_is_a_separate_piece_of_the_vectored_submit() -> None:
    client = ClientCodec(phase=Phase.URB)
    payload = memoryview(BIG)
    parts = client.send_vectored(SubmitCommand(1, 1, 0, 2, 0, len(BIG), data=payload))
    assert len(parts) == 2 and len(parts[0]) == 48 and parts[1] is payload  # not copied


def test_buffer_updated_beyond_the_buffer_is_refused() -> None:
    codec = imported_server()
    size = len(codec.get_buffer(-1))
    with pytest.raises(ValueError, match=f"{size + 1} bytes reported in a {size}-byte buffer"):
        codec.buffer_updated(size + 1)


def serve_in_place(codec: ServerCodec, wire: bytes, step: int) -> list[tuple[int, bytes]]:
    """Deliver ``wire`` as the server's event loop does: ``step`` bytes per read into the codec's buffer,
    every complete message handled (its data copied out, the event released) before the next read."""
    got: list[tuple[int, bytes]] = []

    def handle() -> None:
        while isinstance(event := codec.next_event(), SubmitCommand):
            got.append((event.seqnum, bytes(event.data)))
            del event  # released: its payload buffer may be reused for the next payload

    receive_in_place(codec, wire, step, handle)
    return got


KIB64 = bytes(range(256)) * 256
KIB16 = bytes(reversed(range(256))) * 64
REUSED_PAYLOAD_BUFFER = [
    # (case, bytes per read)
    ("everything in one read", 1 << 20),
    ("a header per read, then the payloads", 48),
    ("odd splits straddling every boundary", 4099),
    ("splits of 7 bytes", 7),
    ("reads of exactly 64 KiB", 64 * 1024),
    ("reads one byte past the 16 KiB payload", 48 + 16 * 1024 + 1),
]


@pytest.mark.parametrize(("case", "step"), REUSED_PAYLOAD_BUFFER, ids=[c[0] for c in REUSED_PAYLOAD_BUFFER])
def test_reused_payload_buffer_stops_at_the_smaller_payload(case: str, step: int) -> None:
    """Regression: a 64 KiB payload buffer, reused for a 16 KiB payload, must not receive the next header too."""
    codec = imported_server()
    wire = out_submit(1, KIB64) + out_submit(2, KIB16) + out_submit(3, b"next") + out_submit(4, KIB16[:100])
    got = serve_in_place(codec, wire, step)
    assert got == [(1, KIB64), (2, KIB16), (3, b"next"), (4, KIB16[:100])]
    assert codec.next_event() is NEED_DATA and codec.buffered == 0


def test_reused_payload_buffer_is_the_same_buffer() -> None:
    """The case above really reuses the buffer (else it would not test the bound)."""
    codec = imported_server()
    assert serve_in_place(codec, out_submit(1, KIB64), 1 << 20) == [(1, KIB64)]
    receive_in_place(codec, out_submit(2, KIB16)[:48], 48)
    assert codec.next_event() is NEED_DATA
    view = codec.get_buffer(-1)
    assert len(view) == len(KIB16) and view.obj is not None and len(view.obj) >= len(KIB64)  # type: ignore[arg-type]


UNLINK_OUTCOMES = [
    # (case, RET_UNLINK status, whether the URB is still awaited afterwards)
    ("cancelled (-ECONNRESET): no RET_SUBMIT will come", -104, False),
    ("already completed (0): its RET_SUBMIT came or comes", 0, True),
]


@pytest.mark.parametrize(("case", "status", "still_pending"), UNLINK_OUTCOMES, ids=[c[0] for c in UNLINK_OUTCOMES])
def test_unlinked_urb_releases_the_callers_buffer(case: str, status: int, still_pending: bool) -> None:
    """Regression: a URB cancelled by CMD_UNLINK stayed pending, holding (exporting) the caller's buffer."""
    server, client = imported_server(), ClientCodec(phase=Phase.URB)
    target = bytearray(64)
    client.send_vectored(SubmitCommand(5, 1, 1, 1, 0x200, 64), into=target)
    client.send(UnlinkCommand(6, 1, 5))
    client.receive_data(server.send(UnlinkReply(6, status)))
    assert client.next_event() == UnlinkReply(6, status)
    if still_pending:  # a completed URB's RET_SUBMIT is still decoded, into the caller's buffer
        receive_in_place(client, server.send(SubmitReply(5, 0, 3, b"abc")), 1500)
        reply = client.next_event()
        assert isinstance(reply, SubmitReply) and reply.data.obj is target and target[:3] == b"abc"  # type: ignore[union-attr]
        del reply
    else:  # nothing is kept for it: a RET_SUBMIT for it now is one for an unknown URB
        client.receive_data(server.send(SubmitReply(5, 0, 3, b"abc")))
        with pytest.raises(ProtocolError, match="unknown seqnum 5"):
            client.next_event()
    target.extend(b"more")  # BufferError while the codec still held a view of it
    assert len(target) == 68


def test_ret_unlink_of_an_unknown_unlink_leaves_pending_urbs_alone() -> None:
    server, client = imported_server(), ClientCodec(phase=Phase.URB)
    client.send_vectored(SubmitCommand(5, 1, 1, 1, 0x200, 8))
    client.receive_data(server.send(UnlinkReply(5, -104)))  # no CMD_UNLINK 5 was sent: nothing to drop
    assert client.next_event() == UnlinkReply(5, -104)
    client.receive_data(server.send(SubmitReply(5, 0, 2, b"ok")))
    reply = client.next_event()
    assert isinstance(reply, SubmitReply) and reply.data == b"ok"
