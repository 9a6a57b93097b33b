"""The webcam through Linux's uvcvideo: formats, controls and frames as v4l2-ctl sees them.

The shipped profile (profiles/webcam.yaml) is attached once to the 6.1 guest for the
module.  Frames are captured in the guest with ``v4l2-ctl --stream-mmap`` and checked
on the host: every frame has the right size and carries the counter the device
stamped into it; counters must be consecutive (a lost or repeated frame shows as a
gap or a repeat), a whole YUYV frame must equal, byte for byte, the one the device
made for that counter, and every MJPEG frame must decode to an image of the right size.

By default the module takes a few minutes at most on CI: every check runs, on fewer
frames.  ``VUSB_FULL_KERNEL=1`` adds the exhaustive variants: 60 VGA YUYV frames instead
of 15, MJPEG at 320x240 beside 640x480, more bulk frames, and the 5.10 and 6.12 kernels.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from PIL import Image
from vusb.devices.video import ColourBars, UvcFunction, Webcam, frame_counter
from vusb.devices.video.spec import CAMERA_CONTROL_NAMES, FrameSize, PixelFormat, RequestError, VideoFormat

from vusb.device import Device
from vusb.harness import Guest
from vusb.profile import load_device
from vusb.server import Server

pytestmark = [pytest.mark.kernel, pytest.mark.asyncio(loop_scope="module")]
ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "webcam.yaml"
FULL = os.environ.get("VUSB_FULL_KERNEL") == "1"
full_only = pytest.mark.skipif(not FULL, reason="an exhaustive variant: set VUSB_FULL_KERNEL=1 to run it")
VGA_FRAMES = 60 if FULL else 15
BULK_FRAMES = 20 if FULL else 8


@dataclass
class Camera:
    """A webcam attached to a guest: its device, the uvcvideo node and the USB port."""

    device: Device
    function: UvcFunction
    port: int
    node: str


async def attach_camera(guest: Guest, server: Server, device: Device) -> Camera:
    function = next(f for f in device.functions if isinstance(f, UvcFunction))
    port = await guest.attach(None, server.port, server.add(device))
    d = device.descriptor
    serial = device.strings.get(d.serial_number_index, 0x0409) if d.serial_number_index else None
    sysfs = await guest.wait_for_usb_device(d.vendor_id, d.product_id, serial=serial, timeout=60)
    await guest.wait_for(f"ls {sysfs}:1.0/video4linux/ 2>/dev/null | grep -q video", timeout=60,
                         description="uvcvideo registered a video node")
    # uvcvideo registers a capture node and a metadata node: the capture one comes first.
    names = (await guest.run(f"ls {sysfs}:1.0/video4linux/", check=True)).stdout.split()
    node = f"/dev/{sorted(names, key=lambda n: int(n[5:]))[0]}"
    await guest.wait_for(f"[ -e {node} ]", timeout=30, description=f"{node} exists")
    return Camera(device, function, port, node)


DEEP_BUFFER = 128
"""Frames the device keeps for a late host in these tests (default 3).

The tests prove that every frame arrives whole and once; how fast the emulated guest takes
them in depends on the machine's load and is measured by benchmarks/bench_video.py.  A
deep buffer keeps a busy guest from costing frames at the device."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def camera(guest: Guest) -> AsyncIterator[Camera]:
    """The shipped webcam profile, attached to the 6.1 guest for the whole module."""
    async with Server([], port=0) as server:
        device = load_device(PROFILE)
        cam = await attach_camera(guest, server, device)
        cam.function.queued_frames = DEEP_BUFFER
        yield cam
        await guest.detach(cam.port)


@pytest.fixture(autouse=True)
def _detach_leftovers() -> Iterator[None]:
    """The module's camera stays attached between tests (tests/kernel/conftest.py would detach it)."""
    yield


def listed_formats(text: str) -> dict[str, dict[str, list[float]]]:
    """``v4l2-ctl --list-formats-ext`` as {fourcc: {"WxH": [fps, ...]}}."""
    out: dict[str, dict[str, list[float]]] = {}
    fourcc = size = ""
    for line in text.splitlines():
        if m := re.search(r"\[\d+\]: '(\w+)'", line):
            fourcc = m.group(1)
            out[fourcc] = {}
        elif m := re.search(r"Size: Discrete (\d+x\d+)", line):
            size = m.group(1)
            out[fourcc][size] = []
        elif m := re.search(r"Interval: Discrete [\d.]+s \(([\d.]+) fps\)", line):
            out[fourcc][size].append(float(m.group(1)))
    return out


