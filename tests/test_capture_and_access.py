"""Traffic capture as pcap, and the client allow-list."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from vusb.devices import Keyboard, Mouse
from vusb.devices.storage import MassStorage

from vusb.capture import USBMON_HEADER
from vusb.client import RemoteDevice, list_devices
from vusb.errors import ConnectionClosed, UsageError
from vusb.server import Server

HOST = "127.0.0.1"


def read_pcap(path: Path, expected_linktype: int = 101) -> list[bytes]:
    raw = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", raw)
    assert magic == 0xA1B2C3D4 and linktype == expected_linktype
    packets, pos = [], 24
    while pos < len(raw):
        _, _, incl, _ = struct.unpack_from("<IIII", raw, pos)
        packets.append(raw[pos + 16 : pos + 16 + incl])
        pos += 16 + incl
    return packets


def tcp_payloads(packets: list[bytes], server_port: int) -> tuple[bytes, bytes]:
    to_server, to_client = bytearray(), bytearray()
    for p in packets:
        ihl = (p[0] & 0xF) * 4
        _, dport = struct.unpack_from("!HH", p, ihl)
        off = (p[ihl + 12] >> 4) * 4
        (to_server if dport == server_port else to_client).extend(p[ihl + off :])
    return bytes(to_server), bytes(to_client)


async def capture_session(path: Path) -> int:
    kb = Keyboard()
    async with Server([kb, Mouse()], port=0, capture=str(path)) as server:
        await list_devices(HOST, server.port)
        async with await RemoteDevice.open(HOST, "1-1", server.port) as dev:
            await dev.enumerate()
            typing = asyncio.create_task(kb.type("ok"))
            for _ in range(4):
                await dev.transfer_in(1, 8)
            await typing
            seq, _ = dev.submit(1, 1, 8)
            await dev.unlink(seq)
        await asyncio.sleep(0.05)
        return server.port


async def test_capture_holds_exactly_the_usbip_bytes_of_each_stream(tmp_path: Path) -> None:
    path = tmp_path / "session.pcap"
    port = await capture_session(path)
    packets = read_pcap(path)
    to_server, to_client = tcp_payloads(packets, port)
    assert to_server.startswith(bytes.fromhex("0111 8005 00000000"))  # OP_REQ_DEVLIST first
    assert bytes.fromhex("0111 8003 00000000") + b"1-1" in to_server  # then the import
    assert bytes.fromhex("0111 0003 00000000") in to_client  # REP_IMPORT OK
    assert to_client.count(bytes.fromhex("00000004")) >= 1  # a RET_UNLINK
    flags = [p[(p[0] & 0xF) * 4 + 13] for p in packets]
    assert flags.count(0x02) == 2 and flags.count(0x11) >= 4  # a SYN and two FINs per stream


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
async def test_tshark_decodes_a_full_attach_session_without_malformed_packets(tmp_path: Path) -> None:
    path = tmp_path / "session.pcap"
    port = await capture_session(path)
    out = subprocess.run(["tshark", "-r", str(path), "-d", f"tcp.port=={port},usbip", "-T", "fields",
                          "-e", "_ws.col.Protocol", "-e", "_ws.expert.message"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "USBIP" in out.stdout.upper()
    assert "malformed" not in out.stdout.lower(), out.stdout


CBW = struct.Struct("<IIIBBB16s")
#: READ(10) commands of a disk session: (first block, blocks) — 4 KiB, 120 KiB and 128 KiB of data
READS = ((0, 8), (8, 240), (248, 256))


async def disk_session(path: Path, capture_format: str, image: Path | None = None) -> tuple[int, list[bytes]]:
    """Attach a high-speed disk (in memory, or the ``image`` file), enumerate it and read it three times;
    returns the port and the data read."""
    disk = MassStorage(memory=True, size=4 << 20, speed="high") if image is None else MassStorage(image, speed="high")
    async with Server([disk], port=0, capture=str(path), capture_format=capture_format) as server:
        async with await RemoteDevice.open(HOST, "1-1", server.port) as dev:
            info = await dev.enumerate()
            eps = [e.address for i in info.configurations[0].interfaces for e in i.endpoints]
            ep_in, ep_out = next(a for a in eps if a & 0x80), next(a for a in eps if not a & 0x80)
            reads = []
            for tag, (lba, blocks) in enumerate(READS, 1):
                cdb = struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)
                await dev.transfer_out(ep_out, CBW.pack(0x43425355, tag, blocks * 512, 0x80, 0, 10, cdb))
                reads.append(await dev.transfer_in(ep_in & 0x0F, blocks * 512))
                assert (await dev.transfer_in(ep_in & 0x0F, 13))[12] == 0  # CSW: passed
        await asyncio.sleep(0.05)
        return server.port, reads


async def test_every_usbip_message_is_one_segment_of_the_capture(tmp_path: Path) -> None:
    """A message leaves as one TCP segment (split only past what one IPv4 packet holds), whatever the
    socket delivered: Wireshark shows each RET_SUBMIT with its data, never a header alone."""
    path = tmp_path / "disk.pcap"
    port, _ = await disk_session(path, "usbip")
    segments = []
    for p in read_pcap(path):
        ihl = (p[0] & 0xF) * 4
        sport = struct.unpack_from("!H", p, ihl)[0]
        payload = p[ihl + (p[ihl + 12] >> 4) * 4:]
        if payload:
            segments.append((sport == port, payload))
    replies = [payload for from_server, payload in segments if from_server]
    full = 65535 - 40
    follows_full = [False, *(len(prev) == full for prev in replies[:-1])]
    for payload, continuation in zip(replies, follows_full, strict=True):
        if not continuation:  # a new message: an op reply, RET_SUBMIT (3) or RET_UNLINK (4)
            assert payload[:2] == b"\x01\x11" or struct.unpack_from("!I", payload)[0] in (3, 4), payload[:16].hex()
    assert any(len(r) == 48 + 4096 for r in replies)  # the 4 KiB READ(10): header and data in one segment
    assert any(len(r) == 48 + 18 for r in replies)  # GET_DESCRIPTOR(DEVICE): likewise
    assert all(len(payload) in (8, 8 + 32) or len(payload) >= 48 for from_server, payload in segments if not from_server)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
@pytest.mark.parametrize("capture_format", ["usbip", "usbmon"])
async def test_tshark_decodes_a_disk_session_in_either_form(tmp_path: Path, capture_format: str) -> None:
    path = tmp_path / f"disk-{capture_format}.pcap"
    port, _ = await disk_session(path, capture_format)
    decode = ["-d", f"tcp.port=={port},usbip"] if capture_format == "usbip" else []
    out = subprocess.run(["tshark", "-r", str(path), *decode, "-T", "fields", "-e", "_ws.col.Protocol",
                          "-e", "_ws.col.Info", "-e", "_ws.malformed"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "malformed" not in out.stdout.lower(), out.stdout
    assert out.stdout.count("Read(10) Response Data") == len(READS)  # USBMS decodes every data stage
    assert "GET DESCRIPTOR Response DEVICE" in out.stdout


@pytest.mark.parametrize("backing", ["memory", "image file"])
async def test_usbmon_capture_pairs_each_submission_with_its_completion(tmp_path: Path, backing: str) -> None:
    """The usbmon form is what Linux writes (USB_LINUX_MMAPPED): a 64-byte header per event, IN data on
    the completion, OUT data on the submission; vusb clone reads the device back out of it.  An image
    file's long reads, which leave by sendfile(2) when nothing is captured, are captured byte for byte."""
    path = tmp_path / "disk-usbmon.pcap"
    image = None
    if backing == "image file":
        image = tmp_path / "disk.img"
        image.write_bytes(os.urandom(4 << 20))
    _, reads = await disk_session(path, "usbmon", image)
    if image is not None:
        assert reads == [image.read_bytes()[lba * 512:(lba + n) * 512] for lba, n in READS]
    events = [(*USBMON_HEADER.unpack_from(p), p[USBMON_HEADER.size:]) for p in read_pcap(path, 220)]
    submitted = {e[0]: e for e in events if e[1] == ord("S")}
    completed = {e[0]: e for e in events if e[1] == ord("C")}
    assert submitted.keys() == completed.keys() and len(submitted) > 15
    for urb_id, done in completed.items():
        sub = submitted[urb_id]
        assert sub[3] == done[3] and sub[10] == -115  # same endpoint; a submission is -EINPROGRESS
        assert len(done[-1]) == done[12]  # len_cap: the data that follows
    bulk_in = [e for e in completed.values() if e[2] == 3 and e[3] & 0x80 and e[10] == 0]
    data = [e[-1] for e in bulk_in if len(e[-1]) != 13]
    assert data == reads  # the IN data of each READ(10), byte for byte
    cbws = [e[-1] for e in submitted.values() if e[2] == 3 and not e[3] & 0x80]
    assert [c[:4] for c in cbws] == [b"USBC"] * len(READS)  # OUT data rides on the submission
    clone = subprocess.run([sys.executable, "-m", "vusb", "clone", str(path), "--from", "pcap"],
                           capture_output=True, text=True, timeout=60)
    assert clone.returncode == 0, clone.stderr
    assert "product_id: 0x0005" in clone.stdout and "Virtual Flash Drive" in clone.stdout


async def test_allow_list_refuses_other_clients(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vusb")
    async with Server([Keyboard()], port=0, allowed_clients=["10.1.0.0/16"]) as server:
        with pytest.raises((ConnectionClosed, ConnectionResetError, asyncio.IncompleteReadError)):
            await list_devices(HOST, server.port)
    assert "not in the allowed client list" in caplog.text
    async with Server([Keyboard()], port=0, allowed_clients=["127.0.0.1"]) as server:
        assert len(await list_devices(HOST, server.port)) == 1


def test_bad_allow_list_entry_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="allowed client list"):
        Server([Keyboard()], allowed_clients=["not-an-address"])
