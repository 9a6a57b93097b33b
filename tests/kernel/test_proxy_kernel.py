"""A guest proxies its own QEMU-emulated keyboard and disk with ``vusb proxy``.

The guest shares the host's root over virtio-9p (vusb.harness.hostroot): the host's own
Python, vusb and libusb run inside it, chrooted, against the guest's kernel. QEMU plugs a
usb-kbd and a usb-storage (1 MiB, a known pattern per block) into the guest's xHCI
controller; the guest's kernel drives them as real hardware. ``vusb proxy`` takes one of
them from its kernel driver and exports it on the guest's loopback; ``usbip attach`` in
the same guest imports it through vhci-hcd, where the kernel binds its driver again.
What the proxied device gives (key presses typed through QEMU's monitor, disk blocks) is
checked against the original, and the proxy's ``--record`` capture is replayed by
``vusb record`` + ``vusb serve`` into the same guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from serve_subprocess import ServeProcesses

from vusb.harness import BackgroundJob, Guest, GuestTimeoutError, HarnessError
from vusb.harness.emulated import DISK_BLOCKS, QmpClient, disk_pattern, emulated_qemu_args, input_events
from vusb.harness.hostroot import (
    HOST_ROOT,
    HOST_ROOT_QEMU_ARGS,
    HOST_SCRATCH,
    host_python,
    run_on_host_root,
    start_on_host_root,
)
from vusb.pytest_plugin import harness_unavailable

pytestmark = pytest.mark.kernel
TOOLS = Path(__file__).resolve().parent / "tools"
ROOT = Path(__file__).resolve().parents[2]
KEYBOARD, DISK = "0627:0001", "46f4:0001"
DISK_SHA256 = hashlib.sha256(b"".join(disk_pattern(n) for n in range(DISK_BLOCKS))).hexdigest()
# (first block, blocks): the start, a stretch crossing 64 KiB, the end.
REGIONS = ((0, 8), (100, 300), (DISK_BLOCKS - 16, 16))
TYPED = ("v", "u", "s", "b")
TYPED_EVENTS = [(1, code, value) for code in (47, 22, 31, 48) for value in (1, 0)]  # KEY_V, U, S, B


@dataclasses.dataclass
class Rig:
    guest: Guest
    qmp: QmpClient


@pytest.fixture(scope="module")
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One 6.1 guest for the file: QEMU's keyboard and disk on xHCI, the host's root on 9p,
    QEMU's monitor on a unix socket (to type on the keyboard)."""
    work = tmp_path_factory.mktemp("proxy-guest")
    args = [*emulated_qemu_args(["usb-kbd", "usb-storage"], work, work / "qmp.sock"), *HOST_ROOT_QEMU_ARGS]
    try:
        guest = Guest.start_sync("6.1", qemu_args=args)
    except HarnessError as exc:
        harness_unavailable(request.config, str(exc))
        raise
    qmp = QmpClient(work / "qmp.sock")
    yield Rig(guest, qmp)
    qmp.close()
    guest.stop_sync()


@pytest.fixture
def proxy_guest(rig: Rig) -> Guest:
    return rig.guest


_FIND = """
for d in /sys/bus/usb/devices/*; do
  [ -f "$d/idVendor" ] || continue
  [ "$(cat $d/idVendor):$(cat $d/idProduct)" = "$WANT" ] || continue
  case "$(readlink -f $d)" in *vhci_hcd*) side=vhci;; *) side=xhci;; esac
  [ "$side" = "$SIDE" ] && [ -n "$(cat $d/bConfigurationValue)" ] && [ -e "$d:1.0/driver" ] && { echo $d; exit 0; }
done
exit 1
"""


async def find_device(guest: Guest, vid_pid: str, side: str, timeout: float = 60) -> str:
    """The sysfs folder of the configured device `vid_pid` with a driver on interface 0, behind
    vhci-hcd (side "vhci": the proxied one) or QEMU's xHCI ("xhci": the original)."""
    script = f"WANT={vid_pid} SIDE={side}\n" + _FIND
    await guest.wait_for(f"( {script} ) >/dev/null", timeout=timeout,
                         description=f"{vid_pid} on {side} with a driver")
    return (await guest.run(script, check=True)).stdout.strip()


