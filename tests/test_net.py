"""USB network adapters without a kernel: descriptors, control requests, NTB and RNDIS framing,
bad input from the host, the endpoint's IP host, the backends, profiles and ``vusb ctl``.

The kernel tests (tests/kernel/test_net_kernel.py) prove the same functions against the real
cdc_ncm, cdc_ether and rndis_host drivers; these pin down the details a driver may not exercise.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from vusb.devices.net import (
    CallbackBackend,
    IpHost,
    NcmFunction,
    NetBackendError,
    NetFormatError,
    NetworkAdapter,
    PairBackend,
    TapBackend,
    mac_from_serial,
    read_pcap,
)
from vusb.devices.net.spec import (
    NTB16,
    NTB32,
    RESPONSE_AVAILABLE,
    EthernetDescriptor,
    NcmDescriptor,
    Oid,
    RndisMessage,
    RndisStatus,
    build_ntb,
    build_packet,
    parse_ntb,
    parse_packets,
)
from vusb.devices.net.stack import ACK, FIN, PSH, RST, SYN, checksum, link_local_v6

from vusb.control_cli import build_request
from vusb.control_server import ControlServer
from vusb.errors import ProfileError, Stall
from vusb.profile import parse_profile
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

ROOT = Path(__file__).resolve().parent.parent
NOTIFY, BULK_IN, BULK_OUT = 0x81, 0x82, 0x02
OUT_REQ, IN_REQ = 0x21, 0xA1
HOST_MAC = bytes.fromhex("020000000001")
PEER_MAC = bytes.fromhex("020000000002")
BROADCAST = b"\xff" * 6


def adapter(kind: str, backend: object = "callback", **options: object) -> NetworkAdapter:
    """An adapter whose host interface has HOST_MAC (so directed frames pass its filter)."""
    options.setdefault("mac", "02:00:00:00:00:01")
    return NetworkAdapter(kind, backend, **options)  # type: ignore[arg-type]


def frame(dst: bytes, size: int = 100, fill: int = 0x55, ethertype: int = 0x88B5) -> bytes:
    """An Ethernet frame of ``size`` bytes (local experimental ethertype)."""
    return dst + PEER_MAC + struct.pack("!H", ethertype) + bytes([fill]) * (size - 14)


async def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def configured(host: LocalHost, data_alt: int | None = 1) -> None:
    await host.enumerate()
    if data_alt is not None:
        await host.set_interface(1, data_alt)


def request(req: int, value: int = 0, length: int = 0, *, read: bool = False) -> SetupPacket:
    return SetupPacket(IN_REQ if read else OUT_REQ, req, value, 0, length)


# ====================================================================== descriptors and identity


@pytest.mark.parametrize(("kind", "subclass", "data_protocol"), [("ncm", 0x0D, 0x01), ("ecm", 0x06, 0x00)])
def test_cdc_functions_have_a_data_interface_without_endpoints_at_alternate_0(kind: str, subclass: int,
                                                                               data_protocol: int) -> None:
    nic = NetworkAdapter(kind, backend="callback", mac="02:11:22:33:44:55")
    comm, data0, data1 = nic.configurations[0].interfaces
    assert (comm.interface_class, comm.interface_subclass, comm.interface_protocol) == (0x02, subclass, 0)
    assert [e.address for e in comm.endpoints] == [NOTIFY] and comm.endpoints[0].max_packet_size == 16
    assert (data0.number, data0.alternate, data0.endpoints) == (1, 0, ())
    assert (data1.number, data1.alternate, data1.interface_class, data1.interface_protocol) == (1, 1, 0x0A, data_protocol)
    assert sorted(e.address for e in data1.endpoints) == [BULK_OUT, BULK_IN]
    ether = next(d for d in comm.extra if isinstance(d, EthernetDescriptor))
    assert nic.strings.get(ether.mac_string_index, 0x0409) == "021122334455"
    assert ether.max_segment_size == 1514
    assert any(isinstance(d, NcmDescriptor) for d in comm.extra) == (kind == "ncm")


def test_rndis_interfaces_match_what_windows_and_rndis_host_look_for() -> None:
    nic = NetworkAdapter("rndis", backend="callback")
    comm, data = nic.configurations[0].interfaces
    assert (comm.interface_class, comm.interface_subclass, comm.interface_protocol) == (0xE0, 0x01, 0x03)
    assert data.alternate == 0 and sorted(e.address for e in data.endpoints) == [BULK_OUT, BULK_IN]


def test_the_mac_comes_from_the_serial_number_when_the_profile_gives_none() -> None:
    a = NetworkAdapter("ecm", backend="callback", serial_number="ABC123")
    b = NetworkAdapter("ecm", backend="callback", serial_number="ABC123")
    c = NetworkAdapter("ecm", backend="callback", serial_number="XYZ")
    assert a.mac == b.mac == mac_from_serial("ABC123") != c.mac
    assert a.mac[0] & 0x02 and not a.mac[0] & 0x01  # locally administered, unicast
    index = next(d for d in a.configurations[0].interfaces[0].extra if isinstance(d, EthernetDescriptor)).mac_string_index
    assert a.strings.get(index, 0x0409) == a.mac.hex().upper()


# ====================================================================== NCM transfer blocks


@pytest.mark.parametrize("fmt", [NTB16, NTB32])
def test_ntbs_round_trip_several_datagrams(fmt: int) -> None:
    frames = [frame(HOST_MAC, n, i) for i, n in enumerate((60, 1514, 333))]
    block = build_ntb(frames, fmt, 7)
    assert block[:4] == (b"NCMH" if fmt == NTB16 else b"ncmh")
    assert [bytes(f) for f in parse_ntb(block, 16384, fmt)] == frames


def _ntb16(*, sig: bytes = b"NCMH", header: int = 12, block: int | None = None, ndp: int = 12,
           ndp_sig: bytes = b"NCM0", ndp_len: int = 16, entries: tuple[tuple[int, int], ...] = ((28, 20),),
           terminate: bool = True, payload_len: int = 60) -> bytes:
    body = bytearray(12)
    ndp_bytes = struct.pack("<4sHH", ndp_sig, ndp_len, 0) + b"".join(struct.pack("<HH", *e) for e in entries)
    if terminate:
        ndp_bytes += bytes(4)
    body += ndp_bytes
    body += bytes(payload_len)
    struct.pack_into("<4sHHHH", body, 0, sig, header, 0, len(body) if block is None else block, ndp)
    return bytes(body)


BAD_NTBS = [
    ("signature", _ntb16(sig=b"XXXX"), "dwSignature"),
    ("header length", _ntb16(header=16), "wHeaderLength"),
    ("block longer than the transfer", _ntb16(block=5000), "wBlockLength"),
    ("NDP misaligned", _ntb16(ndp=13), "misaligned"),
    ("NDP outside the block", _ntb16(ndp=400), "outside"),
    ("NDP signature", _ntb16(ndp_sig=b"ABCD"), "NDP signature"),
    ("CRC requested", _ntb16(ndp_sig=b"NCM1"), "CRC"),
    ("NDP too short", _ntb16(ndp_len=8), "wLength"),
    ("datagram outside the block", _ntb16(entries=((28, 5000),)), "outside"),
    ("no terminating entry", _ntb16(entries=((28, 20), (40, 20)), terminate=False, ndp_len=16), "null terminating"),
    ("an NTB32 when NTB16 is in use", build_ntb([frame(HOST_MAC)], NTB32, 0), "dwSignature"),
]


@pytest.mark.parametrize(("what", "block", "message"), BAD_NTBS, ids=[b[0] for b in BAD_NTBS])
def test_malformed_ntbs_are_refused_naming_the_field(what: str, block: bytes, message: str) -> None:
    with pytest.raises(NetFormatError, match=message):
        parse_ntb(block, 16384, NTB16)


def test_an_ntb_longer_than_dwNtbOutMaxSize_is_refused() -> None:
    with pytest.raises(NetFormatError, match="dwNtbOutMaxSize"):
        parse_ntb(build_ntb([frame(HOST_MAC, 1514)] * 3, NTB16, 0), 2048, NTB16)


# ====================================================================== NCM function


async def test_ncm_control_requests() -> None:
    nic = adapter("ncm", "callback")
    async with LocalHost(nic) as host:
        await configured(host, data_alt=None)
        params = await host.control(request(0x80, length=28, read=True))
        fields = struct.unpack("<HHIHHHHIHHHH", params)
        assert fields[:3] == (28, 0x03, 16384) and fields[7] == 16384
        assert await host.control(request(0x83, length=2, read=True)) == b"\x00\x00"
        await host.control(request(0x84, 1))  # NTB32, allowed at alternate setting 0
        assert await host.control(request(0x83, length=2, read=True)) == b"\x01\x00"
        await host.control(request(0x86, length=4), struct.pack("<I", 4096))
        assert await host.control(request(0x85, length=4, read=True)) == struct.pack("<I", 4096)
        await host.control(request(0x86, length=8), struct.pack("<IHH", 8192, 4, 0))
        assert await host.control(request(0x85, length=8, read=True)) == struct.pack("<IHH", 8192, 4, 0)
        assert await host.control(request(0x87, length=2, read=True)) == struct.pack("<H", 1514)
        await host.control(request(0x88, length=2), struct.pack("<H", 1400))
        assert nic.nic.max_datagram_size == 1400  # type: ignore[attr-defined]
        await host.control(request(0x43, 0x0C))
        assert int(nic.nic.packet_filter) == 0x0C
        for bad, data in [(request(0x86, length=4), struct.pack("<I", 1024)),  # below 2048
                          (request(0x86, length=4), struct.pack("<I", 1 << 20)),  # above dwNtbInMaxSize
                          (request(0x88, length=2), struct.pack("<H", 9000)),
                          (request(0x89, length=2, read=True), b""),  # CRC mode
                          (request(0x8A, 1), b""),
                          (request(0x84, 2), b"")]:  # no such format
            with pytest.raises(Stall):
                await host.control(bad, data)
        await host.set_interface(1, 1)
        with pytest.raises(Stall):  # NCM 6.2.5: only while the data interface is at alternate setting 0
            await host.control(request(0x84, 0))


# Which class requests each function answers (its request table): the others stall.
ANSWERS = [  # kind, bRequest, IN?, answered
    ("ecm", 0x43, False, True),   # SET_ETHERNET_PACKET_FILTER
    ("ecm", 0x44, True, True),    # GET_ETHERNET_STATISTIC
    ("ecm", 0x80, True, False),   # GET_NTB_PARAMETERS is NCM's
    ("ecm", 0x00, False, False),  # SEND_ENCAPSULATED_COMMAND is RNDIS's
    ("ncm", 0x43, False, True),   # NCM keeps ECM's Ethernet requests
    ("ncm", 0x80, True, True),
    ("ncm", 0x80, False, False),  # the right code in the wrong direction
    ("rndis", 0x43, False, False),  # RNDIS sets its filter with an OID, not this request
    ("rndis", 0x44, True, False),
    ("rndis", 0x01, True, True),  # GET_ENCAPSULATED_RESPONSE: a zero byte when nothing is pending
]


@pytest.mark.parametrize(("kind", "code", "read", "answered"), ANSWERS,
                         ids=[f"{k}-0x{c:02x}-{'in' if r else 'out'}" for k, c, r, _ in ANSWERS])
async def test_each_function_answers_its_own_class_requests(kind: str, code: int, read: bool, answered: bool) -> None:
    async with LocalHost(adapter(kind, "callback")) as host:
        await configured(host, data_alt=None)
        setup = request(code, 1 if code == 0x44 else 0, length=28 if read else 0, read=read)
        if answered:
            await host.control(setup)
        else:
            with pytest.raises(Stall):
                await host.control(setup)


@pytest.mark.parametrize("fmt", [NTB16, NTB32])
async def test_ncm_aggregates_frames_both_ways_in_the_selected_format(fmt: int) -> None:
    got: list[bytes] = []
    nic = adapter("ncm", CallbackBackend(got.append))
    async with LocalHost(nic) as host:
        await configured(host, data_alt=None)
        await host.control(request(0x84, fmt))
        await host.set_interface(1, 1)
        sent = [frame(HOST_MAC, n, n % 256) for n in (64, 1514, 700)]
        await host.transfer_out(BULK_OUT, build_ntb(sent, fmt, 1))
        assert got == sent
        for f in sent:
            assert nic.nic.send_frame(f)
        block = await host.transfer_in(BULK_IN, 16384)
        assert [bytes(f) for f in parse_ntb(block, 16384, fmt)] == sent  # all three in one NTB
        assert nic.nic.stats["ntbs to host"] == 1 and nic.nic.stats["frames to host"] == 3


async def test_ncm_in_blocks_respect_the_hosts_input_size() -> None:
    nic = adapter("ncm", "callback")
    async with LocalHost(nic) as host:
        await configured(host, data_alt=None)
        await host.control(request(0x86, length=4), struct.pack("<I", 4096))
        await host.set_interface(1, 1)
        for i in range(5):
            nic.nic.send_frame(frame(HOST_MAC, 1514, i))
        sizes = []
        for _ in range(3):
            block = await host.transfer_in(BULK_IN, 16384)
            assert len(block) <= 4096
            sizes.append(len(parse_ntb(block, 16384, NTB16)))
        assert sizes == [2, 2, 1]


async def test_malformed_ntbs_from_the_host_are_dropped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    got: list[bytes] = []
    nic = adapter("ncm", CallbackBackend(got.append))
    async with LocalHost(nic) as host:
        await configured(host)
        with caplog.at_level(logging.WARNING, "vusb.devices.net"):
            for _, block, _ in BAD_NTBS:
                assert await host.transfer_out(BULK_OUT, block) == len(block)  # accepted, then dropped
        assert nic.nic.dropped["malformed"] == len(BAD_NTBS)
        assert "dropped (malformed)" in caplog.text and "further drops for this reason are only counted" in caplog.text
        good = frame(HOST_MAC)
        await host.transfer_out(BULK_OUT, build_ntb([good], NTB16, 9))
        assert got == [good]  # the function carries on


# ====================================================================== ECM function, filters, statistics


async def test_ecm_packet_filter_and_statistics() -> None:
    got: list[bytes] = []
    nic = NetworkAdapter("ecm", backend=CallbackBackend(got.append), mac="02:00:00:00:00:01")
    async with LocalHost(nic) as host:
        await configured(host)
        await host.control(request(0x43, 0x04))  # directed only
        assert nic.nic.send_frame(frame(HOST_MAC))
        assert not nic.nic.send_frame(frame(BROADCAST))
        assert not nic.nic.send_frame(frame(bytes.fromhex("020000000099")))  # another host's frame
        assert await host.transfer_in(BULK_IN, 2048) == frame(HOST_MAC)
        await host.control(request(0x43, 0x0C))
        assert nic.nic.send_frame(frame(BROADCAST))
        await host.transfer_in(BULK_IN, 2048)
        await host.transfer_out(BULK_OUT, frame(PEER_MAC, 1514))
        await host.transfer_out(BULK_OUT, frame(PEER_MAC, 1515))  # longer than wMaxSegmentSize
        await host.transfer_out(BULK_OUT, b"\x01\x02")
        assert len(got) == 1
        stat = {sel: struct.unpack("<I", await host.control(request(0x44, sel, 4, read=True)))[0] for sel in range(1, 6)}
        assert stat == {1: 2, 2: 1, 3: 0, 4: 2, 5: 0}  # errors: the oversize and the runt transfer
        assert nic.nic.dropped == {"malformed": 1, "runt from host": 1}


async def test_frames_larger_than_the_mtu_are_refused_toward_the_host() -> None:
    nic = NetworkAdapter("ecm", backend="callback", mtu=1400)
    async with LocalHost(nic) as host:
        await configured(host)
        assert not nic.nic.send_frame(frame(BROADCAST, 1415))
        assert nic.nic.send_frame(frame(BROADCAST, 1414))
        assert nic.nic.dropped == {"oversize to host": 1}


@pytest.mark.parametrize("kind", ["ncm", "ecm"])
async def test_link_and_speed_notifications(kind: str) -> None:
    nic = adapter(kind, "callback", speed_bps=1_000_000_000)
    async with LocalHost(nic) as host:
        await configured(host)
        speed = await host.transfer_in(NOTIFY, 16)
        assert speed[:2] == b"\xa1\x2a" and struct.unpack("<II", speed[8:]) == (1_000_000_000, 1_000_000_000)
        assert await host.transfer_in(NOTIFY, 16) == bytes.fromhex("a100010000000000")  # connected
        nic.set_link(False)
        assert await host.transfer_in(NOTIFY, 16) == bytes.fromhex("a100000000000000")
        assert not nic.nic.send_frame(frame(BROADCAST))
        await host.transfer_out(BULK_OUT, build_ntb([frame(HOST_MAC)], NTB16, 0) if kind == "ncm" else frame(HOST_MAC))
        assert nic.nic.dropped["link down"] == 2
        nic.set_link(True)
        nic.set_speed(100_000_000)
        notes = [await host.transfer_in(NOTIFY, 16) for _ in range(4)]
        assert notes[1] == bytes.fromhex("a100010000000000")
        assert struct.unpack("<II", notes[2][8:]) == (100_000_000, 100_000_000)


# ====================================================================== RNDIS


def rndis(kind: int, rid: int, *fields: int, payload: bytes = b"") -> bytes:
    body = struct.pack(f"<I{len(fields)}I", rid, *fields) + payload
    return struct.pack("<II", kind, 8 + len(body)) + body


async def rndis_call(host: LocalHost, message: bytes) -> bytes:
    await host.control(request(0x00, length=len(message)), message)
    assert await host.transfer_in(NOTIFY, 16) == RESPONSE_AVAILABLE
    return await host.control(request(0x01, length=1025, read=True))


async def test_rndis_control_conversation_and_packets() -> None:
    got: list[bytes] = []
    nic = NetworkAdapter("rndis", backend=CallbackBackend(got.append), mac="02:aa:bb:cc:dd:ee")
    async with LocalHost(nic) as host:
        await configured(host, data_alt=None)
        assert await host.control(request(0x01, length=1025, read=True)) == b"\x00"  # nothing pending
        init = await rndis_call(host, rndis(RndisMessage.INITIALIZE, 1, 1, 0, 0x4000))
        kind, length, rid, status, major, _minor, flags, medium, _packets, transfer = struct.unpack_from("<10I", init)
        assert (kind, length, rid, status, major, flags, medium) == (0x80000002, 52, 1, 0, 1, 1, 0)
        assert transfer >= 1558
        query = await rndis_call(host, rndis(RndisMessage.QUERY, 2, Oid.PERMANENT_ADDRESS, 0, 20, 0))
        kind, _, rid, status, blen, boff = struct.unpack_from("<6I", query)
        assert (kind, rid, status, blen) == (0x80000004, 2, 0, 6) and query[8 + boff:8 + boff + 6] == nic.mac
        unknown = await rndis_call(host, rndis(RndisMessage.QUERY, 3, 0x00FF00FF, 0, 20, 0))
        assert struct.unpack_from("<I", unknown, 12)[0] == RndisStatus.NOT_SUPPORTED
        supported = await rndis_call(host, rndis(RndisMessage.QUERY, 4, Oid.GEN_SUPPORTED_LIST, 0, 20, 0))
        assert Oid.GEN_MEDIA_CONNECT_STATUS in struct.unpack_from(f"<{(len(supported) - 24) // 4}I", supported, 24)
        assert not nic.nic.send_frame(frame(BROADCAST))  # no packet filter yet: nothing flows
        done = await rndis_call(host, rndis(RndisMessage.SET, 5, Oid.GEN_CURRENT_PACKET_FILTER, 4, 20, 0,
                                            payload=struct.pack("<I", 0x0F)))
        assert struct.unpack("<4I", done) == (0x80000005, 16, 5, 0)
        assert await host.transfer_in(NOTIFY, 16) == RESPONSE_AVAILABLE  # media connect indication
        indicate = await host.control(request(0x01, length=1025, read=True))
        assert struct.unpack_from("<3I", indicate) == (RndisMessage.INDICATE_STATUS, 20, RndisStatus.MEDIA_CONNECT)
        keep = await rndis_call(host, rndis(RndisMessage.KEEPALIVE, 6))
        assert struct.unpack("<4I", keep) == (0x80000008, 16, 6, 0)
        # Two packets in one transfer from the host, and packets to the host.
        sent = [frame(HOST_MAC, 80), frame(HOST_MAC, 1514)]
        await host.transfer_out(BULK_OUT, b"".join(build_packet(f) for f in sent))
        assert got == sent
        for f in sent:
            nic.nic.send_frame(f)
        frames, problem = parse_packets(await host.transfer_in(BULK_IN, 16384))
        assert problem is None and [bytes(f) for f in frames] == sent
        reset = await rndis_call(host, rndis(RndisMessage.RESET, 0))
        assert struct.unpack("<4I", reset) == (0x80000006, 16, 0, 0)
        await host.control(request(0x00, length=12), rndis(RndisMessage.HALT, 7))
        assert not nic.nic.initialized  # type: ignore[attr-defined]


BAD_RNDIS_CONTROL = [
    ("shorter than a header", b"\x02\x00\x00\x00"),
    ("length field disagrees", struct.pack("<III", 2, 99, 1)),
    ("query buffer outside the message", rndis(RndisMessage.QUERY, 1, 0x00010101, 64, 20, 0)),
    ("a completion sent by the host", rndis(0x80000002, 1)),
]


@pytest.mark.parametrize(("what", "message"), BAD_RNDIS_CONTROL, ids=[b[0] for b in BAD_RNDIS_CONTROL])
async def test_malformed_rndis_control_messages_are_dropped_and_counted(what: str, message: bytes) -> None:
    nic = NetworkAdapter("rndis", backend="callback")
    async with LocalHost(nic) as host:
        await configured(host, data_alt=None)
        await host.control(request(0x00, length=len(message)), message)
        assert nic.nic.dropped == {"malformed control message": 1}
        assert await host.control(request(0x01, length=1025, read=True)) == b"\x00"  # no answer to it


BAD_PACKETS = [
    ("not a PACKET_MSG", struct.pack("<11I", 2, 44, 36, 0, 0, 0, 0, 0, 0, 0, 0), "MessageType"),
    ("length past the transfer", struct.pack("<11I", 1, 4000, 36, 20, 0, 0, 0, 0, 0, 0, 0) + bytes(20), "MessageLength"),
    ("data outside the message", struct.pack("<11I", 1, 64, 36, 200, 0, 0, 0, 0, 0, 0, 0) + bytes(20), "DataOffset"),
    ("a truncated header", build_packet(frame(HOST_MAC)) + b"\x01\x00\x00", "too short"),
]


@pytest.mark.parametrize(("what", "data", "message"), BAD_PACKETS, ids=[b[0] for b in BAD_PACKETS])
def test_malformed_rndis_packets_are_refused_naming_the_field(what: str, data: bytes, message: str) -> None:
    _, problem = parse_packets(data)
    assert problem is not None and message in problem


# ====================================================================== the endpoint's IP host


class Wire:
    """An IpHost with the frames it sends collected."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.host = IpHost(PEER_MAC, "169.254.77.1/16", self.out.append)
        self.ip = bytes([169, 254, 77, 2])
        self.peer_ip = bytes([169, 254, 77, 1])

    def ipv4(self, proto: int, payload: bytes) -> bytes:
        head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, self.ip, self.peer_ip)
        head = head[:10] + struct.pack("!H", checksum(head)) + head[12:]
        return PEER_MAC + HOST_MAC + b"\x08\x00" + head + payload

    def tcp(self, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"", wnd: int = 65535) -> bytes:
        seg = struct.pack("!HHIIHHHH", sport, dport, seq, ack, 5 << 12 | flags, wnd, 0, 0) + data
        pseudo = self.ip + self.peer_ip + struct.pack("!BBH", 0, 6, len(seg))
        seg = seg[:16] + struct.pack("!H", checksum(pseudo + seg)) + seg[18:]
        return self.ipv4(6, seg)

    def take(self) -> list[bytes]:
        out = list(self.out)
        self.out.clear()
        return out


