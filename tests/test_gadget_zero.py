"""Gadget Zero (vusb.devices.gadget_zero) driven by an in-process host: what Linux's usbtest relies on.

The same behaviour under the real usbtest driver is in tests/kernel/test_usbtest_kernel.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

import pytest
from vusb.devices.gadget_zero import (
    CONTROL_BUFFER_SIZE,
    LOOPBACK_CONFIGURATION,
    SOURCESINK_CONFIGURATION,
    GadgetZero,
    GadgetZeroFunction,
    Mode,
    Pattern,
    pattern_bytes,
)

from vusb.constants import DescriptorType, Recipient, Speed, TransferType
from vusb.device import Device
from vusb.errors import DeviceDefinitionError, ProfileError, Stall
from vusb.harness import image as image_mod
from vusb.profile import load_device, parse_profile
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

ROOT = Path(__file__).resolve().parents[1]
IN, OUT = 0x81, 0x01


def write_buffer(data: bytes, value: int = 0, index: int = 0, request_type: int = 0x40) -> SetupPacket:
    return SetupPacket(request_type, 0x5B, value, index, len(data))


def read_buffer(length: int, value: int = 0, index: int = 0, request_type: int = 0xC0) -> SetupPacket:
    return SetupPacket(request_type, 0x5C, value, index, length)


# ------------------------------------------------------------ descriptors

async def test_enumerates_like_g_zero_with_source_sink_first() -> None:
    gz = GadgetZero()
    async with LocalHost(gz) as host:
        info = await host.enumerate()
        d = info.device
        assert (d.vendor_id, d.product_id, d.device_class, d.usb_version) == (0x0525, 0xA4A0, 0xFF, 0x0200)
        assert [c.value for c in info.configurations] == [SOURCESINK_CONFIGURATION, LOOPBACK_CONFIGURATION]
        assert [info.strings[c.name_index] for c in info.configurations] == ["source and sink data",
                                                                            "loop input to output"]
        assert info.strings[d.serial_number_index] == "0123456789.0123456789.0123456789"
        for config in info.configurations:
            assert config.self_powered
            (itf,) = config.interfaces
            assert (itf.number, itf.alternate, itf.interface_class) == (0, 0, 0xFF)
            assert [(e.address, e.transfer_type, e.max_packet_size) for e in itf.endpoints] == [
                (IN, TransferType.BULK, 512), (OUT, TransferType.BULK, 512)]
        assert await host.get_configuration() == SOURCESINK_CONFIGURATION
        assert gz.function.active_mode == Mode.SOURCE_SINK


async def test_loopback_first_swaps_the_configurations() -> None:
    async with LocalHost(GadgetZero(loopback_first=True)) as host:
        info = await host.enumerate()
        assert [c.value for c in info.configurations] == [LOOPBACK_CONFIGURATION, SOURCESINK_CONFIGURATION]


async def test_high_speed_serves_an_other_speed_configuration_per_configuration() -> None:
    # usbtest's chapter 9 test (9) reads every other-speed configuration the qualifier announces.
    async with LocalHost(GadgetZero()) as host:
        qualifier = await host.get_descriptor(DescriptorType.DEVICE_QUALIFIER, 0, 10)
        assert qualifier[8] == 2  # bNumConfigurations
        for index, value in enumerate((SOURCESINK_CONFIGURATION, LOOPBACK_CONFIGURATION)):
            other = await host.get_descriptor(DescriptorType.OTHER_SPEED_CONFIGURATION, index, 255)
            assert (other[1], other[5]) == (DescriptorType.OTHER_SPEED_CONFIGURATION, value)
            assert int.from_bytes(other[9 + 9 + 4:9 + 9 + 6], "little") == 64  # full-speed bulk packets
        with pytest.raises(Stall):
            await host.get_descriptor(DescriptorType.OTHER_SPEED_CONFIGURATION, 2, 255)


@pytest.mark.parametrize(("speed", "packet", "bos"), [("full", 64, False), ("high", 512, False), ("super", 1024, True)])
async def test_speeds(speed: str, packet: int, bos: bool) -> None:
    gz = GadgetZero(speed=speed)
    async with LocalHost(gz) as host:
        info = await host.enumerate()
        assert info.configurations[0].interfaces[0].endpoints[0].max_packet_size == packet
        assert (info.bos is not None) == bos
        assert len(await host.bulk_in(IN, 3 * packet)) == 3 * packet


def test_low_speed_is_refused() -> None:
    with pytest.raises(DeviceDefinitionError, match="bulk endpoints"):
        GadgetZero(speed="low")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "echo"}, "mode 'echo' is not one of: sourcesink, loopback"),
    ({"pattern": 3}, "pattern 3 is not 0"),
    ({"buflen": 0}, "buflen 0 is out of range"),
    ({"qlen": 0}, "qlen 0 is out of range"),
])
def test_bad_options_name_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DeviceDefinitionError, match=message):
        GadgetZeroFunction(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------ source/sink

@pytest.mark.parametrize(("pattern", "length", "packet", "expected"), [
    (Pattern.ZEROS, 5, 512, bytes(5)),
    (Pattern.MOD63, 5, 512, bytes([0, 1, 2, 3, 4])),
    (Pattern.MOD63, 66, 512, bytes(range(63)) + bytes([0, 1, 2])),    # wraps at 63 ...
    (Pattern.MOD63, 67, 64, bytes(range(63)) + bytes([0, 0, 1, 2])),  # ... and restarts with each packet
    (Pattern.NONE, 4, 512, bytes(4)),
    (Pattern.MOD63, 0, 512, b""),
])
def test_pattern_bytes(pattern: Pattern, length: int, packet: int, expected: bytes) -> None:
    assert pattern_bytes(pattern, length, packet) == expected


@pytest.mark.parametrize("pattern", list(Pattern))
@pytest.mark.parametrize("length", [0, 1, 512, 4000, 200_000])
async def test_source_fills_every_in_transfer_with_the_pattern(pattern: Pattern, length: int) -> None:
    gz = GadgetZero(pattern=pattern)
    async with LocalHost(gz) as host:
        await host.enumerate()
        assert await host.bulk_in(IN, length) == pattern_bytes(pattern, length, 512)
        assert await host.bulk_in(IN, length) == pattern_bytes(pattern, length, 512)  # restarts each transfer
        assert (gz.stats.bytes_sourced, gz.stats.transfers_in) == (2 * length, 2)


@pytest.mark.parametrize("pattern", [Pattern.ZEROS, Pattern.MOD63])
async def test_sink_accepts_the_pattern(pattern: Pattern) -> None:
    gz = GadgetZero(pattern=pattern)
    async with LocalHost(gz) as host:
        await host.enumerate()
        for length in (0, 1, 512, 1000, 70_000):
            assert await host.bulk_out(OUT, pattern_bytes(pattern, length, 512)) == length
        assert (gz.stats.bytes_sunk, gz.stats.pattern_errors) == (71_513, 0)


async def test_sink_halts_on_a_bad_byte_until_the_host_clears_it() -> None:
    gz = GadgetZero(pattern=Pattern.MOD63)
    async with LocalHost(gz) as host:
        await host.enumerate()
        bad = bytearray(pattern_bytes(Pattern.MOD63, 1024, 512))
        bad[700] ^= 0xFF
        # As in g_zero: the transfer carrying the bad byte was received; the next ones stall.
        assert await host.bulk_out(OUT, bytes(bad)) == 1024
        assert gz.stats.pattern_errors == 1
        assert gz.stats.last_error == f"bad OUT byte, buf[700] = {bad[700]}"
        with pytest.raises(Stall):
            await host.bulk_out(OUT, pattern_bytes(Pattern.MOD63, 512, 512))
        assert await host.get_status(Recipient.ENDPOINT, OUT) == 1
        await host.clear_halt(OUT)
        assert await host.get_status(Recipient.ENDPOINT, OUT) == 0
        assert await host.bulk_out(OUT, pattern_bytes(Pattern.MOD63, 512, 512)) == 512


@pytest.mark.parametrize(
    ("pattern", "length", "index"),
    [
        (Pattern.MOD63, 1024, 0),
        (Pattern.MOD63, 1024, 1023),
        (Pattern.MOD63, 200_000, 65_536),  # past the first pattern buffer: it grows
        (Pattern.MOD63, 200_000, 199_999),
        (Pattern.ZEROS, 1, 0),
        (Pattern.ZEROS, 70_000, 69_999),
    ],
)
async def test_sink_reports_the_first_bad_byte(pattern: Pattern, length: int, index: int) -> None:
    gz = GadgetZero(pattern=pattern)
    async with LocalHost(gz) as host:
        await host.enumerate()
        assert await host.bulk_out(OUT, pattern_bytes(pattern, length, 512)) == length
        bad = bytearray(pattern_bytes(pattern, length, 512))
        bad[index] ^= 0x40
        if index + 1 < length:
            bad[-1] ^= 0x40  # a later bad byte is not the one reported
        assert await host.bulk_out(OUT, bytes(bad)) == length
        assert gz.stats.pattern_errors == 1
        assert gz.stats.last_error == f"bad OUT byte, buf[{index}] = {bad[index]}"


@pytest.mark.parametrize("wrap", [bytes, memoryview, bytearray])
@pytest.mark.parametrize(
    ("pattern", "max_packet_size", "length"),
    [(Pattern.MOD63, 512, 0), (Pattern.MOD63, 512, 100_000), (Pattern.MOD63, 64, 1000), (Pattern.ZEROS, 512, 5000)],
)
def test_pattern_cache_matches_like_a_byte_comparison(
    wrap: type, pattern: Pattern, max_packet_size: int, length: int
) -> None:
    from vusb.devices.gadget_zero import _PatternCache

    cache = _PatternCache()
    good = pattern_bytes(pattern, length, max_packet_size)
    assert cache.matches(pattern, wrap(good), max_packet_size)
    assert bytes(cache.get(pattern, length, max_packet_size)) == good
    if length:
        bad = bytearray(good)
        bad[length // 2] ^= 1
        assert not cache.matches(pattern, wrap(bytes(bad)), max_packet_size)
    # The other pattern (or packet size) for the same bytes is rebuilt, not reused.
    other = Pattern.ZEROS if pattern == Pattern.MOD63 else Pattern.MOD63
    if length > 1:
        assert not cache.matches(other, wrap(good), max_packet_size)


async def test_pattern_none_accepts_anything() -> None:
    gz = GadgetZero(pattern=Pattern.NONE)
    async with LocalHost(gz) as host:
        await host.enumerate()
        assert await host.bulk_out(OUT, os.urandom(3000)) == 3000
        assert gz.stats.pattern_errors == 0


async def test_halt_set_by_the_host_stalls_both_directions_until_cleared() -> None:
    # usbtest test 13: SET_FEATURE(HALT), expect -EPIPE twice, CLEAR_FEATURE, expect data again.
    async with LocalHost(GadgetZero()) as host:
        await host.enumerate()
        for ep in (IN, OUT):
            await host.set_halt(ep)
            assert await host.get_status(Recipient.ENDPOINT, ep) == 1
            with pytest.raises(Stall):
                await (host.bulk_in(IN, 512) if ep == IN else host.bulk_out(OUT, bytes(512)))
            await host.clear_halt(ep)
            assert await host.get_status(Recipient.ENDPOINT, ep) == 0
        assert await host.bulk_in(IN, 512) == bytes(512)


# ------------------------------------------------------------ vendor requests

@pytest.mark.parametrize("length", [1, 64, 65, 1000, CONTROL_BUFFER_SIZE])
async def test_vendor_requests_write_and_read_back_the_buffer(length: int) -> None:
    gz = GadgetZero()
    async with LocalHost(gz) as host:
        await host.enumerate()
        data = bytes((i * 7 + 3) & 0xFF for i in range(length))
        await host.control(write_buffer(data), data)
        assert await host.control(read_buffer(length)) == data
        assert (gz.stats.control_writes, gz.stats.control_reads) == (1, 1)


@pytest.mark.parametrize(("setup", "why"), [
    (write_buffer(b"x", value=1), "wValue must be 0"),
    (write_buffer(b"x", index=1), "wIndex must be 0"),
    (write_buffer(b"x", request_type=0x41), "recipient must be the device"),
    (read_buffer(4, value=1), "wValue must be 0"),
    (read_buffer(CONTROL_BUFFER_SIZE + 1), "longer than the 4096-byte buffer"),
    (SetupPacket(0xC0, 0x5B, 0, 0, 4), "0x5b is an OUT request"),
    (SetupPacket(0x40, 0x5D, 0, 0, 0), "not a gadget zero request"),
])
async def test_vendor_requests_stall_when_malformed(setup: SetupPacket, why: str) -> None:
    async with LocalHost(GadgetZero()) as host:
        await host.enumerate()
        data = bytes(setup.length) if not setup.is_in else b""
        with pytest.raises(Stall):
            await host.control(setup, data)


async def test_vendor_requests_stall_in_the_loopback_configuration() -> None:
    async with LocalHost(GadgetZero()) as host:
        await host.enumerate()
        await host.set_configuration(LOOPBACK_CONFIGURATION)
        with pytest.raises(Stall):
            await host.control(write_buffer(b"abc"), b"abc")


# ------------------------------------------------------------ loopback

async def loopback_host(gz: GadgetZero) -> LocalHost:
    host = LocalHost(gz)
    host.attach()
    await host.enumerate()
    await host.set_configuration(LOOPBACK_CONFIGURATION)
    return host


async def test_loopback_echoes_each_transfer() -> None:
    gz = GadgetZero()
    host = await loopback_host(gz)
    for data in (b"hello", b"", bytes(range(256)) * 4):
        assert await host.bulk_out(OUT, data) == len(data)
        assert await host.bulk_in(IN, 4096) == data
    assert (gz.stats.bytes_looped_out, gz.stats.bytes_looped_in) == (1029, 1029)
    host.detach()


async def test_loopback_in_waits_for_data_like_a_naking_endpoint() -> None:
    host = await loopback_host(GadgetZero())
    _, pending = host.submit(IN, 1, 512)
    await asyncio.sleep(0.01)
    assert not pending.done()
    await host.bulk_out(OUT, b"late")
    assert bytes((await pending).data) == b"late"
    host.detach()


async def test_loopback_holds_writes_when_its_queue_is_full() -> None:
    gz = GadgetZero(buflen=4, qlen=2)
    host = await loopback_host(gz)
    assert await host.bulk_out(OUT, b"aaaabbbb") == 8         # two buffers: the queue is full
    _, held = host.submit(OUT, 0, 0, b"cccc")
    await asyncio.sleep(0.01)
    assert not held.done() and gz.function.queued == 2        # the host's write waits (NAK)
    assert await host.bulk_in(IN, 512) == b"aaaa"             # one buffer per IN transfer
    assert (await held).status == 0                           # room again: the write completes
    assert [await host.bulk_in(IN, 512) for _ in range(2)] == [b"bbbb", b"cccc"]
    host.detach()


async def test_loopback_short_in_transfer_takes_part_of_a_buffer() -> None:
    host = await loopback_host(GadgetZero())
    await host.bulk_out(OUT, b"0123456789")
    assert await host.bulk_in(IN, 4) == b"0123"
    assert await host.bulk_in(IN, 64) == b"456789"
    host.detach()


@pytest.mark.parametrize("reset", ["set_interface", "set_configuration"])
async def test_loopback_data_is_dropped_when_the_host_resets_the_interface(reset: str) -> None:
    gz = GadgetZero()
    host = await loopback_host(gz)
    await host.bulk_out(OUT, b"stale")
    if reset == "set_interface":
        await host.set_interface(0, 0)
    else:
        await host.set_configuration(LOOPBACK_CONFIGURATION)
    assert gz.function.queued == 0
    await host.bulk_out(OUT, b"fresh")
    assert await host.bulk_in(IN, 64) == b"fresh"
    host.detach()


async def test_loopback_unlinked_in_transfer_does_not_swallow_data() -> None:
    host = await loopback_host(GadgetZero())
    urb, _ = host.submit(IN, 1, 512)
    await asyncio.sleep(0)
    assert host.unlink_urb(urb)
    await host.bulk_out(OUT, b"kept")
    assert await host.bulk_in(IN, 512) == b"kept"
    host.detach()


async def test_switching_configurations_switches_the_behaviour() -> None:
    gz = GadgetZero(pattern=Pattern.MOD63)
    async with LocalHost(gz) as host:
        await host.enumerate()
        await host.set_configuration(LOOPBACK_CONFIGURATION)
        await host.bulk_out(OUT, b"xyz")
        assert await host.bulk_in(IN, 64) == b"xyz"
        await host.set_configuration(SOURCESINK_CONFIGURATION)
        assert await host.bulk_in(IN, 64) == bytes(range(63)) + b"\x00"
        await host.set_configuration(0)
        assert gz.function.active_mode is None
        with pytest.raises(Stall):
            await host.bulk_in(IN, 64)


# ------------------------------------------------------------ one function in any device, and profiles

@pytest.mark.parametrize("mode", list(Mode))
async def test_function_in_a_single_configuration_device(mode: Mode) -> None:
    function = GadgetZeroFunction(mode)
    device = Device(function, vendor_id=0x0525, product_id=0xA4A0, speed=Speed.FULL)
    async with LocalHost(device) as host:
        info = await host.enumerate()
        assert info.strings[info.configurations[0].interfaces[0].name_index] == {
            Mode.SOURCE_SINK: "source and sink data", Mode.LOOPBACK: "loop input to output"}[mode]
        await host.bulk_out(OUT, b"\x00\x00")
        expected = b"\x00" * 8 if mode == Mode.SOURCE_SINK else b"\x00\x00"
        assert await host.bulk_in(IN, 8) == expected


def test_shipped_profile_is_gadget_zero_for_usbtest() -> None:
    device = load_device(ROOT / "profiles" / "gadget-zero.yaml")
    assert (device.descriptor.vendor_id, device.descriptor.product_id) == (0x0525, 0xA4A0)
    (function,) = device.functions
    assert isinstance(function, GadgetZeroFunction)
    assert (function.mode, function.pattern) == (Mode.SOURCE_SINK, Pattern.ZEROS)
    device.close_unstarted()


PROFILE = """\
identity: {vendor_id: 0x0525, product_id: 0xa4a0, speed: high}
functions:
  - kind: gadget-zero