async def driver_of(guest: Guest, interface: str) -> str:
    return (await guest.run(f"basename $(readlink {interface}/driver) 2>/dev/null; true", check=True)).stdout.strip()


@contextlib.asynccontextmanager
async def proxied(guest: Guest, vid_pid: str, port: int, record: str | None = None) -> AsyncIterator[BackgroundJob]:
    """``vusb proxy --vid-pid V:P --port N [--record FILE]`` running in the guest (host's Python, chrooted)."""
    argv = host_python("-m", "vusb", "proxy", "--vid-pid", vid_pid, "--port", str(port))
    if record is not None:
        argv += ["--record", record]
    job = await start_on_host_root(guest, argv, cwd=str(ROOT))
    try:
        await guest.wait_for(f"grep -q 'attach: usbip' {shlex.quote(job.directory)}/out", timeout=120,
                             description=f"vusb proxy to export {vid_pid}")
    except GuestTimeoutError:
        result = await job.stop()
        raise AssertionError(f"vusb proxy did not start:\n{result.stdout}\n{result.stderr}") from None
    try:
        yield job
    finally:
        result = await job.stop(grace=20)
        assert "Traceback" not in result.stderr, result.stderr


async def region_hashes(guest: Guest, disk: str) -> list[str]:
    script = "; ".join(f"dd if=/dev/{disk} bs=512 skip={first} count={count} 2>/dev/null | sha256sum"
                       for first, count in REGIONS)
    script += f"; dd if=/dev/{disk} bs=65536 2>/dev/null | sha256sum"
    out = (await guest.run(script, check=True, timeout=300)).stdout.split()
    return out[::2]


def expected_hashes() -> list[str]:
    return [hashlib.sha256(b"".join(disk_pattern(n) for n in range(first, first + count))).hexdigest()
            for first, count in REGIONS] + [DISK_SHA256]