def tcp_fields(f: bytes) -> tuple[int, int, int, bytes]:
    _s, _d, seq, ack, off_flags = struct.unpack_from("!HHIIH", f, 34)
    return seq, ack, off_flags & 0x3F, f[34 + (off_flags >> 12) * 4:]


def test_ip_host_answers_arp_ping_and_udp_echo() -> None:
    w = Wire()
    arp = BROADCAST + HOST_MAC + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + HOST_MAC + w.ip + bytes(6) \
        + w.peer_ip
    w.host.receive(arp)
    (reply,) = w.take()
    assert reply[:6] == HOST_MAC and reply[20:22] == b"\x00\x02" and reply[22:28] == PEER_MAC
    icmp = b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"ping"
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    w.host.receive(w.ipv4(1, icmp))
    (pong,) = w.take()
    assert pong[34] == 0 and pong[38:] == icmp[4:] and checksum(pong[34:]) == 0 and checksum(pong[14:34]) == 0
    udp = struct.pack("!HHHH", 4000, 7, 13, 0) + b"hello"
    w.host.receive(w.ipv4(17, udp))
    (echo,) = w.take()
    assert echo[34:38] == struct.pack("!HH", 7, 4000) and echo[42:] == b"hello"
    w.host.receive(w.ipv4(17, struct.pack("!HHHH", 4000, 9, 13, 0) + b"hello"))
    assert w.take() == []  # discard


