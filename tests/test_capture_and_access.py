"""Traffic capture as pcap, and the client allow-list."""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from vusb.devices import Keyboard, Mouse

from vusb.client import RemoteDevice, list_devices
from vusb.errors import ConnectionClosed, UsageError
from vusb.server import Server

HOST = "127.0.0.1"


def read_pcap(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", raw)
    assert magic == 0xA1B2C3D4 and linktype == 101
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
