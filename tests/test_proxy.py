"""vusb proxy: a physical device exported over USB/IP, driven here through the real server and client.

The physical device is the shipped test double (vusb.proxy_fake.FakeBackend), whose
"hardware" is a vusb device: Gadget Zero for all four transfer types and both of its
configurations, a keyboard for an IN that waits.  What reaches the hardware and what
comes back to the USB/IP client is checked byte for byte.  The libusb backend on real
(QEMU-emulated) hardware is tested in tests/kernel/test_proxy_kernel.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from doc_files import import_doc_files
from vusb.devices import Keyboard
from vusb.devices.gadget_zero import GadgetZero, Pattern, pattern_bytes

from vusb import faults
from vusb.cli import main as cli_main
from vusb.client import RemoteDevice, list_devices
from vusb.constants import Status, TransferType
from vusb.control import ControlServer
from vusb.control_client import ControlClient
from vusb.device import Device
from vusb.errors import ConnectionClosed, ProfileError, Stall, TransferError, TransferTimeout
from vusb.profile import load_profile
from vusb.protocol import IsoPacket
from vusb.proxy import DROP, ProxyDevice, ProxyError, parse_fault_option, read_fault_rules
from vusb.proxy_backend import DeviceGone, TransferRequest, TransferResult
from vusb.proxy_fake import FakeBackend
from vusb.record import record_to
from vusb.server import Server
from vusb.testing import LocalHost
from vusb.urb import Completion, SetupPacket, Urb

ROOT = Path(__file__).resolve().parents[1]
BULK_IN, BULK_OUT, ISO_IN, ISO_OUT, INT_IN, INT_OUT = 0x81, 0x01, 0x82, 0x02, 0x83, 0x03
SOURCESINK, LOOPBACK = 3, 2


@dataclass
class Rig:
    hardware: Device
    fake: FakeBackend
    proxy: ProxyDevice
    server: Server
    remote: RemoteDevice


@asynccontextmanager
async def proxied(hardware: Device, *others: Device, log_transfers: bool = False) -> AsyncIterator[Rig]:
    """``hardware`` behind a fake backend, proxied as busid 1-1 (``others`` served beside it), imported by a client."""
    fake = FakeBackend(hardware)
    with ProxyDevice(fake, log_transfers=log_transfers) as proxy:
        async with Server([proxy, *others], port=0) as server, \
                await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
            yield Rig(hardware, fake, proxy, server, remote)


def loopback() -> GadgetZero:
    return GadgetZero(loopback_first=True)  # configuration 2 (loopback) first: a host selects it


# ------------------------------------------------------------ the device as the host sees it
@pytest.mark.parametrize("make", [Keyboard, GadgetZero], ids=["keyboard", "gadget-zero"])
async def test_the_host_reads_the_hardware_s_own_descriptors_and_strings(make: Callable[[], Device]) -> None:
    hardware = make()
    async with proxied(hardware) as rig:
        info = await rig.remote.enumerate()
    assert info.device_bytes == hardware.descriptor.to_bytes()
    assert info.configuration_bytes == [c.to_bytes() for c in hardware.configurations]
    product = hardware.strings.get(hardware.descriptor.product_index, 0x0409)
    assert product is not None and product in info.strings.values()


async def test_the_device_list_shows_the_physical_device() -> None:
    async with proxied(GadgetZero()) as rig:
        port = rig.server.port
        exported = [e.record() for e in rig.server.exports]
    assert (exported[0].vendor_id, exported[0].product_id) == (0x0525, 0xA4A0)
    assert exported[0].interfaces[0].interface_class == 0xFF
    assert port


# ------------------------------------------------------------ all four transfer types
async def control_in_and_out(remote: RemoteDevice, hardware: GadgetZero) -> None:
    data = bytes(range(200))
    await remote.control(SetupPacket(0x40, 0x5B, 0, 0, len(data)), data)       # into g_zero's ep0 buffer
    assert await remote.control(SetupPacket(0xC0, 0x5C, 0, 0, len(data))) == data


async def bulk_in_and_out(remote: RemoteDevice, hardware: GadgetZero) -> None:
    assert await remote.transfer_in(BULK_IN, 1024) == pattern_bytes(Pattern.MOD63, 1024, 512)
    assert await remote.transfer_out(BULK_OUT, pattern_bytes(Pattern.MOD63, 1536, 512)) == 1536
    assert hardware.stats.bytes_sunk == 1536 and hardware.stats.pattern_errors == 0


async def interrupt_in_and_out(remote: RemoteDevice, hardware: GadgetZero) -> None:
    await remote.set_interface(0, 2)
    assert await remote.transfer_in(INT_IN, 1024) == pattern_bytes(Pattern.MOD63, 1024, 1024)
    assert await remote.transfer_out(INT_OUT, pattern_bytes(Pattern.MOD63, 1024, 1024)) == 1024


async def isochronous_in_and_out(remote: RemoteDevice, hardware: GadgetZero) -> None:
    await remote.set_interface(0, 1)
    packets = tuple(IsoPacket(i * 1024, 1024 if i < 3 else 100) for i in range(4))
    _, fut = remote.submit(ISO_IN, 1, 3 * 1024 + 100, iso_packets=packets)
    reply = await asyncio.wait_for(fut, 5)
    assert reply.status == 0 and reply.iso_packets is not None
    assert [(p.offset, p.actual_length, p.status) for p in reply.iso_packets] == \
        [(0, 1024, 0), (1024, 1024, 0), (2048, 1024, 0), (3072, 100, 0)]
    assert bytes(reply.data) == pattern_bytes(Pattern.MOD63, 1024, 1024) * 3 + pattern_bytes(Pattern.MOD63, 100, 1024)
    out = tuple(IsoPacket(i * 1024, 1024) for i in range(2))
    _, fut = remote.submit(ISO_OUT, 0, 2048, bytes(2048), iso_packets=out)
    reply = await asyncio.wait_for(fut, 5)
    assert reply.status == 0 and reply.actual_length == 2048
    assert [p.actual_length for p in reply.iso_packets or ()] == [1024, 1024]
    assert hardware.stats.iso_bytes_out == 2048


TRANSFERS = {
    "control": control_in_and_out,
    "bulk": bulk_in_and_out,
    "interrupt": interrupt_in_and_out,
    "isochronous": isochronous_in_and_out,
}


@pytest.mark.parametrize("check", TRANSFERS.values(), ids=TRANSFERS.keys())
async def test_each_transfer_type_reaches_the_hardware_and_comes_back(
        check: Callable[[RemoteDevice, GadgetZero], Awaitable[None]]) -> None:
    hardware = GadgetZero(pattern=Pattern.MOD63)
    async with proxied(hardware) as rig:
        await rig.remote.enumerate()
        await check(rig.remote, hardware)
        assert rig.fake.in_flight == 0


async def test_loopback_data_goes_to_the_hardware_and_back_in_order() -> None:
    async with proxied(loopback()) as rig:
        await rig.remote.enumerate()
        chunks = [bytes([n]) * (100 + n) for n in range(5)]
        for chunk in chunks:
            await rig.remote.transfer_out(BULK_OUT, chunk)
        assert [await rig.remote.transfer_in(BULK_IN, 4096) for _ in chunks] == chunks


def test_descriptors_that_break_a_rule_are_proxied_as_the_hardware_has_them(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeBackend(GadgetZero(speed="full"))
    config = bytearray(fake.configurations[0])
    at = config.index(bytes([7, 5, BULK_IN]))
    config[at + 4:at + 6] = (1000).to_bytes(2, "little")   # a full-speed bulk endpoint of 1000 bytes
    fake.configurations[0] = bytes(config)
    proxy = ProxyDevice(fake)
    assert proxy.configurations[0].interfaces[0].endpoints[0].max_packet_size == 1000
    assert "proxied as they are" in caplog.text and "0x81" in caplog.text


# ------------------------------------------------------------ state changes go through the backend's calls
async def test_standard_requests_that_change_state_use_the_backend_calls_not_raw_control_transfers() -> None:
    hardware = GadgetZero()
    async with proxied(hardware) as rig:
        await rig.remote.enumerate()                 # SET_CONFIGURATION 3 (source/sink, the first)
        await rig.remote.set_interface(0, 1)
        await rig.remote.set_interface(0, 0)
        await rig.remote.clear_halt(BULK_IN)
        await rig.remote.set_configuration(LOOPBACK)
        transfers_before = rig.fake.submitted
        await rig.remote.transfer_out(BULK_OUT, b"after the switch")
        assert await rig.remote.transfer_in(BULK_IN, 64) == b"after the switch"
        assert rig.fake.calls == [("set_configuration", SOURCESINK, 0), ("set_interface", 0, 1),
                                  ("set_interface", 0, 0), ("clear_halt", BULK_IN, 0),
                                  ("set_configuration", LOOPBACK, 0)]
        assert rig.fake.submitted == transfers_before + 2  # only the data went as transfers
        assert hardware.configuration_value == LOOPBACK and rig.proxy.configuration_value == LOOPBACK


@pytest.mark.parametrize(("request_", "why"), [
    (SetupPacket(0x00, 0x09, 7, 0, 0), "configuration 7 does not exist"),
    (SetupPacket(0x01, 0x0B, 5, 0, 0), "interface 0 has no alternate setting 5"),
    (SetupPacket(0x02, 0x01, 0, 0x8F, 0), "endpoint 0x8f does not exist"),
], ids=["set-configuration", "set-interface", "clear-halt"])
async def test_a_state_change_the_device_cannot_make_stalls_and_the_backend_is_not_asked(
        request_: SetupPacket, why: str) -> None:
    async with proxied(GadgetZero()) as rig:
        await rig.remote.enumerate()
        with pytest.raises(Stall):
            await rig.remote.control(request_)
        assert rig.fake.calls == [("set_configuration", SOURCESINK, 0)], why


# ------------------------------------------------------------ waiting, unlinking
async def test_an_in_waits_like_a_nak_and_unlink_cancels_exactly_that_transfer() -> None:
    keyboard = Keyboard()
    async with proxied(keyboard) as rig:
        await rig.remote.enumerate()
        seqnum, fut = rig.remote.submit(0x81, 1, 8)
        await asyncio.sleep(0.1)
        assert not fut.done() and rig.fake.in_flight == 1    # the keyboard has no key: it NAKs
        assert await rig.remote.unlink(seqnum) == Status.ECONNRESET
        await asyncio.sleep(0.05)
        assert rig.fake.cancelled == 1 and rig.fake.in_flight == 0
        typing = asyncio.create_task(keyboard.type("a"))
        assert await rig.remote.transfer_in(0x81, 8) == bytes([0, 0, 4, 0, 0, 0, 0, 0])  # nothing was lost
        assert await rig.remote.transfer_in(0x81, 8) == bytes(8)
        await typing


async def test_unlinking_a_transfer_that_already_finished_answers_it_first() -> None:
    async with proxied(loopback()) as rig:
        await rig.remote.enumerate()
        seqnum, fut = rig.remote.submit(BULK_IN, 1, 64)
        await asyncio.sleep(0.05)
        await rig.remote.transfer_out(BULK_OUT, b"just in time")
        status = await rig.remote.unlink(seqnum)
        # Either the data came back (RET_SUBMIT, then RET_UNLINK 0) or the transfer was cancelled
        # before the data reached it, and the data waits for the next IN: never lost.
        if status == 0:
            assert bytes((await fut).data) == b"just in time"
        else:
            assert status == Status.ECONNRESET
            assert await rig.remote.transfer_in(BULK_IN, 64) == b"just in time"


# ------------------------------------------------------------ filters: fault rules and hooks
def once(verdict: Any) -> Callable[[Urb], Any]:
    """An on_submit hook that answers the first bulk IN URB with ``verdict`` and lets the rest through."""
    fired: list[Urb] = []

    def hook(urb: Urb) -> Any:
        if urb.address == BULK_IN and not fired:
            fired.append(urb)
            return verdict
        return None

    return hook


def hook_answers_stall(proxy: ProxyDevice) -> None:
    proxy.add_hook(on_submit=once(Completion(Status.EPIPE)))


def hook_drops(proxy: ProxyDevice) -> None:
    proxy.add_hook(on_submit=once(DROP))


def hook_delays(proxy: ProxyDevice) -> None:
    async def later(urb: Urb) -> None:
        if urb.address == BULK_IN:
            await asyncio.sleep(0.3)

    proxy.add_hook(on_submit=later)


def hook_changes_the_answer(proxy: ProxyDevice) -> None:
    proxy.add_hook(on_complete=lambda urb, c: Completion(c.status, bytes(c.data).upper()) if urb.is_in and urb.ep else None)


def hook_changes_what_the_device_gets(proxy: ProxyDevice) -> None:
    def rewrite(urb: Urb) -> None:
        if urb.address == BULK_OUT:
            urb.data = bytes(urb.data).replace(b"ping", b"pong")

    proxy.add_hook(on_submit=rewrite)


@dataclass(frozen=True)
class Filter:
    install: Callable[[ProxyDevice], Any]
    expect: str  # "stall", "timeout", "data:<text>", "late:<text>"


FILTERS = {
    "fault stall": Filter(lambda p: p.faults.add(faults.StallRule(endpoint=BULK_IN, halt=False, count=1)), "stall"),
    "fault drop": Filter(lambda p: p.faults.add(faults.Drop(endpoint=BULK_IN, count=1)), "timeout"),
    "fault delay": Filter(lambda p: p.faults.add(faults.Delay(endpoint=BULK_IN, seconds=0.3)), "late:ping pong"),
    "fault short": Filter(lambda p: p.faults.add(faults.Short(endpoint=BULK_IN, length=4)), "data:ping"),
    "hook stall": Filter(hook_answers_stall, "stall"),
    "hook drop": Filter(hook_drops, "timeout"),
    "hook delay": Filter(hook_delays, "late:ping pong"),
    "hook modify answer": Filter(hook_changes_the_answer, "data:PING PONG"),
    "hook modify request": Filter(hook_changes_what_the_device_gets, "data:pong pong"),
}


@pytest.mark.parametrize("filt", FILTERS.values(), ids=FILTERS.keys())
async def test_a_filter_between_host_and_device(filt: Filter) -> None:
    async with proxied(loopback()) as rig:
        await rig.remote.enumerate()
        filt.install(rig.proxy)
        await rig.remote.transfer_out(BULK_OUT, b"ping pong")
        start = asyncio.get_running_loop().time()
        kind, _, text = filt.expect.partition(":")
        if kind == "stall":
            with pytest.raises(Stall):
                await rig.remote.transfer_in(BULK_IN, 64)
        elif kind == "timeout":
            with pytest.raises(TransferTimeout):
                await rig.remote.transfer_in(BULK_IN, 64, timeout=0.3)
        else:
            assert await rig.remote.transfer_in(BULK_IN, 64) == text.encode()
            took = asyncio.get_running_loop().time() - start
            assert (took >= 0.29) == (kind == "late")
        if kind in ("stall", "timeout"):  # the data the filter kept from the host is still in the device
            assert await rig.remote.transfer_in(BULK_IN, 64) == b"ping pong"


async def test_fault_rules_can_be_added_while_proxying_through_the_control_socket(tmp_path: Path) -> None:
    async with proxied(loopback()) as rig:
        control = ControlServer(rig.server, str(tmp_path / "ctl.sock"))
        await control.start()
        try:
            def add_stall() -> dict[str, Any]:
                with ControlClient(control.path) as client:
                    return client.request({"cmd": "fault-add", "busid": "1-1",
                                           "fault": {"kind": "stall", "endpoint": BULK_IN, "count": 1}})

            reply = await asyncio.to_thread(add_stall)
            assert reply.get("ok", True) and "StallRule" in str(reply), reply
            await rig.remote.enumerate()
            with pytest.raises(Stall):
                await rig.remote.transfer_in(BULK_IN, 64)
        finally:
            await control.close()


async def test_a_descriptor_fault_changes_what_the_device_answered() -> None:
    async with proxied(GadgetZero()) as rig:
        rig.proxy.faults.add(faults.CorruptDescriptor(type="device", offset=8, data=b"\x34\x12"))
        info = await rig.remote.enumerate()
    assert info.device.vendor_id == 0x1234 and info.device.product_id == 0xA4A0


async def test_log_transfers_names_each_transfer_and_its_answer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vusb.proxy")
    async with proxied(loopback(), log_transfers=True) as rig:
        await rig.remote.enumerate()
        await rig.remote.transfer_out(BULK_OUT, b"hello")
    lines = [r.getMessage() for r in caplog.records if r.name == "vusb.proxy"]
    assert any("GET_DESCRIPTOR DEVICE" in line and "answered: status 0, 18 bytes in" in line for line in lines)
    assert any("SET_CONFIGURATION" in line and "done through the backend" in line for line in lines)
    assert any("endpoint 0x01" in line and "5 bytes out" in line for line in lines)


# ------------------------------------------------------------ fault rules as text (--faults FILE, --fault SPEC)
GOOD_RULES = {
    "stall,endpoint=0x81,count=1": (faults.StallRule, {"endpoint": 0x81, "count": 1}),
    "delay,endpoint=0x02,seconds=0.5": (faults.Delay, {"endpoint": 0x02, "seconds": 0.5}),
    "drop,endpoint=0x81,after=3": (faults.Drop, {"endpoint": 0x81, "after": 3}),
    "short,endpoint=0x81,length=4": (faults.Short, {"endpoint": 0x81, "length": 4}),
}
BAD_RULES = {
    "explode,endpoint=0x81": "unknown fault kind",
    "stall,endpont=0x81": "endpont",
    "delay,endpoint=0x81": "seconds",
    "stall,endpoint": "is not FIELD=VALUE",
}


@pytest.mark.parametrize(("spec", "expected"), GOOD_RULES.items(), ids=GOOD_RULES.keys())
def test_a_fault_option_makes_the_rule_a_profile_would(spec: str, expected: tuple[type, dict[str, Any]]) -> None:
    (rule,) = parse_fault_option(spec)
    cls, fields = expected
    assert type(rule) is cls and all(getattr(rule, k) == v for k, v in fields.items())


@pytest.mark.parametrize(("spec", "message"), BAD_RULES.items(), ids=BAD_RULES.keys())
def test_a_wrong_fault_option_names_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises((ProfileError, ProxyError), match=message):
        parse_fault_option(spec)


def test_a_faults_file_is_read_like_a_profile_s_faults_section() -> None:
    rules = read_fault_rules("faults:\n  - kind: stall\n    endpoint: 0x81\n  - kind: babble\n", "rules.yaml")
    assert [type(r) for r in rules] == [faults.StallRule, faults.Babble]
    with pytest.raises(ProfileError, match=r"rules\.yaml:2:.*unknown fault kind .nonsense."):
        read_fault_rules("- kind: stall\n- kind: nonsense\n", "rules.yaml")


# ------------------------------------------------------------ unplugged mid-transfer
async def test_unplugged_mid_transfer_answers_enodev_and_disconnects_only_that_client() -> None:
    gone: list[ProxyDevice] = []
    bystander = Keyboard()
    async with proxied(Keyboard(), bystander) as rig:
        rig.proxy.on_gone.append(gone.append)
        async with await RemoteDevice.open("127.0.0.1", "1-2", rig.server.port) as other:
            await other.enumerate()
            await rig.remote.enumerate()
            _, waiting = rig.remote.submit(0x81, 1, 8)          # a key press that never comes
            await asyncio.sleep(0.05)
            rig.fake.unplug()
            reply = await asyncio.wait_for(waiting, 5)
            assert reply.status == Status.ENODEV
            with pytest.raises((ConnectionClosed, ConnectionError, TransferError)):
                for _ in range(50):                            # the server closes the connection
                    await rig.remote.get_descriptor(1, 0, 18, 0)
                    await asyncio.sleep(0.02)
            assert gone == [rig.proxy] and rig.proxy.gone
            typing = asyncio.create_task(bystander.type("b"))   # the other device is untouched
            assert await other.transfer_in(0x81, 8) == bytes([0, 0, 5, 0, 0, 0, 0, 0])
            assert await other.transfer_in(0x81, 8) == bytes(8)
            await typing
        assert rig.proxy.gone and not rig.proxy.is_open
        devices = await list_devices("127.0.0.1", rig.server.port)
        assert "1-2" in [d.busid for d in devices]


async def test_a_device_unplugged_between_transfers_answers_the_next_one_enodev() -> None:
    async with proxied(loopback()) as rig:
        await rig.remote.enumerate()
        rig.fake.unplug()
        _, fut = rig.remote.submit(BULK_OUT, 0, 4, b"ping")
        assert (await asyncio.wait_for(fut, 5)).status == Status.ENODEV


# ------------------------------------------------------------ the operating system's drivers
async def test_the_kernel_drivers_are_detached_while_exported_and_re_attached_after() -> None:
    fake = FakeBackend(GadgetZero())
    assert fake.kernel_driver == {0: True}
    with ProxyDevice(fake) as proxy:
        assert fake.kernel_driver == {0: False} and fake.opened
        async with Server([proxy], port=0) as server, \
                await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
            await remote.enumerate()
    assert fake.kernel_driver == {0: True} and not fake.opened


# ------------------------------------------------------------ --record: the session as a usbmon capture
async def test_the_session_is_recorded_as_a_usbmon_capture(tmp_path: Path) -> None:
    capture = tmp_path / "session.pcap"
    fake = FakeBackend(loopback())
    with ProxyDevice(fake) as proxy:
        async with Server([proxy], port=0, capture=str(capture), capture_format="usbmon") as server, \
                await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
            await remote.enumerate()
            await remote.transfer_out(BULK_OUT, b"recorded")
            assert await remote.transfer_in(BULK_IN, 64) == b"recorded"
    raw = capture.read_bytes()
    assert struct.unpack_from("<I", raw, 20)[0] == 220          # LINKTYPE_USB_LINUX_MMAPPED
    assert raw.count(b"recorded") == 2                         # the OUT submission and the IN completion
    assert fake.hardware.descriptor.to_bytes() in raw          # the device descriptor as the device answered it


# ------------------------------------------------------------ the command line
def run_cli(args: list[str], *, without_libusb1: bool = False) -> subprocess.CompletedProcess[str]:
    code = "import sys\n"
    if without_libusb1:
        code += "sys.modules['usb1'] = None\n"
    code += "from vusb.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, env=env,
                          check=False)


CLI_ERRORS = {
    "no libusb1": (["proxy", "--vid-pid", "0627:0001"], True, "pip install 'vusb[proxy]'"),
    "bad ids": (["proxy", "--vid-pid", "0627"], False, "expected VVVV:PPPP in hexadecimal"),
    "bad address": (["proxy", "--device", "one.two"], False, "expected BUS.ADDR"),
    "no such device": (["proxy", "--vid-pid", "dead:beef"], False, "no USB device matches --vid-pid dead:beef"),
    "bad fault": (["proxy", "--vid-pid", "dead:beef", "--fault", "explode"], False, "unknown fault kind"),
    "remote without consent": (["proxy", "--vid-pid", "dead:beef", "--host", "0.0.0.0"], False, "--allow-remote"),
}


@pytest.mark.parametrize(("args", "without_libusb1", "message"), CLI_ERRORS.values(), ids=CLI_ERRORS.keys())
def test_vusb_proxy_refuses_with_a_clear_error(args: list[str], without_libusb1: bool, message: str) -> None:
    result = run_cli(args, without_libusb1=without_libusb1)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_vusb_proxy_needs_one_of_vid_pid_or_device(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["proxy"])
    assert "--vid-pid" in capsys.readouterr().err


def test_vusb_imports_and_serves_without_libusb1() -> None:
    code = ("import sys; sys.modules['usb1'] = None\n"
            "import vusb, vusb.proxy, vusb.proxy_fake, vusb.proxy_libusb, vusb.cli\n"
            "print(vusb.proxy_libusb.available())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


# ------------------------------------------------------------ docs/proxy.md
async def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    example = import_doc_files("proxy.md", tmp_path)["proxy_example"]
    seen = await example.main()
    # The rule's stall never reached the device, nor the hook behind the rules: only the device's answers did.
    assert seen == [bytes([0, 0, 4, 0, 0, 0, 0, 0]), bytes(8)]


async def test_vusb_record_makes_a_replay_of_the_proxy_s_recording(tmp_path: Path) -> None:
    capture = tmp_path / "session.pcap"
    hardware = loopback()
    with ProxyDevice(FakeBackend(hardware)) as proxy:
        async with Server([proxy], port=0, capture=str(capture), capture_format="usbmon") as server, \
                await RemoteDevice.open("127.0.0.1", "1-1", server.port) as remote:
            await remote.enumerate()
            await remote.transfer_out(BULK_OUT, b"recorded")
            assert await remote.transfer_in(BULK_IN, 64) == b"recorded"
    record_to(capture, tmp_path / "replay.yaml", speed="high")
    replay = load_profile(tmp_path / "replay.yaml").build()
    async with LocalHost(replay) as host:
        info = await host.enumerate()
        await host.transfer_out(BULK_OUT, b"recorded")
        assert await host.transfer_in(BULK_IN, 64) == b"recorded"
    assert info.device_bytes == hardware.descriptor.to_bytes()
    assert info.configuration_bytes[0] == hardware.configurations[0].to_bytes()


# ------------------------------------------------------------ the libusb backend's glue, on a stand-in for python-libusb1
# The real library against real (QEMU-emulated) devices is in tests/kernel/test_proxy_kernel.py; here a
# stand-in module records what the backend asks libusb, so the mapping is checked everywhere.

class USBError(Exception):
    pass


class USBErrorNoDevice(USBError):
    pass


class USBErrorNotFound(USBError):
    pass


class USBErrorBusy(USBError):
    pass


class USBErrorAccess(USBError):
    pass


class USBErrorNotSupported(USBError):
    pass


class USBErrorInterrupted(USBError):
    pass


class StubTransfer:
    def __init__(self, usb1: StubUsb1) -> None:
        self.usb1 = usb1
        self.kind = ""
        self.args: tuple[Any, ...] = ()
        self.callback: Callable[[StubTransfer], None] | None = None
        self.status = 0
        self.actual = 0
        self.buffer = b""
        self.packets: list[tuple[int, bytes]] = []

    def setControl(self, *args: Any, callback: Any) -> None:
        self.kind, self.args, self.callback = "control", args, callback

    def setBulk(self, endpoint: int, buffer: Any, callback: Any) -> None:
        self.kind, self.args, self.callback = "bulk", (endpoint, buffer), callback

    def setInterrupt(self, endpoint: int, buffer: Any, callback: Any) -> None:
        self.kind, self.args, self.callback = "interrupt", (endpoint, buffer), callback

    def setIsochronous(self, endpoint: int, buffer: Any, callback: Any,
                       iso_transfer_length_list: list[int]) -> None:
        self.kind, self.args, self.callback = "iso", (endpoint, buffer, iso_transfer_length_list), callback

    def submit(self) -> None:
        if self.usb1.gone:
            raise USBErrorNoDevice("LIBUSB_ERROR_NO_DEVICE")
        self.usb1.submitted.append(self)

    def cancel(self) -> None:
        self.usb1.cancelled.append(self)

    def finish(self, status: int, data: bytes = b"", packets: list[tuple[int, bytes]] | None = None) -> None:
        self.status, self.buffer, self.actual, self.packets = status, data, len(data), packets or []
        assert self.callback is not None
        self.callback(self)

    def doom(self) -> None:
        pass

    def getStatus(self) -> int:
        return self.status

    def getActualLength(self) -> int:
        return self.actual

    def getBuffer(self) -> bytes:
        return self.buffer

    def iterISO(self) -> list[tuple[int, bytes]]:
        return self.packets


KEYBOARD_CONFIG = bytes.fromhex("0902220001010080320904000001030101000921110100012234000705810308000a")


class StubHandle:
    def __init__(self, usb1: StubUsb1) -> None:
        self.usb1 = usb1
        self.configuration = 1
        self.drivers = {0: True}
        self.calls: list[tuple[Any, ...]] = []

    def controlRead(self, request_type: int, request: int, value: int, index: int, length: int,
                    timeout: int) -> bytes:
        if value >> 8 == 1:
            return bytes.fromhex("12010002000000082706010000000102000101")[:length]
        return KEYBOARD_CONFIG[:length]

    def getProduct(self) -> str:
        return "Stub Keyboard"

    def getConfiguration(self) -> int:
        if self.usb1.gone:
            raise USBErrorNoDevice("LIBUSB_ERROR_NO_DEVICE")
        return self.configuration

    def kernelDriverActive(self, number: int) -> bool:
        return self.drivers.get(number, False)

    def detachKernelDriver(self, number: int) -> None:
        self.drivers[number] = False
        self.calls.append(("detach", number))

    def attachKernelDriver(self, number: int) -> None:
        self.drivers[number] = True
        self.calls.append(("attach", number))

    def claimInterface(self, number: int) -> None:
        self.calls.append(("claim", number))

    def releaseInterface(self, number: int) -> None:
        self.calls.append(("release", number))

    def setConfiguration(self, value: int) -> None:
        self.configuration = value
        self.calls.append(("set_configuration", value))

    def setInterfaceAltSetting(self, number: int, alternate: int) -> None:
        self.calls.append(("set_interface", number, alternate))

    def clearHalt(self, endpoint: int) -> None:
        self.calls.append(("clear_halt", endpoint))

    def getTransfer(self, iso_packets: int, short_is_error: bool, add_zero_packet: bool) -> StubTransfer:
        return StubTransfer(self.usb1)

    def close(self) -> None:
        self.calls.append(("close",))


class StubDevice:
    def __init__(self, usb1: StubUsb1, bus: int, address: int, ids: tuple[int, int], device_class: int = 0) -> None:
        self.usb1, self.bus, self.address, self.ids, self.device_class = usb1, bus, address, ids, device_class

    def getVendorID(self) -> int:
        return self.ids[0]

    def getProductID(self) -> int:
        return self.ids[1]

    def getBusNumber(self) -> int:
        return self.bus

    def getDeviceAddress(self) -> int:
        return self.address

    def getDeviceClass(self) -> int:
        return self.device_class

    def getDeviceSpeed(self) -> int:
        return 2

    def open(self) -> StubHandle:
        if self.usb1.denied:
            raise USBErrorAccess("LIBUSB_ERROR_ACCESS")
        return self.usb1.handle


class StubContext:
    def __init__(self, usb1: StubUsb1) -> None:
        self.usb1 = usb1

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def getDeviceIterator(self, skip_on_error: bool) -> list[StubDevice]:
        return self.usb1.devices

    def handleEventsTimeout(self, seconds: float) -> None:
        import time

        time.sleep(0.01)

    def interruptEventHandler(self) -> None:
        pass


class StubUsb1:
    """What the backend uses of python-libusb1."""

    TRANSFER_COMPLETED, TRANSFER_ERROR, TRANSFER_TIMED_OUT, TRANSFER_CANCELLED = 0, 1, 2, 3
    TRANSFER_STALL, TRANSFER_NO_DEVICE, TRANSFER_OVERFLOW = 4, 5, 6
    SPEED_LOW, SPEED_FULL, SPEED_HIGH, SPEED_SUPER = 1, 2, 3, 4
    USBError, USBErrorNoDevice, USBErrorNotFound, USBErrorBusy = USBError, USBErrorNoDevice, USBErrorNotFound, USBErrorBusy
    USBErrorAccess, USBErrorNotSupported, USBErrorInterrupted = USBErrorAccess, USBErrorNotSupported, USBErrorInterrupted

    def __init__(self) -> None:
        self.gone = False
        self.denied = False
        self.handle = StubHandle(self)
        self.devices = [StubDevice(self, 1, 4, (0x0627, 0x0001)), StubDevice(self, 1, 1, (0x1D6B, 0x0002), 9)]
        self.submitted: list[StubTransfer] = []
        self.cancelled: list[StubTransfer] = []

    def USBContext(self) -> StubContext:
        return StubContext(self)


@pytest.fixture
def usb1(monkeypatch: pytest.MonkeyPatch) -> StubUsb1:
    stub = StubUsb1()
    monkeypatch.setitem(sys.modules, "usb1", stub)
    return stub


FIND_ERRORS = {
    "no match": ({"vid_pid": "dead:beef"}, None, "no USB device matches --vid-pid dead:beef; devices here "
                                                 "(BUS.ADDR VID:PID): 1.4 0627:0001, 1.1 1d6b:0002"),
    "two matches": ({"vid_pid": "0627:0001"}, "twice", "2 devices match --vid-pid 0627:0001 (at 1.4, 1.5); "
                                                      "pick one with --device BUS.ADDR"),
    "a hub": ({"device": "1.1"}, None, "--device 1.1 is a hub; USB/IP cannot export hubs"),
    "no permission": ({"device": "1.4"}, "denied", "no permission to open /dev/bus/usb/001/004"),
    "neither": ({}, None, "name the device to proxy with --vid-pid VVVV:PPPP or --device BUS.ADDR"),
}


@pytest.mark.parametrize(("which", "setup", "message"), FIND_ERRORS.values(), ids=FIND_ERRORS.keys())
def test_finding_the_device_fails_with_what_is_there(usb1: StubUsb1, which: dict[str, str], setup: str | None,
                                                     message: str) -> None:
    from vusb.proxy_libusb import LibusbBackend

    if setup == "twice":
        usb1.devices.append(StubDevice(usb1, 1, 5, (0x0627, 0x0001)))
    usb1.denied = setup == "denied"
    with pytest.raises(ProxyError, match=re.escape(message)):
        LibusbBackend.find(**which)


async def test_the_libusb_backend_takes_the_device_and_gives_it_back(usb1: StubUsb1) -> None:
    from vusb.proxy_libusb import LibusbBackend

    backend = LibusbBackend.find(device="1.4")
    assert backend.description == "bus 1 device 4 (0627:0001 Stub Keyboard)"
    assert backend.configurations == [KEYBOARD_CONFIG]
    backend.open()
    await backend.set_configuration(1)          # the configuration in use: alternate settings only
    await backend.set_interface(0, 0)
    await backend.clear_halt(0x81)
    backend.close()
    assert usb1.handle.calls == [("detach", 0), ("claim", 0), ("set_interface", 0, 0), ("set_interface", 0, 0),
                                 ("clear_halt", 0x81), ("release", 0), ("attach", 0), ("close",)]


async def test_the_libusb_backend_re_claims_after_another_configuration_and_restores_the_first(
        usb1: StubUsb1) -> None:
    from vusb.proxy_libusb import LibusbBackend

    backend = LibusbBackend.find(device="1.4")
    backend.open()
    await backend.set_configuration(0)
    backend.close()
    assert usb1.handle.calls == [("detach", 0), ("claim", 0), ("release", 0), ("set_configuration", 0),
                                 ("set_configuration", 1), ("attach", 0), ("close",)]


TRANSFER_RESULTS = {
    "bulk in": (TransferRequest(0x81, TransferType.BULK, 64), "bulk", (0, b"abc"),
                TransferResult(0, b"abc", 3)),
    "interrupt stall": (TransferRequest(0x81, TransferType.INTERRUPT, 8), "interrupt", (4, b""),
                        TransferResult(Status.EPIPE, b"", 0)),
    "control in": (TransferRequest(0x80, TransferType.CONTROL, 18, setup=SetupPacket(0x80, 6, 0x100, 0, 18)),
                   "control", (0, b"\x12\x01"), TransferResult(0, b"\x12\x01", 2)),
    "bulk out gone": (TransferRequest(0x02, TransferType.BULK, 4, b"data"), "bulk", (5, b""),
                      TransferResult(Status.ENODEV, b"", 0)),
    "cancelled": (TransferRequest(0x81, TransferType.BULK, 64), "bulk", (3, b""),
                  TransferResult(Status.ECONNRESET, b"", 0)),
}


@pytest.mark.parametrize(("request_", "kind", "finish", "expected"), TRANSFER_RESULTS.values(),
                         ids=TRANSFER_RESULTS.keys())
def test_each_libusb_status_becomes_the_linux_status_the_host_expects(
        usb1: StubUsb1, request_: TransferRequest, kind: str, finish: tuple[int, bytes],
        expected: TransferResult) -> None:
    from vusb.proxy_libusb import LibusbBackend

    backend = LibusbBackend.find(device="1.4")
    results: list[TransferResult] = []
    pending = backend.submit(request_, results.append)
    (transfer,) = usb1.submitted
    assert transfer.kind == kind
    transfer.finish(*finish)
    assert results == [expected]
    pending.cancel()
    assert usb1.cancelled == [transfer]


def test_isochronous_packets_keep_their_own_lengths_and_statuses(usb1: StubUsb1) -> None:
    from vusb.proxy_libusb import LibusbBackend

    backend = LibusbBackend.find(device="1.4")
    results: list[TransferResult] = []
    backend.submit(TransferRequest(0x83, TransferType.ISOCHRONOUS, 300, iso_lengths=(100, 100, 100)), results.append)
    (transfer,) = usb1.submitted
    assert transfer.args == (0x83, 300, [100, 100, 100])
    transfer.finish(0, packets=[(0, b"a" * 100), (1, b""), (0, b"c" * 40)])
    assert results == [TransferResult(0, b"a" * 100 + b"c" * 40, 140, ((100, 0), (0, Status.EPROTO), (40, 0)))]


def test_a_transfer_to_an_unplugged_device_raises_device_gone(usb1: StubUsb1) -> None:
    from vusb.proxy_libusb import LibusbBackend

    backend = LibusbBackend.find(device="1.4")
    usb1.gone = True
    with pytest.raises(DeviceGone):
        backend.submit(TransferRequest(0x81, TransferType.BULK, 64), lambda result: None)