def test_ip_host_answers_neighbour_solicitation_and_ping6() -> None:
    w = Wire()
    me = link_local_v6(PEER_MAC).packed
    src = link_local_v6(HOST_MAC).packed
    target_group = bytes.fromhex("ff0200000000000000000001ff") + me[13:]
    ns = struct.pack("!BBHI", 135, 0, 0, 0) + me + b"\x01\x01" + HOST_MAC
    ns = ns[:2] + struct.pack("!H", checksum(src + target_group + struct.pack("!IxxxB", len(ns), 58) + ns)) + ns[4:]
    head = struct.pack("!IHBB16s16s", 0x60000000, len(ns), 58, 255, src, target_group)
    w.host.receive(bytes.fromhex("3333ff") + me[13:] + HOST_MAC + b"\x86\xdd" + head + ns)
    (na,) = w.take()
    assert na[54] == 136 and na[62:78] == me and na[-6:] == PEER_MAC


def test_ip_host_tcp_echo_handshake_data_fin_and_retransmission() -> None:
    async def run() -> None:
        w = Wire()
        w.host.receive(w.tcp(5000, 7, 100, 0, SYN))
        (syn_ack,) = w.take()
        iss, ack, flags, _ = tcp_fields(syn_ack)
        assert flags == SYN | ACK and ack == 101
        w.host.receive(w.tcp(5000, 7, 101, iss + 1, ACK))
        w.host.receive(w.tcp(5000, 7, 101, iss + 1, ACK | PSH, b"hello"))
        await asyncio.sleep(0)
        (echo,) = w.take()
        seq, ack, flags, data = tcp_fields(echo)
        assert (seq, ack, data) == (iss + 1, 106, b"hello")
        # The echo is "lost": after the retransmission timeout it comes again.
        await asyncio.sleep(0.45)
        again = w.take()
        assert again and tcp_fields(again[0])[3] == b"hello"
        w.host.receive(w.tcp(5000, 7, 106, iss + 6, ACK | FIN))
        await asyncio.sleep(0)
        (fin,) = w.take()
        assert tcp_fields(fin)[2] == FIN | ACK and tcp_fields(fin)[1] == 107
        w.host.receive(w.tcp(5000, 7, 107, iss + 7, ACK))
        assert w.host.connections == {}
        w.host.receive(w.tcp(5001, 8, 1, 0, SYN))  # a closed port
        (rst,) = w.take()
        assert tcp_fields(rst)[2] == RST | ACK

    asyncio.run(run())