def expected_formats(function: UvcFunction) -> dict[str, dict[str, list[float]]]:
    names = {PixelFormat.YUYV: "YUYV", PixelFormat.MJPEG: "MJPG"}
    return {names[f.format]: {s.label(): [round(10_000_000 / i, 3) for i in s.intervals] for s in f.frames}
            for f in function.formats}


@dataclass
class Capture:
    frames: list[bytes]
    seconds: float


async def capture(guest: Guest, cam: Camera, fourcc: str, width: int, height: int, fps: int, count: int,
                  *, whole: bool = True) -> Capture:
    """Stream ``count`` frames into a guest file; its frames (or, with ``whole=False``, each YUYV frame's first
    64 bytes) come back to the host."""
    path = "/tmp/vusb-capture.raw"
    cmd = (f"v4l2-ctl -d {cam.node} --set-fmt-video=width={width},height={height},pixelformat={fourcc} "
           f"--set-parm={fps} --stream-mmap=4 --stream-count={count} --stream-to={path}")
    start = time.monotonic()
    r = await guest.run(cmd, timeout=120)
    seconds = time.monotonic() - start
    assert r.returncode == 0, r.stdout + r.stderr
    size = int((await guest.run(f"wc -c < {path}", check=True)).stdout)
    frame_size = width * height * 2
    if fourcc == "YUYV":
        assert size == count * frame_size, f"{size} bytes for {count} frames of {frame_size}"
        if not whole:
            heads = (await guest.run(
                f"for i in $(seq 0 {count - 1}); do dd if={path} bs=64 count=1 skip=$((i * {frame_size // 64})) "
                f"2>/dev/null; done", check=True)).stdout_bytes
            return Capture([heads[i:i + 64] for i in range(0, len(heads), 64)], seconds)
        data = await guest.read_file(path)
        return Capture([data[i:i + frame_size] for i in range(0, len(data), frame_size)], seconds)
    data = await guest.read_file(path)
    frames = [b"\xff\xd8" + part for part in data.split(b"\xff\xd8")[1:]]
    return Capture(frames, seconds)


def consecutive(counters: list[int | None]) -> bool:
    return None not in counters and all(b == a + 1 for a, b in itertools.pairwise(counters))  # type: ignore[operator]


async def test_uvcvideo_binds_and_lists_the_profile_formats(guest: Guest, camera: Camera) -> None:
    driver = (await guest.run(f"basename $(readlink /sys/class/video4linux/{camera.node[5:]}/device/driver)",
                              check=True)).stdout.strip()
    assert driver == "uvcvideo"
    listing = (await guest.run(f"v4l2-ctl -d {camera.node} --list-formats-ext", check=True)).stdout
    assert listed_formats(listing) == expected_formats(camera.function), listing
    # The profile offers still images (method 2): uvcvideo skips the Still Image Frame descriptors without a word.
    assert camera.function.still_method == 2
    assert_no_uvc_complaint((await guest.run("dmesg", check=True)).stdout)


def assert_no_uvc_complaint(dmesg: str) -> None:
    found = [line for line in dmesg.splitlines() if "Found UVC" in line]
    assert found, dmesg
    bad = [line for line in dmesg.splitlines()
           if re.search(r"uvcvideo.*(error|invalid|Failed to|not supported|Unknown)|UVC non compliance", line, re.I)
           and "Failed to query (SET_CUR) UVC control" not in line]
    assert not bad, "\n".join(bad)


async def test_processing_unit_controls_from_their_declared_ranges(guest: Guest, camera: Camera) -> None:
    listing = (await guest.run(f"v4l2-ctl -d {camera.node} -l", check=True)).stdout
    assert re.search(r"brightness .*min=-64 max=64 step=1 default=0", listing), listing
    assert re.search(r"contrast .*min=0 max=95 step=1 default=32", listing), listing
    await guest.run(f"v4l2-ctl -d {camera.node} --set-ctrl=brightness=-20,saturation=80", check=True)
    assert camera.function.control_value("brightness") == -20
    assert camera.function.control_value("saturation") == 80
    got = (await guest.run(f"v4l2-ctl -d {camera.node} --get-ctrl=brightness", check=True)).stdout
    assert got.strip() == "brightness: -20"


V4L2_NAMES = {
    # the device's camera control -> v4l2-ctl's name on 6.1 (uvcvideo maps neither scanning_mode nor, before
    # 6.7, roll_absolute)
    "auto_exposure_mode": "auto_exposure", "auto_exposure_priority": "exposure_dynamic_framerate",
    "exposure_time_absolute": "exposure_time_absolute", "iris_absolute": "iris_absolute",
    "focus_absolute": "focus_absolute", "focus_auto": "focus_automatic_continuous", "zoom_absolute": "zoom_absolute",
    "pan_absolute": "pan_absolute", "tilt_absolute": "tilt_absolute", "privacy": "privacy",
}
AE_MENU = {0x01: 1, 0x02: 0, 0x04: 2, 0x08: 3}
"""UVC auto-exposure mode bit -> v4l2's menu index (manual 1, auto 0, shutter priority 2, aperture priority 3)."""


