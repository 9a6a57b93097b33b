"""The ``replay`` kind: a recording, edited by hand, answers a host as its entries say.

Each test loads a replay profile written as a person would edit one (a vendor device:
one interface with bulk OUT 0x01, bulk IN 0x81 and interrupt IN 0x82, and an alternate
setting 1 with isochronous IN 0x83) and drives it with the in-process host.  The storage tests record vusb's own
disk through a USB/IP client first.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from vusb.client import RemoteDevice
from vusb.errors import ProfileError, Stall
from vusb.profile import load_device, parse_profile
from vusb.protocol import IsoPacket
from vusb.record import record_to
from vusb.replay import ReplayFunction
from vusb.replay_storage import StorageReplay
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

DESCRIPTORS = """\
identity: {speed: full}
descriptors:
  device: "12 01 00 02 ff 00 00 40 09 12 99 00 00 01 00 00 00 01"
  configurations:
    - >-
      09 02 37 00 01 01 00 80 32
      09 04 00 00 03 ff 00 00 00
      07 05 01 02 40 00 00 07 05 81 02 40 00 00 07 05 82 03 08 00 0a
      09 04 00 01 01 ff 00 00 00 07 05 83 01 20 00 01
functions:
  - kind: replay
    interface: [0]
"""

VENDOR_IN = SetupPacket(0xC0, 0x01, 0, 0, 4)
VENDOR_OUT = SetupPacket(0x40, 0x02, 7, 0, 0)
VENDOR_ITF = SetupPacket(0xC1, 0x03, 0, 0, 4)


def replay_device(body: str, tmp_path: Path | None = None) -> tuple[object, ReplayFunction]:
    text = DESCRIPTORS + body
    if tmp_path is not None:
        (tmp_path / "r.yaml").write_text(text)
        device = load_device(tmp_path / "r.yaml")
    else:
        device = parse_profile(text).build()
    function = device.functions[0]
    assert isinstance(function, ReplayFunction)
    return device, function


CONTROL = """\
    control:
      - {setup: "c0 01 00 00 00 00 04 00", config: 1, reply: "01"}
      - {setup: "c0 01 00 00 00 00 04 00", config: 1, reply: "02"}
      - {setup: "40 02 07 00 00 00 00 00", config: 1}
      - {setup: "c1 03 00 00 00 00 04 00", config: 1, reply: "a0"}
      - {setup: "c1 03 00 00 00 00 04 00", config: 1, alt: 1, reply: "a1"}
      - {setup: "c0 05 00 00 00 00 04 00", config: 1, status: stall}
"""


async def test_control_answers_come_in_recorded_order_and_the_last_one_repeats() -> None:
    device, function = replay_device(CONTROL)
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        assert [await host.control(VENDOR_IN) for _ in range(3)] == [b"\x01", b"\x02", b"\x02"]
        await host.control(VENDOR_OUT)
        with pytest.raises(Stall):
            await host.control(SetupPacket(0xC0, 0x05, 0, 0, 4))  # recorded as a stall
    assert function.divergences == []


async def test_control_answers_are_keyed_by_the_device_state() -> None:
    device, _ = replay_device(CONTROL)
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        assert await host.control(VENDOR_ITF) == b"\xa0"
        await host.set_interface(0, 1)
        assert await host.control(VENDOR_ITF) == b"\xa1"


POLICIES = [
    # policy, request, what the host gets, what the divergence says was done
    ("stall", SetupPacket(0xC0, 0x01, 9, 0, 4), Stall, "stalled"),
    ("nearest", SetupPacket(0xC0, 0x01, 9, 0, 4), b"\x01", "answered with the nearest: control[0]"),
    ("handler", SetupPacket(0xC0, 0x01, 9, 0, 4), b"\xee\x09", "passed to the handler answer"),
    ("nearest", SetupPacket(0xC0, 0x77, 0, 0, 4), Stall, "stalled"),  # nothing near: still a stall
]


@pytest.mark.parametrize(("policy", "setup", "expected", "action"), POLICIES)
async def test_an_unrecorded_request_goes_to_the_policy_and_is_logged_and_counted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, policy: str,
        setup: SetupPacket, expected: object, action: str) -> None:
    (tmp_path / "replies.py").write_text(
        "def answer(request, recorded):\n    return bytes([0xEE, request.value])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    handler = "    handler: replies:answer\n" if policy == "handler" else ""
    device, function = replay_device(f"    unrecorded: {policy}\n{handler}{CONTROL}")
    caplog.set_level(logging.WARNING, "vusb.replay")
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        await host.control(VENDOR_IN)
        if expected is Stall:
            with pytest.raises(Stall):
                await host.control(setup)
        else:
            assert await host.control(setup) == expected
    assert len(function.divergences) == 1
    divergence = function.divergences[0]
    assert divergence.action.startswith(action)
    assert divergence.recorded.startswith("control[1]")  # what was recorded after the last answer given
    assert f"replay divergence 1: {setup.describe()}" in caplog.text
    sys.modules.pop("replies", None)


CONVERSATION = """\
    control: []
    transfers:
      - {ep: 0x82, in: "01 02"}
      - {ep: 0x82, in: "03 04"}
      - {ep: 0x01, out: "41 54 0d"}
      - {ep: 0x81, in: "4f 4b 0d 0a"}
      - {ep: 0x01, out: "41 54 49 0d"}
      - {ep: 0x81, in: "76 75 73 62 0d 0a"}