"""


@pytest.mark.parametrize(("options", "checks"), [
    ("", {"mode": Mode.SOURCE_SINK, "pattern": Pattern.ZEROS, "buflen": 4096, "qlen": 32}),
    ("    mode: loopback\n    buflen: 512\n    qlen: 4\n", {"mode": Mode.LOOPBACK, "buflen": 512, "qlen": 4}),
    ("    pattern: 1\n    interface_name: mine\n", {"pattern": Pattern.MOD63, "interface_name": "mine"}),
])
def test_profile_options(options: str, checks: dict[str, object]) -> None:
    device = parse_profile(PROFILE + options).build()
    (function,) = device.functions
    assert isinstance(function, GadgetZeroFunction)
    assert {name: getattr(function, name) for name in checks} == checks


@pytest.mark.parametrize(("options", "message"), [
    ("    mode: echo\n", r"functions\[0\]\.mode.*'echo' is not one of: sourcesink, loopback"),
    ("    pattern: 3\n", r"functions\[0\]\.pattern.*3 is out of range 0\.\.2"),
    ("    qlen: 0\n", r"functions\[0\]\.qlen.*out of range"),
    ("    speed: high\n", r"functions\[0\]\.speed.*unknown field 'speed'"),
])
def test_profile_errors_name_the_field(options: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(PROFILE + options)


# ------------------------------------------------------------ the guest's testusb tool

TESTUSB = Path(image_mod.TOOLS_DIR) / "testusb.c"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this host")
def test_testusb_compiles_statically(tmp_path: Path) -> None:
    output = tmp_path / "testusb"
    image_mod.compile_guest_tool("gcc", TESTUSB, output)
    assert image_mod._elf_interpreter(output) is None  # static: the guest has no C library of its own
    assert "usr/bin/testusb" in image_mod.GUEST_TOOLS


def test_missing_compiler_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = image_mod._which
    monkeypatch.delenv("VUSB_CC", raising=False)
    monkeypatch.setattr(image_mod, "_which", lambda name, *a: None if name in ("gcc", "cc") else real(name, *a))
    try:
        image_mod._find_busybox()
    except image_mod.HarnessPrerequisiteError:
        pytest.skip("no static busybox on this host")
    with pytest.raises(image_mod.HarnessPrerequisiteError, match=r"C compiler.*'gcc'"):
        image_mod.check_build_prerequisites()


@pytest.mark.parametrize(("compiler_says", "error", "message"), [
    ("/usr/bin/ld: cannot find -lc: No such file or directory", image_mod.HarnessPrerequisiteError, "'libc6-dev'"),
    ("testusb.c:1: fatal error: linux/usbdevice_fs.h: No such file or directory", image_mod.HarnessPrerequisiteError,
     "'libc6-dev'"),
    ("testusb.c:42: error: expected ';'", image_mod.ImageBuildError, "compiling testusb.c for the guest failed"),
])
def test_compile_failures_are_explained(tmp_path: Path, compiler_says: str, error: type[Exception], message: str) -> None:
    fake = tmp_path / "fake-cc"
    fake.write_text(f"#!/bin/sh\necho '{compiler_says}' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(error, match=message):
        image_mod.compile_guest_tool(str(fake), TESTUSB, tmp_path / "out")