async def test_camera_controls_are_listed_with_their_declared_ranges(guest: Guest, camera: Camera) -> None:
    listing = (await guest.run(f"v4l2-ctl -d {camera.node} -L", check=True)).stdout
    declared = [cs for parts in camera.function.controls.values() for cs in parts if cs.entity == 1]
    assert {cs.name for cs in declared} == set(V4L2_NAMES)
    for cs in declared:
        name = V4L2_NAMES[cs.name]
        if cs.kind == "range":
            wanted = rf"\b{name} 0x\w+ \(int\)\s*: min={cs.minimum} max={cs.maximum} step={cs.resolution} default={cs.default}"
        elif cs.kind == "boolean":
            wanted = rf"\b{name} 0x\w+ \(bool\)\s*: default={cs.default}"
        else:  # the menu lists exactly the modes the device offers (its GET_RES mask)
            wanted = rf"\b{name} 0x\w+ \(menu\)\s*: min=0 max=3 default={AE_MENU[cs.default]}"
            offered = sorted(AE_MENU[bit] for bit in AE_MENU if bit & cs.resolution)
            menu = re.search(rf"\b{name} .*\n((?:\t+\d+: .*\n)+)", listing)
            assert menu is not None and [int(i) for i in re.findall(r"\t(\d+):", menu.group(1))] == offered, listing
        assert re.search(wanted, listing), f"{wanted}\n{listing}"


async def test_camera_control_sets_reach_the_device(guest: Guest, camera: Camera) -> None:
    f, node = camera.function, camera.node

    async def ctl(assignment: str) -> str:
        r = await guest.run(f"v4l2-ctl -d {node} -c {assignment}")
        return "ok" if r.returncode == 0 else (r.stdout + r.stderr).strip()

    # Manual exposure, then an exposure time: the device holds what was set.
    assert await ctl("auto_exposure=1") == "ok" and f.control_value("auto_exposure_mode") == 0x01
    assert await ctl("exposure_time_absolute=500") == "ok" and f.control_value("exposure_time_absolute") == 500
    got = (await guest.run(f"v4l2-ctl -d {node} --get-ctrl=exposure_time_absolute", check=True)).stdout
    assert got.strip() == "exposure_time_absolute: 500"
    # Beyond the range: uvcvideo clamps to the device's GET_MAX before sending.
    assert await ctl("exposure_time_absolute=99999") == "ok" and f.control_value("exposure_time_absolute") == 2047
    # A mode the device does not offer (auto, bit 0x02): uvcvideo refuses it from the GET_RES mask.
    assert "Invalid argument" in await ctl("auto_exposure=0")
    assert f.control_value("auto_exposure_mode") == 0x01
    # Pan and tilt are one 8-byte control: setting pan leaves tilt as it was.
    assert await ctl("pan_absolute=7200") == "ok"
    assert (f.control_value("pan_absolute"), f.control_value("tilt_absolute")) == (7200, 0)
    assert await ctl("focus_automatic_continuous=0") == "ok" and await ctl("focus_absolute=35") == "ok"
    assert f.control_value("focus_absolute") == 35
    # The iris under shutter priority is the device's to set: SET_CUR reaches it (uvcvideo has no rule for the
    # iris), the device stalls, uvcvideo reads the request error code (2, wrong state) and turns it into EILSEQ
    # (6.1; later kernels answer EACCES), which only that error code gives.
    assert await ctl("auto_exposure=2") == "ok" and f.control_value("auto_exposure_mode") == 0x04
    refused = await ctl("iris_absolute=400")
    assert "Invalid or incomplete multibyte or wide character" in refused or "Permission denied" in refused, refused
    assert f.control_value("iris_absolute") == 200 and f.request_error == RequestError.WRONG_STATE
    dmesg = (await guest.run("dmesg | grep 'UVC control 9 on unit 1'")).stdout
    assert "Failed to query (SET_CUR) UVC control 9 on unit 1" in dmesg, dmesg
    assert await ctl("auto_exposure=3") == "ok" and await ctl("iris_absolute=400") == "ok"
    assert f.control_value("iris_absolute") == 400