def test_ip_host_drops_segments_with_a_bad_checksum() -> None:
    w = Wire()
    good = w.tcp(5000, 7, 100, 0, SYN)
    w.host.receive(good[:-2] + bytes([good[-2] ^ 0xFF, good[-1]]))
    assert w.take() == [] and w.host.counters["bad tcp checksum"] == 1


# ====================================================================== backends


async def test_endpoint_hands_other_frames_to_its_callback_and_a_raising_callback_drops_that_frame() -> None:
    from vusb.devices.net import EndpointBackend

    seen: list[bytes] = []

    def other(f: bytes) -> None:
        seen.append(f)
        raise RuntimeError("boom")

    nic = NetworkAdapter("ecm", backend=EndpointBackend(on_frame=other))
    async with LocalHost(nic) as host:
        await configured(host)
        await host.transfer_out(BULK_OUT, frame(BROADCAST))
        assert len(seen) == 1 and nic.nic.dropped == {"callback raised": 1}


async def test_callback_backend_iterates_sends_and_captures_to_pcap(tmp_path: Path) -> None:
    pcap = tmp_path / "x.pcap"
    nic = adapter("ecm", "callback", pcap=pcap)
    async with LocalHost(nic) as host:
        await configured(host)
        await host.transfer_out(BULK_OUT, frame(BROADCAST, 64, 1))
        received = await asyncio.wait_for(anext(aiter(nic)), 2)
        assert received == frame(BROADCAST, 64, 1)
        await nic.send(frame(HOST_MAC, 64, 2))
        assert await host.transfer_in(BULK_IN, 2048) == frame(HOST_MAC, 64, 2)
    await nic.close()
    assert read_pcap(pcap) == [frame(BROADCAST, 64, 1), frame(HOST_MAC, 64, 2)]