"""


async def test_an_in_transfer_waits_for_the_write_that_triggered_it() -> None:
    device, function = replay_device(CONVERSATION)
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        reading = asyncio.ensure_future(host.transfer_in(0x81, 64, timeout=5))
        await asyncio.sleep(0.05)
        assert not reading.done()  # nothing was written yet: the device has nothing to say
        await host.transfer_out(0x01, b"AT\r")
        assert await reading == b"OK\r\n"
        await host.transfer_out(0x01, b"ATI\r")
        assert await host.transfer_in(0x81, 64) == b"vusb\r\n"
    assert function.divergences == []


async def test_a_write_recorded_elsewhere_resynchronises_the_conversation() -> None:
    device, function = replay_device(CONVERSATION)
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        await host.transfer_out(0x01, b"ATI\r")
        assert await host.transfer_in(0x81, 64) == b"vusb\r\n"
        await host.transfer_out(0x01, b"AT\r")
        assert await host.transfer_in(0x81, 64) == b"OK\r\n"
        with pytest.raises(Stall):
            await host.transfer_out(0x01, b"ATZ\r")  # never recorded
    assert [d.action.split(",")[0] for d in function.divergences] == [
        "resynchronised at the same write", "resynchronised at the same write", "stalled"]
    assert function.divergences[2].what == "OUT ep 0x01 [41 54 5a 0d] (4 bytes)"


async def test_on_demand_in_transfers_wait_to_be_released() -> None:
    device, function = replay_device("    timing: on-demand\n" + CONVERSATION)
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        report = asyncio.ensure_future(host.transfer_in(0x82, 8, timeout=5))
        await asyncio.sleep(0.05)
        assert not report.done()
        assert function.release(1, 0x82) == 1  # one left on 0x82
        assert await report == b"\x01\x02"
        function.release(1, 0x82)
        assert await host.transfer_in(0x82, 8) == b"\x03\x04"
        assert function.pending_in() == {0x81: 2, 0x82: 0}


async def test_fault_rules_apply_to_a_replay() -> None:
    device, _ = replay_device(CONVERSATION + "faults:\n  - {kind: short, endpoint: 0x82, length: 1, count: 1}\n")
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        assert await host.transfer_in(0x82, 8) == b"\x01"
        assert await host.transfer_in(0x82, 8) == b"\x03\x04"


async def test_an_isochronous_stream_replays_its_recorded_packets_in_order_and_starts_over() -> None:
    device, _ = replay_device("    timing: asap\n    transfers:\n"
                              "      - {ep: 0x83, in: '01 02 03 04 05', iso: [[0, 2], [2, 3]]}\n"
                              "      - {ep: 0x83, in: '06', iso: [1]}\n")
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        await host.set_interface(0, 1)
        packets = tuple(IsoPacket(32 * k, 32) for k in range(4))
        _, done = host.submit(0x83, 1, 128, iso_packets=packets)
        result = await done
    assert bytes(result.data) == bytes([1, 2, 3, 4, 5, 6, 1, 2])
    assert [p.actual_length for p in result.iso_packets or ()] == [2, 3, 1, 2]


PROFILE_ERRORS = [
    ("    data_file: r.bin\n    control:\n      - {setup: 'c0 01 00 00 00 00 04 00', reply: 'bin:0+9'}\n",
     "functions[0].control[0].reply: 'bin:0+9' reaches past the end of data_file (4 bytes)"),
    ("    control:\n      - {setup: 'c0 01 00 00 00 00 04 00', reply: 'bin:0+2'}\n",
     "functions[0].control[0].reply: bin:OFFSET+LENGTH needs data_file"),
    ("    control:\n      - {setup: '40 01 00 00 00 00 04 00', reply: '01'}\n",
     "functions[0].control[0].reply: a reply is IN data, but this setup packet is OUT"),
    ("    control:\n      - {setup: 'c0 01 00 00', reply: '01'}\n",
     "functions[0].control[0].setup: a setup packet is 8 bytes, 4 given"),
    ("    control:\n      - {setup: 'c0 01 00 00 00 00 04 00', status: broken}\n",
     "functions[0].control[0].status: 'broken': expected one of stall"),
    ("    transfers:\n      - {ep: 0x81, out: '01'}\n",
     "functions[0].transfers[0].out: endpoint 0x81 is IN: give in:, not out:"),
    ("    transfers:\n      - {ep: 0x01, out: 'zz'}\n",
     "functions[0].transfers[0].out: expected hexadecimal bytes"),
    ("    unrecorded: handler\n", "functions[0].unrecorded: unrecorded: handler needs handler: module:function"),
    ("    handler: no_such_module_here:answer\n", "functions[0].handler: handler 'no_such_module_here:answer': "
     "cannot import"),
    ("    timing: later\n", "functions[0].timing: 'later' is not one of: recorded, asap, on-demand"),
]


@pytest.mark.parametrize(("body", "expected"), PROFILE_ERRORS, ids=[e[1].split(":")[0] + str(i)
                                                                    for i, e in enumerate(PROFILE_ERRORS)])
def test_a_wrong_replay_entry_is_named_with_its_path(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "r.bin").write_bytes(b"1234")
    with pytest.raises(ProfileError) as exc:
        replay_device(body, tmp_path)
    path, _, message = expected.partition(": ")
    assert "r.yaml:" in str(exc.value) and f"field '{path}': {message}" in str(exc.value)


# ------------------------------------------------------------------ Bulk-Only storage

def cbw(tag: int, length: int, data_in: bool, cdb: bytes) -> bytes:
    return b"USBC" + struct.pack("<IIBBB", tag, length, 0x80 if data_in else 0, 0, len(cdb)) + cdb.ljust(16, b"\0")


async def scsi(host: object, tag: int, length: int, cdb: bytes, out: bytes = b"") -> tuple[bytes, bytes]:
    data_in = not out
    await host.transfer_out(0x01, cbw(tag, length, data_in, cdb))  # type: ignore[attr-defined]
    data = b""
    if length and data_in:
        try:
            data = await host.transfer_in(0x81, length)  # type: ignore[attr-defined]
        except Stall:
            await host.clear_halt(0x81)  # type: ignore[attr-defined]
    elif length:
        await host.transfer_out(0x01, out)  # type: ignore[attr-defined]
    return data, await host.transfer_in(0x81, 13)  # type: ignore[attr-defined]


READ_10 = bytes.fromhex("28 00 00000000 00 0008 00")  # 8 blocks from LBA 0
READ_LBA_2 = bytes.fromhex("28 00 00000002 00 0001 00")
WRITE_LBA_2 = bytes.fromhex("2a 00 00000002 00 0001 00")
INQUIRY = bytes.fromhex("12 00 00 00 24 00")
READ_CAPACITY = bytes.fromhex("25 00 00000000 00 0000 00")


@pytest.fixture
async def recorded_disk(tmp_path: Path) -> Path:
    image = bytes(range(256)) * 16 * 8
    (tmp_path / "d.img").write_bytes(image + bytes(1024 * 1024 - len(image)))
    (tmp_path / "disk.yaml").write_text("identity: {vendor_id: 0x1209, product_id: 0x0005, product: Disk, speed: high}\n"
                                        "functions:\n  - kind: mass-storage\n    image: d.img\n")
    device = load_device(tmp_path / "disk.yaml")
    async with Server([device], port=0, capture=str(tmp_path / "d.pcap"), capture_format="usbmon") as server, \
            await RemoteDevice.open("127.0.0.1", "1-1", port=server.port) as host:
        await host.enumerate()
        await scsi(host, 1, 36, INQUIRY)
        await scsi(host, 2, 8, READ_CAPACITY)
        await scsi(host, 3, 4096, READ_10)
    await device.aclose()
    record_to(tmp_path / "d.pcap", tmp_path / "replay.yaml")
    return tmp_path / "replay.yaml"


async def test_a_replayed_disk_echoes_tags_serves_reads_by_lba_and_keeps_writes(recorded_disk: Path) -> None:
    device = load_device(recorded_disk)
    function = device.functions[0]
    assert isinstance(function, StorageReplay) and function.disk.block_size == {0: 512}
    async with LocalHost(device) as host:
        await host.enumerate()
        data, csw = await scsi(host, 0x51, 512, READ_LBA_2)  # another tag, another range than recorded
        assert data == (bytes(range(256)) * 2) and csw == b"USBS" + struct.pack("<IIB", 0x51, 0, 0)
        _, csw = await scsi(host, 0x52, 512, WRITE_LBA_2, out=b"\x5a" * 512)
        assert csw[4:] == struct.pack("<IIB", 0x52, 0, 0)
        data, _ = await scsi(host, 0x53, 4096, READ_10)
        assert data[1024:1536] == b"\x5a" * 512 and data[:1024] == bytes(range(256)) * 4
    assert function.overlay.keys() == {(0, 2)}
    assert function.divergences == []


async def test_a_replayed_disk_refuses_unrecorded_commands_the_scsi_way(recorded_disk: Path) -> None:
    device = load_device(recorded_disk)
    function = device.functions[0]
    assert isinstance(function, StorageReplay)
    async with LocalHost(device) as host:
        await host.enumerate()
        data, csw = await scsi(host, 7, 192, bytes.fromhex("1a 00 3f 00 c0 00"))  # MODE SENSE(6): not recorded
        assert data == b"" and csw[12] == 1  # the data phase stalled, then CHECK CONDITION
        sense, csw = await scsi(host, 8, 18, bytes.fromhex("03 00 00 00 12 00"))
        assert (sense[2], sense[12]) == (0x05, 0x20) and csw[12] == 0  # ILLEGAL REQUEST, INVALID OPCODE
        data, _ = await scsi(host, 9, 512, bytes.fromhex("28 00 00000100 00 0001 00"))  # never read: zeros
        assert data == bytes(512)
    assert [d.action for d in function.divergences] == [
        "failed it (CSW status 1, sense ILLEGAL REQUEST)", "served zeros for them"]


async def test_vusb_ctl_releases_on_demand_reports_and_tells_the_divergences(tmp_path: Path) -> None:
    from vusb.control_server import ControlServer

    device, _ = replay_device("    timing: on-demand\n" + CONVERSATION)
    async with Server([device], port=0) as server:  # type: ignore[list-item]
        control = ControlServer(server, tmp_path / "ctl.sock")
        async with LocalHost(device) as host:  # type: ignore[arg-type]
            await host.enumerate()
            report = asyncio.ensure_future(host.transfer_in(0x82, 8, timeout=5))
            reply = await control.handle({"id": 1, "cmd": "replay-next", "busid": "1-1", "endpoint": 0x82})
            assert reply["ok"] is True and reply["left"] == 1, reply
            assert await report == b"\x01\x02"
            with pytest.raises(Stall):
                await host.transfer_out(0x01, b"nope")
            status = await control.handle({"id": 2, "cmd": "replay-status", "busid": "1-1"})
    assert status["ok"] is True and status["divergences"] == 1 and status["pending_in"] == {"0x81": 2, "0x82": 1}
    assert "OUT ep 0x01 [6e 6f 70 65] (4 bytes); recorded here: transfers[2] ep 0x01 OUT" in status["last_divergence"]
    wrong = await control.handle({"id": 3, "cmd": "replay-next", "busid": "1-1", "endpoint": 0x85})
    assert wrong["ok"] is False and "no IN transfers on endpoint 0x85" in wrong["error"]


async def test_a_replay_profile_works_in_the_pytest_fixtures(vusb_host: Any, tmp_path: Path) -> None:
    (tmp_path / "replay.yaml").write_text(DESCRIPTORS + CONTROL)
    host = vusb_host(tmp_path / "replay.yaml")  # a path, as for any profile
    await host.enumerate()
    assert await host.control(VENDOR_IN) == b"\x01"


@pytest.mark.parametrize(("policy", "expected_data", "expected_status", "action"), [
    ("stall", b"", 1, "failed it (CSW status 1, sense ILLEGAL REQUEST)"),
    ("nearest", "recorded inquiry", 0, "answered as the command at transfers[0]"),
    ("handler", b"\x00\x80" + b"handled", 0, "passed to the handler"),
])
async def test_an_unrecorded_scsi_command_goes_to_the_policy(
        recorded_disk: Path, monkeypatch: pytest.MonkeyPatch, policy: str, expected_data: object,
        expected_status: int, action: str) -> None:
    (recorded_disk.parent / "scsi_answers.py").write_text(
        "def answer(request, recorded):\n    return bytes([0x00, 0x80]) + b'handled'\n")
    monkeypatch.syspath_prepend(str(recorded_disk.parent))
    text = recorded_disk.read_text().replace("unrecorded: stall", f"unrecorded: {policy}")
    if policy == "handler":
        text = text.replace("    timing: recorded", "    timing: recorded\n    handler: scsi_answers:answer")
    recorded_disk.write_text(text)
    device = load_device(recorded_disk)
    function = device.functions[0]
    assert isinstance(function, StorageReplay)
    async with LocalHost(device) as host:
        await host.enumerate()
        recorded_inquiry, _ = await scsi(host, 1, 36, INQUIRY)
        data, csw = await scsi(host, 2, 96, bytes.fromhex("12 00 00 00 60 00"))  # INQUIRY with another length
    assert data == (recorded_inquiry if expected_data == "recorded inquiry" else expected_data)
    assert csw[12] == expected_status
    assert [d.action for d in function.divergences] == [action]
    sys.modules.pop("scsi_answers", None)


async def test_a_hid_replay_takes_an_unrecorded_output_report_on_its_interrupt_out() -> None:
    text = DESCRIPTORS.replace("07 05 01 02 40 00 00", "07 05 01 03 08 00 0a")  # 0x01 becomes interrupt OUT
    device = parse_profile(text + "    class: hid\n").build()
    function = device.functions[0]
    assert isinstance(function, ReplayFunction)
    async with LocalHost(device) as host:
        await host.enumerate()
        assert await host.transfer_out(0x01, b"\x02") == 1  # Caps Lock's LED, say: taken, not stalled
    assert [d.action for d in function.divergences] == ["accepted (a HID output report)"]


TRIGGERED = """\
    control:
      - {setup: "40 10 01 00 00 00 00 00", config: 1}  # a vendor "start streaming"
    transfers:
      - {ep: 0x81, in: "5a 5a", after: "control[0]"}
"""


async def test_an_in_transfer_waits_for_the_control_request_that_triggered_it() -> None:
    device, function = replay_device(TRIGGERED)
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        data = asyncio.ensure_future(host.transfer_in(0x81, 64, timeout=5))
        await asyncio.sleep(0.05)
        assert not data.done()
        await host.control(SetupPacket(0x40, 0x10, 1, 0, 0))
        assert await data == b"ZZ"
    assert function.divergences == []


async def test_a_trigger_the_host_never_sends_does_not_starve_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vusb.replay.TRIGGER_GRACE", 0.05)
    device, function = replay_device(TRIGGERED)
    async with LocalHost(device) as host:  # type: ignore[arg-type]
        await host.enumerate()
        assert await host.transfer_in(0x81, 64, timeout=5) == b"ZZ"
    assert [d.action for d in function.divergences] == ["served anyway"]
    assert "which the host has not sent" in function.divergences[0].recorded
