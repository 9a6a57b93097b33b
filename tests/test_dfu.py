"""DFU 1.1: descriptors, the state machine request by request, errors a test provokes, runtime to DFU mode."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from vusb.devices.dfu import DfuDevice, DfuFunction, DfuseLayout, DfuState, DfuStatus, functional_descriptor

from vusb.errors import DeviceDefinitionError, ProfileError, Stall
from vusb.profile import load_device, parse_profile
from vusb.testing import LocalHost
from vusb.urb import SetupPacket

ROOT = Path(__file__).resolve().parent.parent
S = DfuState


def dnload(block: int, data: bytes) -> tuple[SetupPacket, bytes]:
    return SetupPacket(0x21, 1, block, 0, len(data)), data


def upload(block: int, length: int) -> SetupPacket:
    return SetupPacket(0xA1, 2, block, 0, length)


GETSTATUS = SetupPacket(0xA1, 3, 0, 0, 6)
CLRSTATUS = SetupPacket(0x21, 4, 0, 0, 0)
GETSTATE = SetupPacket(0xA1, 5, 0, 0, 1)
ABORT = SetupPacket(0x21, 6, 0, 0, 0)
DETACH = SetupPacket(0x21, 0, 1000, 0, 0)


async def status(host: LocalHost) -> tuple[DfuStatus, int, DfuState]:
    raw = await host.control(GETSTATUS)
    assert len(raw) == 6 and raw[5] == 0
    return DfuStatus(raw[0]), int.from_bytes(raw[1:4], "little"), DfuState(raw[4])


async def download(host: LocalHost, image: bytes, size: int = 1024, first_block: int = 0) -> None:
    """As dfu-util does it: blocks of wTransferSize, GETSTATUS after each, a zero-length block, then status polls."""
    for n, i in enumerate(range(0, len(image), size)):
        await host.control(*dnload(first_block + n, image[i:i + size]))
        assert await status(host) == (DfuStatus.OK, 0, S.DFU_DNLOAD_IDLE)
    await host.control(*dnload(first_block + len(image) // size + 1, b""))


# ---------------------------------------------------------------- descriptors


def test_functional_descriptor_bytes() -> None:
    # bLength 9, type 0x21, attributes (download, upload, manifestation tolerant), 1000 ms, 1024 bytes, DFU 1.1
    assert functional_descriptor(0x07, 1000, 1024).to_bytes() == bytes.fromhex("09 21 07 e803 0004 1001")


async def test_dfu_mode_interface_and_functional_descriptor(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin", interface_name="Firmware")
    async with LocalHost(device) as host:
        config = await host.get_descriptor(2, 0, 255)
    interface = config[9:18]
    assert interface[5:8] == bytes((0xFE, 0x01, 0x02)) and interface[4] == 0  # no endpoints
    assert config[18:27] == functional_descriptor(0x07, 1000, 1024).to_bytes()


# ---------------------------------------------------------------- download, manifestation, upload


async def test_download_manifest_upload_round_trip_through_the_file(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin")
    image = os.urandom(5000)
    async with LocalHost(device) as host:
        await host.enumerate()
        await download(host, image)
        assert await status(host) == (DfuStatus.OK, 10, S.DFU_MANIFEST)  # poll 10 ms, then ask again
        await asyncio.sleep(0.02)
        assert await status(host) == (DfuStatus.OK, 0, S.DFU_IDLE)  # manifestation tolerant
        assert (tmp_path / "fw.bin").read_bytes() == image
        back = b""
        for block in range(100):
            chunk = await host.control(upload(block, 1024))
            back += chunk
            if len(chunk) < 1024:
                break
        assert back == image and device.dfu.state == S.DFU_IDLE  # the short block ended the upload


# Each row: requests from dfuIDLE (or after a download start), and the state + status they leave.
TRANSITIONS = [
    ("GETSTATE changes nothing", [GETSTATE], S.DFU_IDLE, DfuStatus.OK),
    ("ABORT in dfuIDLE", [ABORT], S.DFU_IDLE, DfuStatus.OK),
    ("CLRSTATUS outside dfuERROR stalls", [CLRSTATUS], S.DFU_ERROR, DfuStatus.ERR_STALLEDPKT),
    ("zero-length DNLOAD in dfuIDLE stalls", [dnload(0, b"")], S.DFU_ERROR, DfuStatus.ERR_STALLEDPKT),
    ("DETACH in DFU mode stalls", [DETACH], S.DFU_ERROR, DfuStatus.ERR_STALLEDPKT),
    ("a block goes to dfuDNLOAD-SYNC", [dnload(0, b"abc")], S.DFU_DNLOAD_SYNC, DfuStatus.OK),
    ("ABORT after a block", [dnload(0, b"abc"), GETSTATUS, ABORT], S.DFU_IDLE, DfuStatus.OK),
    ("UPLOAD during a download stalls", [dnload(0, b"abc"), GETSTATUS, upload(0, 16)], S.DFU_ERROR,
     DfuStatus.ERR_STALLEDPKT),
    ("zero-length DNLOAD ends the download", [dnload(0, b"abc"), GETSTATUS, dnload(1, b"")], S.DFU_MANIFEST_SYNC,
     DfuStatus.OK),
    ("CLRSTATUS leaves dfuERROR", [CLRSTATUS, CLRSTATUS], S.DFU_IDLE, DfuStatus.OK),
    ("UPLOAD of a full block stays in dfuUPLOAD-IDLE", [upload(0, 1)], S.DFU_UPLOAD_IDLE, DfuStatus.OK),
    ("ABORT ends an upload", [upload(0, 1), ABORT], S.DFU_IDLE, DfuStatus.OK),
]


@pytest.mark.parametrize(("case", "requests", "state", "status_"), TRANSITIONS, ids=[c[0] for c in TRANSITIONS])
async def test_state_transitions(case: str, requests: list[SetupPacket | tuple[SetupPacket, bytes]],
                                 state: DfuState, status_: DfuStatus, tmp_path: Path) -> None:
    (tmp_path / "fw.bin").write_bytes(b"0123456789")
    device = DfuDevice(tmp_path / "fw.bin")
    async with LocalHost(device) as host:
        await host.enumerate()
        for request in requests:
            setup, data = request if isinstance(request, tuple) else (request, b"")
            try:
                await host.control(setup, data)
            except Stall:
                pass
        assert (device.dfu.state, device.dfu.status) == (state, status_)


# ---------------------------------------------------------------- errors the spec names, provoked


async def errored(device: DfuDevice, steps: list[tuple[SetupPacket, bytes]]) -> tuple[DfuStatus, DfuState]:
    async with LocalHost(device) as host:
        await host.enumerate()
        result = (DfuStatus.OK, S.DFU_IDLE)
        for setup, data in steps:
            await host.control(setup, data)
            st, _, state = await status(host)
            result = (st, state)
            if state == S.DFU_ERROR:
                break
        return result


async def test_download_larger_than_the_memory_is_err_address(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin", capacity=2048)
    got = await errored(device, [dnload(0, bytes(1024)), dnload(1, bytes(1024)), dnload(2, bytes(1))])
    assert got == (DfuStatus.ERR_ADDRESS, S.DFU_ERROR)
    assert (tmp_path / "fw.bin").stat().st_size == 2048  # nothing written past the end


async def test_block_out_of_sequence_is_err_address(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin")
    assert await errored(device, [dnload(0, b"a" * 8), dnload(2, b"b" * 8)]) == (DfuStatus.ERR_ADDRESS, S.DFU_ERROR)


async def test_write_error_is_err_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = DfuDevice(tmp_path / "fw.bin")

    def full(offset: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(device.dfu.image, "write", full)
    assert await errored(device, [dnload(0, b"abc")]) == (DfuStatus.ERR_WRITE, S.DFU_ERROR)


@pytest.mark.parametrize(("case", "verdict", "expected"), [
    ("verify says False", False, DfuStatus.ERR_FIRMWARE),
    ("verify names a status", DfuStatus.ERR_TARGET, DfuStatus.ERR_TARGET),
    ("verify accepts", None, DfuStatus.OK),
])
async def test_bad_firmware_fails_manifestation(case: str, verdict: DfuStatus | bool | None, expected: DfuStatus,
                                                tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin", verify=lambda image: verdict)
    async with LocalHost(device) as host:
        await host.enumerate()
        await download(host, b"not really firmware")
        st, _, state = await status(host)
    assert st == expected and state == (S.DFU_ERROR if expected else S.DFU_MANIFEST)


async def test_image_changed_behind_the_devices_back_is_err_verify(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin")
    async with LocalHost(device) as host:
        await host.enumerate()
        await download(host, b"firmware v2")
        (tmp_path / "fw.bin").write_bytes(b"firmware v3")  # what was programmed is not what was sent
        assert (await status(host))[0] == DfuStatus.ERR_VERIFY


async def test_fail_next_provokes_any_status(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin")
    device.dfu.fail_next(DfuStatus.ERR_PROG)
    assert await errored(device, [dnload(0, b"abc")]) == (DfuStatus.ERR_PROG, S.DFU_ERROR)


async def test_dnbusy_while_a_block_programs(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin", poll_timeout=50)
    async with LocalHost(device) as host:
        await host.enumerate()
        await host.control(*dnload(0, b"abc"))
        assert await status(host) == (DfuStatus.OK, 50, S.DFU_DNBUSY)
        with pytest.raises(Stall):  # asked before bwPollTimeout: the spec's answer is a stall and dfuERROR
            await host.control(GETSTATUS)
        assert device.dfu.state == S.DFU_ERROR
        await host.control(CLRSTATUS)
        await host.control(*dnload(0, b"abc"))
        assert (await status(host))[2] == S.DFU_DNBUSY
        await asyncio.sleep(0.06)
        assert await status(host) == (DfuStatus.OK, 0, S.DFU_DNLOAD_IDLE)


async def test_not_manifestation_tolerant_waits_for_reset(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin", manifestation_tolerant=False, manifest_time=0)
    async with LocalHost(device) as host:
        await host.enumerate()
        await download(host, b"fw")
        assert (await status(host))[2] == S.DFU_MANIFEST
        assert (await status(host))[2] == S.DFU_MANIFEST_WAIT_RESET
        with pytest.raises(Stall):
            await host.control(upload(0, 8))
        host.detach()  # the bus goes away: the bootloader starts over
    assert device.dfu.state == S.DFU_IDLE


# ---------------------------------------------------------------- runtime mode and the switch


async def test_runtime_detach_then_reset_enters_dfu_mode(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin", start_in="runtime", product_id=0x0012, dfu_product_id=0x0011)
    async with LocalHost(device) as host:
        info = await host.enumerate()
        assert info.device.product_id == 0x0012 and info.configurations[0].interfaces[0].interface_protocol == 1
        assert await status(host) == (DfuStatus.OK, 0, S.APP_IDLE)
        with pytest.raises(Stall):
            await host.control(*dnload(0, b"x"))  # runtime takes only DETACH
        await host.control(DETACH)
        assert await host.control(GETSTATE) == bytes((S.APP_DETACH,))
        # What the server sees of the host's port reset: GET_DESCRIPTOR(DEVICE) for 64 bytes at address 0.
        device_descriptor = await host.control(SetupPacket(0x80, 6, 0x0100, 0, 64))
        assert device.mode == "dfu" and device_descriptor[10:12] == (0x0011).to_bytes(2, "little")
        info = await host.enumerate()
        assert info.configurations[0].interfaces[0].interface_protocol == 2
        await download(host, b"new app")
        await status(host)
        await asyncio.sleep(0.02)
        assert (await status(host))[2] == S.DFU_IDLE
        await host.control(SetupPacket(0x80, 6, 0x0100, 0, 64))  # dfu-util -R: reset, the new firmware runs
        assert device.mode == "runtime" and (await host.enumerate()).device.product_id == 0x0012


async def test_detach_without_reset_times_out_back_to_app_idle(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "fw.bin", start_in="runtime", detach_timeout=20)
    async with LocalHost(device) as host:
        await host.enumerate()
        await host.control(DETACH)
        await asyncio.sleep(0.05)
        assert await host.control(GETSTATE) == bytes((S.APP_IDLE,))
        await host.control(SetupPacket(0x80, 6, 0x0100, 0, 64))
        assert device.mode == "runtime"


# ---------------------------------------------------------------- bad definitions and profiles


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"mode": "bootloader"}, "DFU mode 'bootloader': 'dfu' or 'runtime'"),
    ({"transfer_size": 0}, "transfer_size 0: 1..65535 bytes"),
    ({"capacity": 0}, "firmware capacity 0"),
])
def test_bad_dfu_functions_are_refused_by_name(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DeviceDefinitionError, match=re.escape(message)):
        DfuFunction(None, **kwargs)  # type: ignore[arg-type]


def test_image_larger_than_the_capacity_is_refused(tmp_path: Path) -> None:
    (tmp_path / "fw.bin").write_bytes(bytes(4096))
    with pytest.raises(DeviceDefinitionError, match="4096 bytes, more than the capacity of 1024"):
        DfuFunction(tmp_path / "fw.bin", capacity=1024)


def test_shipped_dfu_profile(tmp_path: Path) -> None:
    profile = tmp_path / "dfu.yaml"
    profile.write_text((ROOT / "profiles" / "dfu.yaml").read_text())
    device = load_device(profile)
    (f,) = device.functions
    assert isinstance(f, DfuFunction) and f.mode == "dfu" and f.image.path == tmp_path / "dfu-firmware.img"
    assert (tmp_path / "dfu-firmware.img").exists() and f.image.capacity == 1 << 20


async def test_profile_require_prefix_is_err_firmware(tmp_path: Path) -> None:
    text = ("identity: {vendor_id: 0x1209, product_id: 0x11}\n"
            "functions:\n  - kind: dfu\n    image: fw.bin\n    require_prefix: '7f 45 4c 46'\n")
    device = parse_profile(text, "p.yaml", tmp_path).build()
    async with LocalHost(device) as host:
        await host.enumerate()
        await download(host, b"MZ not an ELF")
        assert (await status(host))[0] == DfuStatus.ERR_FIRMWARE


def test_profile_errors_name_the_field(tmp_path: Path) -> None:
    text = "identity: {vendor_id: 0x1209, product_id: 0x11}\nfunctions:\n  - kind: dfu\n    capacity: lots\n"
    with pytest.raises(ProfileError, match=r"p.yaml:4:15: field 'functions\[0\].capacity'"):
        parse_profile(text, "p.yaml", tmp_path)


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "devices" / "dfu.md").read_text()
    code = re.search(r"## Example.*?```python\n(.*?)```", page, re.S)
    assert code is not None, "docs/devices/dfu.md: no example"
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "dfuERROR errADDRESS"


# ---------------------------------------------------------------- DfuSe (ST's extension)


def dfuse_command(*payload: int) -> tuple[SetupPacket, bytes]:
    return dnload(0, bytes(payload))


def address(a: int) -> tuple[int, ...]:
    return tuple(a.to_bytes(4, "little"))


async def test_dfuse_descriptor_names_the_memory_layout(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "flash.bin", capacity=8192, dfuse=DfuseLayout("Internal Flash", 0x08000000, 1024))
    async with LocalHost(device) as host:
        config = await host.get_descriptor(2, 0, 255)
        name_index = config[9 + 8]
        name = (await host.get_descriptor(3, name_index, 255, 0x0409))[2:].decode("utf-16-le")
    assert config[18:27] == functional_descriptor(0x07, 1000, 1024, 0x011A).to_bytes()  # bcdDFUVersion 1.1a
    assert name == "@Internal Flash /0x08000000/008*001Kg"
    assert (tmp_path / "flash.bin").read_bytes() == b"\xff" * 8192  # a fresh flash is erased


async def test_dfuse_commands_then_data_at_the_address_pointer(tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "flash.bin", capacity=8192, transfer_size=256,
                       dfuse=DfuseLayout("Internal Flash", 0x08000000, 1024))
    (tmp_path / "flash.bin").write_bytes(bytes(8192))  # programmed with zeros
    async with LocalHost(device) as host:
        await host.enumerate()
        assert await host.control(upload(0, 16)) == bytes((0x00, 0x21, 0x41, 0x92))  # the commands it knows
        for command in (dfuse_command(0x41, *address(0x08000400)), dfuse_command(0x21, *address(0x08000400))):
            await host.control(*command)
            assert (await status(host))[2] == S.DFU_DNBUSY  # dfu-util checks this after a command
            assert (await status(host))[2] == S.DFU_DNLOAD_IDLE
        await host.control(*dnload(2, b"A" * 256))
        assert (await status(host))[2] == S.DFU_DNLOAD_IDLE
        await host.control(*dnload(3, b"B" * 10))  # block 3: pointer + 1 * wTransferSize
        assert (await status(host))[2] == S.DFU_DNLOAD_IDLE
        memory = (tmp_path / "flash.bin").read_bytes()
        assert memory[:1024] == bytes(1024)  # page 0 untouched
        assert memory[1024:1024 + 266] == b"A" * 256 + b"B" * 10 and memory[1290:2048] == b"\xff" * 758
        await host.control(*dfuse_command(0x21, *address(0x08000400)))
        await status(host), await status(host)
        assert await host.control(upload(2, 256)) == b"A" * 256
        assert (await host.control(upload(3, 256)))[:10] == b"B" * 10  # block 3: pointer + 1 * wTransferSize
        await host.control(ABORT)
        await host.control(*dfuse_command(0x41))  # mass erase
        await status(host), await status(host)
        assert (tmp_path / "flash.bin").read_bytes() == b"\xff" * 8192


@pytest.mark.parametrize(("case", "steps"), [
    ("set address outside the memory", [dfuse_command(0x21, *address(0x08100000))]),
    ("data beyond the end", [dfuse_command(0x21, *address(0x08001F00)), dnload(2, bytes(512))]),
])
async def test_dfuse_addresses_outside_the_memory_are_err_address(case: str, steps: list[tuple[SetupPacket, bytes]],
                                                                  tmp_path: Path) -> None:
    device = DfuDevice(tmp_path / "flash.bin", capacity=8192, dfuse=DfuseLayout())
    async with LocalHost(device) as host:
        await host.enumerate()
        for setup, data in steps:
            await host.control(setup, data)
            st, _, state = await status(host)
            if state == S.DFU_DNBUSY:
                st, _, state = await status(host)
        assert (st, state) == (DfuStatus.ERR_ADDRESS, S.DFU_ERROR)