async def test_pair_backends_carry_frames_across_and_a_missing_partner_is_a_clear_error(
        caplog: pytest.LogCaptureFixture) -> None:
    name = "unit-pair"
    left = NetworkAdapter("ecm", backend=PairBackend(name), serial_number="L")
    async with LocalHost(left) as lhost:
        await configured(lhost)
        with caplog.at_level(logging.ERROR, "vusb.devices.net"):
            await lhost.transfer_out(BULK_OUT, frame(BROADCAST))
        assert "has no partner: serve a second adapter with backend: pair and pair: unit-pair" in caplog.text
        assert left.nic.dropped == {"pair partner missing": 1}
        right = NetworkAdapter("ncm", backend=PairBackend(name), serial_number="R")
        with pytest.raises(NetBackendError, match="already has two adapters"):
            NetworkAdapter("ecm", backend=PairBackend(name))
        async with LocalHost(right) as rhost:
            await configured(rhost)
            await lhost.transfer_out(BULK_OUT, frame(BROADCAST, 200, 7))
            block = await rhost.transfer_in(BULK_IN, 16384)
            assert [bytes(f) for f in parse_ntb(block, 16384, NTB16)] == [frame(BROADCAST, 200, 7)]
        await right.close()
    await left.close()


def test_tap_without_permission_names_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import fcntl

    from vusb.devices.net import backends

    def refuse(*_: object) -> bytes:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fcntl, "ioctl", refuse)
    monkeypatch.setattr(backends, "tap_permission_problem", lambda: "making a TAP interface needs CAP_NET_ADMIN")
    tap = TapBackend("vusbtest%d")
    NetworkAdapter("ecm", backend=tap)
    with pytest.raises(NetBackendError, match="cannot create TAP interface 'vusbtest%d': Operation not permitted; "
                                              "making a TAP interface needs CAP_NET_ADMIN"):
        tap.open()