def vusb_record(capture: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vusb", "record", str(capture), "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


async def type_keys(rig: Rig, event: str) -> list[tuple[int, int, int]]:
    """Type "vusb" on QEMU's keyboard through its monitor; the events read from `event`."""
    reader = await rig.guest.start_background(f"exec cat {event}")
    await asyncio.sleep(1.0)  # usbhid polls once the device is open
    for key in TYPED:
        for down in (True, False):
            await asyncio.to_thread(rig.qmp.key, key, down)
            await asyncio.sleep(0.1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline and len(input_events(await reader.read_stdout())) < len(TYPED_EVENTS):
        await asyncio.sleep(0.2)
    return input_events((await reader.stop()).stdout_bytes)


async def test_the_hosts_python_runs_in_the_guest_and_reads_qemus_devices_through_libusb(
        proxy_guest: Guest) -> None:
    result = await run_on_host_root(proxy_guest, host_python(str(TOOLS / "libusb_list.py")), check=True)
    devices = [json.loads(line) for line in result.stdout.splitlines()]
    by_product = {d.get("product"): d for d in devices}
    # libusb opened each device node and read these strings from QEMU's devices.
    assert by_product["QEMU USB Keyboard"]["vid_pid"] == "0627:0001"
    assert by_product["QEMU USB HARDDRIVE"]["vid_pid"] == "46f4:0001"
    assert by_product["QEMU USB Keyboard"]["manufacturer"] == "QEMU"
    # vhci's root hubs are there too: it is the guest's USB, not the host's.
    assert any(d.get("product") == "USB/IP Virtual Host Controller" for d in devices)


def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    """docs/emulated-devices.md's program, copied out of the page and run (it boots its own guest)."""
    page = (ROOT / "docs" / "emulated-devices.md").read_text()
    code = re.search(r"```python\n# libusb_in_a_guest.py\n(.*?)```", page, re.S)
    assert code is not None
    program = tmp_path / "libusb_in_a_guest.py"
    program.write_text(code.group(1))
    result = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^/dev/bus/usb/\d{3}/\d{3} 0627 QEMU USB Keyboard$", result.stdout, re.M), result.stdout


async def event_device_under(guest: Guest, devdir: str) -> str:
    """The /dev/input/eventN of the USB device at `devdir` (the original and a copy share a name)."""
    found = await guest.wait_for_path(f"{devdir}:1.0/*/input/input*/event*", timeout=30)
    return "/dev/input/" + found[0].rsplit("/", 1)[1]


async def serve_recording(guest: Guest, serve_processes: ServeProcesses, capture: Path, tmp_path: Path) -> int:
    """`vusb record` the proxy's capture, `vusb serve` the replay, attach it; return the vhci port."""
    profile = tmp_path / f"{capture.stem}.yaml"
    made = await asyncio.to_thread(vusb_record, capture, profile)
    assert made.returncode == 0, made.stdout + made.stderr
    server = await serve_processes.astart(str(profile), "--port", "0", "--no-control", cwd=str(tmp_path))
    return await guest.attach(None, server.port, server.busids[0])


async def test_a_proxied_keyboard_binds_usbhid_over_vhci_and_its_recording_replays(
        rig: Rig, serve_processes: ServeProcesses, tmp_path: Path) -> None:
    guest = rig.guest
    original = await find_device(guest, KEYBOARD, "xhci")
    async with proxied(guest, KEYBOARD, 3300, record=f"{HOST_SCRATCH}/kbd-proxy.pcap"):
        # libusb took the interface from usbhid (usbfs holds it) while it is exported.
        assert await driver_of(guest, f"{original}:1.0") == "usbfs"
        port = await guest.attach("127.0.0.1", 3300, "1-1")
        try:
            copy = await find_device(guest, KEYBOARD, "vhci")
            assert await driver_of(guest, f"{copy}:1.0") == "usbhid"
            assert (await guest.run(f"cat {copy}/product", check=True)).stdout.strip() == "QEMU USB Keyboard"
            # Keys typed on QEMU's keyboard reach the guest through the proxy and vhci.
            assert await type_keys(rig, await event_device_under(guest, copy)) == TYPED_EVENTS
        finally:
            await guest.detach(port)
    # The proxy gave the keyboard back to its driver.
    await guest.wait_for(f"[ -e {original}:1.0/driver ]", timeout=60, description="usbhid back on QEMU's keyboard")
    assert await driver_of(guest, f"{original}:1.0") == "usbhid"

    capture = tmp_path / "kbd-proxy.pcap"
    capture.write_bytes(await guest.read_file(f"{HOST_ROOT}{HOST_SCRATCH}/kbd-proxy.pcap"))
    port = await serve_recording(guest, serve_processes, capture, tmp_path)
    try:
        replay = await find_device(guest, KEYBOARD, "vhci")
        assert await driver_of(guest, f"{replay}:1.0") == "usbhid"
        event = await event_device_under(guest, replay)
        reader = await guest.start_background(f"exec cat {event}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline and len(input_events(await reader.read_stdout())) < len(TYPED_EVENTS):
            await asyncio.sleep(0.2)
        assert input_events((await reader.stop()).stdout_bytes) == TYPED_EVENTS
    finally:
        await guest.detach(port)


async def test_a_proxied_disk_reads_back_the_same_blocks_and_its_recording_replays_them(
        rig: Rig, serve_processes: ServeProcesses, tmp_path: Path) -> None:
    guest = rig.guest
    original = await find_device(guest, DISK, "xhci")
    assert await region_hashes(guest, await guest.wait_for_disk(original)) == expected_hashes()
    async with proxied(guest, DISK, 3301, record=f"{HOST_SCRATCH}/disk-proxy.pcap"):
        port = await guest.attach("127.0.0.1", 3301, "1-1")
        try:
            copy = await find_device(guest, DISK, "vhci")
            assert await driver_of(guest, f"{copy}:1.0") == "usb-storage"
            assert await region_hashes(guest, await guest.wait_for_disk(copy)) == expected_hashes()
        finally:
            await guest.detach(port)
    original = await find_device(guest, DISK, "xhci")
    assert await region_hashes(guest, await guest.wait_for_disk(original)) == expected_hashes()

    capture = tmp_path / "disk-proxy.pcap"
    capture.write_bytes(await guest.read_file(f"{HOST_ROOT}{HOST_SCRATCH}/disk-proxy.pcap"))
    port = await serve_recording(guest, serve_processes, capture, tmp_path)
    try:
        replay = await find_device(guest, DISK, "vhci")
        assert await region_hashes(guest, await guest.wait_for_disk(replay)) == expected_hashes()
    finally:
        await guest.detach(port)