async def test_yuyv_640x480_at_30_fps_every_frame_complete_and_in_order(guest: Guest, camera: Camera) -> None:
    stats = camera.function.stats
    sent_before, dropped_before = stats.frames_sent, stats.frames_dropped
    cap = await capture(guest, camera, "YUYV", 640, 480, 30, VGA_FRAMES, whole=False)
    counters = [frame_counter(head) for head in cap.frames]
    assert len(counters) == VGA_FRAMES and consecutive(counters), (str(counters), stats, cap.seconds)
    assert stats.frames_sent - sent_before >= VGA_FRAMES and stats.frames_dropped == dropped_before


async def test_a_whole_yuyv_frame_is_what_the_device_made(guest: Guest, camera: Camera) -> None:
    cap = await capture(guest, camera, "YUYV", 320, 240, 30, 3)
    bars = ColourBars()
    for frame in cap.frames:
        index = frame_counter(frame)
        assert index is not None
        assert frame == bars.yuyv(index, 320, 240)


@pytest.mark.parametrize(("width", "height"), [(640, 480), pytest.param(320, 240, marks=full_only)])
async def test_mjpeg_frames_decode(guest: Guest, camera: Camera, width: int, height: int) -> None:
    cap = await capture(guest, camera, "MJPG", width, height, 30, 10)
    assert len(cap.frames) == 10
    counters = []
    for frame in cap.frames:
        with Image.open(io.BytesIO(frame)) as image:
            image.load()
            assert image.size == (width, height) and image.format == "JPEG"
            # The first colour bar is white, the last black (away from the counter box).
            assert min(image.getpixel((width // 16, height - 8))) > 200  # type: ignore[type-var]
            assert max(image.getpixel((width - 8, height - 8))) < 40  # type: ignore[type-var]
        counters.append(frame_counter(frame))
    assert consecutive(counters), counters


async def test_bulk_webcam_streams_too(guest: Guest, camera: Camera) -> None:
    """A bulk webcam with still method 3: its bulk still endpoint sits beside the video one, and uvcvideo streams
    from the endpoint the input header names."""
    cam = Webcam([VideoFormat(PixelFormat.YUYV, (FrameSize(320, 240, (30,)),), still_sizes=((640, 480),))],
                 transport="bulk", serial_number="bulk", queued_frames=DEEP_BUFFER, still_method=3)
    async with Server([], port=0) as server:
        attached = await attach_camera(guest, server, cam)
        try:
            endpoints = (await guest.run(f"ls -d /sys/class/video4linux/{attached.node[5:]}/device/../*:1.1/ep_*",
                                         check=True)).stdout.split()
            cap = await capture(guest, attached, "YUYV", 320, 240, 30, BULK_FRAMES, whole=False)
            assert_no_uvc_complaint((await guest.run("dmesg", check=True)).stdout)
        finally:
            await guest.detach(attached.port)
    assert sorted(e.rsplit("_", 1)[1] for e in endpoints) == ["81", "82"], endpoints
    counters = [frame_counter(h) for h in cap.frames]
    assert len(counters) == BULK_FRAMES and consecutive(counters), counters


# The 6.1 guest is the session's own; the other kernels boot a guest each, so they are exhaustive variants.
@pytest.mark.parametrize("any_guest", [pytest.param("5.10", marks=full_only), "6.1", pytest.param("6.12", marks=full_only)],
                         indirect=True, ids=["linux-5.10", "linux-6.1", "linux-6.12"])
async def test_binds_and_lists_formats_on_every_kernel(any_guest: Guest) -> None:
    """Every camera control and a method 3 still endpoint with its descriptors: each kernel binds, lists the
    formats and says nothing about them; the controls it maps are listed with their ranges."""
    webcam = Webcam(serial_number=f"k{any_guest.kernel_release}"[:30], still_method=3,
                    camera_controls=CAMERA_CONTROL_NAMES)
    async with Server([], port=0) as server:
        cam = await attach_camera(any_guest, server, webcam)
        try:
            listing = (await any_guest.run(f"v4l2-ctl -d {cam.node} --list-formats-ext", check=True)).stdout
            controls = (await any_guest.run(f"v4l2-ctl -d {cam.node} -l", check=True)).stdout
            dmesg = (await any_guest.run("dmesg", check=True)).stdout
        finally:
            await any_guest.detach(cam.port)
    assert listed_formats(listing) == expected_formats(cam.function), f"{any_guest.kernel_release}:\n{listing}"
    assert_no_uvc_complaint(dmesg)
    assert re.search(r"zoom_absolute .*min=100 max=500 step=1 default=100", controls), controls
    assert re.search(r"pan_absolute .*min=-36000 max=36000 step=3600", controls), controls