# ====================================================================== profiles and vusb ctl


@pytest.mark.parametrize(("fields", "message"), [
    ("backend: pair", "backend: pair needs pair: NAME"),
    ("backend: callback\n    address: 10.0.0.1/8", "address only applies to backend: endpoint"),
    ("mac: '01:00:00:00:00:01'", "multicast"),
    ("mac: 'zz'", "not six hexadecimal bytes"),
    ("address: not-an-address", "not an IPv4 address"),
])
def test_profile_errors_name_the_field(fields: str, message: str) -> None:
    text = ("identity: {vendor_id: 0x1209, product_id: 0x10, speed: high}\n"
            f"functions:\n  - kind: ncm\n    {fields}\n")
    with pytest.raises(ProfileError, match=message):
        parse_profile(text)


@pytest.mark.parametrize("kind", ["ncm", "ecm", "rndis"])
def test_shipped_profiles_load_with_the_endpoint_at_169_254_77_1(kind: str) -> None:
    from vusb.profile import load_device

    device = load_device(ROOT / "profiles" / f"ethernet-{kind}.yaml")
    nic = device.functions[0]
    assert nic.backend.describe() == "endpoint 169.254.77.1/16"  # type: ignore[attr-defined]


async def test_vusb_ctl_sets_link_and_speed_and_reads_counters(tmp_path: Path) -> None:
    nic = NetworkAdapter("ecm", backend="callback")
    async with Server([nic], port=0) as server:
        control = ControlServer(server, tmp_path / "ctl.sock")
        body, _ = build_request(["link", "1-1", "down"])
        assert body == {"cmd": "link", "busid": "1-1", "state": "down"}
        assert (await control.handle(body))["ok"]
        assert not nic.nic.link_up
        reply = await control.handle(build_request(["speed", "1-1", "100000000"])[0])
        assert reply["ok"] and nic.nic.speed_bps == 100_000_000
        stats = await control.handle(build_request(["net-stats", "1-1"])[0])
        assert stats["ok"] and stats["link"] == "down" and stats["mac"] == nic.mac_text
        bad = await control.handle({"cmd": "link", "busid": "1-1", "state": "sideways"})
        assert not bad["ok"] and "give up or down" in bad["error"]


def test_check_creates_no_capture_file_and_serving_does(tmp_path: Path) -> None:
    """`vusb check` (a dry-run build) opens no pcap file; building the device for serving does."""
    from vusb.profile import load_profile

    profile = tmp_path / "nic.yaml"
    profile.write_text("identity: {vendor_id: 0x1209, product_id: 0x10, speed: high}\n"
                       "functions:\n  - {kind: ecm, backend: callback, pcap: captures/frames.pcap}\n")
    (tmp_path / "captures").mkdir()
    loaded = load_profile(profile)
    assert list((tmp_path / "captures").iterdir()) == []
    device = loaded.build()
    assert (tmp_path / "captures" / "frames.pcap").exists()
    device.functions[0].capture.close()  # type: ignore[attr-defined]


def test_the_network_class_registers_its_kinds_commands_and_page() -> None:
    from vusb.registry import registry

    reg = registry()
    for kind in ("ncm", "ecm", "rndis"):
        assert reg.kind(kind).docs == "devices/network.md"
    assert {"link", "speed", "net-stats"} <= set(reg.commands)
    assert reg.function_name(NcmFunction(CallbackBackend())) is not None
